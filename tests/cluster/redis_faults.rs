//! Redis failing at the worst moment, with an in-process node over real `redis-server`:
//! every membership change is announced exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use realtime::cluster::{Bus, Membership, Presence, RedisCluster, Settle};
use serde_json::Value;

use crate::scale::{Held, int, start, start_at};
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

/// Waits for the cluster's answer to a join or leave.
fn settled(settle: Settle) -> usize {
    match settle {
        Settle::Later(rx) => rx.blocking_recv().unwrap(),
        Settle::Here => panic!("a cluster node decides later"),
    }
}

#[test]
fn no_duplicate_on_subscribe_while_redis_is_away() {
    let mut redis = Redis::start();
    let (a_held, b_held) = (Arc::new(Held::default()), Arc::new(Held::default()));
    let (_ra, a) = start(&redis, "a", a_held.clone());
    let (_rb, b) = start(&redis, "b", b_held.clone());
    wait_until(Duration::from_secs(30), "both nodes to join", || {
        a.is_up() && b.is_up()
    });
    // A has members in the room; xena joins it on B, and A's members hear it.
    a.watch("room", true);
    listeners(&redis, 1);
    assert_eq!(settled(b.join("room", "@xena", &Value::Null)), 1);
    let heard = (
        "onSubscribe".to_owned(),
        "room".to_owned(),
        "xena".to_owned(),
    );
    wait_until(Duration::from_secs(10), "A to hear xena join", || {
        a_held.delivered.lock().unwrap().contains(&heard)
    });

    redis.stop();
    wait_until(Duration::from_secs(10), "A to see Redis gone", || {
        !a.is_up()
    });
    // A tab of xena on A joins the room and leaves it while Redis is away: she was in it
    // on B all along, so A's members hear nothing.
    settled(a.join("room", "@xena", &Value::Null));
    settled(a.leave("room", "@xena", &Value::Null, false));
    let told = a_held.told.lock().unwrap().clone();
    assert_eq!(told, Vec::new(), "xena was in the room on B all along");
}

/// Waits until `n` connections listen to the room's topic.
fn listeners(redis: &Redis, n: i64) {
    wait_until(
        Duration::from_secs(10),
        "the nodes to watch the room",
        || {
            let Resp::Array(Some(got)) = redis.command(&[b"PUBSUB", b"NUMSUB", b"realtime:m:room"])
            else {
                return false;
            };
            got.get(1) == Some(&Resp::Int(n))
        },
    );
}

fn heard(held: &Held, command: &str) -> usize {
    let all = held.delivered.lock().unwrap();
    all.iter()
        .filter(|(c, ch, who)| c == command && ch == "room" && who == "xena")
        .count()
}

#[test]
fn an_unsubscribe_settled_while_redis_was_away_takes_the_identity_out_everywhere() {
    let mut redis = Redis::start();
    let (a_held, b_held) = (Arc::new(Held::default()), Arc::new(Held::default()));
    let (_ra, a) = start(&redis, "a", a_held.clone());
    let (_rb, b) = start(&redis, "b", b_held.clone());
    wait_until(Duration::from_secs(30), "both nodes to join", || {
        a.is_up() && b.is_up()
    });
    a.watch("room", true);
    b.watch("room", true);
    listeners(&redis, 2);
    // xena is in the room with a tab on each node.
    assert_eq!(settled(b.join("room", "@xena", &Value::Null)), 1);
    assert_eq!(settled(a.join("room", "@xena", &Value::Null)), 1);
    let xena = ("room".to_owned(), "@xena".to_owned());
    b_held.snapshot.lock().unwrap().subscriptions.push(xena);

    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "the nodes to see Redis gone",
        || !a.is_up() && !b.is_up(),
    );
    // She unsubscribes on A while Redis is away; B still holds her when it comes back.
    settled(a.leave("room", "@xena", &Value::Null, true));
    redis.restart();
    wait_until(
        Duration::from_secs(30),
        "xena out of the room everywhere",
        || a.is_up() && b.is_up() && int(&redis, &["HLEN", "realtime:ch:room"]) == 0,
    );
    wait_until(Duration::from_secs(10), "B told to drop her tabs", || {
        !b_held.dropped.lock().unwrap().is_empty()
    });
    // Anything the next heartbeats would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(int(&redis, &["HLEN", "realtime:ch:room"]), 0);
    let dropped = b_held.dropped.lock().unwrap().clone();
    assert_eq!(dropped, vec![("@xena".to_owned(), "room".to_owned())]);
    assert_eq!(
        heard(&b_held, "onUnsubscribe"),
        1,
        "B's members hear it once"
    );
    let a_told = a_held.told.lock().unwrap().clone();
    let left = |local| {
        (
            local,
            Membership::Unsubscribe,
            "room".to_owned(),
            "xena".to_owned(),
        )
    };
    assert_eq!(
        a_told,
        vec![left(true), left(false)],
        "A's members when it happened, the monitor once Redis was back"
    );
    let joined = (
        true,
        Membership::Subscribe,
        "room".to_owned(),
        "xena".to_owned(),
    );
    assert_eq!(*b_held.told.lock().unwrap(), vec![joined]);
}

