//! The HTTP connection itself against the real binary: a keep-alive connection carries on
//! after a refusal given before the body was read (or says it ends), two `Host` headers are refused, and
//! running out of file descriptors is logged now and then, not in a loop, and passes.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response (head and a `Content-Length` body) from a keep-alive connection;
/// `None` when the connection ends first (or nothing comes within the bound).
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Reply> {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let mut lines = head.lines();
                    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let body = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    return Some(Reply {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_refusal_before_the_body_keeps_the_connection_usable() {
    let mut server = Server::start("[Api]\nkeys = the-key\n[Server]\nmax-payload = 4096\n");
    let p = server.port;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    // Each write goes out at once, not held back for the last one's ACK.
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let body = r#"{"channel":"news","data":"refused, and read all the same"}"#;
    let refused_head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let next = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n");
    for i in 0..200 {
        // The head and the body in separate writes (as many clients send them), every
        // other time with a pause between: the server answers from the head alone.
        s.write_all(refused_head.as_bytes()).await.unwrap();
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.write_all(body.as_bytes()).await.unwrap();
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("refusal {i} not answered"));
        assert_eq!(r.status, 401, "{i}: {r:?}");
        assert_ne!(r.header("connection"), Some("close"), "{i}");
        s.write_all(next.as_bytes()).await.unwrap();
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("request {i} after a refusal not answered"));
        assert_eq!(r.status, 200, "{i}: {r:?}");
    }

    // The same for the router's own answers: a 405 from /healthz.
    let refused_head = format!(
        "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for i in 0..50 {
        s.write_all(refused_head.as_bytes()).await.unwrap();
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.write_all(body.as_bytes()).await.unwrap();
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("POST /healthz {i} not answered"));
        assert_eq!(r.status, 405, "{i}: {r:?}");
        s.write_all(next.as_bytes()).await.unwrap();
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("request {i} after a 405 not answered"));
        assert_eq!(r.status, 200, "{i}: {r:?}");
    }

    // A body past max-payload is not read: the answer says the connection ends.
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let r = response(&mut s, &mut Vec::new()).await.unwrap();
    assert_eq!(
        (r.status, r.header("connection")),
        (401, Some("close")),
        "{r:?}"
    );
    server.assert_serving().await;
}

/// The Engine.IO endpoint refuses a POST for an unknown session before reading its body:
/// either the connection goes on and the next request is answered, or the refusal says the
/// connection ends. A client is never left with a request that gets no answer.
#[tokio::test]
async fn an_engineio_refusal_before_the_body_never_loses_the_next_request() {
    let mut server = Server::start("");
    let p = server.port;
    let body = "4hello".repeat(500);
    let refused_head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid=unknown HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let next = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    for i in 0..50 {
        s.write_all(refused_head.as_bytes()).await.unwrap();
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The server may have closed already: a failed write is what `connection: close` meant.
        let _ = s.write_all(body.as_bytes()).await;
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("refusal {i} not answered"));
        assert_eq!(r.status, 400, "{i}: {r:?}");
        if r.header("connection") == Some("close") {
            s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
            s.set_nodelay(true).unwrap();
            buf.clear();
            continue;
        }
        s.write_all(next.as_bytes()).await.unwrap();
        let r = response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("request {i} after a kept-alive refusal not answered"));
        assert_eq!(r.status, 200, "{i}: {r:?}");
    }
    server.assert_serving().await;
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let mut server = Server::start("");
    let p = server.port;
    for (path, method) in [
        ("/api/publish", "POST"),
        ("/api/channels", "GET"),
        ("/socket.io/?EIO=4&transport=polling", "GET"),
        ("/healthz", "GET"),
    ] {
        for hosts in [
            format!("Host: 127.0.0.1:{p}\r\nHost: 127.0.0.1:{p}\r\n"),
            format!("Host: 127.0.0.1:{p}\r\nHost: evil.example\r\n"),
            format!("Host: evil.example\r\nHost: localhost:{p}\r\n"),
        ] {
            let r = raw(p, method, path, hosts.as_bytes(), b"").await;
            assert_eq!(r.status, 400, "{method} {path} {hosts:?}: {r:?}");
            assert_eq!(
                r.text(),
                r#"{"ok":false,"error":"more than one Host header"}"#
            );
        }
    }
    server.assert_serving().await;
}

/// Lowers the server's open-file limit to `n` (soft and hard).
fn limit_files(pid: u32, n: u64) {
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={n}:{n}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {out:?}");
}

#[tokio::test]
async fn running_out_of_descriptors_is_logged_now_and_then_and_passes() {
    assert!(
        have("prlimit"),
        "this test needs prlimit (util-linux) to lower the server's RLIMIT_NOFILE"
    );
    let mut server = Server::start("[Flash]\nenabled = no\n");
    let p = server.port;
    let open = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    limit_files(server.pid(), open as u64 + 16);
    // Far more connections than descriptors left: the kernel completes them into the
    // backlog, and the server's accept fails for as long as they stay open.
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(("127.0.0.1", p)).await.unwrap());
    }
    assert!(
        server
            .wait_log("accept failed", Duration::from_secs(10))
            .await,
        "{}",
        server.log()
    );
    // The old loop logged about 20 lines a second; a few seconds must show one or two.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = server.log().matches("accept failed").count();
    assert!(lines <= 2, "{lines} lines:\n{}", server.log());

    drop(held);
    let back = poll_until_async(Duration::from_secs(20), || async {
        let (status, body) = get(p, "/socket.io/?EIO=4&transport=polling").await;
        (status == 200 && body.starts_with("0{\"sid\"")).then_some(())
    })
    .await;
    assert!(back.is_some(), "not serving again:\n{}", server.log());
    server.assert_serving().await;
}
