//! A real `redis-server` for the cluster tests: one per test, on a free loopback
//! port, without persistence, killed on drop; it can be stopped and started again on the
//! same port to play an outage. A minimal RESP client pokes at it (PUBLISH, SUBSCRIBE,
//! HGETALL) with exactly the bytes a test means. `Cluster` starts N nodes of the real
//! binary sharing it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::wait::poll_until;
use super::{Server, free_port, wait_readyz};

/// A running `redis-server`; killed on drop.
pub(crate) struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port and waits until it answers PING.
    pub(crate) fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "realtime-redis-{}-{}",
            std::process::id(),
            super::rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        // A port picked by binding port 0 may be taken again before redis binds it.
        for _ in 0..5 {
            let port = free_port();
            let mut redis = Redis {
                port,
                child: None,
                dir: dir.clone(),
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start; log:\n{}", read_log(&dir));
    }

    /// `redis://127.0.0.1:PORT/0`
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGTERM, then SIGKILL): every client connection goes.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        let _ = poll_until(Duration::from_secs(3), || {
            (!matches!(child.try_wait(), Ok(None))).then_some(())
        });
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port (empty: nothing was saved).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server still running");
        let up = poll_until(Duration::from_secs(10), || self.spawn().then_some(()));
        assert!(
            up.is_some(),
            "redis-server did not start again on port {}; log:\n{}",
            self.port,
            read_log(&self.dir)
        );
    }

    /// Whether it is running (not stopped).
    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Spawns the server on `self.port`; true once it answers PING.
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        // Some(true): it answers PING; Some(false): it exited (the port was taken).
        let up = poll_until(Duration::from_secs(5), || {
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            let pong = try_command(self.port, &[b"PING"]);
            matches!(pong, Ok(Resp::Simple(s)) if s == "PONG").then_some(true)
        });
        if up == Some(true) {
            self.child = Some(child);
            return true;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Runs one command on a fresh connection and returns its reply.
    pub(crate) fn command(&self, args: &[&[u8]]) -> Resp {
        try_command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// `PUBLISH channel payload`; returns how many subscribers got it.
    pub(crate) fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        match self.command(&[b"PUBLISH", channel.as_bytes(), payload]) {
            Resp::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// A connection subscribed to `channel`, to see what the nodes send on the bus.
    pub(crate) fn tap(&self, channel: &str) -> Tap {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tap = Tap {
            r: BufReader::new(s),
        };
        tap.r
            .get_mut()
            .write_all(&encode(&[b"SUBSCRIBE", channel.as_bytes()]))
            .unwrap();
        let confirm = read_resp(&mut tap.r).expect("SUBSCRIBE confirmation");
        assert!(
            matches!(&confirm, Resp::Array(Some(a)) if a.first() == Some(&Resp::bulk("subscribe"))),
            "{confirm:?}"
        );
        tap
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- redis log ---\n{}", read_log(&self.dir));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Freezes a node (SIGSTOP) for `d`, then lets it go on (SIGCONT): a VM pause, a
/// starved process. It keeps its connections but sends no heartbeat meanwhile.
pub(crate) async fn freeze(server: &Server, d: Duration) {
    signal(server.pid(), nix::sys::signal::Signal::SIGSTOP);
    // The freeze lasting `d` is the point: a sleep, not a wait on a condition.
    tokio::time::sleep(d).await;
    signal(server.pid(), nix::sys::signal::Signal::SIGCONT);
}

/// Kills a node at once (SIGKILL): it says goodbye to nobody.
pub(crate) fn kill9(server: &mut Server) {
    signal(server.pid(), nix::sys::signal::Signal::SIGKILL);
    let gone = poll_until(Duration::from_secs(5), || (!server.alive()).then_some(()));
    assert!(gone.is_some(), "SIGKILL did not stop the node");
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub(crate) fn bulk(s: &str) -> Resp {
        Resp::Bulk(Some(s.as_bytes().to_vec()))
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub(crate) fn try_command(port: u16, args: &[&[u8]]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&encode(args))?;
    read_resp(&mut BufReader::new(s))
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(bad("connection closed mid-reply"));
    }
    line.truncate(line.len() - 2);
    let text = String::from_utf8_lossy(&line[1..]).into_owned();
    let num = || text.parse::<i64>().map_err(|_| bad("bad length"));
    Ok(match line.first() {
        Some(b'+') => Resp::Simple(text),
        Some(b'-') => Resp::Error(text),
        Some(b':') => Resp::Int(num()?),
        Some(b'$') => match usize::try_from(num()?) {
            Err(_) => Resp::Bulk(None),
            Ok(n) => {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Resp::Bulk(Some(buf))
            }
        },
        Some(b'*') => match usize::try_from(num()?) {
            Err(_) => Resp::Array(None),
            Ok(n) => Resp::Array(Some(
                (0..n)
                    .map(|_| read_resp(r))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(bad("unknown reply type")),
    })
}

/// A connection subscribed to one Redis channel.
pub(crate) struct Tap {
    r: BufReader<TcpStream>,
}

impl Tap {
    /// The payload of the next message published on the channel (within 10 s).
    pub(crate) fn next(&mut self) -> Vec<u8> {
        loop {
            let reply = read_resp(&mut self.r).expect("a message on the tapped channel");
            if let Resp::Array(Some(parts)) = reply
                && let [kind, _, Resp::Bulk(Some(payload))] = parts.as_slice()
                && *kind == Resp::bulk("message")
            {
                return payload.clone();
            }
        }
    }
}

/// The `[Cluster]` section of node `node_id` (heartbeat 1 s, node timeout 3 s) and a short
/// reconnect grace, then `extra` (more sections; a section may repeat).
pub(crate) fn node_config(redis: &Redis, node_id: &str, extra: &str) -> String {
    format!(
        "[Server]\nreconnect-timeout = 1s\n\
         [Cluster]\nredis = {}\nnode-id = {node_id}\nheartbeat = 1s\nnode-timeout = 3s\n{extra}",
        redis.url()
    )
}

/// Nodes `a`, `b`, `c`, … of the real binary sharing one `redis-server`.
pub(crate) struct Cluster {
    pub nodes: Vec<Server>,
    pub redis: Redis,
}

impl Cluster {
    /// Starts Redis, then `n` nodes with `extra` appended to each config; returns once
    /// every node answers `/readyz` 200 (connected to Redis).
    pub(crate) async fn start(n: usize, extra: &str) -> Cluster {
        let redis = Redis::start();
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = ((b'a' + i as u8) as char).to_string();
            let server = Server::start(&node_config(&redis, &id, extra));
            assert!(
                wait_readyz(server.port, 200, Duration::from_secs(10)).await,
                "node {id} never ready; log:\n{}",
                server.log()
            );
            nodes.push(server);
        }
        Cluster { nodes, redis }
    }

    /// The HTTP port of node `i`.
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }
}
