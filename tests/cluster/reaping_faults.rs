//! A dead node's reaper whose announcements could not reach the other nodes (Redis failed
//! just after the reaping call, then lost its data): every node's members hear each leave
//! once, and the monitor once cluster-wide.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use realtime::cluster::Bus;

use crate::scale::{Held, start, start_at};
use crate::support::redis::*;
use crate::support::wait::*;

const PEOPLE: [&str; 3] = ["@ann", "@bob", "@cyd"];

/// A Redis user for one node, so that the test can cut it off or take rights from it.
fn user(redis: &Redis, name: &str) -> String {
    let args: [&[u8]; 8] = [
        b"ACL",
        b"SETUSER",
        name.as_bytes(),
        b"on",
        b">secret",
        b"~*",
        b"&*",
        b"+@all",
    ];
    redis.command(&args);
    redis
        .url()
        .replace("redis://", &format!("redis://{name}:secret@"))
}

fn leaves_heard(held: &Held) -> usize {
    let all = held.delivered.lock().unwrap();
    all.iter().filter(|(c, _, _)| c == "onUnsubscribe").count()
}

#[test]
fn leaves_a_reaper_could_not_publish_before_redis_lost_its_data_are_told_once() {
    let mut redis = Redis::start();
    let (a_url, c_url) = (user(&redis, "nodea"), user(&redis, "nodec"));
    let (a_held, c_held) = (Arc::new(Held::default()), Arc::new(Held::default()));
    let (_ra, a) = start_at(&a_url, "a", a_held.clone());
    let (_rc, c) = start_at(&c_url, "c", c_held.clone());
    wait_until(Duration::from_secs(30), "the survivors to join", || {
        a.is_up() && c.is_up()
    });
    a.watch("room", true);
    c.watch("room", true);
    wait_until(Duration::from_secs(10), "both to watch the room", || {
        let Resp::Array(Some(n)) = redis.command(&[b"PUBSUB", b"NUMSUB", b"realtime:m:room"])
        else {
            return false;
        };
        n.get(1) == Some(&Resp::Int(2))
    });
    let doomed = Arc::new(Held::default());
    doomed.snapshot.lock().unwrap().subscriptions = PEOPLE
        .iter()
        .map(|p| ("room".to_owned(), (*p).to_owned()))
        .collect();
    let (rd, d) = start(&redis, "d", doomed);
    wait_until(
        Duration::from_secs(30),
        "the survivors to hear them join",
        || {
            d.is_up()
                && [&a_held, &c_held]
                    .iter()
                    .all(|h| h.delivered.lock().unwrap().len() == PEOPLE.len())
        },
    );

    // C is away; A reaps the dead node but may not publish what it announces.
    redis.command(&[b"ACL", b"SETUSER", b"nodec", b"off"]);
    redis.command(&[b"CLIENT", b"KILL", b"USER", b"nodec"]);
    wait_until(Duration::from_secs(10), "C to see Redis gone", || {
        !c.is_up()
    });
    redis.command(&[b"ACL", b"SETUSER", b"nodea", b"-publish"]);
    rd.shutdown_background();
    wait_until(Duration::from_secs(30), "A to reap the dead node", || {
        a_held.observed_leaves.load(Ordering::SeqCst) == PEOPLE.len()
    });
    // Then Redis restarts empty: A comes back first, C after.
    redis.stop();
    redis.restart();
    user(&redis, "nodea");
    // Up once its resync is done.
    wait_until(Duration::from_secs(30), "A back", || a.is_up());
    user(&redis, "nodec");
    wait_until(
        Duration::from_secs(30),
        "C's members to hear them leave",
        || c.is_up() && c_held.left_count() == PEOPLE.len(),
    );
    // Anything later checks would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(c_held.left_count(), PEOPLE.len(), "C's members, once each");
    assert_eq!(leaves_heard(&a_held), 0, "A's members heard it from A");
    assert_eq!(leaves_heard(&c_held), 0, "nothing from the bus besides");
    let observed = a_held.observed_leaves.load(Ordering::SeqCst)
        + c_held.observed_leaves.load(Ordering::SeqCst);
    assert_eq!(
        observed,
        PEOPLE.len(),
        "the monitor once each, cluster-wide"
    );
}
