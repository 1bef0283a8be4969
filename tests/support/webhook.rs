//! A webhook endpoint for the monitor tests, run by plain threads: it records what it is
//! sent, or misbehaves on purpose (errors, redirects, garbage, silence, slowness).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait::poll_until;

/// What a webhook endpoint does with each request.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
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
    /// Answer 200 once the gate is open (set to true); until then, nothing.
    Gate(Arc<AtomicBool>),
}

/// One request the endpoint got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook endpoint on 127.0.0.1 run by plain threads; it stops serving when dropped
/// (its threads end with the test process).
pub(crate) struct Endpoint {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Endpoint {
    pub(crate) fn start(behaviour: Behaviour) -> Endpoint {
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came (or `within` passed); returns them.
    pub(crate) fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let _ = poll_until(within, || {
            (self.hits.lock().unwrap().len() >= n).then_some(())
        });
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
            Behaviour::Gate(open) => {
                while !open.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                }
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

/// `(type or command, channel, identity)` of a webhook body.
pub(crate) fn summary(v: &serde_json::Value) -> (String, serde_json::Value, serde_json::Value) {
    let what = match v["type"].as_str().unwrap() {
        "command" => v["data"]["command"].as_str().unwrap().to_owned(),
        t => t.to_owned(),
    };
    (what, v["channel"].clone(), v["identity"].clone())
}
