//! The hand-over state format: round trips, and refusals of what cannot be read.

use bytes::Bytes;
use proptest::prelude::*;

use super::state::{CHECK, HEADER, check};
use super::*;

pub(super) fn item(tag: u64, text: &str) -> Item {
    Item {
        tag,
        frames: vec![Frame::Text(text.into())],
    }
}

/// The state `fixtures/state-v1.bin` holds (written by the version 1 encoder), as this
/// build reads it: no write time, no posted packets.
pub(super) fn full_v1() -> State {
    State {
        written_ms: 0,
        node_id: Some("node-a-17-0a0b0c".into()),
        offset: 41,
        monitor: vec![Bytes::from_static(
            br#"{"event":"subscribe","channel":"c"}"#,
        )],
        members: vec![
            MemberState {
                key: "i:alice".into(),
                identity: Some("alice".into()),
                channels: vec!["c".into(), "d".into()],
                sessions: vec![
                    SessionState {
                        sid: "AAAAAAAAAAAAAAAAAAAA".into(),
                        socket: Some(SocketState {
                            id: "sock1".into(),
                            pid: Some("pid1".into()),
                        }),
                        connection: Connection::Live {
                            transport: Transport::WebSocket {
                                fd: 3,
                                unread: Bytes::from_static(&[0x81, 0x85, 1, 2]),
                            },
                            ping_due_ms: 12_345,
                            queued: vec![
                                // Numbers as written, past what an f64 holds exactly.
                                item(
                                    40,
                                    r#"42["message",{"n":12345678901234567890123,"f":0.10000000000000000001}]"#,
                                ),
                                Item {
                                    tag: 41,
                                    frames: vec![
                                        Frame::Text(
                                            r#"451-["message",{"_placeholder":true,"num":0}]"#
                                                .into(),
                                        ),
                                        Frame::Binary(Bytes::from_static(&[0, 255, 7])),
                                    ],
                                },
                            ],
                        },
                    },
                    SessionState {
                        sid: "BBBBBBBBBBBBBBBBBBBB".into(),
                        socket: Some(SocketState {
                            id: "sock2".into(),
                            pid: None,
                        }),
                        connection: Connection::Live {
                            transport: Transport::Polling { inbound: vec![] },
                            ping_due_ms: 0,
                            queued: vec![],
                        },
                    },
                ],
            },
            MemberState {
                key: "s:CCCC".into(),
                identity: None,
                channels: vec!["c".into()],
                sessions: vec![SessionState {
                    sid: "CCCCCCCCCCCCCCCCCCCC".into(),
                    socket: None,
                    connection: Connection::Detached {
                        grace_left_ms: 7_500,
                        backlog: vec![item(38, "42[1]"), item(39, "42[2]")],
                        unsent: 1,
                        kept: vec![item(40, "42[3]")],
                        overflowed: true,
                    },
                }],
            },
        ],
    }
}

