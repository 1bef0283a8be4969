//! A read side under the WebSocket that never hands it more than the rest of the current
//! frame, so that between messages the WebSocket layer holds no byte of the client's: what
//! was read from the socket and not yet taken is here, and can cross a hand-over.
//!
//! Client frames (RFC 6455, 5.2): a byte of FIN and opcode, a byte of MASK and a 7-bit
//! length (126: a 16-bit length follows, 127: a 64-bit one), the 4-byte mask when MASK is
//! set, then the payload. A header is handed up only whole, together with what of its
//! payload is here.
//!
//! Under it, [`WsIo`]: the client's TCP stream itself where the HTTP layer gives it back,
//! so its descriptor is at hand.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::os::fd::{AsFd, BorrowedFd};

use bytes::{Buf, Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::client_tcp::ClientTcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much is read from the socket at once.
const CHUNK: usize = 4096;

pub(crate) struct FrameBounded<S> {
    inner: S,
    /// Read from the socket, not yet handed up.
    unread: BytesMut,
    /// Bytes of the current frame still to hand up (its header already went).
    left: u64,
    /// The last whole frame ended a message (FIN on a data frame), or none began.
    at_message_end: bool,
    /// Bytes handed up so far.
    handed: u64,
}

impl<S> FrameBounded<S> {
    /// Reads `inner`, after `unread`: bytes an earlier reader took from the same socket and
    /// never handed up (a hand-over's), or that the HTTP layer read past the upgrade.
    pub(crate) fn new(inner: S, unread: &[u8]) -> FrameBounded<S> {
        FrameBounded {
            inner,
            unread: BytesMut::from(unread),
            left: 0,
            at_message_end: true,
            handed: 0,
        }
    }

    /// When the WebSocket above holds nothing of the client's (no part of a frame, no part
    /// of a fragmented message): the bytes read and not yet handed up. `None` otherwise.
    pub(crate) fn unread_at_boundary(&self) -> Option<Bytes> {
        (self.left == 0 && self.at_message_end).then(|| Bytes::copy_from_slice(&self.unread))
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// A frame header at the start of `b`: its length and the frame's payload length; `None`
/// while incomplete.
fn header(b: &[u8]) -> Option<(usize, u64)> {
    let (&b1, rest) = b.get(1).zip(b.get(2..))?;
    let masked = b1 & 0x80 != 0;
    let (ext, payload) = match b1 & 0x7f {
        126 => (
            2,
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    let len = 2 + ext + if masked { 4 } else { 0 };
    (b.len() >= len).then_some((len, payload))
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameBounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.left == 0
                && let Some((len, payload)) = header(&this.unread)
            {
                let opcode = this.unread[0] & 0x0f;
                // Control frames (opcode 8 and up) may sit between a message's fragments.
                if opcode < 8 {
                    this.at_message_end = this.unread[0] & 0x80 != 0;
                }
                this.left = len as u64 + payload;
            }
            if this.left > 0 && !this.unread.is_empty() {
                let n = (this.left.min(this.unread.len() as u64) as usize).min(buf.remaining());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                if this.unread.is_empty() {
                    // Most connections are idle most of the time: they hold no read buffer.
                    this.unread = BytesMut::new();
                }
                this.left -= n as u64;
                this.handed += n as u64;
                return Poll::Ready(Ok(()));
            }
            // Nothing to hand up: the frame's rest, or a whole header, is still to come.
            let mut chunk = [0u8; CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // End of stream: what is left is a partial header; hand it up so the
                // WebSocket sees the truncation as it would have.
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            this.unread.extend_from_slice(rb.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameBounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection a WebSocket runs on.
pub(crate) enum WsIo {
    /// The client's TCP stream, taken back from the HTTP layer.
    Tcp(TcpStream),
    /// Whatever else the HTTP layer served the upgrade on.
    Other(TokioIo<Upgraded>),
}

impl WsIo {
    /// The stream under an upgrade, with the bytes the HTTP layer read past the request
    /// (a client may send its first frames right behind it) and the 101 answer it held
    /// back, to be written before anything else.
    pub(crate) fn from_upgraded(upgraded: Upgraded) -> (WsIo, Bytes, Vec<u8>) {
        match upgraded.downcast::<TokioIo<ClientTcp>>() {
            Ok(parts) => {
                let (tcp, held) = parts.io.into_inner().into_parts();
                (WsIo::Tcp(tcp), parts.read_buf, held)
            }
            Err(other) => (WsIo::Other(TokioIo::new(other)), Bytes::new(), Vec::new()),
        }
    }

    /// The client socket's descriptor, when this is a plain TCP stream.
    pub(crate) fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            WsIo::Tcp(s) => Some(s.as_fd()),
            WsIo::Other(_) => None,
        }
    }
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            WsIo::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Tcp(s) => Pin::new(s).poll_write(cx, data),
            WsIo::Other(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            WsIo::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WsIo::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
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
        out
    }

    #[test]
    fn headers_of_every_length_form() {
        assert_eq!(header(&frame(true, 1, b"4x")), Some((6, 2)));
        assert_eq!(header(&frame(true, 1, &[b'a'; 300])), Some((8, 300)));
        assert_eq!(
            header(&frame(true, 2, &vec![0; 70_000])),
            Some((14, 70_000))
        );
        let long = frame(true, 1, &[b'a'; 300]);
        for cut in 0..8 {
            assert_eq!(header(&long[..cut]), None, "cut at {cut}");
        }
    }

    /// Whatever the way the bytes arrive, after each message the WebSocket holds nothing:
    /// the bytes not handed up are exactly the frames behind it.
    #[tokio::test]
    async fn the_websocket_holds_nothing_between_messages() {
        let mut wire = Vec::new();
        let texts: Vec<String> = (0..20)
            .map(|i| format!("4{}", "m".repeat(i * 37)))
            .collect();
        let mut ends = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if i == 5 {
                wire.extend(frame(true, 9, b"ping"));
            }
            if i == 7 {
                // A fragmented message, a ping between its parts.
                let (a, b) = t.split_at(1);
                wire.extend(frame(false, 1, a.as_bytes()));
                wire.extend(frame(true, 9, b""));
                wire.extend(frame(true, 0, b.as_bytes()));
            } else {
                wire.extend(frame(true, 1, t.as_bytes()));
            }
            ends.push(wire.len());
        }
        for chunk in [1usize, 3, 7, 100, 5000] {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let (head, rest) = wire.split_at(2);
            let mut ws = WebSocketStream::from_raw_socket(
                FrameBounded::new(server, head),
                Role::Server,
                None,
            )
            .await;
            for part in rest.chunks(chunk) {
                client.write_all(part).await.unwrap();
            }
            for (i, t) in texts.iter().enumerate() {
                let mut got = ws.next().await.unwrap().unwrap();
                while got.is_ping() {
                    got = ws.next().await.unwrap().unwrap();
                }
                assert_eq!(got, Message::Text(t.as_str().into()), "chunk {chunk}");
                let below = ws.get_ref();
                let unread = below.unread_at_boundary().expect("at a boundary");
                // Everything up to the message's end went up, nothing after it.
                assert_eq!(below.handed, ends[i] as u64, "chunk {chunk}, message {i}");
                assert_eq!(&wire[ends[i]..ends[i] + unread.len()], &unread[..]);
            }
        }
    }

    /// The HTTP server's upgrade gives the TCP stream back (so its descriptor can be passed
    /// on), with what the client sent right behind its request, and the 101 not sent yet.
    #[tokio::test]
    async fn an_upgrade_gives_the_tcp_stream_back() {
        use hyper::server::conn::http1;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = std::sync::Mutex::new(Some(tx));
            let service = hyper::service::service_fn(move |mut req| {
                let on_upgrade = hyper::upgrade::on(&mut req);
                let tx = tx.lock().unwrap().take();
                tokio::spawn(async move {
                    let parts = WsIo::from_upgraded(on_upgrade.await.unwrap());
                    let _ = tx.unwrap().send(parts);
                });
                let mut res = hyper::Response::new(http_body_util::Empty::<Bytes>::new());
                *res.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                res.headers_mut()
                    .insert(hyper::header::UPGRADE, "websocket".parse().unwrap());
                res.headers_mut()
                    .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
                async move { Ok::<_, std::convert::Infallible>(res) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(ClientTcp::new(stream)), service)
                .with_upgrades()
                .await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly")
            .await
            .unwrap();
        let (mut io, past, held) = rx.await.unwrap();
        assert!(
            io.as_fd().is_some(),
            "the upgrade is served on the TCP stream itself"
        );
        assert!(held.starts_with(b"HTTP/1.1 101"), "{held:?}");
        assert!(held.ends_with(b"\r\n\r\n"), "the whole head is held");
        // The 101 and the first frame leave together.
        io.write_all(&[&held[..], b"\x81\x010"].concat())
            .await
            .unwrap();
        let mut got = vec![0u8; held.len() + 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[held.len()..], b"\x81\x010");
        // What the HTTP layer read past the request, then the socket: nothing lost.
        let mut rest = vec![0u8; 5 - past.len()];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!([&past[..], &rest[..]].concat(), b"early");
        server.abort();
    }
}
