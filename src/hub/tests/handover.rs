//! The hub written down and taken in by another hub, as across a restart: members are back
//! in their channels with no membership event, each session is recovered exactly from its
//! offset, offsets go on increasing, and a session nobody claims ends when the grace time
//! it had left is over.

use super::*;
use crate::handover::{State, decode};

/// Detaches `t` with everything it was sent as its backlog, as the server's close does;
/// returns the offset of the last item it saw.
fn close(hub: &Arc<Hub>, t: &mut Tab) -> u64 {
    let backlog = backlog_of(&mut t.rx);
    let seen = backlog
        .iter()
        .rev()
        .find_map(decode_item)
        .expect("an offset");
    hub.detach(&t.conn, &t.socket, (backlog, 0), true);
    seen
}

fn decode_item(item: &Outgoing) -> Option<u64> {
    super::decode(item).1.and_then(|o| o.parse().ok())
}

/// `old` through the hand-over format into a new hub.
fn restart(old: &Hub) -> (Arc<Hub>, crate::hub::Restored) {
    let (members, skipped) = old.handover_members(&mut Vec::new());
    assert_eq!(skipped, 0);
    let state = State {
        offset: old.offset(),
        members,
        ..State::default()
    };
    let state = decode(&state.encode().unwrap()).unwrap();
    let new = hub();
    let restored = new.restore(&state.members, state.offset);
    (new, restored)
}

#[tokio::test(start_paused = true)]
async fn sessions_come_back_in_another_hub_with_no_churn() {
    let old = hub();
    let mut bob = tab(&old, Some("bob"));
    let alice = tab(&old, None);
    old.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    old.subscribe(&alice.conn, "chat", Value::Null).unwrap();
    publish(&old, "chat", 1);
    let bob_seen = close(&old, &mut bob);
    // Alice never took message 2: it stays in her backlog for the replay.
    publish(&old, "chat", 2);
    let alice_seen = {
        let mut v = Vec::new();
        alice.rx.take(2, &mut v);
        let seen = decode_item(v.last().unwrap()).unwrap();
        let mut rest = Vec::new();
        alice.rx.take(usize::MAX, &mut rest);
        v.extend(rest);
        old.detach(&alice.conn, &alice.socket, (v.into(), 2), true);
        seen
    };

    let (new, restored) = restart(&old);
    assert_eq!(
        (restored.members, restored.sessions, restored.skipped),
        (2, 2, 0)
    );
    assert_eq!(new.count("chat"), 2);
    publish(&new, "chat", 3);

    let claim = new
        .claim(
            bob.socket.pid.as_ref().unwrap().as_str(),
            Some(bob_seen),
            Some("bob"),
        )
        .expect("bob's session");
    assert_eq!(claim.sid, bob.socket.sid, "the same socket id");
    let (s, mut bob_rx) = socket(64);
    new.attach(&s, Some(Arc::from("bob")), Some(claim));
    let claim = new
        .claim(
            alice.socket.pid.as_ref().unwrap().as_str(),
            Some(alice_seen),
            None,
        )
        .expect("alice's session");
    let (s, mut alice_rx) = socket(64);
    new.attach(&s, None, Some(claim));
    publish(&new, "chat", 4);

    let bob_got = received(&mut bob_rx);
    let alice_got = received(&mut alice_rx);
    assert_eq!(data(&bob_got), [json!(2), json!(3), json!(4)]);
    assert_eq!(data(&alice_got), [json!(2), json!(3), json!(4)]);
    assert!(commands(&bob_got).is_empty() && commands(&alice_got).is_empty());
    // Offsets go on from where the old hub stopped.
    let last = bob_got
        .last()
        .unwrap()
        .1
        .as_ref()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(last > old.offset());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(new.count("chat"), 2, "claimed sessions stay");
}

