//! The files committed in `packaging/generated/` are what the binary and the sample
//! configuration give: the man page is `realtime man`, the packaged configuration is
//! `etc/realtime.conf` with `user` and `www` set (as `packaging/build generated` writes them).
//! docs/configuration.md is `realtime config-reference`, written by the same command.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::process::Command;

const FIX: &str = "run packaging/build generated and commit packaging/generated/";

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_page_is_realtime_man() {
    if !have("gzip") {
        eprintln!("SKIPPED: needs gzip");
        return;
    }
    let committed =
        stdout_of(Command::new("gzip").args(["-dc", "packaging/generated/realtime.8.gz"]));
    let fresh = stdout_of(Command::new(BIN).arg("man"));
    assert!(
        committed == fresh,
        "packaging/generated/realtime.8.gz is not `realtime man`: {FIX}"
    );
}

#[test]
fn configuration_reference_is_realtime_config_reference() {
    let committed = std::fs::read_to_string("docs/configuration.md").unwrap();
    let fresh = stdout_of(Command::new(BIN).arg("config-reference"));
    assert!(
        committed == fresh,
        "docs/configuration.md is not `realtime config-reference`: \
         run packaging/build generated and commit docs/configuration.md"
    );
}

#[test]
fn packaged_configuration_is_the_sample_with_user_and_www() {
    let sample = std::fs::read_to_string("etc/realtime.conf").unwrap();
    let mut want = String::from(
        "# Installed by the realtime package; your changes are kept across upgrades.\n\
         # systemctl reload realtime applies what can change live (see realtime(8)).\n",
    );
    let mut set = 0;
    for line in sample.lines() {
        let line = match line {
            "#user = realtime" | "#www = /usr/share/realtime/www" => {
                set += 1;
                &line[1..]
            }
            other => other,
        };
        want.push_str(line);
        want.push('\n');
    }
    assert_eq!(
        set, 2,
        "etc/realtime.conf lost its #user or #www line: packaging/build must follow"
    );
    let committed = std::fs::read_to_string("packaging/generated/realtime.conf").unwrap();
    assert!(
        committed == want,
        "packaging/generated/realtime.conf is not etc/realtime.conf with user and www set: {FIX}"
    );
}
