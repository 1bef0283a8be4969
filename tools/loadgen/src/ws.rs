//! A lean WebSocket client (RFC 6455) for the load generator's hot path.
//!
//! Why not `tokio_tungstenite::WebSocketStream`: a fan-out run delivers millions of small
//! frames to one pinned CPU, and a profile of the load generator on it showed a fifth of
//! that CPU in per-message stream machinery (waker registration on every poll, UTF-8
//! validation, a `Bytes` per frame), so the load generator, not the server, set the
//! ceiling. Here frames are parsed in place from one growable buffer and handed out as
//! borrowed bytes; the key and accept-key of the upgrade still come from tungstenite.
//!
//! Only what a Socket.IO client needs: text frames (fragmented or not) in, text frames
//! out (masked, as a client must), WebSocket pings answered, close.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Where an idle connection's buffer starts: ten thousand of them must stay cheap.
const INITIAL_BUFFER: usize = 4096;
/// Where a busy connection's buffer stops growing: dozens of frames per read.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Larger messages are refused (the servers' own limit is 1 MB).
const MAX_MESSAGE: usize = 16 << 20;
/// The upgrade response must fit in this.
const MAX_HEADER: usize = 16 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One parsed frame header, located in the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    /// Payload bounds, relative to the frame's first byte.
    payload: (usize, usize),
}

/// Parses the frame at the start of `b`; `Ok(None)` when more bytes are needed.
fn parse_header(b: &[u8]) -> Result<Option<Header>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0F);
    if b[0] & 0x70 != 0 {
        bail!("frame with reserved bits set (no extension was negotiated)");
    }
    if b[1] & 0x80 != 0 {
        bail!("masked frame from the server");
    }
    let (len, at) = match b[1] & 0x7F {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (
                usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                10,
            )
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if len > MAX_MESSAGE {
        bail!("frame of {len} bytes");
    }
    if b.len() < at + len {
        return Ok(None);
    }
    Ok(Some(Header {
        fin,
        opcode,
        payload: (at, at + len),
    }))
}

/// Appends a masked client frame.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A text message, borrowed from the connection's buffer.
pub(crate) struct Received<'a> {
    pub text: &'a [u8],
    /// When its bytes were read from the socket.
    pub read_at: Instant,
}

/// Where the message `next_buffered` found lies.
enum Found {
    Buffer(usize, usize),
    Fragments,
}

pub(crate) struct Ws {
    stream: TcpStream,
    /// Bytes read and not yet parsed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being put together, and whether it is text.
    fragments: Vec<u8>,
    in_fragments: Option<bool>,
    /// Frames queued and not yet written (`flush`).
    out: Vec<u8>,
    /// The server sent a close frame.
    closed: bool,
    /// xorshift state for the frame masks (a load generator needs no unpredictability).
    rng: u64,
    /// When the bytes of the last message returned were read from the socket: every frame
    /// of one read arrived together, so this is their arrival time without a clock read
    /// per frame.
    read_at: Instant,
}

impl Ws {
    /// Connects to `addr` (`host:port`) and upgrades `GET path`.
    #[cfg(test)]
    pub(crate) async fn connect(addr: &str, path: &str) -> Result<Ws> {
        Ws::connect_from(addr, None, path).await
    }