#[test]
fn a_node_killed_while_redis_restarts_empty_is_still_reaped_with_its_members_events() {
    let mut redis = Redis::start();
    let (a_held, b_held) = (Arc::new(Held::default()), Arc::new(Held::default()));
    let (_ra, a) = start(&redis, "a", a_held.clone());
    let (rb, b) = start(&redis, "b", b_held.clone());
    wait_until(Duration::from_secs(30), "both nodes to join", || {
        a.is_up() && b.is_up()
    });
    a.watch("room", true);
    listeners(&redis, 1);
    // xena is in the room on B only; A's members heard her join.
    assert_eq!(settled(b.join("room", "@xena", &Value::Null)), 1);
    wait_until(Duration::from_secs(10), "A to hear xena join", || {
        heard(&a_held, "onSubscribe") == 1
    });

    redis.stop();
    rb.shutdown_background();
    redis.restart();
    wait_until(Duration::from_secs(30), "xena's onUnsubscribe on A", || {
        !a_held.told.lock().unwrap().is_empty()
    });
    // Anything the next heartbeats would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    let left = (
        true,
        Membership::Unsubscribe,
        "room".to_owned(),
        "xena".to_owned(),
    );
    assert_eq!(
        *a_held.told.lock().unwrap(),
        vec![left],
        "once, to A's members and the monitor"
    );
}

/// Two nodes watching the room, A reaching Redis as a user of its own so that it alone
/// can be cut off ([`cut_off`]).
struct Pair {
    redis: Redis,
    a: Arc<RedisCluster>,
    b: Arc<RedisCluster>,
    a_held: Arc<Held>,
    b_held: Arc<Held>,
    _runtimes: [tokio::runtime::Runtime; 2],
}

impl Pair {
    fn start() -> Pair {
        let redis = Redis::start();
        let user: [&[u8]; 8] = [
            b"ACL", b"SETUSER", b"nodea", b"on", b">secret", b"~*", b"&*", b"+@all",
        ];
        redis.command(&user);
        let url_a = redis.url().replace("redis://", "redis://nodea:secret@");
        let (a_held, b_held) = (Arc::new(Held::default()), Arc::new(Held::default()));
        let (ra, a) = start_at(&url_a, "a", a_held.clone());
        let (rb, b) = start(&redis, "b", b_held.clone());
        wait_until(Duration::from_secs(30), "both nodes to join", || {
            a.is_up() && b.is_up()
        });
        a.watch("room", true);
        b.watch("room", true);
        listeners(&redis, 2);
        Pair {
            redis,
            a,
            b,
            a_held,
            b_held,
            _runtimes: [ra, rb],
        }
    }

    /// A loses Redis; B keeps it.
    fn cut_off(&self) {
        self.redis.command(&[b"ACL", b"SETUSER", b"nodea", b"off"]);
        self.redis.command(&[b"CLIENT", b"KILL", b"USER", b"nodea"]);
        wait_until(Duration::from_secs(10), "A to see Redis gone", || {
            !self.a.is_up()
        });
    }

    fn reconnect(&self) {
        self.redis.command(&[b"ACL", b"SETUSER", b"nodea", b"on"]);
    }
}

