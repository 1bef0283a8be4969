//! The session task's ordering rules, driven step by step without a transport.

use super::*;
use crate::engineio::EngineConfig;
use crate::engineio::engine::Engine;
use crate::engineio::socket::{Sid, TransportKind};
use crate::engineio::tests::Echo;

/// A polling session whose task has not run: the test calls its handlers itself.
fn session(config: EngineConfig) -> (Session, Arc<Socket>) {
    session_with_queue(config, 8)
}

/// Like [`session`], with a queue that holds `limit` items before the client counts as slow.
fn session_with_queue(config: EngineConfig, limit: usize) -> (Session, Arc<Socket>) {
    let engine = Engine::new(config, Arc::new(Echo));
    let queue = Arc::new(Queue::new(limit));
    let socket = Arc::new(Socket::new(
        Sid::random(),
        None,
        TransportKind::Polling,
        queue.clone(),
    ));
    let (_control, control_rx) = mpsc::channel(8);
    let session = Session::new(
        socket.clone(),
        engine.inner.clone(),
        queue,
        control_rx,
        None,
    );
    (session, socket)
}

#[tokio::test]
async fn an_aborted_poll_overtaken_by_a_later_one_ends_the_session() {
    let (mut session, _) = session(EngineConfig::default());
    let (later, later_answer) = oneshot::channel();
    assert_eq!(session.on_control(Control::Poll(later)).await, Ok(()));
    let (aborted, aborted_answer) = oneshot::channel();
    drop(aborted_answer);
    assert_eq!(
        session.on_control(Control::Poll(aborted)).await,
        Err(CloseReason::TransportClose)
    );
    // The waiting poll is refused (400), not answered with a close packet.
    assert!(later_answer.await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_request_past_the_deadline_finds_the_session_gone_before_its_timer_fires() {
    let (mut session, _) = session(EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..EngineConfig::default()
    });
    // The session task has not run at all, so its timer never fired.
    tokio::time::advance(Duration::from_millis(500)).await;
    let (reply, _answer) = oneshot::channel();
    assert_eq!(
        session.on_control(Control::Poll(reply)).await,
        Err(CloseReason::PingTimeout)
    );
}

#[tokio::test]
async fn a_poll_that_reaches_a_session_closed_elsewhere_loses() {
    let (mut session, socket) = session(EngineConfig::default());
    // A bad polling payload closes the session from the HTTP side; the next GET is already
    // on its way to the task, which has not seen the close yet.
    socket.close(CloseReason::ParseError);
    let (reply, answer) = oneshot::channel();
    assert_eq!(
        session.on_control(Control::Poll(reply)).await,
        Err(CloseReason::ParseError)
    );
    assert!(matches!(answer.await, Ok(Err(PollError::BadRequest))));
}

#[tokio::test]
async fn a_server_close_still_gives_the_client_its_last_poll() {
    let (mut session, socket) = session(EngineConfig::default());
    socket.close(CloseReason::ServerClose);
    let (reply, _answer) = oneshot::channel();
    assert_eq!(session.on_control(Control::Poll(reply)).await, Ok(()));
    assert!(session.transport.waiting().is_some_and(|w| w.is_some()));
}

/// At a hand-over a session whose client is in the middle of sending a message reads it
/// to its end and hands it on, so the WebSocket stands between two messages and can cross.
#[tokio::test]
async fn a_hand_over_reads_a_message_half_received_to_its_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let ws = crate::engineio::livews::handshake(stream).await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client.read_u8().await.unwrap());
    }

    let engine = Engine::new(EngineConfig::default(), Arc::new(Echo));
    let queue = Arc::new(Queue::new(8));
    let socket = Arc::new(Socket::new(
        Sid::random(),
        None,
        TransportKind::WebSocket,
        queue.clone(),
    ));
    let (_control, control_rx) = mpsc::channel(8);
    let mut session = Session::new(
        socket.clone(),
        engine.inner.clone(),
        queue.clone(),
        control_rx,
        Some(Box::new(ws)),
    );
    session.conn = Some(engine.inner.handler.on_open(&socket));

    // A masked text frame "4hello": its header and part of its payload first.
    let mask = [7u8, 1, 2, 3];
    let mut frame = vec![0x81, 0x80 | 6];
    frame.extend_from_slice(&mask);
    frame.extend(b"4hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    client.write_all(&frame[..8]).await.unwrap();
    let mid_frame = |s: &Session| match &s.transport {
        Transport::WebSocket(ws) => ws.get_ref().get_ref().unread_at_boundary().is_none(),
        _ => false,
    };
    // Bounded, retried: the first bytes reach the reader in their own time.
    for _ in 0..500 {
        let _ =
            tokio::time::timeout(Duration::from_millis(10), session.transport.next_event()).await;
        if mid_frame(&session) {
            break;
        }
    }
    assert!(
        mid_frame(&session),
        "the reader stands in the middle of the frame"
    );
    client.write_all(&frame[8..]).await.unwrap();
    session.read_to_boundary().await;
    assert!(!mid_frame(&session));
    let mut echoed = Vec::new();
    queue.take(8, &mut echoed);
    assert_eq!(echoed.len(), 1, "the message was handled");
}

