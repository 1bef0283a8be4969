//! How a client's WebSocket close is read (docs/design.md#disconnect-reasons): 1000 while
//! no ping is due is a deliberate disconnect, and the member leaves at once; 1001 (a tab
//! closed or reloaded), or 1000 from a client that gave up on a late ping, keeps the
//! grace window.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Far beyond every wait here: a member gone within a wait left at once.
const GRACE: &str = "[Server]\nreconnect-timeout = 60s\n";

/// A member `identity` subscribed to `channel`: its socket and its Engine.IO sid.
async fn member(port: u16, identity: &str, channel: &str) -> (Ws, String) {
    let (mut ws, sid) = ws_open(port).await;
    send(&mut ws, &format!(r#"40{{"identity":"{identity}"}}"#)).await;
    assert!(next_sio(&mut ws).await.unwrap().starts_with("0{"));
    send(&mut ws, &format!(r#"421["subscribe","{channel}"]"#)).await;
    next_ack(&mut ws).await;
    (ws, sid)
}

async fn close(ws: &mut Ws, code: CloseCode) {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    ws.close(Some(frame)).await.unwrap();
}

async fn identities(port: u16, channel: &str) -> Vec<String> {
    let (status, body) = api(port, "GET", &format!("/api/channels/{channel}"), "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body["identities"].clone()).unwrap()
}

#[tokio::test]
async fn a_normal_close_leaves_at_once_and_going_away_keeps_the_window() {
    let mut server = Server::start(GRACE);
    let p = server.port;
    let (mut reloads, sid) = member(p, "reloads", "room").await;
    let (mut leaves, _) = member(p, "leaves", "room").await;
    close(&mut reloads, CloseCode::Away).await;
    assert!(
        server
            .wait_log_line(
                &[&sid, "session closed", "transport close"],
                Duration::from_secs(10)
            )
            .await
    );
    close(&mut leaves, CloseCode::Normal).await;
    wait_until_async(
        Duration::from_secs(10),
        "the member that closed with 1000 to leave",
        || async { identities(p, "room").await == ["reloads"] },
    )
    .await;
    server.assert_serving().await;
}

#[tokio::test]
async fn a_normal_close_while_a_ping_is_awaited_keeps_the_window() {
    let mut server = Server::start(&format!(
        "{GRACE}ping-interval = 300ms\nping-timeout = 20s\n"
    ));
    let p = server.port;
    let (mut gave_up, sid) = member(p, "gave-up", "room").await;
    // The ping is left unanswered, as by a client that then times out and reconnects.
    while next_text(&mut gave_up).await.unwrap() != "2" {}
    close(&mut gave_up, CloseCode::Normal).await;
    assert!(
        server
            .wait_log_line(
                &[&sid, "session closed", "transport close"],
                Duration::from_secs(10)
            )
            .await
    );
    assert_eq!(identities(p, "room").await, ["gave-up"]);
    server.assert_serving().await;
}