    /// As [`Ws::connect`], from the local address `source` when given (one address has
    /// one ephemeral port range; more connections than that need more addresses).
    pub(crate) async fn connect_from(addr: &str, source: Option<IpAddr>, path: &str) -> Result<Ws> {
        let stream = match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let to = tokio::net::lookup_host(addr)
                    .await
                    .with_context(|| format!("resolve {addr}"))?
                    .find(|a| a.is_ipv4() == ip.is_ipv4())
                    .ok_or_else(|| anyhow!("{addr}: no address of the family of {ip}"))?;
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .with_context(|| format!("bind {ip}"))?;
                socket.connect(to).await
            }
        }
        .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| anyhow!("random seed: {e}"))?;
        let mut ws = Ws {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            fragments: Vec::new(),
            in_fragments: None,
            out: Vec::new(),
            closed: false,
            rng: u64::from_le_bytes(seed) | 1,
            read_at: Instant::now(),
        };
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.stream.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(p) = find(&ws.buf[..ws.end], b"\r\n\r\n") {
                break p + 4;
            }
            if ws.end >= MAX_HEADER {
                bail!("upgrade response headers too long");
            }
            if ws.read_more().await? == 0 {
                bail!("server closed the connection during the upgrade");
            }
        };
        check_upgrade(
            &String::from_utf8_lossy(&ws.buf[..head_end]),
            &derive_accept_key(key.as_bytes()),
        )?;
        // Whatever followed the headers is the first frames.
        ws.start = head_end;
        Ok(ws)
    }

    /// The next text message (binary ones are skipped; WebSocket pings get a pong queued,
    /// see `flush`), with when its bytes were read; `None` once the server closed the
    /// connection.
    ///
    /// Cancel-safe, so it can sit in a `select!`: it only reads, and a read cancelled
    /// before it completes consumed nothing.
    pub(crate) async fn next(&mut self) -> Result<Option<Received<'_>>> {
        let found = loop {
            if let Some(found) = self.next_buffered()? {
                break found;
            }
            if self.closed || self.read_more().await? == 0 {
                return Ok(None);
            }
        };
        let text = match found {
            Found::Buffer(a, b) => &self.buf[a..b],
            Found::Fragments => &self.fragments,
        };
        Ok(Some(Received {
            text,
            read_at: self.read_at,
        }))
    }

    /// The next complete text message already in the buffer, without I/O.
    fn next_buffered(&mut self) -> Result<Option<Found>> {
        loop {
            if self.closed {
                return Ok(None);
            }
            let Some(h) = parse_header(&self.buf[self.start..self.end])? else {
                return Ok(None);
            };
            let (a, b) = (self.start + h.payload.0, self.start + h.payload.1);
            self.start += h.payload.1;
            match (h.opcode, self.in_fragments) {
                (OP_TEXT, None) if h.fin => return Ok(Some(Found::Buffer(a, b))),
                (OP_BINARY, None) if h.fin => {}
                (OP_TEXT | OP_BINARY, None) => {
                    self.in_fragments = Some(h.opcode == OP_TEXT);
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&self.buf[a..b]);
                }
                (OP_CONTINUATION, Some(text)) => {
                    if self.fragments.len() + (b - a) > MAX_MESSAGE {
                        bail!("fragmented message over {MAX_MESSAGE} bytes");
                    }
                    self.fragments.extend_from_slice(&self.buf[a..b]);
                    if h.fin {
                        self.in_fragments = None;
                        if text {
                            return Ok(Some(Found::Fragments));
                        }
                    }
                }
                (OP_PING, _) => {
                    let payload = self.buf[a..b].to_vec();
                    let mask = self.mask();
                    encode_frame(&mut self.out, OP_PONG, &payload, mask);
                }
                (OP_PONG, _) => {}
                (OP_CLOSE, _) => self.closed = true,
                (op, _) => bail!("unexpected frame (opcode {op}) from the server"),
            }
        }
    }

    /// Reads more bytes into the buffer, making room first; returns how many (0: EOF).
    async fn read_more(&mut self) -> Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < INITIAL_BUFFER / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.buf.len() - self.end < INITIAL_BUFFER / 4 {
                // Still full: one message larger than the buffer.
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let room = self.buf.len() - self.end;
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.read_at = Instant::now();
        self.end += n;
        if n == room && self.buf.len() < MAX_READ_CHUNK {
            // The socket had more than we had room for: this connection is busy.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(n)
    }

    fn mask(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    /// Queues a text frame; `flush` writes everything queued in one go.
    pub(crate) fn queue_text(&mut self, text: &str) {
        let mask = self.mask();
        encode_frame(&mut self.out, OP_TEXT, text.as_bytes(), mask);
    }

    /// Whether frames (pongs included) wait for `flush`.
    pub(crate) fn wants_flush(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes everything queued. Not cancel-safe: call it outside `select!` branches.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    pub(crate) async fn send_text(&mut self, text: &str) -> Result<()> {
        self.queue_text(text);
        self.flush().await
    }

    /// Sends a close frame (1000, normal) and shuts the write side.
    pub(crate) async fn close(&mut self) -> Result<()> {
        let mask = self.mask();
        encode_frame(&mut self.out, OP_CLOSE, &1000u16.to_be_bytes(), mask);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks the upgrade response: status 101 and the accept key derived from ours.
fn check_upgrade(head: &str, accept: &str) -> Result<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("101") {
        bail!("upgrade refused: {status}");
    }
    let got = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim())
    });
    if got != Some(accept) {
        bail!("upgrade answered with a wrong Sec-WebSocket-Accept");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a server sends it: unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n < 65536 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_headers_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let f = server_frame(true, OP_TEXT, &vec![b'a'; len]);
            let h = parse_header(&f).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode), (true, OP_TEXT));
            assert_eq!(h.payload.1 - h.payload.0, len);
            assert_eq!(h.payload.1, f.len());
            // Any prefix is "need more bytes", never an error.
            for cut in [0, 1, f.len() / 2, f.len() - 1] {
                if cut < f.len() {
                    assert_eq!(
                        parse_header(&f[..cut]).unwrap(),
                        None,
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_what_a_server_must_not_send() {
        assert!(parse_header(&[0x81, 0x81, 1, 2, 3, 4, b'x']).is_err()); // masked
        assert!(parse_header(&[0xC1, 0x00]).is_err()); // RSV1 without an extension
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn client_frames_are_masked_and_decode_back() {
        let payload = b"42[\"publish\",\"c\",{}]";
        let mut out = Vec::new();
        let mask = [1, 2, 3, 4];
        encode_frame(&mut out, OP_TEXT, payload, mask);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | payload.len() as u8);
        assert_eq!(&out[2..6], &mask);
        let decoded: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(decoded, payload);
        let mut long = Vec::new();
        encode_frame(&mut long, OP_TEXT, &[0; 300], mask);
        assert_eq!(
            (long[1], u16::from_be_bytes([long[2], long[3]])),
            (0x80 | 126, 300)
        );
    }

    #[test]
    fn upgrade_responses() {
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSEC-WEBSOCKET-ACCEPT:  abc=\r\n\r\n";
        assert!(check_upgrade(ok, "abc=").is_ok());
        assert!(check_upgrade(ok, "xyz=").is_err());
        assert!(check_upgrade("HTTP/1.1 400 Bad Request\r\n\r\n", "abc=").is_err());
    }

    /// Frames split across reads, fragments, pings and binary messages, through a real socket.
    #[tokio::test]
    async fn reads_messages_split_fragmented_and_interleaved() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.trim().as_bytes())
            )
            .into_bytes();
            // The first frame rides along with the headers.
            out.extend(server_frame(true, OP_TEXT, b"0{\"sid\":\"x\"}"));
            s.write_all(&out).await.unwrap();
            let mut rest = Vec::new();
            rest.extend(server_frame(true, OP_BINARY, b"\x01\x02"));
            rest.extend(server_frame(true, OP_PING, b"hi"));
            rest.extend(server_frame(false, OP_TEXT, b"42[\"mes"));
            rest.extend(server_frame(true, OP_PING, b""));
            rest.extend(server_frame(true, OP_CONTINUATION, b"sage\"]"));
            rest.extend(server_frame(true, OP_TEXT, &vec![b'z'; 10_000]));
            rest.extend(server_frame(true, OP_TEXT, b"2"));
            // Byte by byte, so every frame is split across reads.
            for b in rest {
                s.write_all(&[b]).await.unwrap();
            }
            let mut pongs = vec![0u8; 2 + 4 + 2];
            s.read_exact(&mut pongs).await.unwrap();
            assert_eq!(pongs[0], 0x80 | OP_PONG);
            s.write_all(&server_frame(true, OP_CLOSE, &1000u16.to_be_bytes()))
                .await
                .unwrap();
        });
        let mut ws = Ws::connect(&addr, "/socket.io/?EIO=4&transport=websocket")
            .await
            .unwrap();
        let mut next = async || ws.next().await.unwrap().map(|r| r.text.to_vec());
        assert_eq!(next().await.unwrap(), b"0{\"sid\":\"x\"}");
        assert_eq!(next().await.unwrap(), b"42[\"message\"]");
        assert_eq!(next().await.unwrap().len(), 10_000);
        assert_eq!(next().await.unwrap(), b"2");
        assert!(ws.wants_flush());
        ws.flush().await.unwrap();
        assert!(ws.next().await.unwrap().is_none());
        server.await.unwrap();
    }
}
