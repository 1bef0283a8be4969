//! Started as root, the daemon binds every port, then becomes `[Server] user` with no
//! supplementary groups (docs/design.md#daemon); an unknown user is a configuration error.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::process::Command;
use std::time::Duration;

/// `Uid:`/`Gid:` (real, effective, saved, filesystem) and `Groups:` of a process.
fn ids(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn root_drops_to_the_configured_user_after_binding_both_ports() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges needs root (CI runs as root)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let dir = TempDir::new("privileges");
    // A reload (SIGHUP) reads the config file as that user.
    nix::unistd::chown(&dir.0, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let flash = free_port();
    let d = Launch::new(&format!(
        "[Server]\nuser = nobody\n[Flash]\nport = {flash}\n"
    ))
    .debug(false)
    .config_dir(&dir)
    .start();
    let http = d.port;
    d.expect_log("dropped root privileges", Duration::from_secs(5));
    let (u, g, groups) = ids(d.pid());
    assert_eq!(u, format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(g, format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(groups, "", "supplementary groups left");
    // Both ports, bound as root, still serve.
    assert_handshake(http);
    assert!(flash_request(flash).ends_with(b"</cross-domain-policy>\n\0"));
}

#[test]
fn root_without_a_user_warns() {
    if !is_root() {
        eprintln!("SKIPPED: the warning is for root only (CI runs as root)");
        return;
    }
    let d = Launch::new("[Flash]\nenabled = no\n").debug(false).start();
    let http = d.port;
    d.expect_log("running as root; set [Server] user", Duration::from_secs(5));
    assert_handshake(http);
}

#[test]
fn an_unknown_user_is_a_configuration_error() {
    let dir = TempDir::new("privileges-unknown");
    let conf = dir.write("realtime.conf", "[Server]\nuser = no-such-user-here\n");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&conf)
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[Server] user: no such user \"no-such-user-here\""),
        "{err}"
    );
    assert!(!err.contains("listening on"), "bound before failing: {err}");
}
