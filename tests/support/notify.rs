//! The datagram socket a test names as `NOTIFY_SOCKET`, to read the sd_notify messages
//! the daemon sends (READY=1, STATUS=, RELOADING=1, STOPPING=1).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A bound `NOTIFY_SOCKET` and what arrived on it.
pub(crate) struct Notify {
    sock: UnixDatagram,
    pub path: PathBuf,
    /// Every message so far, in order.
    pub seen: Vec<String>,
}

impl Notify {
    pub(crate) fn bind(path: &Path) -> Notify {
        let sock = UnixDatagram::bind(path).unwrap();
        Notify {
            sock,
            path: path.to_owned(),
            seen: Vec::new(),
        }
    }

    /// The next message, if one arrives within `within`.
    pub(crate) fn next(&mut self, within: Duration) -> Option<String> {
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
    pub(crate) fn expect(&mut self, needle: &str, within: Duration) -> String {
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
    pub(crate) fn collect(&mut self, within: Duration) -> Vec<String> {
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
