//! Engine.IO and Socket.IO client steps over polling and WebSocket, written out by hand so
//! a test controls every packet: handshakes (with the Host and Origin a test chooses),
//! the next frame or packet, CONNECT with an auth payload, acks.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::http::{Reply, get, raw};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) fn polling(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// A polling handshake; returns the session id.
pub(crate) async fn handshake(port: u16) -> String {
    let (status, body) = get(port, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 200, "handshake failed: {body}");
    let json: serde_json::Value =
        serde_json::from_str(body.strip_prefix('0').expect("open packet")).unwrap();
    json["sid"].as_str().unwrap().to_owned()
}

/// Opens a direct WebSocket session and reads its open packet; returns the socket and sid.
pub(crate) async fn ws_open(port: u16) -> (Ws, String) {
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
pub(crate) async fn next_text(ws: &mut Ws) -> Option<String> {
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
pub(crate) async fn next_sio(ws: &mut Ws) -> Option<String> {
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
pub(crate) async fn closes_within(ws: &mut Ws, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The code and reason of the close frame the server ends with, skipping what comes
/// before it; `None` if the connection ends without one or `within` passes.
pub(crate) async fn close_frame(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Some((u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// A Socket.IO client on a WebSocket, connected to `/` with this auth.
pub(crate) async fn sio_connect(port: u16, auth: &str) -> Ws {
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
pub(crate) async fn next_ack(ws: &mut Ws) -> String {
    loop {
        let p = next_sio(ws).await.expect("socket closed before the ack");
        if p.starts_with('3') {
            return p;
        }
    }
}

/// A polling handshake with this `Host` and, if given, this `Origin`.
pub(crate) async fn poll_handshake(port: u16, host: &str, origin: Option<&str>) -> Reply {
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
pub(crate) async fn ws_handshake(port: u16, host: &str, origin: Option<&str>) -> Result<Ws, u16> {
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
pub(crate) async fn connect_with(port: u16, auth: &str) -> (Ws, String) {
    let (mut ws, _) = ws_open(port).await;
    send(&mut ws, &format!("40{auth}")).await;
    let reply = next_sio(&mut ws).await.expect("CONNECT reply");
    (ws, reply)
}

/// The message of a CONNECT_ERROR reply.
pub(crate) fn connect_error(reply: &str) -> String {
    let json = reply
        .strip_prefix('4')
        .unwrap_or_else(|| panic!("not a CONNECT_ERROR: {reply}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["message"].as_str().unwrap().to_owned()
}
