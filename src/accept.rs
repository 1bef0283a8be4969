//! Accepting connections on a listener: a failed `accept` (usually out of file
//! descriptors) is waited out with a growing pause and logged at most now and then.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::ratelimit::LogLimit;

/// After a failed accept (usually out of file descriptors), the wait before the next one:
/// doubled on each failure in a row up to the maximum, as servers usually do, so the loop
/// neither spins nor stays away long once descriptors are free again.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one `accept failed` line per period: the failure lasts as long as the load.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What an accept loop does when `accept` fails: log now and then, and wait a little
/// longer each time in a row, until one succeeds.
#[derive(Debug)]
pub struct AcceptBackoff {
    /// The log line, e.g. `accept failed`.
    what: &'static str,
    log: LogLimit,
    wait: Duration,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            what,
            log: LogLimit::new(ACCEPT_LOG_EVERY),
            wait: ACCEPT_BACKOFF_MIN,
        }
    }

    /// After a failed accept: logs (at most once a period) and waits. False when
    /// `shutdown` came first.
    async fn failed(&mut self, e: &io::Error, shutdown: &CancellationToken) -> bool {
        if let Some(held) = self.log.allow() {
            warn!(error = %e, suppressed = held, retry_in = ?self.wait, "{}", self.what);
        }
        let waited = tokio::select! {
            _ = tokio::time::sleep(self.wait) => true,
            _ = shutdown.cancelled() => false,
        };
        self.wait = (self.wait * 2).min(ACCEPT_BACKOFF_MAX);
        waited
    }

    fn succeeded(&mut self) {
        self.wait = ACCEPT_BACKOFF_MIN;
    }

    /// The next connection `listener` accepts, failures waited out; `None` once
    /// `shutdown` is cancelled.
    pub async fn accept(
        &mut self,
        listener: &TcpListener,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => {
                        self.succeeded();
                        return Some(a);
                    }
                    Err(e) => {
                        if !self.failed(&e, shutdown).await {
                            return None;
                        }
                    }
                },
                _ = shutdown.cancelled() => return None,
            }
        }
    }
}
