//! A node with 100,000 subscriptions (50,000 identities in two channels each, held by an
//! in-process node over real Redis): it writes them back after Redis restarts empty, and
//! the others reap them when it dies, in batches, while heartbeats go on; a reaping cut
//! short by Redis restarting empty is finished from what the survivor heard, each event
//! exactly once. The times are printed (`--nocapture`), not asserted.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use realtime::cluster::redis::Keeping;
use realtime::cluster::{Bus, Envelope, Inbound, Membership, RedisCluster, Snapshot};
use realtime::config::ClusterConfig;

use crate::support::redis::*;
use crate::support::wait::*;

const IDENTITIES: usize = 50_000;
const CHANNELS: [&str; 2] = ["north", "south"];
const HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a [`Held`] hub was told about one identity: (to its members too, not only
/// the monitor; the change; the channel; the identity).
pub(crate) type Told = (bool, Membership, String, String);

/// Runs when the worker reads the hub, on what it reads.
type Hook = Box<dyn FnOnce(&mut Snapshot) + Send>;

/// A hub that holds a fixed set of members and counts what the cluster tells it.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) snapshot: Mutex<Snapshot>,
    /// Runs at the next read of the hub, as a change made just then would.
    pub(crate) hook: Mutex<Option<Hook>>,
    pub(crate) told: Mutex<Vec<Told>>,
    /// Membership events delivered from the bus: (command, channel, identity).
    pub(crate) delivered: Mutex<Vec<(String, String, String)>>,
    /// Members another node told to leave a channel here: (member, channel).
    pub(crate) dropped: Mutex<Vec<(String, String)>>,
    /// Members another node told to join a channel here: (member, channel).
    pub(crate) adopted: Mutex<Vec<(String, String)>>,
    subscribes: AtomicUsize,
    unsubscribes: AtomicUsize,
    connects: AtomicUsize,
    disconnects: AtomicUsize,
    left: Mutex<Vec<(String, String)>>,
    /// Leaves told to the monitor (the webhooks): each must be once cluster-wide.
    pub(crate) observed_leaves: AtomicUsize,
}

impl Held {
    fn many() -> Held {
        let members: Vec<String> = (0..IDENTITIES).map(|i| format!("@user{i}")).collect();
        let subscriptions = members
            .iter()
            .flat_map(|m| CHANNELS.map(|c| (c.to_owned(), m.clone())))
            .collect();
        Held {
            snapshot: Mutex::new(Snapshot {
                subscriptions,
                members,
            }),
            ..Held::default()
        }
    }

    /// Leaves this node announced, to its members or the monitor.
    pub(crate) fn left_count(&self) -> usize {
        self.left.lock().unwrap().len()
    }

    pub(crate) fn heard(&self) -> [usize; 4] {
        [
            &self.subscribes,
            &self.unsubscribes,
            &self.connects,
            &self.disconnects,
        ]
        .map(|n| n.load(Ordering::SeqCst))
    }
}

impl Held {
    fn tell(&self, local: bool, change: Membership, env: &Envelope) {
        let who = env.identity.as_deref().unwrap_or_default().to_owned();
        let channel = env.channel.clone().unwrap_or_default();
        if !who.starts_with("user") {
            self.told
                .lock()
                .unwrap()
                .push((local, change, channel, who));
        }
    }

    fn count(&self, change: Membership, env: &Envelope) {
        match change {
            Membership::Subscribe => self.subscribes.fetch_add(1, Ordering::SeqCst),
            Membership::Unsubscribe => {
                let who = env.identity.as_deref().unwrap_or_default().to_owned();
                let channel = env.channel.clone().unwrap_or_default();
                self.left.lock().unwrap().push((channel, who));
                self.unsubscribes.fetch_add(1, Ordering::SeqCst)
            }
            _ => 0,
        };
    }
}

impl Held {
    fn record_heard(&self, env: &Envelope) {
        if let Some(command) = env.data.get("command").and_then(|c| c.as_str()) {
            let channel = env.channel.clone().unwrap_or_default();
            let who = env.identity.as_deref().unwrap_or_default().to_owned();
            self.delivered
                .lock()
                .unwrap()
                .push((command.to_owned(), channel, who));
        }
    }
}

