//! The client's TCP stream as the HTTP layer serves it: a `101 Switching Protocols` is held
//! back, so that it leaves in one write with the WebSocket's first frame (the Engine.IO
//! OPEN packet) instead of a system call of its own.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How every 101 the HTTP layer writes begins.
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

pub(crate) struct ClientTcp {
    tcp: TcpStream,
    /// A 101 answer written by the HTTP layer and not sent yet. After a 101 the HTTP layer
    /// writes nothing more: the connection is the WebSocket's, which takes these bytes and
    /// sends them first ([`ClientTcp::into_parts`]).
    held: Vec<u8>,
}

impl ClientTcp {
    pub(crate) fn new(tcp: TcpStream) -> ClientTcp {
        ClientTcp {
            tcp,
            held: Vec::new(),
        }
    }

    /// The stream, and what must be written on it before anything else.
    pub(crate) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.tcp, self.held)
    }

    /// Takes `bufs` into `held` when they are a 101 (or follow one): `Some(length)`.
    fn hold(&mut self, bufs: &[IoSlice<'_>]) -> Option<usize> {
        let first = bufs.iter().find(|b| !b.is_empty())?;
        if self.held.is_empty() && !first.starts_with(SWITCHING) {
            return None;
        }
        let mut n = 0;
        for b in bufs {
            self.held.extend_from_slice(b);
            n += b.len();
        }
        Some(n)
    }
}

impl AsFd for ClientTcp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(n) = self.hold(&[IoSlice::new(data)]) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(n) = self.hold(bufs) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    /// A held 101 stays held: the HTTP layer flushes it before it hands the connection
    /// over, and the WebSocket sends it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (ClientTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (ClientTcp::new(server), client)
    }

    #[tokio::test]
    async fn other_answers_go_straight_out() {
        let (mut server, mut client) = pair().await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        server.flush().await.unwrap();
        let mut got = vec![0u8; 38];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let (_, held) = server.into_parts();
        assert!(held.is_empty());
    }

    #[tokio::test]
    async fn a_101_is_held_whole_even_written_in_pieces() {
        let (mut server, mut client) = pair().await;
        let head = [
            IoSlice::new(b""),
            IoSlice::new(b"HTTP/1.1 101 Switching Protocols\r\n"),
            IoSlice::new(b"upgrade: websocket\r\n"),
        ];
        let n = server.write_vectored(&head).await.unwrap();
        assert_eq!(n, 54);
        server.write_all(b"\r\n").await.unwrap();
        server.flush().await.unwrap();
        let (tcp, held) = server.into_parts();
        assert_eq!(
            held,
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
        );
        // Nothing reached the client: closed, the socket gives it an end and no bytes.
        drop(tcp);
        let mut probe = [0u8; 1];
        assert_eq!(client.read(&mut probe).await.unwrap(), 0);
    }
}
