//! `/api/*` behind `[Api] keys` (docs/design.md#http-api): right, wrong and missing keys; what
//! stays open; without keys, local requests only, and no identity where tokens protect
//! identities; a reload that cannot read the license file keeps the rules and says so.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use serde_json::{Value, json};

async fn api(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Value, Reply) {
    let r = raw(
        port,
        method,
        path,
        format!("{headers}Content-Type: application/json\r\n").as_bytes(),
        body.as_bytes(),
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({"raw": r.text()}));
    (r.status, v, r)
}

const PUBLISH: &str = r#"{"channel":"news","data":1}"#;

#[tokio::test]
async fn keys_right_wrong_and_missing() {
    let mut server = Server::start("[Api]\nkeys = first-key, second-key\n");
    let p = server.port;
    let host = format!("Host: 127.0.0.1:{p}\r\n");

    let (status, body, r) = api(p, "POST", "/api/publish", &host, PUBLISH).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    for wrong in [
        "Bearer first-ke",
        "Bearer first-key2",
        "Bearer FIRST-KEY",
        "Bearer ",
        "Basic Zmlyc3Q=",
        "first-key",
    ] {
        let h = format!("{host}Authorization: {wrong}\r\n");
        let (status, body, _) = api(p, "POST", "/api/publish", &h, PUBLISH).await;
        let expected = if wrong.starts_with("Bearer ") && wrong.len() > 7 {
            403
        } else {
            401
        };
        assert_eq!(status, expected, "{wrong:?}: {body}");
        assert_eq!(body["ok"], false);
    }

    for right in ["Bearer first-key", "bearer second-key"] {
        let h = format!("{host}Authorization: {right}\r\n");
        assert_eq!(
            api(p, "POST", "/api/publish", &h, PUBLISH).await.1,
            json!({"ok": true, "published": 1})
        );
        let (status, body, _) = api(p, "GET", "/api/channels", &h, "").await;
        assert_eq!((status, body["ok"].clone()), (200, json!(true)));
    }
    // With keys, the key is what counts: a backend on another host is fine.
    let h = "Host: backend.example\r\nOrigin: https://other.example\r\nAuthorization: Bearer first-key\r\n";
    assert_eq!(api(p, "GET", "/api/channels/news", h, "").await.0, 200);
    // A wrong key on an unknown route still says 403, not what exists.
    let h = format!("{host}Authorization: Bearer nope\r\n");
    assert_eq!(api(p, "GET", "/api/secret-route", &h, "").await.0, 403);

    // Health, metrics, the demo and the bundle are not behind the key.
    for path in ["/healthz", "/readyz", "/metrics", "/", "/realtime.js"] {
        assert_eq!(
            raw(p, "GET", path, host.as_bytes(), b"").await.status,
            200,
            "{path}"
        );
    }
    server.assert_serving().await;
}

const NOT_LOCAL: &str = "not a local request: without [Api] keys, /api answers only requests from this machine to localhost";

#[tokio::test]
async fn without_keys_only_local_requests_reach_the_api() {
    let lic = std::env::temp_dir().join(format!("realtime-api-lic-{}", std::process::id()));
    std::fs::write(&lic, "571ab3357c3e56e20b764f25e62149229f5d4b08\n").unwrap();
    let mut server = Server::start(&format!(
        "[License]\nfile = {}\nallowed-origins = https://app.example.com\n",
        lic.display()
    ));
    let _ = std::fs::remove_file(&lic);
    let p = server.port;

    let local = format!("Host: 127.0.0.1:{p}\r\n");
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 200);
    let h = format!("Host: localhost:{p}\r\nOrigin: http://localhost:3000\r\n");
    assert_eq!(api(p, "GET", "/api/channels", &h, "").await.0, 200);
    // Headers a caller writes open nothing: another name, a foreign page, an allowed
    // origin or a licensed domain (the origin check is for browsers' pages, not for
    // backends, which can send any Origin).
    for h in [
        "Host: example.com\r\n".to_owned(),
        format!("{local}Origin: https://evil.example\r\n"),
        "Host: rt.example.com\r\nOrigin: https://app.example.com\r\n".to_owned(),
        "Host: rt.mydomain.com\r\n".to_owned(),
        "Host: rt.mydomain.com\r\nOrigin: https://www.mydomain.com\r\n".to_owned(),
        // Through a proxy on this machine.
        format!("{local}X-Forwarded-For: 192.0.2.7\r\n"),
        format!("{local}Forwarded: for=192.0.2.7\r\n"),
    ] {
        let (status, body, _) = api(p, "POST", "/api/publish", &h, PUBLISH).await;
        assert_eq!(
            (status, body),
            (403, json!({"ok": false, "error": NOT_LOCAL})),
            "{h}"
        );
    }
    assert!(
        server
            .wait_log_line(
                &["client refused", "api_refused"],
                std::time::Duration::from_secs(5)
            )
            .await,
        "{}",
        server.log()
    );
    let (_, metrics) = get(p, "/metrics").await;
    let refused = metric(&metrics, r#"realtime_refusals_total{reason="api_refused"}"#);
    assert!(refused.is_some_and(|n| n >= 7.0), "{refused:?}");
    server.assert_serving().await;
}

