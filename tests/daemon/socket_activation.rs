//! The daemon under `systemd-socket-activate`, which passes named sockets the way systemd
//! does (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and execs the daemon at the first
//! connection; the test reads the sd_notify messages from its own NOTIFY_SOCKET.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use nix::sys::signal::Signal;

const SEC: Duration = Duration::from_secs(1);

struct Activated {
    daemon: Server,
    notify: Notify,
    /// Holds the notify socket.
    _dir: TempDir,
}

/// Starts the daemon behind systemd-socket-activate with sockets `(port, name)`, the
/// given config text and extra environment, makes the first connection (which starts it)
/// and returns once READY=1 arrived. `None` (after saying why) without the tool.
fn activate(sockets: &[(u16, &str)], config: &str, env: &[&str]) -> Option<Activated> {
    if !have("systemd-socket-activate") {
        eprintln!("SKIPPED: needs systemd-socket-activate (Debian package systemd)");
        return None;
    }
    let dir = TempDir::new("activate");
    let notify = Notify::bind(&dir.path("notify.sock"));
    let mut launch = Launch::new(config)
        .debug(false)
        .socket_activation(sockets, &notify.path);
    for e in env {
        let (k, v) = e.split_once('=').unwrap();
        launch = launch.env(k, v);
    }
    let mut a = Activated {
        daemon: launch.spawn(),
        notify,
        _dir: dir,
    };
    a.daemon
        .expect_log(&format!("127.0.0.1:{}", sockets[0].0), 5 * SEC);
    // The first connection starts the daemon; it waits in the backlog meanwhile.
    let http = sockets.iter().find(|(_, n)| *n == "http").map(|(p, _)| *p);
    if let Some(port) = http {
        let (status, body) = http_get(port, "/healthz");
        assert_eq!(status, 200, "{body}");
    }
    let ready = a.notify.expect("READY=1", 10 * SEC);
    assert!(ready.contains("STATUS="), "{ready}");
    Some(a)
}

#[test]
fn named_sockets_are_served_and_readiness_and_status_reported() {
    let (http, flash) = (free_port(), free_port());
    // [Server] bind and [Flash] port name ports that must stay unused: the passed sockets win.
    let (unused_http, unused_flash) = (free_port(), free_port());
    let config =
        format!("[Server]\nbind = 127.0.0.1:{unused_http}\n[Flash]\nport = {unused_flash}\n");
    let Some(mut a) = activate(&[(http, "http"), (flash, "flash")], &config, &[]) else {
        return;
    };
    let ready = a.notify.seen.last().unwrap().clone();
    assert_eq!(
        ready,
        "READY=1\nSTATUS=0 connections, 0 members, 0 channels\n"
    );
    a.daemon
        .expect_log(&format!("listening on 127.0.0.1:{http}"), SEC);
    a.daemon
        .expect_log(&format!("flash policy server on 127.0.0.1:{flash}"), SEC);
    let log = a.daemon.log();
    assert!(!log.contains(&format!("127.0.0.1:{unused_http}")), "{log}");

    let policy = String::from_utf8(flash_request(flash)).unwrap();
    assert!(policy.contains(&format!("to-ports=\"{http}\"")), "{policy}");
    assert!(policy.ends_with('\0'));
    assert!(std::net::TcpStream::connect(("127.0.0.1", unused_flash)).is_err());

    // STATUS= is refreshed: a session shows up (no watchdog: every 5 s).
    assert_handshake(http);
    a.notify
        .expect("STATUS=1 connections, 0 members, 0 channels", 8 * SEC);
}

#[test]
fn one_name_may_carry_several_sockets_and_the_rest_is_bound() {
    let (a1, a2, flash) = (free_port(), free_port(), free_port());
    // No `flash` socket passed: the daemon binds [Flash] port itself.
    let config = format!("[Flash]\nport = {flash}\n");
    let Some(a) = activate(&[(a1, "http"), (a2, "http")], &config, &[]) else {
        return;
    };
    assert_handshake(a2);
    assert_handshake(a1);
    let policy = String::from_utf8(flash_request(flash)).unwrap();
    assert!(
        policy.contains(&format!("to-ports=\"{},{}\"", a1.min(a2), a1.max(a2))),
        "{policy}"
    );
    let log = a.daemon.log();
    assert!(log.contains("sockets=2"), "{log}");
}

