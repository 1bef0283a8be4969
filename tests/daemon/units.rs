//! The systemd units in `systemd/`: `systemd-analyze verify` has nothing to say about them,
//! and the service's exposure (`systemd-analyze security`) is at most 2.0 (docs/design.md#daemon).
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::process::Command;

const UNITS: [&str; 3] = [
    "realtime.service",
    "realtime.socket",
    "realtime-flash.socket",
];

/// The units in a directory of their own, with `ExecStart=` pointing at the built binary:
/// verify checks that the command exists, and /usr/bin/realtime is not installed here.
fn staged() -> TempDir {
    let dir = TempDir::new("units");
    for unit in UNITS {
        let text = std::fs::read_to_string(format!("systemd/{unit}")).unwrap();
        dir.write(unit, &text.replace("/usr/bin/realtime", BIN));
    }
    dir
}

fn analyze_available() -> bool {
    if have("systemd-analyze") {
        return true;
    }
    eprintln!("SKIPPED: needs systemd-analyze (Debian package systemd)");
    false
}

#[test]
fn verify_prints_nothing() {
    if !analyze_available() {
        return;
    }
    let dir = staged();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(UNITS.map(|u| dir.path(u)))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify only warns about unknown keys and still exits 0: any output is a failure.
    assert!(out.status.success() && said.is_empty(), "{said}");
}

#[test]
fn security_exposure_is_at_most_2() {
    if !analyze_available() {
        return;
    }
    let dir = staged();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(dir.path("realtime.service"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for realtime.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level}:\n{text}");
    assert!(out.status.success(), "{text}");
}

#[test]
fn the_units_wire_sockets_to_the_service_by_name() {
    let unit = |name: &str| std::fs::read_to_string(format!("systemd/{name}")).unwrap();
    let http = unit("realtime.socket");
    for line in [
        "ListenStream=8001",
        "FileDescriptorName=http",
        "Service=realtime.service",
        "Wants=realtime-flash.socket",
    ] {
        assert!(
            http.lines().any(|l| l == line),
            "realtime.socket lacks {line}"
        );
    }
    let flash = unit("realtime-flash.socket");
    for line in [
        "ListenStream=843",
        "FileDescriptorName=flash",
        "Service=realtime.service",
    ] {
        assert!(
            flash.lines().any(|l| l == line),
            "realtime-flash.socket lacks {line}"
        );
    }
    let service = unit("realtime.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=realtime",
        "Restart=on-failure",
        "LimitNOFILE=262144",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "realtime.service lacks {line}"
        );
    }
    assert!(service.lines().any(|l| l.starts_with("WatchdogSec=")));
    // systemd 252 (Debian 12, RHEL 9) does not know notify-reload.
    assert!(!service.contains("notify-reload"));
}