#[test]
fn a_node_back_after_an_identity_unsubscribed_elsewhere_does_not_re_add_it() {
    let pair = Pair::start();
    let Pair {
        redis,
        a,
        b,
        a_held,
        b_held,
        ..
    } = &pair;
    // xena is in the room with a tab on each node.
    assert_eq!(settled(a.join("room", "@xena", &Value::Null)), 1);
    assert_eq!(settled(b.join("room", "@xena", &Value::Null)), 1);
    let xena = ("room".to_owned(), "@xena".to_owned());
    for held in [&a_held, &b_held] {
        held.snapshot
            .lock()
            .unwrap()
            .subscriptions
            .push(xena.clone());
    }
    let a_told = a_held.told.lock().unwrap().len();
    let b_heard_joins = heard(b_held, "onSubscribe");

    pair.cut_off();
    // Meanwhile she unsubscribes on B: out on every node, and A misses the word.
    b_held.snapshot.lock().unwrap().subscriptions.clear();
    assert_eq!(settled(b.leave("room", "@xena", &Value::Null, true)), 0);
    pair.reconnect();
    wait_until(
        Duration::from_secs(30),
        "A back, told to drop her tabs",
        || a.is_up() && !a_held.dropped.lock().unwrap().is_empty(),
    );
    // Anything the next heartbeats would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        int(redis, &["HLEN", "realtime:ch:room"]),
        0,
        "she stays out of the room"
    );
    let dropped = a_held.dropped.lock().unwrap().clone();
    assert_eq!(
        dropped,
        vec![("@xena".to_owned(), "room".to_owned())],
        "once"
    );
    let told = a_held.told.lock().unwrap()[a_told..].to_vec();
    assert!(
        told.iter()
            .all(|(_, change, _, _)| *change != Membership::Subscribe),
        "A announced her joining again: {told:?}"
    );
    assert_eq!(
        heard(b_held, "onSubscribe"),
        b_heard_joins,
        "B's members hear no new onSubscribe"
    );
}

/// What the previous test shows, when the control messages A missed were trimmed from
/// the stream before it came back (over 100,000 of them, in production): A takes its
/// identities' channels from Redis instead, both ways.
#[test]
fn a_node_back_after_its_control_messages_were_trimmed_follows_redis() {
    let pair = Pair::start();
    let Pair {
        redis,
        a,
        b,
        a_held,
        b_held,
        ..
    } = &pair;
    // xena and yara are in the room with a tab on each node.
    for who in ["@xena", "@yara"] {
        settled(a.join("room", who, &Value::Null));
        settled(b.join("room", who, &Value::Null));
        for held in [&a_held, &b_held] {
            let mut snap = held.snapshot.lock().unwrap();
            snap.subscriptions.push(("room".to_owned(), who.to_owned()));
            snap.members.push(who.to_owned());
        }
    }
    let a_told = a_held.told.lock().unwrap().len();

    pair.cut_off();
    // On B, xena unsubscribes and yara joins the lobby; then the words A missed are
    // trimmed away.
    b_held
        .snapshot
        .lock()
        .unwrap()
        .subscriptions
        .retain(|(_, m)| m != "@xena");
    assert_eq!(settled(b.leave("room", "@xena", &Value::Null, true)), 1);
    b.watch("lobby", true);
    assert_eq!(settled(b.join("lobby", "@yara", &Value::Null)), 1);
    assert!(int(redis, &["XLEN", "realtime:ctlog"]) >= 2);
    redis.command(&[b"XTRIM", b"realtime:ctlog", b"MAXLEN", b"0"]);
    pair.reconnect();
    wait_until(Duration::from_secs(30), "A back, following Redis", || {
        a.is_up()
            && !a_held.dropped.lock().unwrap().is_empty()
            && !a_held.adopted.lock().unwrap().is_empty()
    });
    // Anything the next heartbeats would tell too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        *a_held.dropped.lock().unwrap(),
        vec![("@xena".to_owned(), "room".to_owned())],
        "xena's tab on A leaves the room, once"
    );
    assert_eq!(
        *a_held.adopted.lock().unwrap(),
        vec![("@yara".to_owned(), "lobby".to_owned())],
        "yara's tab on A joins the lobby, once"
    );
    assert_eq!(
        int(redis, &["HLEN", "realtime:ch:room"]),
        1,
        "only yara is in the room: xena was not written back"
    );
    let told = a_held.told.lock().unwrap()[a_told..].to_vec();
    assert!(
        told.is_empty(),
        "A announced what others had told already: {told:?}"
    );
}

