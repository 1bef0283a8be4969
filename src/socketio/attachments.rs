//! Binary packets being reassembled: each must get all its attachments within a time
//! limit, and what every session holds of unfinished ones together stays within one budget,
//! so that packets announced and never finished cannot pile up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{Instrument, debug};

use super::packet::Packet;
use crate::engineio::{self, WsClose};
use crate::refusals::{self, Refusal};

/// Bytes of unfinished binary packets, across all sessions.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            held: AtomicUsize::new(0),
            limit,
        })
    }

    fn is_exhausted(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.limit
    }

    fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&h| h <= self.limit)
            })
            .is_ok()
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Bytes taken from the budget, given back when dropped, however the packet ends.
struct Hold {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why an attachment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This packet's attachments passed the per-packet limit.
    TooBig,
    /// Unfinished packets of all sessions already hold the whole budget.
    OverBudget,
}

impl Refused {
    /// The close a WebSocket client gets.
    pub(crate) fn ws_close(self) -> WsClose {
        match self {
            Refused::TooBig => WsClose::new(1009, "attachments too big"),
            Refused::OverBudget => WsClose::new(1013, "too many attachments in flight"),
        }
    }
}

/// A binary packet waiting for its attachments.
pub(crate) struct Partial {
    pub(crate) packet: Packet,
    parts: Vec<Bytes>,
    hold: Hold,
    /// Dropped with the packet, which stops its timer.
    _timer: oneshot::Sender<()>,
}

impl Partial {
    /// Starts reassembling `packet`; the session is closed unless it completes within
    /// `timeout`. Refused while the budget is spent.
    pub(crate) fn start(
        packet: Packet,
        budget: &Arc<Budget>,
        engine: &Arc<engineio::Socket>,
        timeout: Duration,
    ) -> Result<Partial, Refused> {
        if budget.is_exhausted() {
            return Err(Refused::OverBudget);
        }
        let (timer, done) = oneshot::channel::<()>();
        let socket = engine.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => {
                        let why = "binary attachments not complete in time";
                        debug!(error = why, "closing: bad socket.io packet");
                        refusals::record(Refusal::BadPacket, socket.peer, &why);
                        socket.reject(WsClose::new(1002, "attachments not sent in time"));
                    }
                    _ = done => {}
                    _ = socket.closing() => {}
                }
            }
            .instrument(engine.span().clone()),
        );
        Ok(Partial {
            packet,
            parts: Vec::new(),
            hold: Hold {
                budget: budget.clone(),
                bytes: 0,
            },
            _timer: timer,
        })
    }

    /// Adds one attachment of at most `max` bytes for the whole packet; true once all came.
    pub(crate) fn add(&mut self, data: Bytes, max: usize) -> Result<bool, Refused> {
        let len = data.len();
        if self.hold.bytes.saturating_add(len) > max {
            return Err(Refused::TooBig);
        }
        if !self.hold.budget.try_take(len) {
            return Err(Refused::OverBudget);
        }
        self.hold.bytes += len;
        self.parts.push(data);
        Ok(self.parts.len() == self.packet.attachments)
    }

    /// The packet and its attachments; the bytes go back to the budget.
    pub(crate) fn finish(self) -> (Packet, Vec<Bytes>) {
        (self.packet, self.parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Budget::new(10);
        let mut a = Hold {
            budget: budget.clone(),
            bytes: 0,
        };
        assert!(budget.try_take(6));
        a.bytes = 6;
        assert!(!budget.try_take(5), "past the budget");
        assert!(budget.try_take(4));
        assert!(budget.is_exhausted());
        budget.held.fetch_sub(4, Ordering::AcqRel);
        drop(a);
        assert_eq!(budget.held(), 0);
        assert!(!budget.is_exhausted());
    }
}
