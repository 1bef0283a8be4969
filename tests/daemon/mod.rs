//! Helpers for the daemon-level tests (systemd, Flash, logging, privileges): a child
//! process with its stderr collected, a notify socket to read sd_notify messages from, free
//! ports and small blocking clients. Blocking on purpose: these tests wait on processes.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// A directory of its own per test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::hash::{BuildHasher, RandomState};
        let n = RandomState::new().hash_one(Instant::now());
        let dir = std::env::temp_dir().join(format!("realtime-{tag}-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a file; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A running daemon (or the wrapper that execs it); killed on drop.
pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Spawns `cmd` with stderr collected (stdout too, into the same log).
    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Daemon { child, log }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log if it does not.
    pub fn expect_log(&self, needle: &str, within: Duration) {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never showed {needle:?}; log:\n{}", self.log());
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
    }
}

/// The datagram socket a test names as `NOTIFY_SOCKET`, and what arrived on it.
pub struct Notify {
    sock: UnixDatagram,
    pub path: PathBuf,
    /// Every message so far, in order.
    pub seen: Vec<String>,
}

impl Notify {
    pub fn bind(path: &Path) -> Notify {
        let sock = UnixDatagram::bind(path).unwrap();
        Notify {
            sock,
            path: path.to_owned(),
            seen: Vec::new(),
        }
    }

    /// The next message, if one arrives within `within`.
    pub fn next(&mut self, within: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(msg.clone());
        Some(msg)
    }

    /// The first message (from now) containing `needle`; panics if none within `within`.
    pub fn expect(&mut self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no notify message with {needle:?}; got {:?}", self.seen);
            }
            if let Some(msg) = self.next(left)
                && msg.contains(needle)
            {
                return msg;
            }
        }
    }

    /// Messages that arrive within `within`.
    pub fn collect(&mut self, within: Duration) -> Vec<String> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            if let Some(msg) = self.next(left) {
                got.push(msg);
            }
        }
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; returns status and body.
pub fn http_get(port: u16, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Proves the HTTP port serves Engine.IO: a polling handshake answers with an open packet.
pub fn assert_handshake(port: u16) {
    let (status, body) = http_get(port, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200, "handshake on {port}: {body}");
    assert!(
        body.starts_with("0{\"sid\":") || body.starts_with("0{"),
        "{body}"
    );
}

/// Sends the Flash policy request; returns what came back before the server closed.
pub fn flash_request(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"<policy-file-request/>\0").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    got
}

/// The first `listening on` port in a log.
pub fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .filter_map(|l| l.split("listening on ").nth(1))
        .filter_map(|rest| rest.trim().rsplit(':').next())
        .find_map(|p| p.trim().parse().ok())
}

/// Starts the binary directly (no systemd) with this config text on a free HTTP port;
/// returns it and the HTTP port once it listens.
pub fn start(dir: &TempDir, config: &str, env: &[(&str, &str)]) -> (Daemon, u16) {
    let path = dir.write("realtime.conf", config);
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&path).args(["--port", "0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let daemon = Daemon::spawn(cmd);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(port) = listening_port(&daemon.log()) {
            return (daemon, port);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("daemon did not start; log:\n{}", daemon.log());
}