/// A state with every field set, each kind of connection and transport present, and
/// items shared between sessions (a broadcast queued for several).
fn full() -> State {
    let mut state = full_v1();
    state.written_ms = 987_654_321;
    let shared = item(40, "42[3]");
    let polling = &mut state.members[0].sessions[1].connection;
    let Connection::Live {
        transport, queued, ..
    } = polling
    else {
        unreachable!("the second session polls");
    };
    *transport = Transport::Polling {
        inbound: vec![
            Frame::Text(r#"42["publish",{"n":1}]"#.into()),
            Frame::Text("3".into()),
            Frame::Binary(Bytes::from_static(&[9, 8])),
        ],
    };
    *queued = vec![shared.clone(), item(0, "40")];
    state
}

#[test]
fn a_version_1_state_is_read() {
    let v1 = include_bytes!("fixtures/state-v1.bin");
    assert_eq!(u16::from_le_bytes([v1[4], v1[5]]), 1);
    assert_eq!(decode(v1).unwrap(), full_v1());
}

#[test]
fn an_index_past_the_table_is_corrupt() {
    let mut b = Vec::new();
    let u32 = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // written
    b.push(0); // no node id
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    u32(&mut b, 0); // no monitor event
    u32(&mut b, 0); // the table, empty
    u32(&mut b, 1); // one member: key "k", no identity, no channel, one session
    u32(&mut b, 1);
    b.push(b'k');
    b.push(0);
    u32(&mut b, 0);
    u32(&mut b, 1);
    u32(&mut b, 1); // sid "s", no socket, live, polling, nothing posted
    b.push(b's');
    b.extend_from_slice(&[0, 0, 0]);
    u32(&mut b, 0);
    b.extend_from_slice(&0u64.to_le_bytes()); // ping due
    u32(&mut b, 1); // one queued item, at index 0: past the empty table
    u32(&mut b, 0);
    assert_eq!(
        decode(&framed(VERSION, &b)),
        Err(DecodeError::Corrupt("an item index past the table"))
    );
}

#[test]
fn the_restart_time_comes_off_the_grace_windows() {
    let mut state = full();
    let Some(now) = super::state::boot_ms() else {
        return;
    };
    state.written_ms = now - 5_000;
    let age = state.subtract_age();
    assert!(age >= std::time::Duration::from_secs(5), "{age:?}");
    let Connection::Detached { grace_left_ms, .. } = state.members[1].sessions[0].connection else {
        panic!("detached session expected");
    };
    assert!(grace_left_ms <= 2_500, "{grace_left_ms}");
    // Longer than the window: nothing left, not a wrap.
    state.written_ms = now - 60_000;
    state.subtract_age();
    let Connection::Detached { grace_left_ms, .. } = state.members[1].sessions[0].connection else {
        panic!("detached session expected");
    };
    assert_eq!(grace_left_ms, 0);
    // Unknown (a version 1 state): nothing taken off.
    let mut v1 = full_v1();
    assert_eq!(v1.subtract_age(), std::time::Duration::ZERO);
    assert_eq!(v1, full_v1());
}

#[test]
fn every_field_round_trips() {
    let state = full();
    let bytes = state.encode().unwrap();
    assert_eq!(decode(&bytes).unwrap(), state);
    let empty = State::default();
    assert_eq!(decode(&empty.encode().unwrap()).unwrap(), empty);
}

#[test]
fn payload_bytes_are_kept_as_written() {
    let bytes = full().encode().unwrap();
    let back = decode(&bytes).unwrap();
    let Connection::Live { queued, .. } = &back.members[0].sessions[0].connection else {
        panic!("live session expected");
    };
    assert_eq!(
        queued[0].frames[0],
        Frame::Text(
            r#"42["message",{"n":12345678901234567890123,"f":0.10000000000000000001}]"#.into()
        )
    );
}

#[test]
fn another_version_is_refused_by_number() {
    let mut bytes = full().encode().unwrap();
    bytes[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
    assert_eq!(decode(&bytes), Err(DecodeError::Version(VERSION + 1)));
}

#[test]
fn truncation_at_any_point_is_refused() {
    let bytes = full().encode().unwrap();
    for n in 0..bytes.len() {
        let err = decode(&bytes[..n]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { .. } | DecodeError::Magic),
            "{n}: {err}"
        );
    }
}

#[test]
fn a_flipped_bit_is_refused() {
    let bytes = full().encode().unwrap();
    for i in HEADER..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        assert!(decode(&bad).is_err(), "byte {i}");
    }
}

#[test]
fn too_large_is_refused_before_reading() {
    let mut bytes = full().encode().unwrap();
    bytes[8..16].copy_from_slice(&(MAX_STATE as u64).to_le_bytes());
    assert!(matches!(decode(&bytes), Err(DecodeError::TooLarge(_))));
}

#[test]
fn the_errors_name_why() {
    assert_eq!(
        decode(b"").unwrap_err().to_string(),
        "not a hand-over state (bad magic)"
    );
    let mut bytes = full().encode().unwrap();
    bytes[4..6].copy_from_slice(&9u16.to_le_bytes());
    assert_eq!(
        decode(&bytes).unwrap_err().to_string(),
        format!("state format version 9, this build reads versions 1 and {VERSION}")
    );
}

/// A body the checksum accepts but the structure does not: a list count far past the end.
#[test]
fn a_checked_body_with_a_bad_count_is_corrupt_not_a_panic() {
    let mut body = 0u64.to_le_bytes().to_vec(); // written
    body.push(0); // no node id
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes()); // the table
    let data = framed(VERSION, &body);
    assert_eq!(data.len(), HEADER + body.len() + CHECK);
    assert!(matches!(decode(&data), Err(DecodeError::Corrupt(_))));
    // Version 1 had no write time and no table: the count is the members'.
    let data = framed(1, &body[8..]);
    assert!(matches!(decode(&data), Err(DecodeError::Corrupt(_))));
}