impl Inbound for Held {
    fn deliver(&self, env: &Envelope, _: Vec<Bytes>, _: Option<&str>, _: Option<u64>) {
        self.record_heard(env);
    }
    fn announce_heard(&self, env: &Envelope, _: Option<&str>) {
        self.record_heard(env);
    }
    fn announce_to(&self, _: &str, _: &Envelope) {}
    fn announce(&self, change: Membership, env: &Envelope, _: Option<&str>, observe: bool) {
        if observe && change == Membership::Unsubscribe {
            self.observed_leaves.fetch_add(1, Ordering::SeqCst);
        }
        self.tell(true, change, env);
        self.count(change, env);
    }
    fn observe_only(&self, change: Membership, env: &Envelope) {
        if change == Membership::Unsubscribe {
            self.observed_leaves.fetch_add(1, Ordering::SeqCst);
        }
        self.tell(false, change, env);
        self.count(change, env);
    }
    fn announce_presence(&self, _: &str, connected: bool) {
        let n = if connected {
            &self.connects
        } else {
            &self.disconnects
        };
        n.fetch_add(1, Ordering::SeqCst);
    }
    fn adopt(&self, member: &str, channel: &str) {
        let adopted = (member.to_owned(), channel.to_owned());
        self.adopted.lock().unwrap().push(adopted);
        // Its tabs here join the channel, as in the hub: if it has any (in `members`),
        // and joining twice is once.
        let mut snap = self.snapshot.lock().unwrap();
        let sub = (channel.to_owned(), member.to_owned());
        if snap.members.iter().any(|m| m == member) && !snap.subscriptions.contains(&sub) {
            snap.subscriptions.push(sub);
        }
    }
    fn drop_remote(&self, member: &str, channel: &str) {
        let dropped = (member.to_owned(), channel.to_owned());
        self.dropped.lock().unwrap().push(dropped);
        // Its tabs here leave the channel, as in the hub.
        let mut snap = self.snapshot.lock().unwrap();
        snap.subscriptions
            .retain(|(c, m)| !(c == channel && m == member));
    }
    fn snapshot(&self) -> Snapshot {
        let mut snap = self.snapshot.lock().unwrap();
        if let Some(hook) = self.hook.lock().unwrap().take() {
            hook(&mut snap);
        }
        snap.clone()
    }
    fn local_count(&self, _: &str) -> usize {
        0
    }
    fn accepts_channel(&self, _: &str) -> bool {
        true
    }
}

/// A node on its own runtime: dropping the runtime kills it without a goodbye.
pub(crate) fn start(
    redis: &Redis,
    name: &str,
    held: Arc<Held>,
) -> (tokio::runtime::Runtime, Arc<RedisCluster>) {
    start_at(&redis.url(), name, held)
}

/// [`start`] with a Redis URL of its own (another user, say).
pub(crate) fn start_at(
    url: &str,
    name: &str,
    held: Arc<Held>,
) -> (tokio::runtime::Runtime, Arc<RedisCluster>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = ClusterConfig {
        node_id: Some(name.to_owned()),
        heartbeat: HEARTBEAT,
        node_timeout: NODE_TIMEOUT,
        ..ClusterConfig::default()
    };
    let keeping = Keeping {
        size: 0,
        ttl: Duration::ZERO,
    };
    let (cluster, worker) =
        RedisCluster::new(&config, url, Duration::from_secs(1), keeping, None).unwrap();
    rt.spawn(async move { worker.start(held) });
    (rt, cluster)
}

pub(crate) fn int(redis: &Redis, args: &[&str]) -> i64 {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match redis.command(&args) {
        Resp::Int(n) => n,
        other => panic!("{args:?} answered {other:?}"),
    }
}

