//! The Flash socket policy responder (docs/design.md#flash-policy), bound by the daemon itself from
//! `[Flash] port`: the exact request gets the policy and a NUL; wrong, slow and endless
//! clients are closed within bounds, and the server keeps serving.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"<policy-file-request/>\0";

fn flash_server(extra: &str) -> (Server, u16, u16) {
    let flash = free_port();
    let d = Launch::new(&format!("[Flash]\nport = {flash}\n{extra}"))
        .debug(false)
        .start();
    let http = d.port;
    d.expect_log(
        &format!("flash policy server on [::]:{flash}"),
        Duration::from_secs(5),
    );
    (d, http, flash)
}

/// Reads until the server closes; returns the bytes and how long it took.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server did not close: {e}"),
        }
    }
    (got, t.elapsed())
}

#[test]
fn the_exact_request_gets_the_policy_and_a_nul() {
    let (d, http, flash) = flash_server("");
    let policy = flash_request(flash);
    let text = String::from_utf8(policy).unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.contains(&format!(
        "<allow-access-from domain=\"*\" to-ports=\"{http}\"/>"
    )));
    assert!(text.ends_with("</cross-domain-policy>\n\0"), "{text:?}");

    // Sent a few bytes at a time, within the time allowed, it is still the request.
    let mut s = TcpStream::connect(("127.0.0.1", flash)).unwrap();
    for chunk in REQUEST.chunks(5) {
        s.write_all(chunk).unwrap();
        // The pauses between the pieces are the point.
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got, _) = read_until_closed(&mut s);
    assert_eq!(got, text.as_bytes());
    assert_handshake(http);
    drop(d);
}

#[test]
fn anything_else_is_closed_at_once() {
    let (d, http, flash) = flash_server("");
    for wrong in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"<policy-file-request/>X",  // wrong terminator
        b"<POLICY-FILE-REQUEST/>\0", // case matters
        b"\0",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", flash)).unwrap();
        s.write_all(wrong).unwrap();
        let (got, took) = read_until_closed(&mut s);
        assert!(got.is_empty(), "answered {wrong:?}");
        assert!(took < Duration::from_secs(1), "{wrong:?} took {took:?}");
    }
    assert_handshake(http);
    drop(d);
}

#[test]
fn silent_and_unfinished_requests_are_closed_after_the_timeout() {
    let (d, http, flash) = flash_server("");
    // Nothing at all, and the request without its NUL.
    for sent in [&b""[..], b"<policy-file-request/>"] {
        let mut s = TcpStream::connect(("127.0.0.1", flash)).unwrap();
        s.write_all(sent).unwrap();
        let (got, took) = read_until_closed(&mut s);
        assert!(got.is_empty());
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
    }
    assert_handshake(http);
    drop(d);
}

#[test]
fn an_endless_sender_is_cut_off() {
    let (d, http, flash) = flash_server("");
    // Garbage, and a stream that starts like the request and never ends: writing stops
    // succeeding within a bounded time instead of the server reading forever.
    for prefix in [&b""[..], b"<policy-file-"] {
        let mut s = TcpStream::connect(("127.0.0.1", flash)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(prefix).unwrap();
        let t = Instant::now();
        let chunk = [b'A'; 4096];
        let mut sent = 0usize;
        let err = loop {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "still accepting after {sent} bytes"
            );
        };
        assert!(
            matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "{err}"
        );
    }
    assert_eq!(
        String::from_utf8(flash_request(flash))
            .unwrap()
            .matches('\0')
            .count(),
        1
    );
    assert_handshake(http);
    drop(d);
}

#[test]
fn connections_at_once_are_bounded() {
    let (d, http, flash) = flash_server("");
    // 300 idle clients: at most 256 are held (until their 3 s run out), the rest closed now.
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", flash)).unwrap())
        .collect();
    // "At once" is well within the 3 s the held ones get.
    let mut is_closed = vec![false; idle.len()];
    for s in &mut idle {
        s.set_nonblocking(true).unwrap();
    }
    let enough = poll_until(Duration::from_secs(2), || {
        for (s, closed) in idle.iter_mut().zip(is_closed.iter_mut()) {
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(0) => *closed = true,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => *closed = true,
                _ => {}
            }
        }
        (is_closed.iter().filter(|c| **c).count() >= 44).then_some(())
    });
    let closed = is_closed.iter().filter(|c| **c).count();
    assert!(enough.is_some(), "only {closed} of 300 closed at once");
    drop(idle);
    // Once the idle ones are gone, requests are answered again.
    // (A try made while the server is still full is closed with a reset: tried again.)
    let answered = poll_until(Duration::from_secs(10), || {
        let mut s = TcpStream::connect(("127.0.0.1", flash)).ok()?;
        s.write_all(REQUEST).ok()?;
        let (got, _) = read_until_closed(&mut s);
        got.ends_with(b"\0").then_some(())
    });
    assert!(answered.is_some(), "no policy once the idle clients left");
    assert_handshake(http);
    drop(d);
}

#[test]
fn policy_file_replaces_the_built_in_policy() {
    let dir = TempDir::new("flash-file");
    let xml = "<cross-domain-policy><allow-access-from domain=\"example.com\" to-ports=\"80\"/></cross-domain-policy>";
    let file = dir.write("policy.xml", xml);
    let (d, _http, flash) = flash_server(&format!("policy-file = {}\n", file.display()));
    let got = flash_request(flash);
    assert_eq!(got, format!("{xml}\0").as_bytes());
    drop(d);
}

#[test]
fn a_port_that_cannot_be_bound_is_a_warning() {
    // The port is taken: the daemon warns and serves HTTP anyway.
    let taken = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let d = Launch::new(&format!("[Flash]\nport = {port}\n"))
        .debug(false)
        .start();
    let http = d.port;
    d.expect_log(
        "Flash policy requests will not be answered",
        Duration::from_secs(5),
    );
    assert!(d.log().contains(" WARN "), "{}", d.log());
    assert_handshake(http);
}

#[test]
fn disabled_means_no_port() {
    let port = free_port();
    let d = Launch::new(&format!("[Flash]\nenabled = false\nport = {port}\n"))
        .debug(false)
        .start();
    let http = d.port;
    assert_handshake(http);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!d.log().contains("flash policy server"), "{}", d.log());
}
