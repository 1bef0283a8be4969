//! Identity tokens (docs/design.md#identity-tokens) against the real binary: valid, expired, wrong
//! signature, `alg: none`, malformed, another identity's; the `channels` claim on subscribe,
//! publish, command and the legacy envelope; `[Identity] require`; recovery re-checks the token.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use realtime::auth::Tokens;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "test-identity-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT with this header and these claims, signed HS256 with `secret`.
fn jwt(header: Value, claims: Value, secret: &str) -> String {
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    format!(
        "{signing}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn hs256(claims: Value, secret: &str) -> String {
    jwt(json!({"alg": "HS256", "typ": "JWT"}), claims, secret)
}

fn token(identity: &str, channels: Option<&[&str]>) -> String {
    Tokens::new(SECRET)
        .mint(
            identity,
            channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
            Duration::from_secs(600),
        )
        .unwrap()
}

fn auth(identity: &str, token: &str) -> String {
    json!({"identity": identity, "token": token}).to_string()
}

async fn refused(port: u16, auth: &str) -> String {
    let (_ws, reply) = connect_with(port, auth).await;
    connect_error(&reply)
}

#[tokio::test]
async fn valid_and_invalid_tokens() {
    let mut server = Server::start(&format!("[Identity]\nsecret = {SECRET}\n"));
    let p = server.port;

    let (_ws, reply) = connect_with(p, &auth("alice", &token("alice", None))).await;
    assert!(reply.starts_with("0{\"sid\""), "{reply}");
    // Anonymous connections stay allowed unless `require` says otherwise.
    let (_anon, reply) = connect_with(p, "").await;
    assert!(reply.starts_with("0{\"sid\""), "{reply}");

    let exp = now() + 600;
    let cases: Vec<(String, &str)> = vec![
        (
            json!({"identity": "alice"}).to_string(),
            "identity requires a token (auth.token)",
        ),
        (auth("alice", ""), "identity requires a token (auth.token)"),
        (
            auth(
                "alice",
                &hs256(json!({"sub": "alice", "exp": now() - 3600}), SECRET),
            ),
            "token expired",
        ),
        (
            auth(
                "alice",
                &hs256(json!({"sub": "alice", "exp": exp}), "another-secret"),
            ),
            "token signature is not valid",
        ),
        (
            auth(
                "alice",
                &jwt(
                    json!({"alg": "none"}),
                    json!({"sub": "alice", "exp": exp}),
                    "",
                ),
            ),
            "token algorithm \"none\" not allowed (HS256 only)",
        ),
        (
            auth(
                "alice",
                &jwt(
                    json!({"alg": "HS512"}),
                    json!({"sub": "alice", "exp": exp}),
                    SECRET,
                ),
            ),
            "token algorithm \"HS512\" not allowed (HS256 only)",
        ),
        (
            auth("alice", &token("mallory", None)),
            "token is for another identity",
        ),
        (
            auth("alice", &hs256(json!({"sub": "alice"}), SECRET)),
            "token has no \"exp\" claim",
        ),
        (auth("alice", "not-a-token"), "malformed token"),
        (auth("alice", "a.b.c"), "malformed token"),
        (
            auth("alice", &"x".repeat(100_000)),
            "token longer than 8192 bytes",
        ),
        (
            json!({"identity": "alice", "token": 42}).to_string(),
            "token must be a string",
        ),
        (
            json!({"identity": "alice", "token": {"sub": "alice"}}).to_string(),
            "token must be a string",
        ),
    ];
    for (auth, message) in cases {
        assert_eq!(
            refused(p, &auth).await,
            message,
            "{}",
            &auth[..auth.len().min(200)]
        );
    }
    // The alg-none token with a forged signature part too.
    let forged = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": exp}).to_string())
    );
    assert_eq!(
        refused(p, &auth("alice", &forged)).await,
        "token algorithm \"none\" not allowed (HS256 only)"
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn a_token_alone_names_the_identity() {
    let server = Server::start(&format!("[Identity]\nsecret = {SECRET}\n"));
    let p = server.port;
    let auth = json!({"token": token("carol", None)}).to_string();
    let (mut ws, reply) = connect_with(p, &auth).await;
    assert!(reply.starts_with("0{\"sid\""), "{reply}");
    send(&mut ws, r#"421["subscribe","room"]"#).await;
    // The onSubscribe envelope (before the ack) names the member: the token's sub.
    loop {
        let p = next_sio(&mut ws).await.unwrap();
        if let Some(j) = p.strip_prefix('2') {
            let v: Value = serde_json::from_str(j).unwrap();
            assert_eq!(v[1]["identity"], "carol");
            break;
        }
    }
}

/// The ack of `event` as JSON (the first argument).
async fn ack_of(ws: &mut Ws, id: u32, event: &str) -> Value {
    send(ws, &format!("42{id}{event}")).await;
    let a = next_ack(ws).await;
    let json = a.trim_start_matches(|c: char| c.is_ascii_digit());
    serde_json::from_str::<Value>(json).unwrap()[0].clone()
}

#[tokio::test]
async fn the_channels_claim_limits_subscribe_publish_and_command() {
    let server = Server::start(&format!("[Identity]\nsecret = {SECRET}\n"));
    let p = server.port;
    let t = token("dave", Some(&["chat", "room-*"]));
    let (mut ws, reply) = connect_with(p, &auth("dave", &t)).await;
    assert!(reply.starts_with("0{\"sid\""), "{reply}");

    assert_eq!(
        ack_of(&mut ws, 1, r#"["subscribe","chat"]"#).await["ok"],
        true
    );
    assert_eq!(
        ack_of(&mut ws, 2, r#"["subscribe","room-7"]"#).await["ok"],
        true
    );
    let not = |ch: &str| json!({"ok": false, "error": format!("channel {ch:?} not allowed by the token")});
    assert_eq!(
        ack_of(&mut ws, 3, r#"["subscribe","secret"]"#).await,
        not("secret")
    );
    assert_eq!(
        ack_of(&mut ws, 4, r#"["subscribe","chat2"]"#).await,
        not("chat2")
    );
    assert_eq!(
        ack_of(&mut ws, 5, r#"["subscribe","room"]"#).await,
        not("room")
    );
    assert_eq!(
        ack_of(&mut ws, 6, r#"["publish","secret",{"x":1}]"#).await,
        not("secret")
    );
    assert_eq!(
        ack_of(&mut ws, 7, r#"["publish","room-7",{"x":1}]"#).await,
        json!({"ok": true})
    );
    assert_eq!(
        ack_of(&mut ws, 8, r#"["command","secret","poke"]"#).await,
        not("secret")
    );
    assert_eq!(
        ack_of(&mut ws, 9, r#"["command","chat","poke"]"#).await,
        json!({"ok": true})
    );
    // Leaving is always allowed.
    assert_eq!(
        ack_of(&mut ws, 10, r#"["unsubscribe","chat"]"#).await["ok"],
        true
    );
    // The legacy envelope is held to the same list.
    let legacy = r#"["message",{"type":"message","channel":"secret","data":1}]"#;
    assert_eq!(
        ack_of(&mut ws, 11, legacy).await,
        json!({"ok": false, "error": "channel \"secret\" not allowed by the token"})
    );
    let legacy =
        r#"["message",{"type":"command","channel":"secret","data":{"command":"subscribe"}}]"#;
    assert_eq!(ack_of(&mut ws, 12, legacy).await["ok"], false);
    // Without an ack, the refusal comes as an error envelope.
    send(&mut ws, r#"42["publish","secret",1]"#).await;
    loop {
        let p = next_sio(&mut ws).await.unwrap();
        if let Some(j) = p.strip_prefix('2') {
            let v: Value = serde_json::from_str(j).unwrap();
            if v[1]["type"] == "error" {
                assert_eq!(v[1]["error"], "channel \"secret\" not allowed by the token");
                break;
            }
        }
    }
}

#[tokio::test]
async fn legacy_init_needs_a_token_for_its_identity() {
    let server = Server::start(&format!("[Identity]\nsecret = {SECRET}\n"));
    let p = server.port;
    let (mut ws, _) = connect_with(p, "").await;
    let init = r#"["message",{"type":"command","identity":"erin","data":{"command":"init"}}]"#;
    assert_eq!(
        ack_of(&mut ws, 1, init).await,
        json!({"ok": false, "error": "identity requires a token (auth.token)"})
    );
    let init = json!(["message", {"type": "command", "identity": "erin",
        "data": {"command": "init", "options": {"token": token("erin", Some(&["ok"]))}}}]);
    assert_eq!(
        ack_of(&mut ws, 2, &init.to_string()).await,
        json!({"ok": true})
    );
    assert_eq!(
        ack_of(
            &mut ws,
            3,
            r#"["message",{"type":"command","channel":"nope","data":{"command":"subscribe"}}]"#
        )
        .await["ok"],
        false
    );
}

#[tokio::test]
async fn require_refuses_anonymous_connections() {
    let server = Server::start("[Identity]\nrequire = true\n");
    let p = server.port;
    assert_eq!(refused(p, "").await, "identity required");
    assert_eq!(refused(p, r#"{"identity":""}"#).await, "identity required");
    let (_ws, reply) = connect_with(p, r#"{"identity":"frank"}"#).await;
    assert!(reply.starts_with("0{\"sid\""), "{reply}");

    let both = Server::start(&format!("[Identity]\nsecret = {SECRET}\nrequire = true\n"));
    assert_eq!(refused(both.port, "").await, "identity required");
    assert_eq!(
        refused(both.port, r#"{"identity":"frank"}"#).await,
        "identity requires a token (auth.token)"
    );
}

#[tokio::test]
async fn recovery_checks_the_token_again() {
    let server = Server::start(&format!(
        "[Identity]\nsecret = {SECRET}\n[Server]\nreconnect-timeout = 5s\n"
    ));
    let p = server.port;
    let t = token("gina", None);
    let (mut ws, reply) = connect_with(p, &auth("gina", &t)).await;
    let v: Value = serde_json::from_str(reply.strip_prefix('0').unwrap()).unwrap();
    let pid = v["pid"].as_str().unwrap().to_owned();
    send(&mut ws, r#"421["subscribe","r"]"#).await;
    next_ack(&mut ws).await;
    drop(ws); // lost, not closed: recoverable
    // Once the server saw it go (it is the only session), recovery is what is tested.
    assert!(
        server
            .wait_log("session closed", Duration::from_secs(5))
            .await
    );
    // The pid alone, with a bad token, recovers nothing: the CONNECT is refused.
    let bad = json!({"identity": "gina", "token": hs256(json!({"sub": "gina", "exp": now() + 60}), "wrong"), "pid": pid, "offset": null});
    assert_eq!(
        refused(p, &bad.to_string()).await,
        "token signature is not valid"
    );
    // With the token, the same session comes back.
    let good = json!({"identity": "gina", "token": t, "pid": pid, "offset": null});
    let (_ws, reply) = connect_with(p, &good.to_string()).await;
    let v: Value = serde_json::from_str(reply.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(v["pid"], pid.as_str(), "{reply}");
}
