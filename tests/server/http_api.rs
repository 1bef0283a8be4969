//! The HTTP API of docs/design.md#http-api against the real binary: every body form reaches
//! subscribers, and every bad request gets its status and a JSON error while the server goes on.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

/// A subscriber on `channel`: returns its socket once the subscription is acked.
async fn subscriber(port: u16, identity: &str, channel: &str) -> Ws {
    let mut ws = sio_connect(port, &format!(r#"{{"identity":"{identity}"}}"#)).await;
    send(&mut ws, &format!(r#"421["subscribe","{channel}"]"#)).await;
    next_ack(&mut ws).await;
    ws
}

/// The next channel message envelope (skipping membership events).
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let p = next_sio(ws).await.expect("socket closed");
        if let Some(json) = p.strip_prefix('2') {
            let v: Value = serde_json::from_str(json).unwrap();
            if v[1]["type"] == "message" {
                return v[1].clone();
            }
        }
    }
}

#[tokio::test]
async fn publish_forms_reach_subscribers() {
    let mut server = Server::start("");
    let p = server.port;
    let mut sub = subscriber(p, "sam", "news").await;

    let (status, body) = api(
        p,
        "POST",
        "/api/publish",
        r#"{"channel":"news","data":{"n":1}}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"ok": true, "published": 1})));
    let env = next_message(&mut sub).await;
    assert_eq!(
        (env["data"].clone(), env["identity"].clone()),
        (json!({"n": 1}), Value::Null)
    );

    let batch = r#"[{"channel":"news","data":2,"identity":"backend"},{"channel":"news","data":3,"type":"message"}]"#;
    assert_eq!(
        api(p, "POST", "/api/publish", batch).await,
        (200, json!({"ok": true, "published": 2}))
    );
    let e2 = next_message(&mut sub).await;
    assert_eq!(
        (e2["data"].clone(), e2["identity"].clone()),
        (json!(2), json!("backend"))
    );
    assert_eq!(next_message(&mut sub).await["data"], json!(3));

    assert_eq!(
        api(
            p,
            "POST",
            "/api/publish",
            r#"{"to":"sam","data":"just you"}"#
        )
        .await,
        (200, json!({"ok": true, "published": 1}))
    );
    let direct = next_message(&mut sub).await;
    assert_eq!(
        (direct["channel"].clone(), direct["data"].clone()),
        (Value::Null, json!("just you"))
    );

    let cmd = r#"{"channel":"news","type":"command","data":{"command":"refresh","options":{"all":true}}}"#;
    assert_eq!(api(p, "POST", "/api/publish", cmd).await.0, 200);
    loop {
        let p = next_sio(&mut sub).await.unwrap();
        let v: Value = serde_json::from_str(&p[1..]).unwrap();
        if v[1]["data"]["command"] == "refresh" {
            assert_eq!(v[1]["data"]["options"], json!({"all": true}));
            break;
        }
    }
    server.assert_serving().await;
}

#[tokio::test]
async fn channels_are_listed_with_their_members() {
    let mut server = Server::start("");
    let p = server.port;
    let _a = subscriber(p, "ann", "room/1").await;
    let _b = subscriber(p, "bea", "room/1").await;
    let _c = subscriber(p, "ann", "lobby").await;
    let (status, body) = api(p, "GET", "/api/channels", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"ok": true, "channels": [{"name": "lobby", "count": 1}, {"name": "room/1", "count": 2}]})
    );
    let (status, body) = api(p, "GET", "/api/channels/room%2F1", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"ok": true, "channel": "room/1", "count": 2, "identities": ["ann", "bea"], "anonymous": 0})
    );
    let (_, empty) = api(p, "GET", "/api/channels/nobody-here", "").await;
    assert_eq!(empty["count"], 0);
    server.assert_serving().await;
}

#[tokio::test]
async fn bad_requests_get_a_status_and_a_json_error() {
    let mut server = Server::start("[Server]\nmax-payload = 2000\n");
    let p = server.port;
    let mut sub = subscriber(p, "watch", "c").await;
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/api/publish", "{not json", 400),
        ("POST", "/api/publish", "", 400),
        ("POST", "/api/publish", "42", 400),
        ("POST", "/api/publish", "[]", 400),
        ("POST", "/api/publish", r#"{"data":1}"#, 400),
        ("POST", "/api/publish", r#"{"channel":"","data":1}"#, 400),
        ("POST", "/api/publish", r#"{"channel":7,"data":1}"#, 400),
        (
            "POST",
            "/api/publish",
            r#"{"channel":"c","data":1,"type":"shout"}"#,
            400,
        ),
        (
            "POST",
            "/api/publish",
            r#"{"channel":"c","data":1,"identity":5}"#,
            400,
        ),
        (
            "POST",
            "/api/publish",
            r#"{"channel":"c","type":"command","data":{"command":"onSubscribe"}}"#,
            400,
        ),
        (
            "POST",
            "/api/publish",
            r#"{"channel":"c","type":"command","data":{}}"#,
            400,
        ),
        ("POST", "/api/publish", r#"{"to":"","data":1}"#, 400),
        // One bad element: nothing of the array is published.
        (
            "POST",
            "/api/publish",
            r#"[{"channel":"c","data":"never"},{"channel":""}]"#,
            400,
        ),
        ("GET", "/api/publish", "", 405),
        ("DELETE", "/api/channels", "", 405),
        ("GET", "/api/nothing", "", 404),
        // Only the channel routes themselves: a path that merely starts alike is unknown.
        ("GET", "/api/channelsX", "", 404),
        ("POST", "/api/channels-old", "", 404),
        ("GET", "/api/channels/%FF", "", 400),
    ];
    for (method, path, body, status) in cases {
        let (got, json) = api(p, method, path, body).await;
        assert_eq!(got, *status, "{method} {path} {body}: {json}");
        assert_eq!(json["ok"], false, "{method} {path} {body}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
    let big = format!(r#"{{"channel":"c","data":"{}"}}"#, "x".repeat(3000));
    let (status, json) = api(p, "POST", "/api/publish", &big).await;
    assert_eq!((status, json["ok"].clone()), (413, json!(false)));
    // A good one still goes through, and it is the first the subscriber sees.
    assert_eq!(
        api(
            p,
            "POST",
            "/api/publish",
            r#"{"channel":"c","data":"fine"}"#
        )
        .await
        .0,
        200
    );
    assert_eq!(next_message(&mut sub).await["data"], "fine");
    assert!(
        server
            .wait_log("api request refused", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let mut server = Server::start("");
    let p = server.port;
    assert_eq!(
        api(p, "GET", "/healthz", "").await,
        (200, json!({"ok": true}))
    );
    assert_eq!(
        api(p, "GET", "/readyz", "").await,
        (200, json!({"ok": true}))
    );
    assert_eq!(api(p, "POST", "/healthz", "").await.0, 405);
    assert_eq!(api(p, "GET", "/nope", "").await.0, 404);
    server.assert_serving().await;
}