/// The same gap, and an identity subscribing on A just as A reads its hub to follow
/// Redis: its change is not in Redis yet, and is not taken for a leave elsewhere.
#[test]
fn a_subscribe_queued_as_a_node_follows_redis_is_not_undone() {
    let pair = Pair::start();
    let Pair {
        redis, a, a_held, ..
    } = &pair;
    // A control message, so that A has one to miss the successors of.
    settled(a.join("room", "@xena", &Value::Null));
    {
        let mut snap = a_held.snapshot.lock().unwrap();
        snap.subscriptions
            .push(("room".to_owned(), "@xena".to_owned()));
        snap.members.push("@xena".to_owned());
    }
    pair.cut_off();
    redis.command(&[b"XTRIM", b"realtime:ctlog", b"MAXLEN", b"0"]);
    let node = a.clone();
    *a_held.hook.lock().unwrap() = Some(Box::new(move |snap| {
        snap.subscriptions
            .push(("lobby".to_owned(), "@xena".to_owned()));
        let _ = node.join("lobby", "@xena", &Value::Null);
    }));
    pair.reconnect();
    wait_until(
        Duration::from_secs(30),
        "her lobby subscription in Redis",
        || a.is_up() && int(redis, &["HLEN", "realtime:ch:lobby"]) == 1,
    );
    // Anything the next heartbeats would do too (a wait for nothing: a fixed one).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        *a_held.dropped.lock().unwrap(),
        Vec::<(String, String)>::new(),
        "nothing taken out on A"
    );
    assert_eq!(int(redis, &["HLEN", "realtime:ch:lobby"]), 1);
    assert_eq!(int(redis, &["HLEN", "realtime:ch:room"]), 1);
}

#[test]
fn sessions_begun_while_redis_was_away_are_recorded_for_resumption_once_it_is_back() {
    let mut redis = Redis::start();
    let user: [&[u8]; 8] = [
        b"ACL", b"SETUSER", b"nodea", b"on", b">secret", b"~*", b"&*", b"+@all",
    ];
    redis.command(&user);
    let url = redis.url().replace("redis://", "redis://nodea:secret@");
    let (_rt, a) = start_at(&url, "a", Arc::new(Held::default()));
    wait_until(Duration::from_secs(30), "the node to join", || a.is_up());
    let port = redis.port;
    let pid = |pid: &str| match try_command(port, &[b"HGET", b"realtime:pids:a", pid.as_bytes()]) {
        Ok(Resp::Bulk(Some(m))) => Some(String::from_utf8(m).unwrap()),
        _ => None,
    };
    a.session("old.1", "@ann", true);
    a.session("ends.1", "@bob", true);
    wait_until(Duration::from_secs(10), "the sessions recorded", || {
        pid("ends.1").is_some()
    });

    // Cut off, Redis keeping its data: what changed meanwhile is written back.
    redis.command(&[b"ACL", b"SETUSER", b"nodea", b"off"]);
    redis.command(&[b"CLIENT", b"KILL", b"USER", b"nodea"]);
    wait_until(
        Duration::from_secs(10),
        "the node to see Redis gone",
        || !a.is_up(),
    );
    a.session("new.1", "@cyd", true);
    a.session("ends.1", "@bob", false);
    redis.command(&[b"ACL", b"SETUSER", b"nodea", b"on"]);
    wait_until(Duration::from_secs(30), "the node back", || a.is_up());
    assert_eq!(pid("new.1").as_deref(), Some("@cyd"));
    assert_eq!(pid("ends.1"), None);
    assert_eq!(int(&redis, &["HLEN", "realtime:pids:a"]), 2);

    // Redis restarts empty: every session of the node is written back.
    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "the node to see Redis gone",
        || !a.is_up(),
    );
    a.session("newer.1", "@dan", true);
    redis.restart();
    redis.command(&user);
    wait_until(Duration::from_secs(30), "the node back", || a.is_up());
    assert_eq!(pid("old.1").as_deref(), Some("@ann"));
    assert_eq!(pid("new.1").as_deref(), Some("@cyd"));
    assert_eq!(pid("newer.1").as_deref(), Some("@dan"));
    assert_eq!(int(&redis, &["HLEN", "realtime:pids:a"]), 3);
}