#[tokio::test]
async fn a_server_close_answers_with_at_most_max_poll_packets_the_close_included() {
    let (mut session, socket) = session_with_queue(EngineConfig::default(), 64);
    let (reply, answer) = oneshot::channel();
    assert_eq!(session.on_control(Control::Poll(reply)).await, Ok(()));
    for n in 0..40 {
        let item = Outgoing::text(crate::engineio::Str::from(format!("42[{n}]")));
        assert_eq!(socket.send(item), Ok(()));
    }
    session.finish(CloseReason::ServerClose).await;
    let Ok(Ok(body)) = answer.await else {
        panic!("the waiting poll is answered")
    };
    let packets: Vec<&[u8]> = body.split(|&b| b == 0x1e).collect();
    let max = EngineConfig::default().max_poll_packets;
    assert_eq!(packets.len(), max, "{body:?}");
    assert_eq!(packets[0], b"42[0]");
    assert_eq!(packets[max - 1], b"1", "the close packet comes last");
}

/// At a hand-over a polling session parks: its waiting GET gets what is queued, and a POST
/// that reaches it afterwards is answered `ok`, its packets kept for the next process.
#[tokio::test]
async fn a_polling_session_parked_at_a_hand_over_keeps_what_its_client_posts() {
    let engine = Engine::new(EngineConfig::default(), Arc::new(Echo));
    engine.hand_over();
    let queue = Arc::new(Queue::new(8));
    let socket = Arc::new(Socket::new(
        Sid::random(),
        None,
        TransportKind::Polling,
        queue.clone(),
    ));
    let (control, control_rx) = mpsc::channel(8);
    let mut session = Session::new(
        socket.clone(),
        engine.inner.clone(),
        queue,
        control_rx,
        None,
    );
    let (get, get_answer) = oneshot::channel();
    assert_eq!(session.on_control(Control::Poll(get)).await, Ok(()));
    socket
        .send(Outgoing::one(Frame::Text(Str::from("4queued"))))
        .unwrap();
    let (post, post_answer) = oneshot::channel();
    let posted = Packet::Message(Str::from("posted"));
    control
        .send(Control::Post(vec![posted], post))
        .await
        .unwrap();
    socket.close(CloseReason::ServerClose);
    session.finish(CloseReason::ServerClose).await;
    assert_eq!(&get_answer.await.unwrap().unwrap()[..], b"4queued");
    assert!(matches!(post_answer.await, Ok(Ok(()))));
    // Later requests find the channel closed and the session parked.
    assert!(socket.is_parked());
    let late = Packet::Message(Str::from("late"));
    assert!(socket.add_parked(vec![late]).is_ok());
    let (unsent, inbound) = socket.take_parked().unwrap();
    assert!(unsent.is_empty());
    assert_eq!(
        inbound,
        [
            Frame::Text(Str::from("4posted")),
            Frame::Text(Str::from("4late"))
        ]
    );
}

/// Every connection's task holds this future for its whole life, sized for its largest
/// state: the rare paths (a live resume, the finish) are boxed so they do not size it.
/// Unboxed they made it 3,440 bytes (debug build): about 2 KiB more per connection.
#[test]
fn a_sessions_task_stays_small() {
    let (s, _) = session(EngineConfig::default());
    let size = std::mem::size_of_val(&s.run());
    assert!(size <= 2048, "a session's future is {size} bytes");
}
