//! What a client publishes arrives as it was sent: arbitrary JSON documents through the
//! Socket.IO events, the 2012 envelope (object and JSON-string forms), the grace window and
//! connection state recovery reach the subscriber with every number's text kept.

use proptest::prelude::*;

use super::*;
use crate::hub::request::{Request, parse_event};
use crate::json_doc::{Doc, doc};
use crate::socketio::Packet;

/// Carries out the publish a client sends as the Socket.IO packet `text`.
fn publish_event(hub: &Hub, text: &str, legacy_ready: bool) {
    let packet = Packet::decode(text).unwrap();
    let Some(Value::Array(mut all)) = packet.data else {
        panic!("not an event: {text}")
    };
    let Value::String(name) = all.remove(0) else {
        panic!("no event name: {text}")
    };
    let parsed = parse_event(&name, all, legacy_ready, hub.config());
    let Ok(Request::Publish(p)) = parsed.request else {
        panic!("not a publication: {:?}", parsed.request)
    };
    hub.submit(p, None, Vec::new());
}

fn paused(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(test);
}

/// What a subscriber of `c` receives when `publish` runs: the `data` of messages and the
/// `options` of commands.
fn heard(publish: impl FnOnce(&Hub)) -> Vec<Value> {
    let hub = hub();
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    received(&mut t.rx);
    publish(&hub);
    received(&mut t.rx)
        .into_iter()
        .map(|(e, _)| match e["type"].as_str() {
            Some("command") => e["data"]["options"].clone(),
            _ => e["data"].clone(),
        })
        .collect()
}

fn check(d: &Doc, got: &[Value]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), 1, "{:?}", got);
    prop_assert!(d.is(&got[0]), "sent {}\ngot  {}", d.text(), got[0]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn socketio_publish_and_command_keep_the_payload(d in doc()) {
        let text = d.text();
        let mut result = Ok(());
        paused(async {
            let got = heard(|hub| publish_event(hub, &format!(r#"2["publish","c",{text}]"#), false));
            result = check(&d, &got);
            if result.is_ok() {
                let got = heard(|hub| {
                    publish_event(hub, &format!(r#"2["command","c","poke",{text}]"#), false)
                });
                result = check(&d, &got);
            }
        });
        result?;
    }

    #[test]
    fn the_2012_envelope_keeps_the_payload_as_object_and_as_string(
        // A 2012 message without data is refused, as the original server did.
        d in doc().prop_filter("data", |d| !matches!(d, Doc::Null))
    ) {
        let envelope = format!(r#"{{"type":"message","channel":"c","data":{}}}"#, d.text());
        let as_string = serde_json::to_string(&envelope).unwrap();
        let command = format!(
            r#"{{"type":"command","channel":"c","data":{{"command":"poke","options":{}}}}}"#,
            d.text()
        );
        let mut result = Ok(());
        paused(async {
            for arg in [&envelope, &as_string, &command] {
                let got = heard(|hub| publish_event(hub, &format!(r#"2["message",{arg}]"#), true));
                result = check(&d, &got);
                if result.is_err() {
                    break;
                }
            }
        });
        result?;
    }

    #[test]
    fn the_grace_window_and_recovery_replay_the_payload(d in doc()) {
        let event = format!(r#"2["publish","c",{}]"#, d.text());
        let mut result = Ok(());
        paused(async {
            // Grace: the identity's tab reloads; what was published meanwhile is replayed.
            let hub = hub();
            let alice = tab(&hub, Some("alice"));
            hub.subscribe(&alice.conn, "c", Value::Null).unwrap();
            hub.detach(&alice.conn, &alice.socket, (VecDeque::new(), 0), true);
            publish_event(&hub, &event, false);
            let mut again = tab(&hub, Some("alice"));
            result = check(&d, &data(&received(&mut again.rx)));
            if result.is_err() {
                return;
            }
            // Recovery: an anonymous connection comes back with the offset it saw last.
            let mut t = tab(&hub, None);
            hub.subscribe(&t.conn, "c", Value::Null).unwrap();
            publish(&hub, "c", 1);
            let backlog = backlog_of(&mut t.rx);
            let seen: u64 = decode(backlog.back().unwrap()).1.unwrap().parse().unwrap();
            hub.detach(&t.conn, &t.socket, (backlog, 0), true);
            publish_event(&hub, &event, false);
            let pid = t.socket.pid.clone().unwrap();
            let claim = hub.claim(pid.as_str(), Some(seen), None).expect("recoverable");
            let (socket, mut rx) = socket(64);
            let _conn = hub.attach(&socket, None, Some(claim));
            result = check(&d, &data(&received(&mut rx)));
        });
        result?;
    }
}
