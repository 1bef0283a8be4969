//! A client back while the server still holds its session open (the old connection died in
//! silence): with its pid it takes the session over, its old transport is closed and the
//! replay starts from the client's offset; without one it is another tab.

use super::*;

/// A tab whose queue keeps the last tagged items taken, as a session's does.
fn open_tab(hub: &Hub, identity: Option<&str>) -> Tab {
    let rx = Arc::new(Queue::with_history(64, 32));
    let socket = socket_on(&rx, Sid::random(), Sid::random());
    let conn = hub.attach(&socket, identity.map(Arc::from), None);
    Tab { socket, rx, conn }
}

/// The offset of the message `n` among `items`.
fn offset_of(items: &[(Value, Option<String>)], n: i64) -> u64 {
    let (_, offset) = items
        .iter()
        .find(|(e, _)| e["data"] == json!(n))
        .expect("the message");
    offset.as_deref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_pid_takes_over_its_open_session_from_the_clients_offset() {
    let hub = hub();
    let mut watcher = tab(&hub, Some("watcher"));
    let mut old = open_tab(&hub, Some("ann"));
    hub.subscribe(&watcher.conn, "c", Value::Null).unwrap();
    hub.subscribe(&old.conn, "c", Value::Null).unwrap();
    received(&mut watcher.rx);
    for n in 1..=3 {
        publish(&hub, "c", n);
    }
    // The old session wrote 1 to 3 to its dead connection; the client saw only 1. Then 4
    // is queued and never taken.
    let written = received(&mut old.rx);
    let seen = offset_of(&written, 1);
    publish(&hub, "c", 4);

    let pid = old.socket.pid.clone().unwrap();
    assert!(hub.claim(pid.as_str(), Some(seen), Some("bob")).is_none());
    assert!(
        !old.socket.engine().is_closing(),
        "another identity's pid changes nothing"
    );
    let claim = hub
        .claim(pid.as_str(), Some(seen), Some("ann"))
        .expect("an open session is taken over");
    assert_eq!(claim.sid, old.socket.sid);
    assert!(
        old.socket.engine().is_closing(),
        "the old transport is closed"
    );
    publish(&hub, "c", 5);
    let (socket, mut rx) = socket(64);
    let conn = hub.attach(&socket, Some(Arc::from("ann")), Some(claim));
    assert!(Arc::ptr_eq(&conn.slot, &old.conn.slot));
    publish(&hub, "c", 6);
    // The old session ends later; what it leaves changes nothing now.
    let backlog = old
        .socket
        .engine()
        .take_backlog(|_| true)
        .unwrap_or_default();
    hub.detach(&old.conn, &old.socket, backlog, true);
    publish(&hub, "c", 7);
    assert_eq!(
        data(&received(&mut rx)),
        (2..=7).map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert!(received(&mut old.rx).is_empty());
    assert!(commands(&received(&mut watcher.rx)).is_empty(), "no churn");
    assert_eq!(hub.count("c"), 2);
}

#[tokio::test]
async fn an_open_session_that_cannot_replay_exactly_stays_as_it_is() {
    let hub = hub();
    let mut old = open_tab(&hub, None);
    hub.subscribe(&old.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    received(&mut old.rx);
    let pid = old.socket.pid.clone().unwrap();
    assert!(hub.claim(pid.as_str(), Some(999_999), None).is_none());
    assert!(!old.socket.engine().is_closing());
    publish(&hub, "c", 2);
    assert_eq!(data(&received(&mut old.rx)), [json!(2)]);
}

#[tokio::test(start_paused = true)]
async fn without_a_pid_a_new_connection_is_another_tab_and_keeps_the_membership() {
    let hub = hub();
    let mut watcher = tab(&hub, Some("watcher"));
    let old = open_tab(&hub, Some("ann"));
    hub.subscribe(&watcher.conn, "c", Value::Null).unwrap();
    hub.subscribe(&old.conn, "c", Value::Null).unwrap();
    received(&mut watcher.rx);
    let mut reload = tab(&hub, Some("ann"));
    assert!(
        !old.socket.engine().is_closing(),
        "a live tab is not closed"
    );
    publish(&hub, "c", 1);
    assert_eq!(data(&received(&mut reload.rx)), [json!(1)]);
    // The half-open one ends at its ping timeout; its window passes.
    let backlog = old
        .socket
        .engine()
        .take_backlog(|_| true)
        .unwrap_or_default();
    hub.detach(&old.conn, &old.socket, backlog, true);
    tokio::time::sleep(Duration::from_secs(10)).await;
    publish(&hub, "c", 2);
    assert_eq!(data(&received(&mut reload.rx)), [json!(2)]);
    assert!(commands(&received(&mut watcher.rx)).is_empty(), "no churn");
    assert_eq!(hub.count("c"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_ends_is_no_longer_found_by_its_pid() {
    let hub = hub();
    let gone = open_tab(&hub, Some("ann"));
    let left = open_tab(&hub, None);
    let kept = open_tab(&hub, None);
    assert_eq!(hub.recovery.lock().unwrap().len(), 3);
    hub.detach(&gone.conn, &gone.socket, Default::default(), true);
    hub.detach(&left.conn, &left.socket, Default::default(), false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let map = hub.recovery.lock().unwrap();
    assert_eq!(map.len(), 1);
    assert!(map.contains_key(kept.socket.pid.as_ref().unwrap()));
}

#[tokio::test]
async fn a_session_caught_between_its_end_and_its_detach_is_not_taken_over_empty() {
    let hub = hub();
    let mut old = open_tab(&hub, None);
    hub.subscribe(&old.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    publish(&hub, "c", 2);
    let seen = offset_of(&received(&mut old.rx), 1);
    // Its session ended and handed its queue over; the detach has not come yet.
    let backlog = old.socket.engine().take_backlog(|_| true).unwrap();
    let pid = old.socket.pid.clone().unwrap();
    assert!(hub.claim(pid.as_str(), Some(seen), None).is_none());
    hub.detach(&old.conn, &old.socket, backlog, true);
    let claim = hub
        .claim(pid.as_str(), Some(seen), None)
        .expect("detached now");
    let (socket, mut rx) = socket(64);
    hub.attach(&socket, None, Some(claim));
    assert_eq!(data(&received(&mut rx)), [json!(2)]);
}

/// A recovering CONNECT whose reply cannot be queued (its session is closing already) must
/// not leave the claimed session behind: it goes back to its grace window and ends there.
#[tokio::test(start_paused = true)]
async fn a_recovery_whose_reply_cannot_be_sent_ends_in_its_grace_window() {
    use crate::engineio::{Backlog, CloseReason, Handler, Message, Str};
    use crate::socketio::{SocketIo, SocketIoConfig};

    let hub = hub();
    let mut watcher = tab(&hub, Some("watcher"));
    let old = tab(&hub, Some("ann"));
    hub.subscribe(&watcher.conn, "c", Value::Null).unwrap();
    hub.subscribe(&old.conn, "c", Value::Null).unwrap();
    received(&mut watcher.rx);
    hub.detach(&old.conn, &old.socket, (VecDeque::new(), 0), true);

    // The client is back, but its new session is closing before the reply is queued.
    let rx = Arc::new(Queue::bounded(64, 64));
    let engine = Arc::new(engineio::Socket::new(
        Sid::random(),
        None,
        TransportKind::WebSocket,
        rx.clone(),
    ));
    rx.close();
    let sio = SocketIo::new(
        Arc::new(HubApp::new(hub.clone())),
        SocketIoConfig::default(),
    );
    let mut conn = sio.on_open(&engine);
    let pid = old.socket.pid.clone().unwrap();
    let connect = format!(r#"0{{"identity":"ann","pid":"{}"}}"#, pid.as_str());
    conn.on_message(Message::Text(Str::from(connect)));

    assert!(
        old.conn.slot.detached_epoch().is_none(),
        "the CONNECT claimed the waiting session"
    );
    conn.on_close(CloseReason::TransportClose, Backlog::empty());

    tokio::time::sleep(Duration::from_secs(9)).await;
    let got = received(&mut watcher.rx);
    assert_eq!(commands(&got), [("onUnsubscribe".to_owned(), 1)]);
    assert_eq!(got[0].0["identity"], "ann");
    assert_eq!(hub.stats().members, 1);
}
