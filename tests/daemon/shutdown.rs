//! SIGTERM (docs/design.md#daemon): a connection accepted before the signal still gets its answer,
//! even when its request arrives after it; then the daemon exits 0.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use nix::sys::signal::Signal;

#[test]
fn a_request_in_flight_at_sigterm_is_answered() {
    let mut d = Launch::new("[Flash]\nenabled = no\n").debug(false).start();
    let port = d.port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Let the accept happen, then stop the server before the request is sent. The
    // server says nothing when it accepts: a fixed pause.
    std::thread::sleep(Duration::from_millis(200));
    d.signal(Signal::SIGTERM);
    d.expect_log("SIGTERM: shutting down", Duration::from_secs(2));
    // The request comes a while after the signal was handled: that is the case tested.
    std::thread::sleep(Duration::from_millis(200));
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let status = d.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_idle_connection_does_not_hold_up_the_exit() {
    let mut d = Launch::new("[Flash]\nenabled = no\n").debug(false).start();
    let port = d.port;
    let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Let the accept happen (the server says nothing when it accepts): a fixed pause.
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(0));
    // It waits at most the one-second grace for a first request.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
