//! Where log lines go (docs/design.md#daemon): journald priority prefixes when stderr is the
//! journal (JOURNAL_STREAM matches stderr's device and inode), syslog datagrams when configured,
//! plain stderr otherwise; one event a line.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A config that logs a warning at start (a 2011 key), so several priorities show up.
const CONFIG: &str = "[Server]\nflash-server-port = 843\n[Flash]\nenabled = no\n";

/// Runs the daemon with stderr going to a file; `journal_stream` is given the file's own
/// `dev:ino` when `None`. Returns the stderr text once the daemon listens.
fn stderr_to_file(dir: &TempDir, journal_stream: Option<&str>, config: &str) -> String {
    let log_path = dir.path("stderr.log");
    File::create(&log_path).unwrap();
    let meta = std::fs::metadata(&log_path).unwrap();
    let value = journal_stream
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{}", meta.dev(), meta.ino()));
    let _server = Launch::new(config)
        .debug(false)
        .env("JOURNAL_STREAM", value)
        .stderr_file(&log_path)
        .start();
    std::fs::read_to_string(&log_path).unwrap()
}

#[test]
fn journal_stream_matching_stderr_gives_priority_prefixes() {
    let dir = TempDir::new("log-journal");
    let text = stderr_to_file(&dir, None, CONFIG);
    for line in text.lines() {
        let prio = line.strip_prefix('<').and_then(|l| l.get(..2));
        assert!(
            matches!(prio, Some("3>" | "4>" | "6>" | "7>")),
            "no priority prefix: {line:?}\n{text}"
        );
    }
    assert!(text.contains("<4> WARN "), "{text}");
    assert!(text.contains("2011 key ignored"), "{text}");
    assert!(text.contains("<6> INFO listening on "), "{text}");
    // The journal stamps entries itself.
    assert!(!text.contains("Z "), "{text}");
}

#[test]
fn a_journal_stream_of_another_file_means_plain_stderr() {
    let dir = TempDir::new("log-plain");
    // What a child of a journald-logged process inherits while its stderr is elsewhere.
    let text = stderr_to_file(&dir, Some("1:1"), CONFIG);
    assert!(text.lines().all(|l| !l.starts_with('<')), "{text}");
    assert!(
        text.contains(" WARN ") && text.contains("2011 key ignored"),
        "{text}"
    );
}

#[test]
fn target_journald_forces_prefixes() {
    let dir = TempDir::new("log-forced");
    let text = stderr_to_file(
        &dir,
        Some("1:1"),
        &format!("{CONFIG}[Log]\ntarget = journald\n"),
    );
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
}

#[test]
fn syslog_target_sends_datagrams_with_priorities() {
    let dir = TempDir::new("log-syslog");
    let socket_path = dir.path("log.sock");
    let syslog = UnixDatagram::bind(&socket_path).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = Launch::new(&format!("{CONFIG}[Log]\ntarget = syslog\nlevel = debug\n"))
        .debug(false)
        .env("REALTIME_SYSLOG_SOCKET", &socket_path)
        .spawn();
    let pid = d.pid();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let port = loop {
        let n = syslog.recv(&mut buf).expect("syslog datagram");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        got.push(msg.clone());
        if let Some(port) = listening_port(&msg) {
            break port;
        }
    };
    // RFC 3164, facility daemon (3): warning = 3*8+4, info = 3*8+6.
    let tag = format!("realtime[{pid}]: ");
    assert!(got.iter().all(|m| m.contains(&tag)), "{got:?}");
    assert!(
        got.iter()
            .any(|m| m.starts_with("<28>") && m.contains("2011 key ignored")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.starts_with("<30>") && m.contains("listening on")),
        "{got:?}"
    );
    // A session's events carry its id and peer, one datagram each.
    assert_handshake(port);
    let opened = loop {
        let n = syslog.recv(&mut buf).expect("session datagram");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("session opened") {
            break msg;
        }
    };
    assert!(opened.starts_with("<31>"), "{opened}");
    assert!(
        opened.contains("sid=") && opened.contains("peer="),
        "{opened}"
    );
    assert!(!opened.contains('\n'), "{opened}");
    // Nothing went to stderr: a wait for nothing to arrive, so a short fixed one.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(d.log(), "");
    assert!(d.wait_exit(Duration::from_millis(1)).is_none());
}

#[test]
fn no_syslog_socket_falls_back_to_stderr() {
    let dir = TempDir::new("log-nosyslog");
    let missing = dir.path("missing.sock");
    let d = Launch::new(&format!("{CONFIG}[Log]\ntarget = syslog\n"))
        .debug(false)
        .env("REALTIME_SYSLOG_SOCKET", &missing)
        .start();
    let port = d.port;
    let log = d.log();
    assert!(
        log.contains(&format!("cannot log to syslog at {}", missing.display())),
        "{log}"
    );
    assert_handshake(port);
}
