//! Sentinel: a primary, its replica and three `redis-sentinel` of the test's own on
//! loopback ports; the primary is killed and the nodes follow the failover to the replica,
//! then a manual failover demotes the server they write to and they follow again; and the
//! same lookup over TLS, with a password for the primary and another for the sentinel.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::*;
use crate::support::redis::{Resp, try_command};
use crate::support::*;

const MASTER: &str = "mymaster";

/// How a [`Proc`] is started on a port, in its directory.
pub(crate) type Start = Box<dyn Fn(u16, &Path) -> Command>;

/// A `redis-server` or `redis-sentinel` on a loopback port, in a directory of its own;
/// killed (SIGKILL) on drop.
pub(crate) struct Proc {
    pub(crate) port: u16,
    child: Option<Child>,
    dir: TempDir,
    log: &'static str,
    launch: Start,
}

impl Proc {
    /// Starts `launch` on a free port and waits until it answers PING.
    pub(crate) fn start(log: &'static str, launch: Start) -> Proc {
        let mut p = Proc {
            port: 0,
            child: None,
            dir: TempDir::new("sentinel-test"),
            log,
            launch,
        };
        // A port picked by binding port 0 may be taken again before the server binds it.
        for _ in 0..5 {
            p.port = free_port();
            if p.spawn() {
                return p;
            }
        }
        panic!("{log}: did not start; log:\n{}", read(&p.dir.path(log)));
    }

