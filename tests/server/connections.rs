//! The HTTP connection itself against the real binary: running out of file descriptors is
//! logged now and then, not in a loop, and passes.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::time::Duration;
use tokio::net::TcpStream;

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
