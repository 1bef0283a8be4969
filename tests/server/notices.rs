//! Membership notices limited by `[Messaging] quiet-channels` and `notices-max-members`:
//! members of a quiet or crowded channel hear no joins, the monitor hears every one.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// The events (Socket.IO `2[...]`) a member receives until `messages` published ones came,
/// as (type or command, channel).
async fn events_until(ws: &mut Ws, messages: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut seen = 0;
    while seen < messages {
        let p = next_sio(ws).await.expect("socket closed");
        let Some(json) = p.strip_prefix('2') else {
            continue;
        };
        let v: Value = serde_json::from_str(json).unwrap();
        let env = &v[1];
        let what = match env["data"]["command"].as_str() {
            Some(c) => c.to_owned(),
            None => {
                seen += 1;
                env["type"].as_str().unwrap().to_owned()
            }
        };
        got.push((what, env["channel"].as_str().unwrap().to_owned()));
    }
    got
}

async fn subscribe(ws: &mut Ws, channels: &[&str]) {
    for (i, ch) in channels.iter().enumerate() {
        send(ws, &format!(r#"42{i}["subscribe","{ch}"]"#)).await;
        next_ack(ws).await;
    }
}

#[tokio::test]
async fn quiet_and_crowded_channels_tell_no_member_but_the_monitor() {
    let hook = Endpoint::start(Behaviour::Accept);
    let server = Server::start(&format!(
        "[Messaging]\nquiet-channels = quiet.*\nnotices-max-members = 2\n\
         [Monitor]\nurl = {}\n",
        hook.url("/")
    ));
    let mut alice = sio_connect(server.port, r#"{"identity":"alice"}"#).await;
    subscribe(&mut alice, &["quiet.x", "loud"]).await;
    let mut bob = sio_connect(server.port, r#"{"identity":"bob"}"#).await;
    subscribe(&mut bob, &["quiet.x", "loud"]).await;
    // The third member of `loud` is past the limit of two.
    let mut carol = sio_connect(server.port, r#"{"identity":"carol"}"#).await;
    subscribe(&mut carol, &["loud"]).await;
    // Published after every join: a notice, had there been one, would come before these.
    for (i, ch) in ["quiet.x", "loud"].iter().enumerate() {
        send(&mut bob, &format!(r#"42{i}["publish","{ch}",{{"n":{i}}}]"#)).await;
        next_ack(&mut bob).await;
    }
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        events_until(&mut alice, 2).await,
        [
            s("onSubscribe", "loud"), // bob's: two members
            s("message", "quiet.x"),
            s("message", "loud"),
        ]
    );
    let hits = hook.wait_for(5, Duration::from_secs(10));
    let mut heard: Vec<_> = hits
        .iter()
        .map(|h| {
            let (what, channel, identity) = summary(&h.json());
            format!(
                "{what} {} {}",
                channel.as_str().unwrap(),
                identity.as_str().unwrap()
            )
        })
        .collect();
    heard.sort();
    assert_eq!(
        heard,
        [
            "onSubscribe loud alice",
            "onSubscribe loud bob",
            "onSubscribe loud carol",
            "onSubscribe quiet.x alice",
            "onSubscribe quiet.x bob",
        ]
    );
}