#[tokio::test]
async fn identities_that_tokens_protect_need_a_key() {
    let server = Server::start("[Identity]\nsecret = token-secret\n");
    let p = server.port;
    let local = format!("Host: 127.0.0.1:{p}\r\n");
    // Anonymous publishing from this machine is fine.
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 200);
    for body in [
        r#"{"channel":"chat","data":1,"identity":"admin"}"#,
        r#"[{"channel":"chat","data":1},{"channel":"chat","data":2,"identity":"admin"}]"#,
        r#"{"to":"alice","identity":"bob","data":"hi"}"#,
    ] {
        let (status, v, _) = api(p, "POST", "/api/publish", &local, body).await;
        assert_eq!(status, 403, "{body}: {v}");
        assert_eq!(
            v["error"],
            "publishing under an identity needs an API key when [Identity] secret is set ([Api] keys)"
        );
    }
    // A direct message needs no sender.
    let direct = r#"{"to":"alice","data":"hi"}"#;
    assert_eq!(api(p, "POST", "/api/publish", &local, direct).await.0, 200);

    let keyed = Server::start("[Identity]\nsecret = token-secret\n[Api]\nkeys = k1\n");
    let h = "Host: backend.example\r\nAuthorization: Bearer k1\r\n";
    let body = r#"{"channel":"chat","data":1,"identity":"admin"}"#;
    assert_eq!(
        api(keyed.port, "POST", "/api/publish", h, body).await.1,
        json!({"ok": true, "published": 1})
    );
}

#[tokio::test]
async fn a_reload_that_cannot_read_the_license_file_keeps_the_rules_and_says_so() {
    let dir = TempDir::new("reload-license");
    let lic = dir.write("license.txt", "571ab3357c3e56e20b764f25e62149229f5d4b08\n");
    let server = Server::start(&format!("[License]\nfile = {}\n", lic.display()));
    let p = server.port;
    let local = format!("Host: 127.0.0.1:{p}\r\n");
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 200);

    // Keys added, and the license file gone: nothing of the rules can be applied.
    let conf = format!(
        "[License]\nfile = {}\n[Api]\nkeys = new-key\n",
        lic.display()
    );
    std::fs::write(server.config_path(), &conf).unwrap();
    std::fs::remove_file(&lic).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let wait = std::time::Duration::from_secs(10);
    assert!(
        server
            .wait_log_line(
                &[
                    "license.txt",
                    "keeping the previous license, origin, API and identity rules",
                    "[Api] keys changed, not applied"
                ],
                wait
            )
            .await,
        "{}",
        server.log()
    );
    assert!(server.wait_log("configuration reloaded", wait).await);
    assert!(
        !server.log().contains("[Api] keys changed; applied"),
        "{}",
        server.log()
    );
    // What the log says is what runs: no key needed yet.
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 200);

    // Once the file is back, the next reload applies the keys.
    std::fs::write(&lic, "571ab3357c3e56e20b764f25e62149229f5d4b08\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        server.wait_log("[Api] keys changed; applied", wait).await,
        "{}",
        server.log()
    );
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 401);
}
