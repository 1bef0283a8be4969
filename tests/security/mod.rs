//! Helpers for the tests of origins, API keys, tokens, the monitor and metrics: raw HTTP
//! with exactly the headers a test means (Host included), a Socket.IO CONNECT whose reply
//! is returned as it is, and a webhook endpoint that records what it is sent or misbehaves
//! on purpose.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::{Ws, next_sio, send};

/// A response: status, headers (names lower-case) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method target` with exactly `headers` (each line ending in CRLF, no Host
/// added) and `Connection: close`; returns the whole answer.
pub async fn raw(port: u16, method: &str, target: &str, headers: &[u8], body: &[u8]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
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
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    parse(&out)
}

fn parse(raw: &[u8]) -> Reply {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: String::from_utf8_lossy(raw).into_owned(),
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
        body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    }
}

/// A polling handshake with this `Host` and, if given, this `Origin`.
pub async fn poll_handshake(port: u16, host: &str, origin: Option<&str>) -> Reply {
    let mut h = format!("Host: {host}\r\n");
    if let Some(o) = origin {
        h.push_str(&format!("Origin: {o}\r\n"));
    }
    raw(
        port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        h.as_bytes(),
        b"",
    )
    .await
}

/// A direct WebSocket handshake with this `Host` and `Origin`: `Ok` with the socket, or
/// the HTTP status it was refused with.
pub async fn ws_handshake(port: u16, host: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_str(host).unwrap());
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("websocket handshake failed oddly: {e}"),
    }
}

/// Opens a WebSocket session, sends CONNECT with `auth` and returns the socket and the
/// Socket.IO reply as it came (`0{"sid":…}` or `4{"message":…}`).
pub async fn connect_with(port: u16, auth: &str) -> (Ws, String) {
    let (mut ws, _) = crate::common::ws_open(port).await;
    send(&mut ws, &format!("40{auth}")).await;
    let reply = next_sio(&mut ws).await.expect("CONNECT reply");
    (ws, reply)
}

/// The message of a CONNECT_ERROR reply.
pub fn connect_error(reply: &str) -> String {
    let json = reply
        .strip_prefix('4')
        .unwrap_or_else(|| panic!("not a CONNECT_ERROR: {reply}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["message"].as_str().unwrap().to_owned()
}

/// What a webhook endpoint does with each request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer 200.
    Accept,
    /// Answer with this status (and an empty body).
    Status(u16),
    /// Answer 302 to this URL.
    Redirect(String),
    /// Answer bytes that are not HTTP.
    Garbage,
    /// Read the request and never answer (the connection stays open).
    NeverAnswer,
    /// Wait, then answer 200.
    Slow(Duration),
}

/// One request the endpoint got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook endpoint on 127.0.0.1 run by plain threads; it stops serving when dropped
/// (its threads end with the test process).
pub struct Endpoint {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Endpoint {
    pub fn start(behaviour: Behaviour) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let sink = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (sink, behaviour) = (sink.clone(), behaviour.clone());
                std::thread::spawn(move || serve(stream, &sink, &behaviour));
            }
        });
        Endpoint { port, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came (or `within` passed); returns them.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let end = Instant::now() + within;
        while self.hits.lock().unwrap().len() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.hits()
    }
}

/// Serves one keep-alive connection.
fn serve(mut s: TcpStream, hits: &Mutex<Vec<Hit>>, behaviour: &Behaviour) {
    let mut buf = Vec::new();
    loop {
        let Some(hit) = read_request(&mut s, &mut buf) else {
            return;
        };
        hits.lock().unwrap().push(hit);
        let answer: Vec<u8> = match behaviour {
            Behaviour::Accept => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            Behaviour::Status(code) => {
                format!("HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\n\r\n").into_bytes()
            }
            Behaviour::Redirect(to) => {
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes()
            }
            Behaviour::Garbage => b"\x00\x01garbage, not HTTP\r\n\r\n".to_vec(),
            Behaviour::NeverAnswer => {
                // Hold the connection open, answering nothing, until the client gives up.
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Behaviour::Slow(d) => {
                std::thread::sleep(*d);
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
        };
        if s.write_all(&answer).is_err() {
            return;
        }
        if matches!(behaviour, Behaviour::Garbage) {
            return;
        }
    }
}

fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Hit> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some(Hit {
        method,
        path,
        headers,
        body,
    })
}

/// The value of an unlabelled sample in Prometheus text (`name value`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// `(type or command, channel, identity)` of a webhook body.
pub fn summary(v: &serde_json::Value) -> (String, serde_json::Value, serde_json::Value) {
    let what = match v["type"].as_str().unwrap() {
        "command" => v["data"]["command"].as_str().unwrap().to_owned(),
        t => t.to_owned(),
    };
    (what, v["channel"].clone(), v["identity"].clone())
}
