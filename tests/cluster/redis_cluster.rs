//! Redis Cluster: three primaries with a replica each, on loopback ports of the test's own;
//! two nodes deliver across it through sharded pub/sub, then the primary owning the slot
//! of their keys is killed and they follow its replica; then the slot moves to another
//! primary and they follow it. With `bus-shards = 3` the broadcasts spread over the three
//! primaries; a session resumes on its node only; a shard's failover and a hand-over are
//! followed.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::*;
use crate::sentinel::{Proc, extra_numbers, publish, text};
use crate::support::redis::Resp;
use crate::support::*;

/// The slot's hash tag: the default `[Cluster] prefix`.
const TAG: &str = "{realtime}";

/// A cluster-enabled `redis-server`: a node that misses 1 s of pings is failed over.
fn cluster_node() -> Proc {
    Proc::start(
        "redis.log",
        Box::new(|port, dir| {
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(dir)
                .args(["--logfile", "redis.log"]);
            c
        }),
    )
}

/// The port of the primary serving the slot of the tag, and its replicas', as `p` sees it.
fn owner(p: &Proc) -> Option<(u16, Vec<u16>)> {
    let slot = match p.command(&["CLUSTER", "KEYSLOT", TAG]) {
        Resp::Int(s) => s,
        other => panic!("CLUSTER KEYSLOT answered {other:?}"),
    };
    let Resp::Array(Some(ranges)) = p.command(&["CLUSTER", "SLOTS"]) else {
        return None;
    };
    let port = |n: &Resp| match n {
        Resp::Array(Some(f)) => match f.get(1) {
            Some(Resp::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        },
        _ => None,
    };
    ranges.iter().find_map(|r| {
        let Resp::Array(Some(r)) = r else { return None };
        let (Some(Resp::Int(start)), Some(Resp::Int(end))) = (r.first(), r.get(1)) else {
            return None;
        };
        if !(*start..=*end).contains(&slot) {
            return None;
        }
        Some((
            port(r.get(2)?)?,
            r.iter().skip(3).filter_map(port).collect(),
        ))
    })
}

/// Whether `p` says the cluster is whole.
fn cluster_ok(p: &Proc) -> bool {
    text(&p.command(&["CLUSTER", "INFO"])).contains("cluster_state:ok")
}

/// Whether `redis-cli` is missing, which only a machine where tests/run could not install
/// it may be.
fn no_redis_cli() -> bool {
    if have("redis-cli") {
        return false;
    }
    assert!(
        !is_root(),
        "redis-cli is missing (Debian package redis-tools; tests/run installs it)"
    );
    eprintln!("SKIPPED: needs redis-cli (Debian package redis-tools)");
    true
}

/// Three primaries with a replica each, the cluster whole; and its URL, every server a
/// seed (the ones that die among them).
fn redis_cluster() -> (Vec<Proc>, String) {
    let servers: Vec<Proc> = (0..6).map(|_| cluster_node()).collect();
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let made = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        made.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&made.stdout)
    );
    wait_until(Duration::from_secs(20), "the cluster whole", || {
        servers.iter().all(cluster_ok)
    });
    (servers, format!("redis+cluster://{}", addrs.join(",")))
}