/// Scripts Redis ran since it started (each call, whatever it does inside).
fn script_calls(redis: &Redis) -> u64 {
    let Resp::Bulk(Some(info)) = redis.command(&[b"INFO", b"commandstats"]) else {
        panic!("INFO answered no text")
    };
    String::from_utf8_lossy(&info)
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The longest time between two heartbeats of `node` seen until `until` holds and two
/// more heartbeats passed, sampled from its score in `realtime:nodes`.
fn longest_gap(redis: &Redis, node: &str, until: impl Fn() -> bool) -> Duration {
    let mut last: Option<(String, Instant)> = None;
    let mut longest = Duration::ZERO;
    let mut after: Option<Instant> = None;
    while after.is_none_or(|at| at.elapsed() < 2 * HEARTBEAT) {
        if after.is_none() && until() {
            after = Some(Instant::now());
        }
        if let Ok(Resp::Bulk(Some(score))) =
            try_command(redis.port, &[b"ZSCORE", b"realtime:nodes", node.as_bytes()])
        {
            let score = String::from_utf8_lossy(&score).into_owned();
            match &last {
                Some((s, _)) if *s == score => {}
                _ => {
                    if let Some((_, at)) = &last {
                        longest = longest.max(at.elapsed());
                    }
                    last = Some((score, Instant::now()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    longest
}

const SUBS: i64 = (IDENTITIES * CHANNELS.len()) as i64;

#[test]
fn a_node_with_100k_subscriptions_resyncs_in_batches_after_redis_restarts_empty() {
    let mut redis = Redis::start();
    let held = Arc::new(Held::many());
    let (_rt, cluster) = start(&redis, "big", held.clone());
    let begun = Instant::now();
    wait_until(Duration::from_secs(120), "the node to join", || {
        cluster.is_up()
    });
    eprintln!("joined with {SUBS} subscriptions in {:?}", begun.elapsed());
    assert_eq!(int(&redis, &["SCARD", "realtime:sub:big"]), SUBS);
    // Its members were news to the cluster: told once, at the next heartbeat.
    wait_until(Duration::from_secs(60), "the news told", || {
        held.heard() == [SUBS as usize, 0, IDENTITIES, 0]
    });

    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "the node to see Redis gone",
        || !cluster.is_up(),
    );
    let before = held.heard();
    redis.restart();
    let restarted = Instant::now();
    let done = || cluster.is_up();
    let gap = longest_gap(&redis, "big", done);
    wait_until(Duration::from_secs(120), "the node to write back", done);
    eprintln!(
        "resynchronised {SUBS} subscriptions after Redis restarted empty in {:?} \
         (longest wait between heartbeats seen: {gap:?}, heartbeat {HEARTBEAT:?})",
        restarted.elapsed()
    );
    assert_eq!(int(&redis, &["SCARD", "realtime:sub:big"]), SUBS);
    assert_eq!(
        int(&redis, &["HLEN", "realtime:members"]),
        IDENTITIES as i64
    );
    for c in CHANNELS {
        assert_eq!(
            int(&redis, &["HLEN", &format!("realtime:ch:{c}")]),
            IDENTITIES as i64
        );
    }
    // Batched: a few hundred calls, not one per subscription.
    let calls = script_calls(&redis);
    assert!(calls < 1_000, "the resync ran {calls} scripts");
    // What was written back is nobody's news.
    assert_eq!(held.heard(), before);
}

#[test]
fn a_dead_node_with_100k_subscriptions_is_reaped_in_batches_each_once() {
    let redis = Redis::start();
    let big = Arc::new(Held::many());
    let (rt, cluster) = start(&redis, "big", big.clone());
    wait_until(Duration::from_secs(120), "the node to join", || {
        cluster.is_up()
    });
    wait_until(Duration::from_secs(60), "its news told", || {
        big.heard()[0] == SUBS as usize
    });
    let watcher = Arc::new(Held::default());
    let (_rt2, other) = start(&redis, "watcher", watcher.clone());
    wait_until(Duration::from_secs(30), "the watcher to join", || {
        other.is_up()
    });
    let sent_before = other.stats.sent.load(Ordering::SeqCst);

    rt.shutdown_background();
    let killed = Instant::now();
    let all = || watcher.heard()[1] == SUBS as usize;
    let gap = longest_gap(&redis, "watcher", all);
    wait_until(Duration::from_secs(120), "every subscription reaped", all);
    eprintln!(
        "reaped {SUBS} subscriptions {:?} after the node died (node timeout {NODE_TIMEOUT:?} \
         + recovery window 1s; longest wait between the reaper's heartbeats seen: {gap:?}, \
         heartbeat {HEARTBEAT:?})",
        killed.elapsed()
    );
    wait_until(Duration::from_secs(30), "every member disconnected", || {
        watcher.heard()[3] == IDENTITIES
    });
    // Each once: nothing more comes (a wait for nothing, so a fixed one).
    std::thread::sleep(Duration::from_millis(2 * HEARTBEAT.as_millis() as u64));
    assert_eq!(watcher.heard(), [0, SUBS as usize, 0, IDENTITIES]);
    let mut left = watcher.left.lock().unwrap().clone();
    left.sort();
    left.dedup();
    assert_eq!(left.len(), SUBS as usize, "an unsubscribe announced twice");
    assert_eq!(
        other.stats.sent.load(Ordering::SeqCst) - sent_before,
        SUBS as u64,
        "each told to the other nodes once"
    );
    assert_eq!(int(&redis, &["EXISTS", "realtime:sub:big"]), 0);
    assert_eq!(int(&redis, &["SCARD", "realtime:channels"]), 0);
}

#[test]
fn a_dead_node_reaped_while_redis_restarts_empty_is_announced_each_once() {
    let mut redis = Redis::start();
    let watcher = Arc::new(Held::default());
    let (_rw, other) = start(&redis, "watcher", watcher.clone());
    wait_until(Duration::from_secs(30), "the watcher to join", || {
        other.is_up()
    });
    for c in CHANNELS {
        other.watch(c, true);
    }
    wait_until(Duration::from_secs(10), "the watcher to watch", || {
        let Resp::Array(Some(n)) = redis.command(&[
            b"PUBSUB",
            b"NUMSUB",
            b"realtime:m:north",
            b"realtime:m:south",
        ]) else {
            return false;
        };
        n.get(1) == Some(&Resp::Int(1)) && n.get(3) == Some(&Resp::Int(1))
    });
    let big = Arc::new(Held::many());
    let (rt, cluster) = start(&redis, "big", big);
    wait_until(Duration::from_secs(120), "the node to join", || {
        cluster.is_up()
    });
    wait_until(
        Duration::from_secs(60),
        "the watcher to hear them join",
        || watcher.delivered.lock().unwrap().len() == SUBS as usize,
    );

    // Alive so far: it beat while it told its news, so nobody reaped it.
    assert_eq!(watcher.heard()[1], 0, "a live node was taken for dead");
    rt.shutdown_background();
    wait_until(Duration::from_secs(60), "the reaping to begin", || {
        watcher.heard()[1] > 0
    });
    // Redis restarts empty in the middle of the reaping: what is left of the dead node
    // is gone with it, and announced all the same.
    redis.stop();
    let midway = watcher.heard()[1];
    redis.restart();
    wait_until(
        Duration::from_secs(120),
        "every subscription announced gone",
        || watcher.heard()[1] >= SUBS as usize,
    );
    eprintln!("{midway} reaped before Redis restarted empty, the rest after it");
    // Nothing more comes (a wait for nothing, so a fixed one).
    std::thread::sleep(2 * HEARTBEAT);
    let mut left = watcher.left.lock().unwrap().clone();
    left.sort();
    left.dedup();
    assert_eq!(
        left.len(),
        SUBS as usize,
        "every subscription announced gone"
    );
    // Each once: a reaping call whose answer Redis took down with it is announced by the
    // lost-data check alone, and the dead node was not taken for dead while it told its
    // news (it beats as it tells).
    assert_eq!(
        watcher.heard()[1],
        SUBS as usize,
        "an unsubscribe announced twice"
    );
}