#[tokio::test(start_paused = true)]
async fn an_unclaimed_session_ends_when_its_grace_time_is_over() {
    let old = hub();
    let mut bob = tab(&old, Some("bob"));
    let mut carol = tab(&old, Some("carol"));
    old.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    old.subscribe(&carol.conn, "chat", Value::Null).unwrap();
    let bob_seen = close(&old, &mut bob);
    close(&old, &mut carol);
    // Carol had used 5 s of her 8 s before the restart.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (new, _) = restart(&old);
    let claim = new
        .claim(
            bob.socket.pid.as_ref().unwrap().as_str(),
            Some(bob_seen),
            Some("bob"),
        )
        .expect("bob's session");
    let (s, mut rx) = socket(64);
    new.attach(&s, Some(Arc::from("bob")), Some(claim));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(commands(&received(&mut rx)).is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received(&mut rx);
    assert_eq!(commands(&got), [("onUnsubscribe".to_owned(), 1)]);
    assert_eq!(got[0].0["identity"], "carol");
}

#[tokio::test(start_paused = true)]
async fn a_second_restart_passes_on_the_grace_time_still_left() {
    let old = hub();
    let mut carol = tab(&old, Some("carol"));
    old.subscribe(&carol.conn, "chat", Value::Null).unwrap();
    close(&old, &mut carol);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (new, _) = restart(&old);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (members, _) = new.handover_members(&mut Vec::new());
    let crate::handover::Connection::Detached { grace_left_ms, .. } =
        &members[0].sessions[0].connection
    else {
        panic!("detached expected");
    };
    assert_eq!(*grace_left_ms, 2_000);
}

/// A session handed over with its WebSocket open waits for its resume (the whole grace
/// time, should it fail), which replays what it never took and nothing else.
#[tokio::test(start_paused = true)]
async fn a_live_session_waits_for_its_resume_and_replays_its_queue() {
    let old = hub();
    let mut bob = tab(&old, Some("bob"));
    old.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    publish(&old, "chat", 1);
    close(&old, &mut bob);
    // Message 1 was written to the connection the hand-over keeps; message 2 came after.
    publish(&old, "chat", 2);
    let (mut members, _) = old.handover_members(&mut Vec::new());
    let crate::handover::Connection::Detached { kept, .. } = &members[0].sessions[0].connection
    else {
        panic!("detached expected");
    };
    let queued = kept.clone();
    members[0].sessions[0].connection = crate::handover::Connection::Live {
        transport: crate::handover::Transport::WebSocket {
            fd: 42,
            unread: bytes::Bytes::from_static(b"x"),
        },
        ping_due_ms: 0,
        queued,
    };
    let new = hub();
    let restored = new.restore(&members, old.offset());
    assert_eq!(restored.live.len(), 1);
    assert_eq!(restored.live[0].fd, 42);
    assert_eq!(&restored.live[0].unread[..], b"x");
    let pid = bob.socket.pid.as_ref().unwrap().as_str().to_owned();
    assert_eq!(restored.live[0].auth["pid"], pid.as_str());
    assert_eq!(restored.live[0].auth["sid"], bob.socket.sid.as_str());
    // The resume comes a moment later, not at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let claim = new
        .claim(&pid, None, Some("bob"))
        .expect("bob's session waits");
    let (s, mut rx) = socket(64);
    new.attach(&s, Some(Arc::from("bob")), Some(claim));
    assert_eq!(data(&received(&mut rx)), [json!(2)]);
}

/// A polling session parked at the hand-over goes over live under its Engine.IO sid: what
/// it took and never sent first, then what it never took and what came since, and the
/// packets its client posted meanwhile.
#[tokio::test(start_paused = true)]
async fn a_parked_polling_session_goes_over_under_its_sid() {
    use crate::handover::{Connection, Frame as StateFrame, Transport};
    let old = hub();
    let mut bob = tab(&old, Some("bob"));
    old.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    let engine = bob.socket.engine().clone();
    let taken = r#"42["message",{"taken":true}]"#;
    engine.park(vec![Frame::Text(taken.into())]);
    let posted = engineio::Packet::Message(r#"2["publish","chat",{}]"#.into());
    engine.add_parked(vec![posted]).unwrap();
    publish(&old, "chat", 1);
    close(&old, &mut bob);
    publish(&old, "chat", 2);
    let (members, skipped) = old.handover_members(&mut Vec::new());
    assert_eq!(skipped, 0);
    let s = &members[0].sessions[0];
    assert_eq!(s.sid, engine.id.as_str());
    let Connection::Live {
        transport: Transport::Polling { inbound },
        queued,
        ..
    } = &s.connection
    else {
        panic!("live on polling expected: {:?}", s.connection);
    };
    assert_eq!(
        inbound,
        &[StateFrame::Text(r#"42["publish","chat",{}]"#.into())]
    );
    // Then its own join, and messages 1 and 2.
    assert_eq!(queued.len(), 4);
    assert_eq!(queued[0].frames, [StateFrame::Text(taken.into())]);
    let state = State {
        offset: old.offset(),
        members,
        ..State::default()
    };
    let state = decode(&state.encode().unwrap()).unwrap();
    let new = hub();
    let restored = new.restore(&state.members, state.offset);
    assert!(restored.live.is_empty());
    assert_eq!(restored.polling.len(), 1);
    let p = &restored.polling[0];
    assert_eq!(p.sid, engine.id.as_str());
    assert_eq!(p.inbound.len(), 1);
    let pid = bob.socket.pid.as_ref().unwrap().as_str().to_owned();
    assert_eq!(p.auth["pid"], pid.as_str());
    assert_eq!(p.auth["sid"], bob.socket.sid.as_str());
    let claim = new
        .claim(&pid, None, Some("bob"))
        .expect("bob's session waits");
    let (s, rx) = socket(64);
    new.attach(&s, Some(Arc::from("bob")), Some(claim));
    let mut items = Vec::new();
    rx.take(usize::MAX, &mut items);
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].frames(), [Frame::Text(taken.into())]);
    assert_eq!(
        data(&items[2..].iter().map(super::decode).collect::<Vec<_>>()),
        [json!(1), json!(2)]
    );
}
