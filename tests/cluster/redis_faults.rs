//! Redis failing at the worst moment, with an in-process node over real `redis-server`:
//! every membership change is announced exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use realtime::cluster::{Membership, Presence};
use serde_json::Value;

use crate::scale::{Held, int, start};
use crate::support::redis::*;
use crate::support::wait::*;

#[test]
fn a_change_queued_during_a_resync_is_announced_to_this_nodes_members_too() {
    let mut redis = Redis::start();
    let held = Arc::new(Held::default());
    let (_rt, cluster) = start(&redis, "a", held.clone());
    wait_until(Duration::from_secs(30), "the node to join", || {
        cluster.is_up()
    });
    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "the node to see Redis gone",
        || !cluster.is_up(),
    );
    // Just as the resync reads the hub, a member subscribes: the hub holds it and its
    // op waits in the queue.
    let node = cluster.clone();
    *held.hook.lock().unwrap() = Some(Box::new(move |snap| {
        snap.subscriptions
            .push(("late".to_owned(), "@newbie".to_owned()));
        let _ = node.join("late", "@newbie", &Value::Null);
    }));
    redis.restart();
    wait_until(Duration::from_secs(30), "newbie written back", || {
        cluster.is_up() && int(&redis, &["HLEN", "realtime:ch:late"]) == 1
    });
    wait_until(Duration::from_secs(10), "newbie's onSubscribe", || {
        !held.told.lock().unwrap().is_empty()
    });
    // Anything the next heartbeats would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    let told = held.told.lock().unwrap().clone();
    let once = (
        true,
        Membership::Subscribe,
        "late".to_owned(),
        "newbie".to_owned(),
    );
    assert_eq!(
        told,
        vec![once],
        "told to this node's members and the monitor, once"
    );
}
