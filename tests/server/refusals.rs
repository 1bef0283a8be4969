//! Refusals at the default log level: each reason logged now and then at info, naming the
//! peer, and counted in `/metrics` by reason.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn refusals(text: &str, reason: &str) -> Option<f64> {
    metric(
        text,
        &format!("realtime_refusals_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn refusals_are_counted_by_reason_and_logged_once_in_a_while() {
    let server = Launch::new("").debug(false).start();
    let p = server.port;
    // An Engine.IO v3 client, retrying.
    for _ in 0..3 {
        let (status, _) = get(p, "/socket.io/?EIO=3&transport=polling").await;
        assert_eq!(status, 400);
    }
    // A client with another parser: binary where a text packet was due.
    let mut ws = sio_connect(p, "").await;
    ws.send(Message::binary(vec![0x83u8, 1, 2])).await.unwrap();
    assert!(closes_within(&mut ws, Duration::from_secs(3)).await);
    // A recovery that cannot be honoured, and a refused request.
    let (mut ws, _) = ws_open(p).await;
    send(&mut ws, r#"40{"pid":"gone","offset":"7"}"#).await;
    assert!(next_sio(&mut ws).await.unwrap().starts_with("0{\"sid\""));
    send(&mut ws, r#"42["subscribe",""]"#).await;

    let counted = poll_until_async(Duration::from_secs(10), || async {
        let (_, text) = get(p, "/metrics").await;
        (refusals(&text, "request_refused") == Some(1.0)).then_some(text)
    })
    .await
    .expect("request_refused counted");
    assert_eq!(refusals(&counted, "unsupported_protocol"), Some(3.0));
    assert_eq!(refusals(&counted, "bad_packet"), Some(1.0));
    assert_eq!(refusals(&counted, "recovery_failed"), Some(1.0));
    assert_eq!(refusals(&counted, "engineio_request"), Some(0.0));

    // One line for the three refusals of one kind, at info, with the peer.
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("client refused") && l.contains("unsupported_protocol"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("127.0.0.1]:"),
        "{log}"
    );
    for reason in ["bad_packet", "recovery_failed", "request_refused"] {
        assert!(
            log.lines()
                .any(|l| l.contains("client refused") && l.contains(reason)),
            "{reason}: {log}"
        );
    }
}