    /// Starts it again on the same port, as its configuration says (nothing was saved).
    fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let up = poll_until(Duration::from_secs(10), || self.spawn().then_some(()));
        assert!(up.is_some(), ":{} did not start again", self.port);
    }

    /// Spawns on `self.port`; true once it answers PING.
    fn spawn(&mut self) -> bool {
        let mut child = (self.launch)(self.port, &self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a redis-server or redis-sentinel");
        let port = self.port;
        // Some(true): it answers PING; Some(false): it exited (the port was taken).
        let up = poll_until(Duration::from_secs(5), || {
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            // PONG, or a request for a login first: up either way.
            let pong = try_command(port, &[b"PING"]);
            let up = matches!(&pong, Ok(Resp::Simple(s)) if s == "PONG")
                || matches!(&pong, Ok(Resp::Error(e)) if e.starts_with("NOAUTH"));
            up.then_some(true)
        });
        if up == Some(true) {
            self.child = Some(child);
            return true;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// A `redis-server`, the replica of `primary` when given.
    fn redis(primary: Option<u16>) -> Proc {
        let launch: Start = Box::new(move |port, dir| {
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                // The replica's first sync at once, not after the default 5 s.
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(dir)
                .args(["--logfile", "redis.log"]);
            if let Some(p) = primary {
                c.args(["--replicaof", "127.0.0.1", &p.to_string()]);
            }
            c
        });
        Proc::start("redis.log", launch)
    }

    /// A `redis-sentinel` watching `primary`: down after 1 s, quorum 2, so a failover
    /// takes a few seconds. Sentinel rewrites its file, hence one per sentinel.
    fn sentinel(primary: u16) -> Proc {
        let launch: Start = Box::new(move |port, dir| {
            let conf = dir.join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile sentinel.log\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 3000\n",
                dir = dir.display()
            );
            std::fs::write(&conf, text).unwrap();
            let mut c = Command::new("redis-sentinel");
            c.arg(conf);
            c
        });
        Proc::start("sentinel.log", launch)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        try_command(self.port, &args).unwrap_or_else(|e| panic!(":{} {args:?}: {e}", self.port))
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- :{} {} ---\n{}",
                self.port,
                self.log,
                read(&self.dir.path(self.log))
            );
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub(crate) fn text(r: &Resp) -> String {
    match r {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Resp::Simple(s) => s.clone(),
        Resp::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// A reply of alternating names and values (`SENTINEL MASTER`) as a map.
fn fields(r: &Resp) -> HashMap<String, String> {
    let Resp::Array(Some(items)) = r else {
        return HashMap::new();
    };
    items
        .chunks(2)
        .filter_map(|kv| Some((text(kv.first()?), text(kv.get(1)?))))
        .collect()
}

/// Publishes `{"n": n}` to `room` for each `n`, through `/api/publish` on `port`.
pub(crate) async fn publish(port: u16, ns: std::ops::Range<u64>) {
    for n in ns {
        let body = json!({"channel": "room", "data": {"n": n}}).to_string();
        let (status, v) = api(port, "POST", "/api/publish", &body).await;
        assert_eq!(status, 200, "publish {n} on :{port}: {v}");
    }
}

/// What `c` received beyond what was checked: channel messages only.
pub(crate) async fn extra_numbers(c: &mut Client) -> Vec<Value> {
    c.drain(QUIET)
        .await
        .into_iter()
        .filter(|e| e["type"] == "message" && e["data"]["n"].is_u64())
        .collect()
}

/// Whether `redis-sentinel` is missing, which only a machine where tests/run could not
/// install it may be.
fn no_sentinel() -> bool {
    if have("redis-sentinel") {
        return false;
    }
    assert!(
        !is_root(),
        "redis-sentinel is missing (Debian package redis-sentinel; tests/run installs it)"
    );
    eprintln!("SKIPPED: needs redis-sentinel (Debian package redis-sentinel)");
    true
}

#[tokio::test]
async fn the_nodes_follow_a_sentinel_failover() {
    if no_sentinel() {
        return;
    }
    let mut primary = Proc::redis(None);
    let replica = Proc::redis(Some(primary.port));
    wait_until(Duration::from_secs(10), "the replica in sync", || {
        text(&replica.command(&["INFO", "replication"])).contains("master_link_status:up")
    });
    let sentinels: Vec<Proc> = (0..3).map(|_| Proc::sentinel(primary.port)).collect();
    // A failover needs the sentinels to know each other (the vote) and the replica.
    wait_until(
        Duration::from_secs(20),
        "the sentinels to know each other and the replica",
        || {
            sentinels.iter().all(|s| {
                let m = fields(&s.command(&["SENTINEL", "MASTER", MASTER]));
                m.get("num-other-sentinels").map(String::as_str) == Some("2")
                    && m.get("num-slaves").map(String::as_str) == Some("1")
            })
        },
    );
    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!("redis+sentinel://{}/{MASTER}", hosts.join(","));
    // ping-timeout: the clients are read only between the waits for a failover.
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
    for (n, port) in nodes.iter().zip([a, b]) {
        assert!(
            wait_readyz(port, 200, Duration::from_secs(10)).await,
            "node never ready through the sentinels; log:\n{}",
            n.log()
        );
    }
    let mut ann = Client::connect(a, "ann").await;
    ann.subscribe("room").await;
    let mut bob = Client::connect(b, "bob").await;
    bob.subscribe("room").await;
    publish(a, 0..5).await;
    assert_eq!(bob.numbers(5, PROPAGATE).await, (0..5).collect::<Vec<_>>());
    ann.drain(Duration::from_millis(200)).await;

    primary.kill();
    let killed = Instant::now();
    // Down while the sentinels have no primary to name (at least down-after-milliseconds).
    for port in [a, b] {
        assert!(
            wait_readyz(port, 503, Duration::from_secs(10)).await,
            "/readyz on :{port} stayed 200 with the primary dead"
        );
    }
    for (n, port) in nodes.iter().zip([a, b]) {
        assert!(
            wait_readyz(port, 200, Duration::from_secs(30)).await,
            "/readyz on :{port} not back within 30 s of the kill; log:\n{}",
            n.log()
        );
    }
    eprintln!("both nodes ready {:?} after the kill", killed.elapsed());
    let named = sentinels[0].command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
    assert_eq!(
        named,
        Resp::Array(Some(vec![
            Resp::bulk("127.0.0.1"),
            Resp::bulk(&replica.port.to_string())
        ])),
        "the sentinels promoted the replica"
    );
    assert!(
        text(&replica.command(&["INFO", "replication"])).contains("role:master"),
        "the replica is the primary now"
    );

    // Both ways across the new primary: every message once, in order.
    publish(a, 10..20).await;
    assert_eq!(
        bob.numbers(10, PROPAGATE).await,
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(extra_numbers(&mut bob).await, Vec::<Value>::new(), "on B");
    ann.drain(Duration::from_millis(200)).await;
    publish(b, 20..30).await;
    assert_eq!(
        ann.numbers(10, PROPAGATE).await,
        (20..30).collect::<Vec<_>>()
    );
    assert_eq!(extra_numbers(&mut ann).await, Vec::<Value>::new(), "on A");

    // The old primary comes back, a primary by its own configuration; the sentinels make it
    // a replica of the new one. A manual failover then promotes it again and demotes the
    // server the nodes write to: they follow once more, to the old primary's port.
    primary.restart();
    let back = Instant::now();
    let new_port = replica.port.to_string();
    wait_until(
        Duration::from_secs(30),
        "the old primary a replica of the new one, in sync",
        || {
            let info = text(&primary.command(&["INFO", "replication"]));
            info.contains("role:slave")
                && info.contains(&format!("master_port:{new_port}"))
                && info.contains("master_link_status:up")
        },
    );
    eprintln!(
        "the old primary a replica {:?} after its restart",
        back.elapsed()
    );
    // The sentinels may not see the replica as fit yet (NOGOODSLAVE): asked again.
    let asked = poll_until(Duration::from_secs(20), || {
        let r = sentinels[0].command(&["SENTINEL", "FAILOVER", MASTER]);
        (r == Resp::Simple("OK".to_owned())).then_some(())
    });
    assert!(asked.is_some(), "the sentinels refused a manual failover");
    let failover = Instant::now();
    // Both nodes listen on the primary again, none on the demoted server.
    let listeners = |p: &Proc| p.command(&["PUBSUB", "NUMSUB", "realtime:m:room"]);
    let numsub = |n: i64| Resp::Array(Some(vec![Resp::bulk("realtime:m:room"), Resp::Int(n)]));
    wait_until(
        Duration::from_secs(30),
        "both nodes to move to the promoted server",
        || listeners(&primary) == numsub(2) && listeners(&replica) == numsub(0),
    );
    for port in [a, b] {
        assert!(
            wait_readyz(port, 200, Duration::from_secs(10)).await,
            "/readyz on :{port} not 200 after the second failover"
        );
    }
    eprintln!(
        "both nodes moved {:?} after the manual failover",
        failover.elapsed()
    );
    assert!(
        text(&replica.command(&["INFO", "replication"])).contains("role:slave"),
        "the server the nodes wrote to was demoted"
    );
    for n in &nodes {
        let restored = n.log().matches("Redis connection restored").count();
        assert!(
            restored >= 2,
            "reconnected {restored} times; log:\n{}",
            n.log()
        );
    }
    bob.drain(Duration::from_millis(200)).await;
    ann.drain(Duration::from_millis(200)).await;
    publish(a, 30..40).await;
    assert_eq!(
        bob.numbers(10, PROPAGATE).await,
        (30..40).collect::<Vec<_>>()
    );
    assert_eq!(extra_numbers(&mut bob).await, Vec::<Value>::new(), "on B");
    ann.drain(Duration::from_millis(200)).await;
    publish(b, 40..50).await;
    assert_eq!(
        ann.numbers(10, PROPAGATE).await,
        (40..50).collect::<Vec<_>>()
    );
    assert_eq!(extra_numbers(&mut ann).await, Vec::<Value>::new(), "on A");
}

#[tokio::test]
async fn the_nodes_reach_sentinel_and_primary_over_tls_with_their_logins() {
    if no_sentinel() {
        return;
    }
    let certs = TempDir::new("sentinel-tls");
    crate::tls::certificates(&certs.0);
    let tls_args = |tls_port: u16| -> Vec<String> {
        let file = |name: &str| certs.path(name).display().to_string();
        vec![
            format!("tls-port {tls_port}"),
            format!("tls-cert-file {}", file("srv.pem")),
            format!("tls-key-file {}", file("srv.key")),
            format!("tls-ca-cert-file {}", file("ca.pem")),
            "tls-auth-clients no".to_owned(),
            // A sentinel reaches the primary over TLS too.
            "tls-replication yes".to_owned(),
        ]
    };
    // Each has a plain port as well, for the test's own PINGs and queries; the nodes are
    // only told TLS ports.
    let primary_tls = free_port();
    let mut primary_conf = tls_args(primary_tls);
    primary_conf.push("requirepass pri@mary".to_owned());
    let _primary = Proc::start(
        "redis.log",
        Box::new(move |port, dir| {
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .args(["--logfile", "redis.log"]);
            for line in &primary_conf {
                let (key, value) = line.split_once(' ').unwrap();
                c.arg(format!("--{key}")).arg(value);
            }
            c
        }),
    );
    let sentinel_tls = free_port();
    let sentinel_conf = tls_args(sentinel_tls).join("\n");
    let _sentinel = Proc::start(
        "sentinel.log",
        Box::new(move |port, dir| {
            let conf = dir.join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile sentinel.log\n\
                 {sentinel_conf}\nrequirepass watch&word\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_tls} 1\n\
                 sentinel auth-pass {MASTER} pri@mary\n",
                dir = dir.display()
            );
            std::fs::write(&conf, text).unwrap();
            let mut c = Command::new("redis-sentinel");
            c.arg(conf);
            c
        }),
    );
    // The primary's login before `@`, the sentinel's in the query, both percent-encoded.
    let url = format!(
        "rediss+sentinel://:pri%40mary@localhost:{sentinel_tls}/{MASTER}\
         ?sentinel-password=watch%26word"
    );
    let nodes: Vec<Server> = ["a", "b"]
        .iter()
        .map(|id| {
            let config = format!(
                "[Cluster]\nredis = {url}\nnode-id = {id}\nheartbeat = 1s\nnode-timeout = 3s\n"
            );
            Launch::new(&config)
                .env("SSL_CERT_FILE", certs.path("ca.pem"))
                .start()
        })
        .collect();
    for n in &nodes {
        assert!(
            wait_readyz(n.port, 200, Duration::from_secs(10)).await,
            "not joined through the sentinel over TLS, logged in; log:\n{}",
            n.log()
        );
    }
    let mut bob = Client::connect(nodes[1].port, "bob").await;
    bob.subscribe("room").await;
    publish(nodes[0].port, 0..3).await;
    assert_eq!(bob.numbers(3, PROPAGATE).await, vec![0, 1, 2]);
}