/// Wraps a body in a valid header and check, so the fuzzing reaches the body's reader.
fn framed(version: u16, body: &[u8]) -> Vec<u8> {
    let mut data = b"RTHS".to_vec();
    data.extend_from_slice(&version.to_le_bytes());
    data.extend_from_slice(&0u16.to_le_bytes());
    data.extend_from_slice(&(body.len() as u64).to_le_bytes());
    data.extend_from_slice(body);
    let sum = check(&data);
    data.extend_from_slice(&sum);
    data
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&data);
    }

    #[test]
    fn arbitrary_checked_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        version in 1u16..=VERSION,
    ) {
        let _ = decode(&framed(version, &body));
    }

    #[test]
    fn mutated_states_never_panic(
        i in any::<prop::sample::Index>(),
        v in any::<u8>(),
        v1 in any::<bool>(),
    ) {
        let mut data = if v1 {
            include_bytes!("fixtures/state-v1.bin").to_vec()
        } else {
            full().encode().unwrap()
        };
        let i = i.index(data.len());
        data[i] = v;
        // Re-checked, so the mutation reaches the body's reader.
        let end = data.len() - CHECK;
        let sum = check(&data[..end]);
        data[end..].copy_from_slice(&sum);
        let _ = decode(&data);
    }

    #[test]
    fn arbitrary_states_round_trip(
        node in proptest::option::of("[a-z0-9-]{0,12}"),
        offset in any::<u64>(),
        texts in proptest::collection::vec("\\PC{0,16}", 0..6),
        bins in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..4),
        grace in any::<u64>(),
        written in any::<u64>(),
        unread in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let items: Vec<Item> = texts.iter().enumerate().map(|(i, t)| Item {
            tag: i as u64,
            frames: vec![Frame::Text(t.as_str().into())],
        }).chain(bins.iter().map(|b| Item { tag: 0, frames: vec![Frame::Binary(Bytes::from(b.clone()))] })).collect();
        let inbound: Vec<Frame> = items.iter().flat_map(|i| i.frames.clone()).collect();
        let state = State {
            written_ms: written,
            node_id: node,
            offset,
            monitor: bins.iter().map(|b| Bytes::from(b.clone())).collect(),
            members: vec![MemberState {
                key: "k".into(),
                identity: texts.first().cloned(),
                channels: texts.clone(),
                sessions: vec![
                    SessionState {
                        sid: "s1".into(),
                        socket: None,
                        connection: Connection::Live {
                            transport: Transport::WebSocket { fd: 0, unread: Bytes::from(unread) },
                            ping_due_ms: grace,
                            queued: items.clone(),
                        },
                    },
                    SessionState {
                        sid: "s3".into(),
                        socket: Some(SocketState { id: "y".into(), pid: None }),
                        connection: Connection::Live {
                            transport: Transport::Polling { inbound },
                            ping_due_ms: grace,
                            queued: items.iter().rev().cloned().collect(),
                        },
                    },
                    SessionState {
                        sid: "s2".into(),
                        socket: Some(SocketState { id: "x".into(), pid: Some("p".into()) }),
                        connection: Connection::Detached {
                            grace_left_ms: grace,
                            backlog: items.clone(),
                            unsent: items.len() as u32,
                            kept: items,
                            overflowed: false,
                        },
                    },
                ],
            }],
        };
        prop_assert_eq!(decode(&state.encode().unwrap()).unwrap(), state);
    }
}

#[test]
fn the_environment_names_the_descriptors_for_this_pid_only() {
    let named = super::pass::parse("pid:42;state:7;http:3,4;flash:5", 42).unwrap();
    assert_eq!(named.state, Some(7));
    assert_eq!(named.http, vec![3, 4]);
    assert_eq!(named.flash, vec![5]);
    assert_eq!(
        super::pass::parse("pid:41;state:7;http:3;flash:", 42).unwrap_err(),
        "meant for process 41, this is 42"
    );
    for bad in [
        "state:7",
        "pid:42;http:1",
        "pid:42;http:x",
        "pid:42;tty:3",
        "pid:42;http",
        "pid:42;state:3;http:3",
        "pid:42;http:4,4",
    ] {
        assert!(super::pass::parse(bad, 42).is_err(), "{bad}");
    }
}

#[test]
fn the_state_travels_in_a_sealed_memfd() {
    use std::io::Write;
    let bytes = full().encode().unwrap();
    let fd = super::pass::seal(&bytes).unwrap();
    // Sealed: nothing can change it any more.
    let mut file = std::fs::File::from(fd.try_clone().unwrap());
    assert!(file.write_all(b"x").is_err());
    assert_eq!(decode(&super::pass::read(fd).unwrap()).unwrap(), full());
    // A descriptor that is not a sealed memfd is refused.
    let plain = std::fs::File::open("/dev/null").unwrap();
    assert!(super::pass::read(plain.into()).is_err());
}

/// A socket named by the state is taken once, and only if it is a client's connection: a
/// listener named by mistake stays open with its owner.
#[test]
fn only_a_connected_socket_is_adopted_and_only_once() {
    use std::os::fd::{AsRawFd, IntoRawFd};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let lfd = u32::try_from(listener.as_raw_fd()).unwrap();
    assert!(adopt_socket(lfd).is_err());
    assert!(listener.local_addr().is_ok(), "the listener is still open");
    let (accepted, _) = listener.accept().unwrap();
    let afd = accepted.into_raw_fd();
    let owned = adopt_socket(u32::try_from(afd).unwrap()).expect("a connected socket");
    assert!(
        adopt_socket(u32::try_from(afd).unwrap()).is_err(),
        "named twice"
    );
    drop(owned);
    drop(client);
}