#[tokio::test]
async fn the_nodes_deliver_across_a_redis_cluster_and_follow_a_failover_and_a_slot_move() {
    if no_redis_cli() {
        return;
    }
    let (mut servers, url) = redis_cluster();
    // The replicas join their primaries once the cluster is whole.
    let (primary, replicas) = poll_until(Duration::from_secs(20), || {
        owner(&servers[0]).filter(|(_, r)| r.len() == 1)
    })
    .expect("the slot's primary with one replica");
    let at = |port: u16| servers.iter().position(|s| s.port == port).unwrap();
    let (primary, replica) = (at(primary), at(replicas[0]));
    wait_until(Duration::from_secs(20), "the replica in sync", || {
        text(&servers[replica].command(&["INFO", "replication"])).contains("master_link_status:up")
    });

    let nodes: Vec<Server> = ["a", "b"]
        .iter()
        .map(|id| {
            Server::start(&format!(
                "[Server]\nreconnect-timeout = 1s\nping-timeout = 60s\n\
                 [Cluster]\nredis = {url}\nnode-id = {id}\nheartbeat = 1s\nnode-timeout = 10s\n"
            ))
        })
        .collect();
    let (a, b) = (nodes[0].port, nodes[1].port);
    ready(&nodes, "through the Redis Cluster", Duration::from_secs(10)).await;
    // Not spread: no shard count.
    let (_, metrics) = get(a, "/metrics").await;
    assert_eq!(metric(&metrics, "realtime_cluster_bus_shards_up"), None);
    let mut ann = Client::connect(a, "ann").await;
    ann.subscribe("room").await;
    let mut bob = Client::connect(b, "bob").await;
    bob.subscribe("room").await;
    publish(a, 0..5).await;
    assert_eq!(bob.numbers(5, PROPAGATE).await, (0..5).collect::<Vec<_>>());
    publish(b, 5..10).await;
    assert_eq!(
        ann.numbers(10, PROPAGATE).await,
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(bob.numbers(5, PROPAGATE).await, (5..10).collect::<Vec<_>>());

    // Sharded: both nodes listen on the slot's primary with SSUBSCRIBE, none with SUBSCRIBE,
    // and every key is under the tag.
    let topic = format!("{TAG}:m:room");
    let p = &servers[primary];
    assert_eq!(
        p.command(&["PUBSUB", "SHARDNUMSUB", &topic]),
        Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(2)]))
    );
    assert_eq!(
        p.command(&["PUBSUB", "NUMSUB", &topic]),
        Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(0)]))
    );
    let Resp::Array(Some(keys)) = p.command(&["KEYS", "*"]) else {
        panic!("KEYS answered otherwise")
    };
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(text(k).starts_with(&format!("{TAG}:")), "{k:?}");
    }

    // The slot's primary dies while ann publishes; its replica takes over.
    // What is published while Redis is away reaches this node's members only.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let publisher = tokio::spawn(async move {
        let mut n = 100u64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let body = json!({"channel": "room", "data": {"n": n}}).to_string();
            let (status, v) = api(a, "POST", "/api/publish", &body).await;
            assert_eq!(status, 200, "publish {n}: {v}");
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    servers[primary].kill();
    let killed = Instant::now();
    for n in &nodes {
        assert!(
            wait_readyz(n.port, 503, Duration::from_secs(10)).await,
            "/readyz on :{} stayed 200 with the slot's primary dead",
            n.port
        );
    }
    ready(&nodes, "within 30 s of the kill", Duration::from_secs(30)).await;
    eprintln!("both nodes ready {:?} after the kill", killed.elapsed());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.await.unwrap();
    let survivor = &servers[replica];
    assert!(
        text(&survivor.command(&["INFO", "replication"])).contains("role:master"),
        "the replica is the primary now"
    );
    assert_eq!(owner(survivor).map(|o| o.0), Some(survivor.port));
    assert_eq!(
        survivor.command(&["PUBSUB", "SHARDNUMSUB", &topic]),
        Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(2)]))
    );

    // What was published during the failover reached ann, on the publishing node, every
    // one once and in order; bob what crossed Redis, once and in order. Those that could
    // not cross are counted.
    assert_eq!(
        ann.numbers((published - 100) as usize, PROPAGATE).await,
        (100..published).collect::<Vec<_>>()
    );
    let heard = bob.numbers(usize::MAX, QUIET).await;
    assert!(
        heard.windows(2).all(|w| w[0] < w[1]),
        "bob: out of order or twice: {heard:?}"
    );
    let (_, metrics) = get(a, "/metrics").await;
    let dropped =
        metric(&metrics, "realtime_cluster_bus_dropped_total").expect("the dropped counter");
    assert!(
        dropped >= 1.0,
        "no publish counted as not crossing: {dropped}"
    );
    // After it, every message reaches both, once and in order, both ways.
    publish(a, 20_000..20_010).await;
    assert_eq!(
        bob.numbers(10, PROPAGATE).await,
        (20_000..20_010).collect::<Vec<_>>()
    );
    assert_eq!(
        extra_numbers(&mut bob).await,
        Vec::<serde_json::Value>::new(),
        "on B"
    );
    publish(b, 20_010..20_020).await;
    assert_eq!(
        ann.numbers(20, PROPAGATE).await,
        (20_000..20_020).collect::<Vec<_>>()
    );
    assert_eq!(
        extra_numbers(&mut ann).await,
        Vec::<serde_json::Value>::new(),
        "on A"
    );

    // The slot moves to another primary while the nodes run (what `redis-cli --cluster
    // reshard` does, for this one slot): they follow it.
    let from = replica;
    let to = (0..servers.len())
        .find(|&i| {
            i != primary
                && i != from
                && text(&servers[i].command(&["INFO", "replication"])).contains("role:master")
        })
        .expect("another primary");
    move_slot(&servers, TAG, from, to, primary);
    let target = &servers[to];
    wait_until(
        Duration::from_secs(30),
        "both nodes on the slot's new primary",
        || {
            target.command(&["PUBSUB", "SHARDNUMSUB", &topic])
                == Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(2)]))
        },
    );
    ready(&nodes, "after the slot moved", Duration::from_secs(10)).await;
    assert_eq!(
        servers[from].command(&["PUBSUB", "SHARDNUMSUB", &topic]),
        Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(0)]))
    );
    bob.drain(Duration::from_millis(200)).await;
    ann.drain(Duration::from_millis(200)).await;
    publish(a, 30_000..30_010).await;
    assert_eq!(
        bob.numbers(10, PROPAGATE).await,
        (30_000..30_010).collect::<Vec<_>>()
    );
    publish(b, 30_010..30_020).await;
    assert_eq!(
        ann.numbers(20, PROPAGATE).await,
        (30_000..30_020).collect::<Vec<_>>()
    );
    assert_eq!(
        extra_numbers(&mut ann).await,
        Vec::<serde_json::Value>::new(),
        "on A"
    );
}

