//! `rediss://` (docs/design.md#cluster): nodes joined through a real `redis-server` on a TLS port
//! whose certificate comes from a private CA, trusted through `SSL_CERT_FILE` as an
//! administrator would; a node that does not trust it stays off the cluster, not ready.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

/// A CA and a certificate for `localhost` signed by it, made with `openssl`.
pub(crate) fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=realtime-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    // A CA that signed nothing here, for a node that trusts the wrong one.
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "2",
        "-subj",
        "/CN=some-other-ca",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

/// `redis-server` with only a TLS port; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_redis(dir: &Path) -> TlsRedis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-cert-file", "srv.pem", "--tls-key-file", "srv.key"])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_until(
        Duration::from_secs(5),
        "redis-server to open its TLS port",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    TlsRedis { child, port }
}

fn node(redis: &TlsRedis, id: &str, ca: &Path) -> Server {
    let config = format!(
        "[Cluster]\nredis = rediss://localhost:{}/0\nnode-id = {id}\nheartbeat = 1s\nnode-timeout = 3s\n",
        redis.port
    );
    Launch::new(&config).env("SSL_CERT_FILE", ca).start()
}

#[tokio::test]
async fn nodes_join_through_redis_over_tls() {
    let dir = std::env::temp_dir().join(format!("realtime-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let redis = start_tls_redis(&dir);
    let ca = dir.join("ca.pem");
    let a = node(&redis, "a", &ca);
    let b = node(&redis, "b", &ca);
    for n in [&a, &b] {
        assert!(
            wait_readyz(n.port, 200, Duration::from_secs(10)).await,
            "not joined over TLS; log:\n{}",
            n.log()
        );
    }
    // A message posted on A reaches a member on B, through the TLS connection.
    let mut ws = sio_connect(b.port, r#"{"identity":"bob"}"#).await;
    send(&mut ws, r#"421["subscribe","news"]"#).await;
    let ack = next_ack(&mut ws).await;
    assert!(ack.contains(r#""count":1"#), "{ack}");
    let body = json!({"channel": "news", "data": {"over": "tls"}}).to_string();
    let (status, _) = post(a.port, "/api/publish", body.as_bytes()).await;
    assert_eq!(status, 200);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let p = tokio::time::timeout(Duration::from_secs(5), next_sio(&mut ws))
            .await
            .ok()
            .flatten()
            .expect("bob hears the message from A");
        if let Some(json) = p.strip_prefix('2') {
            let v: Value = serde_json::from_str(json).unwrap();
            if v[1]["type"] == "message" {
                assert_eq!(v[1]["data"], json!({"over": "tls"}));
                break;
            }
        }
        assert!(Instant::now() < end);
    }

    // A node that does not trust the CA refuses the certificate: not ready, and says why.
    let c = node(&redis, "c", &dir.join("other.pem"));
    assert!(
        c.wait_log("lost Redis", Duration::from_secs(5)).await,
        "{}",
        c.log()
    );
    assert!(c.log().contains("certificate"), "{}", c.log());
    assert_eq!(get(c.port, "/readyz").await.0, 503);
    let _ = std::fs::remove_dir_all(&dir);
}
