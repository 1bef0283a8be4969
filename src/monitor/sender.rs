//! The monitor's sender: one std thread that POSTs queued events in order with a blocking
//! HTTP client, so nothing it waits on can touch the runtime that delivers messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{debug, warn};

use super::Shared;
use crate::config::MonitorConfig;
use crate::ratelimit::LogLimit;

/// First wait before a retry; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an answer is read (and thrown away) so the connection can be reused.
const MAX_ANSWER: u64 = 64 * 1024;
/// How often an idle sender looks whether shutdown began.
pub(super) const IDLE_POLL: Duration = Duration::from_millis(50);

/// How one POST went.
enum Outcome {
    Sent,
    /// Worth another try: no connection, a timeout, garbage, or a 5xx.
    Retry(String),
    /// Not worth another try: a 3xx (redirects are not followed) or a 4xx.
    Fail(String),
}

pub(super) struct Sender {
    url: String,
    agent: ureq::Agent,
    /// HMAC key for `X-Realtime-Signature`.
    secret: Option<Vec<u8>>,
    timeout: Duration,
    retries: u32,
    shared: Arc<Shared>,
    fail_log: LogLimit,
}

impl Sender {
    pub(super) fn new(url: String, config: &MonitorConfig, shared: Arc<Shared>) -> Sender {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // A redirect is an answer, not an instruction: a monitor URL that moved is a
            // configuration error to report, and following it could post events elsewhere.
            .max_redirects(0)
            .http_status_as_error(false)
            // The endpoint is the application's own backend: no proxy from the environment.
            .proxy(None)
            .user_agent(concat!("realtime/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Sender {
            url,
            agent,
            secret: config.secret.as_ref().map(|s| s.as_bytes().to_vec()),
            timeout: config.timeout,
            retries: config.retries,
            shared,
            fail_log: LogLimit::new(Duration::from_secs(10)),
        }
    }

    pub(super) fn run(self) {
        loop {
            let body = {
                let rx = self.shared.rx.lock().unwrap_or_else(|e| e.into_inner());
                if self.shared.handing_over.load(Ordering::Acquire) {
                    break;
                }
                let job = match rx.recv_timeout(IDLE_POLL) {
                    Ok(job) => job,
                    // Idle: during shutdown an empty queue means the drain is done.
                    Err(RecvTimeoutError::Timeout) if self.closing() => break,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
                if self.past_deadline() {
                    self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let body = job.body();
                // Marked before the queue is let go: a hand-over sees it either here or
                // still queued, never in neither.
                *self.in_flight() = Some(body.clone());
                body
            };
            self.deliver(&body);
            self.in_flight().take();
        }
        self.shared.done.store(true, Ordering::Release);
        debug!("monitor sender stopped");
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, Option<Bytes>> {
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    fn past_deadline(&self) -> bool {
        self.closing() && self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Time left for one request: the configured timeout, cut short by the shutdown deadline.
    fn budget(&self) -> Option<Duration> {
        match self.shared.deadline() {
            Some(d) if self.closing() => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(self.timeout))
            }
            _ => Some(self.timeout),
        }
    }

    /// Posts one event, retrying with exponential backoff.
    fn deliver(&self, body: &[u8]) {
        let signature = self.secret.as_deref().map(|k| sign(k, body));
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        let why = loop {
            let Some(budget) = self.budget() else {
                break "shutdown deadline passed".to_owned();
            };
            match self.post(body, signature.as_deref(), budget) {
                Outcome::Sent => {
                    self.shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Fail(why) => break why,
                Outcome::Retry(why) if attempt >= self.retries => break why,
                Outcome::Retry(why) => {
                    debug!(attempt, error = %why, "monitor POST failed; retrying");
                    attempt += 1;
                    let wait = match self.budget() {
                        Some(b) if self.closing() => backoff.min(b),
                        Some(_) => backoff,
                        None => break why,
                    };
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        self.shared.stats.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = self.fail_log.allow() {
            warn!(url = %crate::config::redacted(&self.url), error = %why, attempts = attempt + 1, suppressed = held, "monitor: event not delivered");
        }
    }

    fn post(&self, body: &[u8], signature: Option<&str>, budget: Duration) -> Outcome {
        let mut req = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(budget))
            .build()
            .header("Content-Type", "application/json");
        if let Some(sig) = signature {
            req = req.header("X-Realtime-Signature", sig);
        }
        match req.send(body) {
            Ok(mut res) => {
                let status = res.status().as_u16();
                // Read a bounded answer so a keep-alive connection can be reused; a
                // hostile one (endless, slow) is cut by the size limit or the timeout.
                let _ = res.body_mut().with_config().limit(MAX_ANSWER).read_to_vec();
                match status {
                    200..=299 => Outcome::Sent,
                    500..=599 => Outcome::Retry(format!("endpoint answered {status}")),
                    _ => Outcome::Fail(format!("endpoint answered {status}")),
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub(crate) fn sign(key: &[u8], body: &[u8]) -> String {
    use std::fmt::Write as _;
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let mut out = String::from("sha256=");
    for b in mac.finalize().into_bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
