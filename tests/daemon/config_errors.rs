//! Bad configuration at the binary level (docs/design.md#configuration): both `realtime --config
//! FILE` and `realtime check-config FILE` exit 64 with a message naming the file, line and key, and
//! bind nothing.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], file: &Path) -> Output {
    Command::new(BIN).args(args).arg(file).output().unwrap()
}

/// Both ways of reading `file` fail with 64 and a message containing `expected`.
fn assert_rejected(file: &Path, expected: &str) {
    for args in [&["--port", "0", "--config"][..], &["check-config"]] {
        let out = run(args, file);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
        assert!(!err.contains("listening on"), "{err}");
    }
}

#[test]
fn a_missing_file() {
    let dir = TempDir::new("conf-missing");
    let file = dir.path("nope.conf");
    assert_rejected(
        &file,
        &format!("cannot read {}: No such file or directory", file.display()),
    );
}

#[test]
fn an_unknown_key() {
    let dir = TempDir::new("conf-key");
    let file = dir.write("r.conf", "[Server]\ndebug = false\nbogus-key = 1\n");
    assert_rejected(
        &file,
        &format!(
            "{}:3: unknown key \"bogus-key\" in [Server]",
            file.display()
        ),
    );
}

#[test]
fn an_unknown_section() {
    let dir = TempDir::new("conf-section");
    let file = dir.write("r.conf", "# comment\n[Nope]\n");
    assert_rejected(
        &file,
        &format!("{}:2: unknown section [Nope]", file.display()),
    );
}

#[test]
fn a_bad_value() {
    let dir = TempDir::new("conf-value");
    let file = dir.write("r.conf", "[Server]\n\nping-interval = soon\n");
    assert_rejected(
        &file,
        &format!(
            "{}:3: [Server] ping-interval: expected a duration (e.g. 8, 500ms, 25s, 2m), got \"soon\"",
            file.display()
        ),
    );
    let file = dir.write("b.conf", "[Log]\nlevel = loud\n");
    assert_rejected(
        &file,
        &format!("{}:2: [Log] level: expected", file.display()),
    );
    // The bounds that were constants: a bad value stops the start like any other.
    for (name, text, want) in [
        (
            "c.conf",
            "[Server]\nshutdown-grace = soon\n",
            "[Server] shutdown-grace: expected a duration",
        ),
        (
            "d.conf",
            "[Server]\nmax-http-connections = 0\n",
            "[Server] max-http-connections: expected a whole number of at least 1",
        ),
        (
            "e.conf",
            "[Server]\nbody-timeout = 0\n",
            "[Server] body-timeout: expected a duration greater than 0",
        ),
        (
            "f.conf",
            "[Cluster]\nanswer-timeout = 1x\n",
            "[Cluster] answer-timeout: expected a duration",
        ),
    ] {
        let file = dir.write(name, text);
        assert_rejected(&file, &format!("{}:2: {want}", file.display()));
    }
}

#[test]
fn an_unreadable_file() {
    let dir = TempDir::new("conf-unreadable");
    // A directory cannot be read as a file, whoever runs the test.
    assert_rejected(&dir.0, &format!("cannot read {}", dir.0.display()));
    // A file without read permission: root reads anything, so run the binary as nobody.
    let file = dir.write("secret.conf", "[Server]\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = |bin: &Path| {
        let mut cmd = Command::new(bin);
        cmd.arg("check-config").arg(&file);
        if is_root() {
            cmd.uid(65534).gid(65534);
        }
        cmd.output()
    };
    if !is_root() {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = match check(Path::new(BIN)) {
        Ok(out) => out,
        // The build directory may be closed to nobody (a checkout under /root): use a copy.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let copy = dir.path("realtime");
            std::fs::copy(BIN, &copy).unwrap();
            check(&copy).unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read {}: Permission denied",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn an_unreadable_policy_file_stops_the_start() {
    let dir = TempDir::new("conf-policy");
    let missing = dir.path("policy.xml");
    let file = dir.write(
        "r.conf",
        &format!(
            "[Flash]\nport = {}\npolicy-file = {}\n",
            free_port(),
            missing.display()
        ),
    );
    let out = run(&["--port", "0", "--config"], &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!(
            "[Flash] policy-file {}: No such file",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn a_valid_file_passes_check_config() {
    let out = run(&["check-config"], Path::new("etc/realtime.conf"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "etc/realtime.conf: ok\n"
    );
}
