//! One Socket.IO client over a WebSocket: connect (WebSocket, Engine.IO OPEN, Socket.IO
//! CONNECT), subscribe with acks, and read frames while answering the server's pings.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::wire::{self, Incoming};

pub type Ws = WebSocketStream<TcpStream>;

/// How long one step of a handshake or a subscribe may take before the client gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server under test listens.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` for the TCP connect.
    pub addr: String,
    /// The full WebSocket URL of the Engine.IO endpoint.
    pub url: String,
}

impl Target {
    /// From `ws://host:port` (or `http://`) and the Engine.IO path (`/socket.io/`).
    pub fn new(url: &str, path: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| anyhow!("--url must start with ws:// or http:// (no TLS): {url}"))?;
        let addr = rest.trim_end_matches('/').to_owned();
        if addr.is_empty() || addr.contains('/') {
            bail!("--url must be ws://host:port, with the path in --path: {url}");
        }
        let path = format!("/{}/", path.trim_matches('/'));
        Ok(Target {
            url: format!("ws://{addr}{path}?EIO=4&transport=websocket"),
            addr,
        })
    }
}

/// A small read buffer (tungstenite allocates it eagerly): ten thousand idle connections
/// must fit in the load generator too, and 16 KiB still takes dozens of frames per read.
/// Writes are buffered until a flush, so a publisher's batch goes out in one syscall.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// Opens a connection and joins namespace `/`: ready for subscribe and publish.
pub async fn connect(target: &Target) -> Result<Ws> {
    let stream = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio::time::timeout(
        STEP_TIMEOUT,
        client_async_with_config(target.url.as_str(), stream, Some(ws_config())),
    )
    .await
    .context("websocket handshake timed out")?
    .context("websocket handshake")?;
    let open = next_text(&mut ws).await?;
    match wire::classify(&open) {
        Incoming::Open(json) if wire::open_sid(json).is_some() => {}
        _ => bail!("expected the Engine.IO OPEN packet, got {open:?}"),
    }
    ws.send(Message::text(wire::CONNECT)).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match wire::classify(&text) {
            Incoming::Connected => return Ok(ws),
            Incoming::Ping => ws.send(Message::text(wire::PONG)).await?,
            Incoming::ConnectError(why) => bail!("CONNECT refused: {why}"),
            _ => bail!("expected the CONNECT reply, got {text:?}"),
        }
    }
}

/// Subscribes to every channel (acks 1..=n, sent together), and waits for every ack.
/// Events arriving meanwhile (other members' join notices) are counted, not checked.
pub async fn subscribe(ws: &mut Ws, channels: &[&str]) -> Result<u64> {
    for (i, ch) in channels.iter().enumerate() {
        ws.feed(Message::text(wire::subscribe(ch, i as u64 + 1)))
            .await?;
    }
    ws.flush().await?;
    let mut acked = vec![false; channels.len()];
    let mut left = channels.len();
    let mut events = 0;
    while left > 0 {
        let text = next_text(ws).await?;
        match wire::classify(&text) {
            Incoming::Ack { id, args } => {
                let slot = (id as usize).checked_sub(1).and_then(|i| acked.get_mut(i));
                match slot {
                    Some(done) if !*done => {
                        if !wire::ack_ok(args) {
                            bail!("subscribe refused: {args}");
                        }
                        *done = true;
                        left -= 1;
                    }
                    _ => bail!("unexpected ack {id}"),
                }
            }
            Incoming::Ping => ws.send(Message::text(wire::PONG)).await?,
            Incoming::Event(_) => events += 1,
            Incoming::Close => bail!("server closed the session while subscribing"),
            _ => {}
        }
    }
    Ok(events)
}

/// The next text frame (binary frames and WebSocket pings are skipped), within the step timeout.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        let msg = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .context("server did not answer in time")?
            .ok_or_else(|| anyhow!("server closed the connection"))??;
        match msg {
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            Message::Close(_) => bail!("server closed the connection"),
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::new("ws://127.0.0.1:8001", "/socket.io/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8001");
        assert_eq!(
            t.url,
            "ws://127.0.0.1:8001/socket.io/?EIO=4&transport=websocket"
        );
        let t = Target::new("http://localhost:3000/", "realtime").unwrap();
        assert_eq!(
            t.url,
            "ws://localhost:3000/realtime/?EIO=4&transport=websocket"
        );
        assert!(Target::new("wss://x:1", "/").is_err());
        assert!(Target::new("ws://x:1/socket.io/", "/socket.io/").is_err());
    }
}
