//! `/api/*` behind `[Api] keys` (docs/design.md#http-api): right, wrong and missing keys; what
//! stays open; without keys, the origin check as in the original; a reload that cannot
//! read the license file keeps the rules and says so.

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

#[tokio::test]
async fn without_keys_the_origin_check_guards_the_api() {
    let lic = std::env::temp_dir().join(format!("realtime-api-lic-{}", std::process::id()));
    std::fs::write(&lic, "571ab3357c3e56e20b764f25e62149229f5d4b08\n").unwrap();
    let server = Server::start(&format!("[License]\nfile = {}\n", lic.display()));
    let _ = std::fs::remove_file(&lic);
    let p = server.port;

    let local = format!("Host: 127.0.0.1:{p}\r\n");
    assert_eq!(api(p, "POST", "/api/publish", &local, PUBLISH).await.0, 200);
    let (status, body, _) = api(p, "POST", "/api/publish", "Host: example.com\r\n", PUBLISH).await;
    assert_eq!(
        (status, body),
        (403, json!({"ok": false, "error": "origin not allowed"}))
    );
    let h = format!("{local}Origin: https://evil.example\r\n");
    assert_eq!(api(p, "GET", "/api/channels", &h, "").await.0, 403);
    // A licensed domain, as Origin or as Host.
    assert_eq!(
        api(p, "GET", "/api/channels", "Host: rt.mydomain.com\r\n", "")
            .await
            .0,
        200
    );
    let h = "Host: rt.mydomain.com\r\nOrigin: https://www.mydomain.com\r\n";
    assert_eq!(api(p, "GET", "/api/channels", h, "").await.0, 200);
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