/// Moves the slot of `tag` from primary `from` to primary `to`, keys and all, and tells
/// every running server but `dead`.
fn move_slot(servers: &[Proc], tag: &str, from: usize, to: usize, dead: usize) {
    let slot = text(&servers[from].command(&["CLUSTER", "KEYSLOT", tag]));
    let id = |i: usize| text(&servers[i].command(&["CLUSTER", "MYID"]));
    let (from_id, to_id) = (id(from), id(to));
    let ok = Resp::Simple("OK".to_owned());
    let to_port = servers[to].port.to_string();
    assert_eq!(
        servers[to].command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
        ok
    );
    assert_eq!(
        servers[from].command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
        ok
    );
    // Keys the nodes create meanwhile go to the importing server (ASK): the source runs out.
    let moved = poll_until(Duration::from_secs(30), || {
        let Resp::Array(Some(keys)) =
            servers[from].command(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
        else {
            panic!("GETKEYSINSLOT answered otherwise")
        };
        if keys.is_empty() {
            return Some(());
        }
        let keys: Vec<String> = keys.iter().map(text).collect();
        let mut args = vec![
            "MIGRATE",
            "127.0.0.1",
            &to_port,
            "",
            "0",
            "5000",
            "REPLACE",
            "KEYS",
        ];
        args.extend(keys.iter().map(String::as_str));
        let answer = servers[from].command(&args);
        assert!(
            matches!(&answer, Resp::Simple(_)),
            "MIGRATE answered {answer:?}"
        );
        None
    });
    assert!(moved.is_some(), "the slot's keys never all moved");
    for i in [to, from] {
        assert_eq!(
            servers[i].command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
            ok
        );
    }
    for i in (0..servers.len()).filter(|&i| i != to && i != from && i != dead) {
        let _ = servers[i].command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
}

/// Waits for every node's `/readyz` to answer 200 (`when`: for the failure message).
async fn ready(nodes: &[Server], when: &str, within: Duration) {
    for n in nodes {
        assert!(
            wait_readyz(n.port, 200, within).await,
            "node on :{} not ready {when}; log:\n{}",
            n.port,
            n.log()
        );
    }
}

/// Rooms the spread test publishes to: `n` goes to `r{n % ROOMS}`.
const ROOMS: u64 = 9;

/// Publishes `{"n": n}` to room `r{n % ROOMS}` for each `n`, through `/api/publish`.
async fn publish_rooms(port: u16, ns: std::ops::Range<u64>) {
    for n in ns {
        let body = json!({"channel": format!("r{}", n % ROOMS), "data": {"n": n}}).to_string();
        let (status, v) = api(port, "POST", "/api/publish", &body).await;
        assert_eq!(status, 200, "publish {n} on :{port}: {v}");
    }
}

/// `c` receives exactly `ns`, each once, every room's in order (rooms are on different
/// shards: between rooms no order is promised).
async fn receives_rooms(c: &mut Client, ns: std::ops::Range<u64>) {
    let want = (ns.end - ns.start) as usize;
    let got = c.numbers(want, PROPAGATE).await;
    for room in 0..ROOMS {
        let of = |v: &[u64]| {
            v.iter()
                .copied()
                .filter(|n| n % ROOMS == room)
                .collect::<Vec<_>>()
        };
        let expected: Vec<u64> = of(&ns.clone().collect::<Vec<_>>());
        assert_eq!(of(&got), expected, "{}: room r{room}", c.name);
    }
    assert_eq!(
        extra_numbers(c).await,
        Vec::<serde_json::Value>::new(),
        "{}",
        c.name
    );
}

/// Whether `p` is a primary now.
fn is_primary(p: &Proc) -> bool {
    text(&p.command(&["INFO", "replication"])).contains("role:master")
}

/// How many `SPUBLISH` commands `p` ran.
fn spublished(p: &Proc) -> u64 {
    let stats = text(&p.command(&["INFO", "commandstats"]));
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_spublish:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn broadcasts_spread_over_the_shards_and_follow_a_shards_failover() {
    if no_redis_cli() {
        return;
    }
    let (mut servers, url) = redis_cluster();
    wait_until(Duration::from_secs(20), "every replica in sync", || {
        servers.iter().filter(|s| !is_primary(s)).count() == 3
            && servers.iter().filter(|s| !is_primary(s)).all(|s| {
                text(&s.command(&["INFO", "replication"])).contains("master_link_status:up")
            })
    });
    // On b, a shard listens to a new channel only 300 ms after it is asked to.
    let nodes: Vec<Server> = ["a", "b"]
        .iter()
        .map(|id| {
            let launch = Launch::new(&format!(
                "[Server]\nreconnect-timeout = 5s\nping-timeout = 60s\n\
                 [Cluster]\nredis = {url}\nnode-id = {id}\nheartbeat = 1s\n\
                 node-timeout = 10s\nbus-shards = 3\n"
            ));
            match *id {
                "b" => launch
                    .env("REALTIME_TEST_HOOKS", "1")
                    .env("REALTIME_TEST_SHARD_SUBSCRIBE_DELAY_MS", "300"),
                _ => launch,
            }
            .start()
        })
        .collect();
    let (a, b) = (nodes[0].port, nodes[1].port);
    ready(&nodes, "through the Redis Cluster", Duration::from_secs(10)).await;
    let mut ann = Client::connect(a, "ann").await;
    let mut bob = Client::connect(b, "bob").await;
    for room in 0..ROOMS {
        ann.subscribe(&format!("r{room}")).await;
        bob.subscribe(&format!("r{room}")).await;
    }
    // A subscribe's ack comes once the channel's shard listens here: what another node
    // publishes right after it is not missed.
    for i in 0..10u64 {
        let channel = format!("fresh-{i}");
        bob.subscribe(&channel).await;
        let body = json!({"channel": channel, "data": {"n": i}}).to_string();
        assert_eq!(api(a, "POST", "/api/publish", &body).await.0, 200);
        assert_eq!(bob.numbers(1, PROPAGATE).await, [i], "{channel}");
    }
    // Left and joined again, many times: the shard listens again each time, and nothing
    // is taken for the slot moving away.
    for _ in 0..10 {
        let ack = bob.request(r#""unsubscribe","fresh-0""#).await;
        assert_eq!(ack["ok"], true, "{ack}");
        bob.subscribe("fresh-0").await;
    }
    let body = json!({"channel": "fresh-0", "data": {"n": 77}}).to_string();
    assert_eq!(api(a, "POST", "/api/publish", &body).await.0, 200);
    assert_eq!(bob.numbers(1, PROPAGATE).await, [77]);
    assert!(
        !nodes[1].log().contains("lost a bus shard"),
        "a shard was taken for lost:\n{}",
        nodes[1].log()
    );
    let before: Vec<u64> = servers.iter().map(spublished).collect();
    publish_rooms(a, 0..90).await;
    receives_rooms(&mut bob, 0..90).await;
    publish_rooms(b, 90..180).await;
    receives_rooms(&mut ann, 0..180).await;
    receives_rooms(&mut bob, 90..180).await;

    resumes_on_its_node_only(a, b).await;
    hostile_input_on_a_shard(&servers, &nodes, &mut ann, &mut bob).await;

    // Spread: every primary carried broadcasts, not only the one of the presence slot.
    let carried: Vec<u64> = servers
        .iter()
        .zip(&before)
        .filter(|(s, _)| is_primary(s))
        .map(|(s, b)| spublished(s) - b)
        .collect();
    assert_eq!(carried.len(), 3);
    assert!(
        carried.iter().all(|&n| n >= 10),
        "SPUBLISH calls per primary while 180 broadcasts went out: {carried:?}"
    );

    // A primary that carries a shard but not the presence slot dies: the nodes are not
    // ready until its replica has taken over, then every room is whole again.
    let presence = owner(&servers[0]).expect("the presence slot's primary").0;
    let victim = servers
        .iter()
        .position(|s| is_primary(s) && s.port != presence)
        .expect("another primary");
    let shards_up = |port: u16| async move {
        metric(
            &get(port, "/metrics").await.1,
            "realtime_cluster_bus_shards_up",
        )
    };
    assert_eq!(shards_up(a).await, Some(3.0));
    servers[victim].kill();
    for n in &nodes {
        assert!(
            wait_readyz(n.port, 503, Duration::from_secs(10)).await,
            "/readyz on :{} stayed 200 with a shard's primary dead",
            n.port
        );
    }
    let one_down = poll_until_async(Duration::from_secs(10), || async {
        (shards_up(a).await == Some(2.0)).then_some(())
    })
    .await;
    assert!(one_down.is_some(), "/metrics never counted the shard down");
    ready(&nodes, "within 30 s of the kill", Duration::from_secs(30)).await;
    assert_eq!(shards_up(a).await, Some(3.0));
    assert!(
        nodes[0].log().contains("lost a bus shard"),
        "the lost shard is not logged:\n{}",
        nodes[0].log()
    );
    ann.drain(QUIET).await;
    bob.drain(QUIET).await;
    publish_rooms(a, 1000..1090).await;
    receives_rooms(&mut bob, 1000..1090).await;
    publish_rooms(b, 1090..1180).await;
    receives_rooms(&mut ann, 1000..1180).await;
    receives_rooms(&mut bob, 1090..1180).await;

    // A shard's slot moves to another primary: the nodes follow it.
    let (from, topic) = servers
        .iter()
        .enumerate()
        .filter(|(i, s)| *i != victim && s.port != presence && is_primary(s))
        .find_map(|(i, s)| {
            // A room both nodes listen to (`fresh-…` only b does).
            let Resp::Array(Some(topics)) =
                s.command(&["PUBSUB", "SHARDCHANNELS", "{realtime.*}:m:r*"])
            else {
                return None;
            };
            topics.first().map(|t| (i, text(t)))
        })
        .expect("a primary carrying a shard, not the presence slot");
    let tag = &topic[..=topic.find('}').unwrap()];
    let to = (0..servers.len())
        .find(|&i| i != victim && i != from && is_primary(&servers[i]))
        .expect("another primary");
    move_slot(&servers, tag, from, to, victim);
    wait_until(
        Duration::from_secs(30),
        "both nodes on the shard's new primary",
        || {
            servers[to].command(&["PUBSUB", "SHARDNUMSUB", &topic])
                == Resp::Array(Some(vec![Resp::bulk(&topic), Resp::Int(2)]))
        },
    );
    ready(
        &nodes,
        "after the shard's slot moved",
        Duration::from_secs(10),
    )
    .await;
    ann.drain(QUIET).await;
    bob.drain(QUIET).await;
    publish_rooms(a, 1500..1590).await;
    receives_rooms(&mut bob, 1500..1590).await;
    publish_rooms(b, 1590..1680).await;
    receives_rooms(&mut ann, 1500..1680).await;
    receives_rooms(&mut bob, 1590..1680).await;

    // A hand-over on a: its sessions go on, on the same sockets, and its new process
    // listens to every shard again, both ways.
    let pid = nodes[0].pid();
    nodes[0].signal(nix::sys::signal::Signal::SIGUSR1);
    nodes[0].expect_log(
        "took over the sessions of the previous process",
        Duration::from_secs(10),
    );
    assert_eq!(nodes[0].pid(), pid);
    assert!(
        wait_readyz(a, 200, Duration::from_secs(10)).await,
        "a not ready after its hand-over; log:\n{}",
        nodes[0].log()
    );
    publish_rooms(b, 2000..2090).await;
    receives_rooms(&mut ann, 2000..2090).await;
    receives_rooms(&mut bob, 2000..2090).await;
    publish_rooms(a, 2090..2180).await;
    receives_rooms(&mut bob, 2090..2180).await;
    receives_rooms(&mut ann, 2090..2180).await;
}

/// A session with `auth` on `port` in room `r0`: its socket, sid and pid.
async fn cat_in_r0(port: u16, auth: &str) -> (Ws, String, String) {
    let (mut ws, reply) = connect_with(port, auth).await;
    let hello: serde_json::Value = serde_json::from_str(&reply[1..]).unwrap();
    let (sid, pid) = (
        hello["sid"].as_str().unwrap().to_owned(),
        hello["pid"]
            .as_str()
            .expect("a pid: recovery is on")
            .to_owned(),
    );
    send(&mut ws, r#"421["subscribe","r0"]"#).await;
    next_ack(&mut ws).await;
    (ws, sid, pid)
}

/// The offset of the broadcast `{"n": n}` when it reaches `ws`, or `None` if it does not
/// within `PROPAGATE`.
async fn offset_of(ws: &mut Ws, n: u64) -> Option<String> {
    let end = Instant::now() + PROPAGATE;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(Some(p)) = tokio::time::timeout(left, next_sio(ws)).await else {
            return None;
        };
        let Some(json) = p.strip_prefix('2') else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        if v[1]["data"]["n"] == n {
            return v[2].as_str().map(str::to_owned);
        }
    }
    None
}

/// Spread, a session resumes where it was held, with what it missed; on another node the
/// client gets a new session, not a gap.
async fn resumes_on_its_node_only(a: u16, b: u16) {
    let (mut ws, sid, pid) = cat_in_r0(a, r#"{"identity":"cat"}"#).await;
    let publish_r0 = |port: u16, n: u64| async move {
        let body = json!({"channel": "r0", "data": {"n": n}}).to_string();
        assert_eq!(api(port, "POST", "/api/publish", &body).await.0, 200);
    };
    publish_r0(b, 5000).await;
    let offset = offset_of(&mut ws, 5000).await.expect("5000 with an offset");
    drop(ws);
    publish_r0(b, 5001).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let auth = json!({"identity": "cat", "pid": pid, "offset": offset}).to_string();
    let (mut ws, reply) = connect_with(a, &auth).await;
    assert!(
        reply.contains(&format!("\"sid\":\"{sid}\"")),
        "not resumed on its node: {reply}"
    );
    let offset = offset_of(&mut ws, 5001)
        .await
        .expect("5001 replayed on resuming");
    drop(ws);
    publish_r0(a, 5002).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let auth = json!({"identity": "cat", "pid": pid, "offset": offset}).to_string();
    let (mut ws, reply) = connect_with(b, &auth).await;
    assert!(reply.starts_with("0{"), "{reply}");
    assert!(!reply.contains(&sid), "resumed on another node: {reply}");
    assert_eq!(
        offset_of(&mut ws, 5002).await,
        None,
        "a new session got 5002"
    );
}

/// What arrives on a shard's topics from anyone else than a node: dropped with a warning
/// naming the topic, counted, nothing delivered; the next real message is.
async fn hostile_input_on_a_shard(
    servers: &[Proc],
    nodes: &[Server],
    ann: &mut Client,
    bob: &mut Client,
) {
    let (primary, topic) = servers
        .iter()
        .filter(|s| is_primary(s))
        .find_map(|s| {
            let Resp::Array(Some(topics)) =
                s.command(&["PUBSUB", "SHARDCHANNELS", "{realtime.*}:m:r0"])
            else {
                return None;
            };
            topics.first().map(|t| (s, text(t)))
        })
        .expect("the primary carrying room r0");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let for_r1 = format!(r#"{{"n":"x","k":"message","c":"r1","t":{now},"d":{{"n":999}},"a":[]}}"#);
    // What the resumption test published is behind us.
    ann.drain(QUIET).await;
    bob.drain(QUIET).await;
    let dropped_before = metric(
        &get(nodes[0].port, "/metrics").await.1,
        "realtime_cluster_bus_dropped_total",
    );
    // The commands of the test's Redis client are text: no invalid UTF-8 here (the
    // logged bus's test has it, and both decode the same way).
    let hostile = [
        "garbage".to_owned(),
        String::new(),
        "{}\n".to_owned(),
        r#"{"n":"x","k":"message","c":"r0","t":1,"d":1,"a":[9]}"#.to_owned() + "\n",
        format!("{for_r1}\n"),
    ];
    for payload in &hostile {
        assert_eq!(
            primary.command(&["SPUBLISH", &topic, payload]),
            Resp::Int(2),
            "both nodes listen on {topic}"
        );
    }
    for n in nodes {
        for why in [
            "dropped a malformed message",
            "dropped a bus message addressed elsewhere",
        ] {
            assert!(
                n.wait_log_line(&[" WARN ", why, &topic], PROPAGATE).await,
                "no warning {why:?} naming {topic} on :{}",
                n.port
            );
        }
    }
    let dropped = metric(
        &get(nodes[0].port, "/metrics").await.1,
        "realtime_cluster_bus_dropped_total",
    );
    assert!(
        dropped.unwrap_or(0.0) >= dropped_before.unwrap_or(0.0) + 5.0,
        "not counted: {dropped_before:?} then {dropped:?}"
    );
    publish_rooms(nodes[0].port, 0..1).await;
    receives_rooms(ann, 0..1).await;
    receives_rooms(bob, 0..1).await;
}
