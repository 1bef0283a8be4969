//! One Socket.IO client over a WebSocket: connect (WebSocket, Engine.IO OPEN, Socket.IO
//! CONNECT), and subscribe with acks while answering the server's pings.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::wire::{self, Incoming};
use crate::ws::Ws;

/// How long one step of a handshake or a subscribe may take before the client gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server under test listens.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` for the TCP connect.
    pub addr: String,
    /// Path and query of the Engine.IO WebSocket endpoint.
    pub path: String,
    /// Local addresses to connect from, in turn (empty: the system's choice).
    pub sources: Vec<IpAddr>,
}

impl Target {
    /// From `ws://host:port` (or `http://`) and the Engine.IO path (`/socket.io/`).
    pub(crate) fn new(url: &str, path: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| anyhow!("--url must start with ws:// or http:// (no TLS): {url}"))?;
        let addr = rest.trim_end_matches('/').to_owned();
        if addr.is_empty() || addr.contains('/') {
            bail!("--url must be ws://host:port, with the path in --path: {url}");
        }
        Ok(Target {
            path: format!("/{}/?EIO=4&transport=websocket", path.trim_matches('/')),
            addr,
            sources: Vec::new(),
        })
    }

    /// Connects from the loopback addresses 127.0.0.1 to 127.0.0.`n` in turn: each has its
    /// own ephemeral port range (about 28,000 ports), so 100,000 connections need four.
    pub(crate) fn with_loopback_sources(mut self, n: u8) -> Target {
        self.sources = (1..=n.max(1))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect();
        self
    }

    fn next_source(&self) -> Option<IpAddr> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = self.sources.len();
        (n > 0).then(|| self.sources[NEXT.fetch_add(1, Ordering::Relaxed) % n])
    }
}

/// Opens a connection and joins namespace `/`: ready for subscribe and publish.
pub(crate) async fn connect(target: &Target) -> Result<Ws> {
    let source = target.next_source();
    let mut ws = tokio::time::timeout(
        STEP_TIMEOUT,
        Ws::connect_from(&target.addr, source, &target.path),
    )
    .await
    .context("websocket handshake timed out")??;
    let open = next_text(&mut ws).await?;
    match wire::classify(&open) {
        Incoming::Open(json) if wire::open_sid(json).is_some() => {}
        _ => bail!(
            "expected the Engine.IO OPEN packet, got {:?}",
            String::from_utf8_lossy(&open)
        ),
    }
    ws.send_text(wire::CONNECT).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match wire::classify(&text) {
            Incoming::Connected => return Ok(ws),
            Incoming::Ping => ws.send_text(wire::PONG).await?,
            Incoming::ConnectError(why) => {
                bail!("CONNECT refused: {}", String::from_utf8_lossy(why))
            }
            _ => bail!(
                "expected the CONNECT reply, got {:?}",
                String::from_utf8_lossy(&text)
            ),
        }
    }
}

/// Subscribes to every channel (acks 1..=n, sent together), and waits for every ack.
/// Events arriving meanwhile (other members' join notices) are counted, not checked.
pub(crate) async fn subscribe(ws: &mut Ws, channels: &[&str]) -> Result<u64> {
    for (i, ch) in channels.iter().enumerate() {
        ws.queue_text(&wire::subscribe(ch, i as u64 + 1));
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
                            bail!("subscribe refused: {}", String::from_utf8_lossy(args));
                        }
                        *done = true;
                        left -= 1;
                    }
                    _ => bail!("unexpected ack {id}"),
                }
            }
            Incoming::Ping => ws.send_text(wire::PONG).await?,
            Incoming::Event(_) => events += 1,
            Incoming::Close => bail!("server closed the session while subscribing"),
            _ => {}
        }
    }
    Ok(events)
}

/// The next text message, copied out, within the step timeout.
async fn next_text(ws: &mut Ws) -> Result<Vec<u8>> {
    let msg = tokio::time::timeout(STEP_TIMEOUT, ws.next())
        .await
        .context("server did not answer in time")??
        .ok_or_else(|| anyhow!("server closed the connection"))?
        .text
        .to_vec();
    if ws.wants_flush() {
        ws.flush().await?;
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::new("ws://127.0.0.1:8001", "/socket.io/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8001");
        assert_eq!(t.path, "/socket.io/?EIO=4&transport=websocket");
        let t = Target::new("http://localhost:3000/", "realtime").unwrap();
        assert_eq!(t.path, "/realtime/?EIO=4&transport=websocket");
        assert!(Target::new("wss://x:1", "/").is_err());
        assert!(Target::new("ws://x:1/socket.io/", "/socket.io/").is_err());
    }
}
