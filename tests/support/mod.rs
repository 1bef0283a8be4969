//! What the integration tests share: the real `realtime` binary started on a free port
//! (`process`), raw HTTP with exactly the bytes a test means (`http`), Engine.IO and
//! Socket.IO client steps (`sio`), Prometheus text (`metrics`), a webhook endpoint
//! (`webhook`), sd_notify (`notify`), a `redis-server` of its own (`redis`), and bounded
//! waits on a condition instead of fixed sleeps (`wait`).
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]
#![allow(unused_imports)]

pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod process;
pub(crate) mod redis;
pub(crate) mod sio;
pub(crate) mod wait;
pub(crate) mod webhook;

pub(crate) use http::*;
pub(crate) use metrics::*;
pub(crate) use notify::*;
pub(crate) use process::*;
pub(crate) use sio::*;
pub(crate) use wait::*;
pub(crate) use webhook::*;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Instant;

/// A directory of its own per test, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "realtime-{tag}-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a file; returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
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

pub(crate) fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A port nobody listens on right now (bound, then released; another process may take it
/// before the test binds it, so callers that can retry do).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a program is on PATH.
pub(crate) fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sends the Flash policy request; returns what came back before the server closed.
pub(crate) fn flash_request(port: u16) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"<policy-file-request/>\0").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    got
}
