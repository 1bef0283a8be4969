//! The origin check of docs/design.md#origin-check against the real binary: loopback, license keys
//! (the 2012 key for mydomain.com), `allowed-origins`, polling and WebSocket handshakes, with and
//! without `Origin`, CORS, garbage headers, and a license file that cannot be read.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const SEED_KEY: &str = "571ab3357c3e56e20b764f25e62149229f5d4b08";
const FORBIDDEN: &str = r#"{"code":4,"message":"Forbidden"}"#;

fn temp_file(tag: &str, text: &str) -> std::path::PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::Instant::now());
    let p = std::env::temp_dir().join(format!("realtime-{tag}-{}-{n:x}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

async fn allowed(port: u16, host: &str, origin: Option<&str>) -> bool {
    let r = poll_handshake(port, host, origin).await;
    match r.status {
        200 => {
            assert!(r.text().starts_with("0{\"sid\""), "{r:?}");
            true
        }
        403 => {
            assert_eq!(r.text(), FORBIDDEN);
            false
        }
        other => panic!("unexpected status {other}: {r:?}"),
    }
}

#[tokio::test]
async fn loopback_only_without_keys_or_allowlist() {
    let mut server = Server::start("");
    let p = server.port;
    let local = format!("127.0.0.1:{p}");

    // A server reached as localhost, by a local page or a local tool.
    assert!(allowed(p, &local, None).await);
    assert!(allowed(p, &format!("localhost:{p}"), None).await);
    assert!(allowed(p, &format!("[::1]:{p}"), None).await);
    assert!(allowed(p, &local, Some("http://localhost:3000")).await);
    assert!(allowed(p, &local, Some("http://127.0.0.1:8080")).await);

    // Anything else is refused: a foreign page, or a server reached by another name.
    assert!(!allowed(p, &local, Some("https://evil.example")).await);
    assert!(!allowed(p, "example.com", None).await);
    assert!(!allowed(p, "example.com", Some("http://localhost")).await);
    assert!(
        server
            .wait_log("origin not allowed", Duration::from_secs(2))
            .await
    );
    assert!(
        server.log().contains("evil.example"),
        "the log names the origin"
    );

    // The WebSocket handshake is checked the same way.
    assert!(ws_handshake(p, &local, None).await.is_ok());
    assert!(
        ws_handshake(p, &local, Some("http://localhost:3000"))
            .await
            .is_ok()
    );
    assert_eq!(
        ws_handshake(p, &local, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(ws_handshake(p, "example.com", None).await.err(), Some(403));
    server.assert_serving().await;
}

#[tokio::test]
async fn cors_reflects_allowed_origins_only() {
    let server = Server::start("");
    let p = server.port;
    let local = format!("127.0.0.1:{p}");
    let ok = poll_handshake(p, &local, Some("http://localhost:3000")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));

    let refused = poll_handshake(p, &local, Some("https://evil.example")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);

    // A session's own requests are not refused, but a foreign page still cannot read them.
    let sid = handshake(p).await;
    let h =
        format!("Host: {local}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\n");
    let post = raw(p, "POST", &polling(&sid), h.as_bytes(), b"40").await;
    assert_eq!((post.status, post.text().as_str()), (200, "ok"));
    assert_eq!(post.header("access-control-allow-origin"), None);

    // A preflight from a refused origin gets no CORS headers either.
    let pre = raw(
        p,
        "OPTIONS",
        "/socket.io/?EIO=4&transport=polling",
        format!("Host: {local}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n").as_bytes(),
        b"",
    )
    .await;
    assert_eq!(pre.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn the_2012_license_key_for_mydomain_com() {
    let lic = temp_file(
        "license",
        &format!(
            "// RealTime server license file\n# a comment\n; another\n\nnot-a-key\n{SEED_KEY}\n\u{1}\u{2}junk\n"
        ),
    );
    let mut server = Server::start(&format!("[License]\nfile = {}\n", lic.display()));
    let p = server.port;
    let _ = std::fs::remove_file(&lic);

    // The origin's domain (last two labels) carries the key.
    for origin in [
        "https://mydomain.com",
        "https://www.mydomain.com",
        "http://chat.app.mydomain.com:8080",
    ] {
        assert!(
            allowed(p, "rt.mydomain.com", Some(origin)).await,
            "{origin}"
        );
        assert!(
            ws_handshake(p, "rt.mydomain.com", Some(origin))
                .await
                .is_ok(),
            "{origin}"
        );
    }
    for origin in [
        "https://mydomain.org",
        "https://notmydomain.com",
        "https://mydomain.com.evil.net",
    ] {
        assert!(
            !allowed(p, "rt.mydomain.com", Some(origin)).await,
            "{origin}"
        );
    }
    // Without an Origin, the host the client reached is checked, as in 2012.
    assert!(allowed(p, &format!("mydomain.com:{p}"), None).await);
    assert!(allowed(p, "rt.mydomain.com", None).await);
    assert!(!allowed(p, "other.com", None).await);
    // Loopback still works with a license file.
    assert!(allowed(p, &format!("localhost:{p}"), None).await);

    // Junk lines are skipped, and said so.
    assert!(
        server.log().contains("not a license key"),
        "{}",
        server.log()
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn allowed_origins_patterns() {
    let server = Server::start(
        "[License]\nallowed-origins = https://app.example.com, *.example.org, partner.net\n",
    );
    let p = server.port;
    let host = "rt.example.com";
    for (origin, ok) in [
        ("https://app.example.com", true),
        ("https://app.example.com:443", true),
        ("http://app.example.com", false),
        ("https://app.example.com:8443", false),
        ("https://example.com", false),
        ("https://a.example.org", true),
        ("http://b.c.example.org:81", true),
        ("https://example.org", false),
        ("https://badexample.org", false),
        ("http://partner.net:9000", true),
        ("http://sub.partner.net", false),
    ] {
        assert_eq!(allowed(p, host, Some(origin)).await, ok, "{origin}");
    }
    assert!(
        ws_handshake(p, host, Some("https://a.example.org"))
            .await
            .is_ok()
    );
    assert_eq!(
        ws_handshake(p, host, Some("https://example.org"))
            .await
            .err(),
        Some(403)
    );

    let any = Server::start("[License]\nallowed-origins = *\n");
    assert!(allowed(any.port, "anything.test", Some("https://whoever.example")).await);
    assert!(allowed(any.port, "anything.test", None).await);
    assert!(allowed(any.port, "anything.test", Some("null")).await);
}

#[tokio::test]
async fn garbage_origins_and_huge_headers() {
    let mut server = Server::start("[License]\nallowed-origins = *.example.com\n");
    let p = server.port;
    let local = format!("127.0.0.1:{p}");
    for origin in [
        "null".to_owned(),
        "".to_owned(),
        "example.com".to_owned(),
        "https://".to_owned(),
        "https://a.example.com/path".to_owned(),
        "https://user@a.example.com".to_owned(),
        "https://a.example.com:99999".to_owned(),
        "http://[::1".to_owned(),
        format!("https://{}.example.com", "a".repeat(300)),
    ] {
        assert!(!allowed(p, &local, Some(&origin)).await, "{origin:?}");
    }
    // Bytes that are not UTF-8, and control characters.
    let mut h = format!("Host: {local}\r\nOrigin: https://").into_bytes();
    h.extend_from_slice(b"\xff\xfe.example.com\r\n");
    let r = raw(p, "GET", "/socket.io/?EIO=4&transport=polling", &h, b"").await;
    assert_eq!(r.status, 403);
    let mut bytes = format!("Host: {local}\r\nOrigin: https://a.example.com").into_bytes();
    bytes.extend_from_slice(b"\xc3\x28\x01\r\n");
    let r = raw(p, "GET", "/socket.io/?EIO=4&transport=polling", &bytes, b"").await;
    assert_ne!(r.status, 200);
    // Two Origin headers: the first one decides.
    let h =
        format!("Host: {local}\r\nOrigin: https://evil.test\r\nOrigin: https://a.example.com\r\n");
    let r = raw(
        p,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        h.as_bytes(),
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    // Headers far past any sane size are refused by the HTTP layer, not answered.
    let h = format!(
        "Host: {local}\r\nOrigin: https://{}.example.com\r\n",
        "a".repeat(200_000)
    );
    let r = raw(
        p,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        h.as_bytes(),
        b"",
    )
    .await;
    assert_ne!(r.status, 200);
    let h = format!("Host: {}\r\n", "h".repeat(200_000));
    let r = raw(
        p,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        h.as_bytes(),
        b"",
    )
    .await;
    assert_ne!(r.status, 200);
    // No Host at all (HTTP/1.1 requires one): not loopback, so refused or rejected.
    let r = raw(p, "GET", "/socket.io/?EIO=4&transport=polling", b"", b"").await;
    assert_ne!(r.status, 200);
    server.assert_serving().await;
}

#[test]
fn an_unreadable_license_file_stops_the_start() {
    let conf = temp_file(
        "conf",
        "[License]\nfile = /nonexistent/realtime/license.txt\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args(["--config", conf.to_str().unwrap(), "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/realtime/license.txt"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args(["check-config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/realtime/license.txt"));
    let _ = std::fs::remove_file(&conf);
}

#[test]
fn the_license_command_prints_the_2012_key() {
    let conf = temp_file("conf", "");
    let out = Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args([
            "--config",
            conf.to_str().unwrap(),
            "license",
            "https://www.mydomain.com",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SEED_KEY);
    assert!(String::from_utf8_lossy(&out.stderr).contains("mydomain.com"));
    let _ = std::fs::remove_file(&conf);
}
