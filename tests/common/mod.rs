//! Test harness: starts the real `realtime` binary on a free port and speaks raw HTTP,
//! Engine.IO and Socket.IO to it, so tests can send exactly the bytes they mean.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
    config: PathBuf,
}

impl Server {
    /// Starts the binary with this INI text as its config, at debug level, on a free port.
    pub fn start(config: &str) -> Server {
        Server::start_with_env(config, &[])
    }

    /// `start` with more environment variables for the server.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Server {
        let path = std::env::temp_dir().join(format!(
            "realtime-test-{}-{}.conf",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&path, config).expect("write test config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_realtime"))
            .args(["--config", path.to_str().unwrap(), "--port", "0", "--debug"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start realtime");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.rsplit(':').next())
                    .and_then(|p| p.trim().parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(port);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child,
            port,
            log,
            config: path,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Proves the server still serves a newcomer: a polling handshake works.
    pub async fn assert_serving(&mut self) {
        assert!(self.alive(), "server exited; log:\n{}", self.log());
        let sid = handshake(self.port).await;
        assert_eq!(sid.len(), 20);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A raw HTTP/1.1 exchange (`Connection: close`); returns status and body.
pub async fn http(
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
    extra: &str,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> (u16, Vec<u8>) {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw[split + 4..].to_vec())
}

/// A JSON request to the HTTP API: the status and the body as JSON (`{"raw": text}` when
/// it is not JSON).
pub async fn api(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
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

pub async fn get(port: u16, target: &str) -> (u16, String) {
    let (status, body) = http(port, "GET", target, b"", "").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn post(port: u16, target: &str, body: &[u8]) -> (u16, String) {
    let (status, body) = http(port, "POST", target, body, "Content-Type: text/plain\r\n").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn polling(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// A polling handshake; returns the session id.
pub async fn handshake(port: u16) -> String {
    let (status, body) = get(port, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 200, "handshake failed: {body}");
    let json: serde_json::Value =
        serde_json::from_str(body.strip_prefix('0').expect("open packet")).unwrap();
    json["sid"].as_str().unwrap().to_owned()
}

/// Opens a direct WebSocket session and reads its open packet; returns the socket and sid.
pub async fn ws_open(port: u16) -> (Ws, String) {
    let (mut ws, _) = connect_async(format!(
        "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    ))
    .await
    .expect("websocket connect");
    let open = next_text(&mut ws).await.expect("open packet");
    let json: serde_json::Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    (ws, json["sid"].as_str().unwrap().to_owned())
}

/// The next text frame, skipping nothing; `None` when the socket closed.
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next Socket.IO text packet (without the Engine.IO `4`), answering pings.
pub async fn next_sio(ws: &mut Ws) -> Option<String> {
    loop {
        let t = next_text(ws).await?;
        if t == "2" {
            ws.send(Message::text("3")).await.ok()?;
            continue;
        }
        return Some(t.strip_prefix('4').unwrap_or(&t).to_owned());
    }
}

/// Whether the server closes the socket within `within` (draining whatever comes first).
pub async fn closes_within(ws: &mut Ws, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// A Socket.IO client on a WebSocket, connected to `/` with this auth.
pub async fn sio_connect(port: u16, auth: &str) -> Ws {
    let (mut ws, _) = ws_open(port).await;
    send(&mut ws, &format!("40{auth}")).await;
    let reply = next_sio(&mut ws).await.expect("CONNECT reply");
    assert!(
        reply.starts_with("0{\"sid\":"),
        "unexpected CONNECT reply {reply}"
    );
    ws
}

/// The next ACK packet (`3...`), skipping events that come before it.
pub async fn next_ack(ws: &mut Ws) -> String {
    loop {
        let p = next_sio(ws).await.expect("socket closed before the ack");
        if p.starts_with('3') {
            return p;
        }
    }
}
