//! Refusals a client meets without the operator seeing them: counted by reason for
//! `/metrics`, and logged at info now and then, one line per reason per period, naming
//! the peer and saying how many were held back.

use std::fmt;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::info;

use crate::ratelimit::LogLimit;

/// At most one line per reason in this period: a client that retries forever must not
/// fill the journal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What was refused: the `reason` label of `realtime_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A handshake with an Engine.IO version other than 4 (e.g. socket.io-client 2.x).
    UnsupportedProtocol,
    /// Any other Engine.IO request refused with a 4xx (unknown sid, bad transport...).
    EngineRequest,
    /// A Socket.IO packet that does not parse (e.g. a client using another parser).
    BadPacket,
    /// A reconnecting client whose connection state could not be recovered.
    RecoveryFailed,
    /// A client request (publish, subscribe...) refused.
    RequestRefused,
    /// An `/api/*` request refused: a missing or wrong key, not local without keys, or an
    /// identity that only a key may publish under.
    ApiRefused,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::UnsupportedProtocol,
        Refusal::EngineRequest,
        Refusal::BadPacket,
        Refusal::RecoveryFailed,
        Refusal::RequestRefused,
        Refusal::ApiRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnsupportedProtocol => "unsupported_protocol",
            Refusal::EngineRequest => "engineio_request",
            Refusal::BadPacket => "bad_packet",
            Refusal::RecoveryFailed => "recovery_failed",
            Refusal::RequestRefused => "request_refused",
            Refusal::ApiRefused => "api_refused",
        }
    }
}

/// Per reason: how many so far, and the limit on its log line.
#[derive(Debug)]
struct Refusals {
    counts: [AtomicU64; Refusal::ALL.len()],
    limits: [LogLimit; Refusal::ALL.len()],
}

/// One table for the process: refusals happen in every layer, and `/metrics` reads them all.
static REFUSALS: LazyLock<Refusals> = LazyLock::new(|| Refusals {
    counts: std::array::from_fn(|_| AtomicU64::new(0)),
    limits: std::array::from_fn(|_| LogLimit::new(LOG_EVERY)),
});

/// Counts a refusal and logs it, unless a line for the same reason went out lately.
pub fn record(kind: Refusal, peer: Option<SocketAddr>, why: &dyn fmt::Display) {
    let i = kind as usize;
    REFUSALS.counts[i].fetch_add(1, Ordering::Relaxed);
    if let Some(held) = REFUSALS.limits[i].allow() {
        let peer = peer.map(tracing::field::display);
        info!(reason = kind.as_str(), peer, held_back = held, error = %why, "client refused");
    }
}

/// Every reason with its count, zeros too, so an alert needs no special case.
pub fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    Refusal::ALL.iter().map(|k| {
        (
            k.as_str(),
            REFUSALS.counts[*k as usize].load(Ordering::Relaxed),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_reason() {
        let before: Vec<_> = counts().collect();
        record(Refusal::BadPacket, None, &"x");
        record(Refusal::BadPacket, None, &"y");
        let after: Vec<_> = counts().collect();
        let i = Refusal::BadPacket as usize;
        assert_eq!(after[i].0, "bad_packet");
        assert!(after[i].1 >= before[i].1 + 2);
        assert_eq!(after.len(), Refusal::ALL.len());
    }
}
