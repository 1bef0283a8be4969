//! A WebSocket taken off its session between two messages, as its socket's descriptor and
//! the client's bytes not yet read, and the same WebSocket made again from them: what a
//! hand-over passes for a connection that stays open across it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use nix::sys::socket::{SockType, SockaddrStorage, getpeername, getsockopt, sockopt};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::buffered::Buffered;
use super::transport::WsStream;
use super::wsread::{FrameBounded, WsIo};

/// A live WebSocket, ready to cross to another process.
#[derive(Debug)]
pub(crate) struct Taken {
    /// A duplicate of the client's socket. It has close-on-exec: the hand-over clears it
    /// on the sockets it names in the state, so no other one leaks into the new process.
    pub(crate) fd: OwnedFd,
    /// Read from the client and not yet taken as frames: to be read before the socket.
    pub(crate) unread: Bytes,
}

/// Writes out everything the WebSocket holds for the client (bounded by `limit`), then
/// takes its socket. `None` when it cannot be taken whole: a frame still on its way in,
/// a write that did not finish in time, or a stream that is not a plain TCP socket. The
/// session then ends as it does today and its client recovers.
pub(crate) async fn take(ws: &mut WsStream, limit: Duration) -> Option<Taken> {
    // A half-written frame is finished, and tungstenite's own queue (pongs) goes too.
    timeout(limit, ws.flush()).await.ok()?.ok()?;
    let bounded = ws.get_ref().get_ref();
    let unread = bounded.unread_at_boundary()?;
    let fd = bounded.get_ref().as_fd()?.try_clone_to_owned().ok()?;
    Some(Taken { fd, unread })
}

/// The WebSocket again, on a socket passed by the previous process, with the bytes it had
/// read and not taken. Refuses a descriptor that is not a connected stream socket.
pub(crate) async fn resume(fd: OwnedFd, unread: &[u8], max_payload: usize) -> io::Result<WsStream> {
    let kind = getsockopt(&fd.as_fd(), sockopt::SockType)
        .map_err(|e| io::Error::other(format!("not a socket: {e}")))?;
    if kind != SockType::Stream {
        return Err(io::Error::other("not a stream socket"));
    }
    getpeername::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map_err(|e| io::Error::other(format!("not a connected socket: {e}")))?;
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true)?;
    let tcp = tokio::net::TcpStream::from_std(std)?;
    Ok(WebSocketStream::from_raw_socket(
        Buffered::new(FrameBounded::new(WsIo::Tcp(tcp), unread)),
        Role::Server,
        Some(super::websocket::ws_config(max_payload)),
    )
    .await)
}

/// The server's side of the opening handshake, read byte by byte so nothing after the
/// request is taken, then the WebSocket on the server's own read and write sides.
#[cfg(test)]
pub(crate) async fn handshake(mut stream: tokio::net::TcpStream) -> WsStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = Vec::new();
    while !req.ends_with(b"\r\n\r\n") {
        req.push(stream.read_u8().await.unwrap());
    }
    let req = String::from_utf8(req).unwrap();
    let key = req
        .lines()
        .find_map(|l| {
            l.strip_prefix("sec-websocket-key: ")
                .or(l.strip_prefix("Sec-WebSocket-Key: "))
        })
        .unwrap();
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let res = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(res.as_bytes()).await.unwrap();
    WebSocketStream::from_raw_socket(
        Buffered::new(FrameBounded::new(WsIo::Tcp(stream), &[])),
        Role::Server,
        None,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    /// A WebSocket taken from one stream and resumed on its passed descriptor: the client
    /// sees one connection, reads everything written on either side of the hand-over,
    /// and nothing it sent is lost, even what the first reader had read and not taken.
    #[tokio::test]
    async fn a_connection_crosses_between_two_messages() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
                .await
                .unwrap();
            // Sent at once: the first reader takes them in one read and hands up one.
            for i in 0..5 {
                ws.feed(Message::text(format!("c{i}"))).await.unwrap();
            }
            ws.flush().await.unwrap();
            let mut got = Vec::new();
            while got.len() < 3 {
                if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                    got.push(t.to_string());
                }
                if got.len() == 2 {
                    ws.send(Message::text("c5")).await.unwrap();
                }
            }
            got
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut first = super::handshake(stream).await;
        let Some(Message::Text(t)) = first.next().await.map(Result::unwrap) else {
            panic!("a text message first");
        };
        assert_eq!(t.as_str(), "c0");
        first.send(Message::text("s0")).await.unwrap();
        let taken = take(&mut first, Duration::from_secs(5))
            .await
            .expect("taken");
        // The old stream goes without a close frame: the duplicate keeps the connection.
        drop(first);
        let mut second = resume(taken.fd, &taken.unread, 1 << 20).await.unwrap();
        second.send(Message::text("s1")).await.unwrap();
        let mut got = Vec::new();
        // Bounded: a message lost in the hand-over would otherwise be waited for forever.
        timeout(Duration::from_secs(10), async {
            while got.len() < 5 {
                if let Message::Text(t) = second.next().await.unwrap().unwrap() {
                    got.push(t.to_string());
                }
            }
        })
        .await
        .expect("every message the client sent");
        assert_eq!(got, ["c1", "c2", "c3", "c4", "c5"]);
        second.send(Message::text("s2")).await.unwrap();
        assert_eq!(client.await.unwrap(), ["s0", "s1", "s2"]);
    }
}