#[test]
fn sighup_reloads_around_reloading_and_ready() {
    let http = free_port();
    let Some(mut a) = activate(&[(http, "http")], "[Flash]\nenabled = no\n", &[]) else {
        return;
    };
    // A live change (level) and one that needs a restart (ping-interval).
    std::fs::write(
        a.daemon.config_path(),
        "[Flash]\nenabled = no\n[Server]\nping-interval = 5s\n[Log]\nlevel = debug\n",
    )
    .unwrap();
    a.daemon.signal(Signal::SIGHUP);
    let reloading = a.notify.expect("RELOADING=1", 5 * SEC);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now_usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(
        usec <= now_usec && now_usec - usec < 5_000_000,
        "{usec} vs {now_usec}"
    );
    a.notify.expect("READY=1", 5 * SEC);
    a.daemon
        .expect_log("reload: [Log] level changed; applied", SEC);
    a.daemon.expect_log(
        "reload: [Server] ping-interval changed; it takes effect after a restart",
        SEC,
    );
    // The new level is in force: a session's opening is logged at debug, with sid and peer.
    assert_handshake(http);
    a.daemon.expect_log("session opened", 2 * SEC);
    let line = a
        .daemon
        .log()
        .lines()
        .find(|l| l.contains("session opened"))
        .unwrap()
        .to_owned();
    assert!(line.contains("sid=") && line.contains("peer="), "{line}");

    // A bad file: the running configuration stays, the error names file, line and key,
    // and systemd still gets READY=1 (or `systemctl reload` would hang).
    std::fs::write(
        a.daemon.config_path(),
        "[Server]\nping-interval = 5s\nbogus = 1\n",
    )
    .unwrap();
    a.daemon.signal(Signal::SIGHUP);
    a.notify.expect("RELOADING=1", 5 * SEC);
    a.notify.expect("READY=1", 5 * SEC);
    let expected = format!(
        "reload failed; keeping the running configuration: {}:3: unknown key \"bogus\" in [Server]",
        a.daemon.config_path().display()
    );
    a.daemon.expect_log(&expected, SEC);
    assert_handshake(http);
}

#[test]
fn sigterm_reports_stopping_and_exits_zero() {
    use tokio_tungstenite::tungstenite::{Message, client};
    let http = free_port();
    let Some(mut a) = activate(&[(http, "http")], "[Flash]\nenabled = no\n", &[]) else {
        return;
    };
    let stream = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    stream.set_read_timeout(Some(5 * SEC)).unwrap();
    let url = format!("ws://127.0.0.1:{http}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = client(url.as_str(), stream).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Text(t) if t.starts_with("0{")));
    ws.send(Message::text("40")).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Text(t) if t.starts_with("40{")));

    let asked = std::time::Instant::now();
    a.daemon.signal(Signal::SIGTERM);
    a.notify.expect("STOPPING=1", 5 * SEC);
    // The session is closed at the Engine.IO level (the WebSocket closes), never with a
    // Socket.IO DISCONNECT: stock clients would take that as final and not reconnect.
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => assert!(!t.starts_with("41"), "Socket.IO DISCONNECT sent"),
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let status = a.daemon.wait_exit(5 * SEC).expect("exit within 5 s");
    assert_eq!(status.code(), Some(0), "{}", a.daemon.log());
    // A client that answers the close does not make shutdown wait for the grace period.
    assert!(asked.elapsed() < 2 * SEC, "took {:?}", asked.elapsed());
    assert!(a.daemon.log().contains("SIGTERM: shutting down"));
}

#[test]
fn a_stuck_hub_stops_the_watchdog_pings() {
    let http = free_port();
    // 400 ms watchdog: a ping every 200 ms. The hook holds every shard for 3 s.
    let Some(mut a) = activate(
        &[(http, "http")],
        "[Flash]\nenabled = no\n",
        &["WATCHDOG_USEC=400000", "REALTIME_TEST_HOOKS=1"],
    ) else {
        return;
    };
    a.notify.expect("WATCHDOG=1", 2 * SEC);
    a.notify.expect("WATCHDOG=1", 2 * SEC);
    a.daemon.signal(Signal::SIGUSR2);
    a.daemon.expect_log("SIGUSR2 test hook", 2 * SEC);
    // One probe may have been past the locks already; then nothing for as long as they are held.
    a.notify.collect(Duration::from_millis(400));
    let during = a.notify.collect(Duration::from_millis(2000));
    assert!(
        !during.iter().any(|m| m.contains("WATCHDOG=1")),
        "pinged while the hub was stuck: {during:?}"
    );
    a.daemon.expect_log("hub probe has not answered", SEC);
    // The locks are released after 3 s: the pings come back.
    a.notify.expect("WATCHDOG=1", 3 * SEC);
}
