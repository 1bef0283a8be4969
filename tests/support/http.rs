//! Raw HTTP/1.1 to the server (`Connection: close`), so a test sends exactly the bytes it
//! means, Host included when it says so. One exchange underneath; the helpers only build
//! the head. The blocking variants are for the tests that wait on processes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status (0 when there was no HTTP head), headers (names lower-case) and
/// body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method target` with exactly `headers` (each line ending in CRLF, no Host
/// added), `Connection: close` and the body; returns the whole answer.
pub(crate) async fn raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[u8],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut req = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    req.extend_from_slice(headers);
    req.extend_from_slice(
        format!(
            "Connection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(body);
    // The server may answer and close before it read a refused body: keep what came.
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    parse(&out)
}

fn parse(raw: &[u8]) -> Reply {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: raw.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// `raw` with `Host: 127.0.0.1:PORT` and `extra` header lines; returns status and body.
pub(crate) async fn http(
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
    extra: &str,
) -> (u16, Vec<u8>) {
    let headers = format!("Host: 127.0.0.1:{port}\r\n{extra}");
    let reply = raw(port, method, target, headers.as_bytes(), body).await;
    if reply.status == 0 {
        return (0, Vec::new());
    }
    (reply.status, reply.body)
}

/// A JSON request to the HTTP API: the status and the body as JSON (`{"raw": text}` when
/// it is not JSON).
pub(crate) async fn api(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, raw) = http(
        port,
        method,
        path,
        body.as_bytes(),
        "Content-Type: application/json\r\n",
    )
    .await;
    let v = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(&raw)}));
    (status, v)
}

pub(crate) async fn get(port: u16, target: &str) -> (u16, String) {
    let (status, body) = http(port, "GET", target, b"", "").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) async fn post(port: u16, target: &str, body: &[u8]) -> (u16, String) {
    let (status, body) = http(port, "POST", target, body, "Content-Type: text/plain\r\n").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Runs one of the async helpers from a plain `#[test]`.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The blocking `get`, for tests that wait on processes.
pub(crate) fn http_get(port: u16, target: &str) -> (u16, String) {
    block_on(get(port, target))
}

/// Proves the HTTP port serves Engine.IO: a polling handshake answers with an open packet.
pub(crate) fn assert_handshake(port: u16) {
    let (status, body) = http_get(port, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200, "handshake on {port}: {body}");
    assert!(body.starts_with("0{\"sid\":"), "{body}");
}
