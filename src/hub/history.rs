//! Channel history: the last messages broadcast to each channel, kept with the offsets
//! their recipients saw and bounded by count and age, so a client can ask what came after
//! the last offset it saw (docs/protocol.md#history).
//!
//! A channel's ring is made by its first broadcast and dropped once everything in it has
//! aged out; channels nobody publishes to cost nothing. Each shard's rings sit behind a
//! lock of their own, taken under the channel shard's lock (a leaf), so a ring is filled in
//! the order offsets are given.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::debug;

use super::validate::{ChannelName, HubError};
use super::{Envelope, Hub};
use crate::cluster::History;

/// Most messages one answer carries.
pub const MAX_LIMIT: usize = 1000;

/// The messages one answer carries when the request names no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// One channel's kept messages, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    kept: VecDeque<(u64, Instant, Envelope)>,
    /// The last offset that left the ring (0: none has): a `since` before it missed some.
    gone: u64,
}

impl Ring {
    fn push(&mut self, offset: u64, envelope: Envelope, size: usize) {
        self.kept.push_back((offset, Instant::now(), envelope));
        while self.kept.len() > size {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((offset, ..)) = self.kept.pop_front() {
            self.gone = offset;
        }
    }

    /// Drops what is older than `ttl`.
    fn expire(&mut self, ttl: Duration) {
        let now = Instant::now();
        while self
            .kept
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) >= ttl)
        {
            self.drop_oldest();
        }
    }

    /// The answer to `since` and `limit` when the last offset given out is `current`.
    fn read(&self, since: Option<u64>, limit: usize, current: u64) -> History {
        let tail = since.is_none();
        let since = since.unwrap_or(0);
        // An offset ahead of this node's (from before a restart, or another node's) names
        // nothing kept here: everything kept is after it, and what came before is unknown.
        let known = since <= current;
        let complete = known && since >= self.gone;
        let after: Vec<_> = match known {
            true => self.kept.iter().filter(|(o, ..)| *o > since).collect(),
            false => self.kept.iter().collect(),
        };
        let more = after.len() > limit;
        // After a `since`, the oldest first so the next ask goes on from the last one;
        // without one, the newest.
        let skip = match tail {
            true => after.len().saturating_sub(limit),
            false => 0,
        };
        let messages = after
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(|(o, _, e)| (*o, e.clone()))
            .collect();
        History {
            messages,
            offset: current,
            complete,
            more,
        }
    }
}

/// The rings of one shard's channels.
#[derive(Debug, Default)]
pub(crate) struct Rings {
    pub(super) rings: HashMap<String, Ring>,
    /// When the rings that aged out are next looked for.
    next_sweep: Option<Instant>,
}

impl Hub {
    /// Whether broadcasts are kept (`history-size` is not 0).
    pub(super) fn keeps_history(&self) -> bool {
        self.config.history_size > 0
    }

    /// Keeps a broadcast to `channel` delivered with `offset`. Called under the channel
    /// shard's lock, so the ring follows delivery order. A message with binary attachments
    /// is not kept: a history answer is JSON.
    pub(super) fn keep(&self, channel: &str, offset: u64, envelope: &Envelope, binary: bool) {
        if !self.keeps_history() || binary || offset == 0 {
            return;
        }
        let Ok(mut rings) = self.shard(channel).history.lock() else {
            return;
        };
        let ttl = self.config.history_ttl;
        let now = Instant::now();
        // Once a ttl, per shard, the rings of channels quiet since are dropped.
        if rings.next_sweep.is_none_or(|t| now >= t) {
            rings.rings.retain(|_, ring| {
                ring.expire(ttl);
                !ring.kept.is_empty()
            });
            rings.next_sweep = Some(now + ttl);
        }
        let ring = rings.rings.entry(channel.to_owned()).or_default();
        ring.push(offset, envelope.clone(), self.config.history_size);
    }

    /// The offset for a broadcast that may be kept: non-zero when recovery or history is
    /// on. The second value is what recipients see (0 when recovery is off: no offset is
    /// sent).
    pub(super) fn broadcast_offset(&self) -> (u64, u64) {
        if !self.keeps_history() {
            let o = self.next_offset();
            return (o, o);
        }
        let o = self.offsets.fetch_add(1, Ordering::Relaxed) + 1;
        let seen = if self.config.grace.is_zero() { 0 } else { o };
        (o, seen)
    }

    /// This node's history of `channel`: the messages after `since` (the newest without
    /// it), `limit` at most.
    pub fn local_history(&self, channel: &str, since: Option<u64>, limit: usize) -> History {
        // The channel lock keeps a broadcast from taking its offset between the two reads
        // below: the offset answered is never ahead of the ring.
        let map = self.shard(channel).channels.lock();
        let Ok(mut rings) = self.shard(channel).history.lock() else {
            return History::default();
        };
        let current = self.offsets.load(Ordering::Relaxed);
        let ring = rings.rings.get_mut(channel);
        let answer = match ring {
            Some(ring) => {
                ring.expire(self.config.history_ttl);
                ring.read(since, limit, current)
            }
            None => Ring::default().read(since, limit, current),
        };
        drop(rings);
        drop(map);
        answer
    }

    /// The history of `channel` for a client or the API: the cluster's when it keeps one,
    /// else this node's. Refused when history is off.
    pub fn history(
        &self,
        channel: &ChannelName,
        since: Option<u64>,
        limit: usize,
    ) -> Result<futures_util::future::BoxFuture<'static, History>, HubError> {
        if !self.keeps_history() {
            return Err(HubError::HistoryOff);
        }
        let local = self.local_history(channel, since, limit);
        Ok(match self.presence.history(channel, since, limit) {
            None => Box::pin(std::future::ready(local)),
            Some(query) => Box::pin(async move {
                query.await.unwrap_or_else(|e| {
                    debug!(error = %e, "cluster history unavailable; answering for this node");
                    local
                })
            }),
        })
    }
}

/// The `since` of a request: an offset as clients get them (a string of digits) or a
/// whole number; absent or `null`, none.
pub fn parse_since(v: Option<&Value>) -> Result<Option<u64>, HubError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| HubError::BadSince),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(HubError::BadSince),
        Some(_) => Err(HubError::BadSince),
    }
}

/// The `limit` of a request: 1 to [`MAX_LIMIT`] (a string of digits too, as a query
/// string gives it); absent or `null`, [`DEFAULT_LIMIT`].
pub fn parse_limit(v: Option<&Value>) -> Result<usize, HubError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(DEFAULT_LIMIT),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
    };
    match n {
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => Ok(n as usize),
        _ => Err(HubError::BadLimit(MAX_LIMIT)),
    }
}

/// The answer as clients read it: each message the envelope they got live, with its
/// offset; offsets are strings, as in the live `message` event.
pub fn history_json(channel: &str, h: &History) -> Value {
    let messages: Vec<Value> = h
        .messages
        .iter()
        .map(|(offset, e)| {
            let mut v = e.to_json();
            v["offset"] = Value::String(offset.to_string());
            v
        })
        .collect();
    json!({
        "ok": true,
        "channel": channel,
        "messages": messages,
        "offset": h.offset.to_string(),
        "complete": h.complete,
        "more": h.more,
    })
}
