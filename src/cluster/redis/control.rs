//! Control messages (an identity joined or left a channel, so its sessions on every node
//! follow), kept in a stream as well as published: a node that was away when one went
//! out applies it when it is back, before it writes its presence back, so it does not
//! re-add an identity that unsubscribed elsewhere meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use redis::Script;
use redis::aio::MultiplexedConnection;
use tracing::{info, warn};

use super::{BATCH, Change, Worker, entry, log};
use crate::cluster::{ClusterError, Envelope, Inbound, identity_of, wire};

/// Most control messages kept for a node that was away: far more than an outage makes.
const KEPT: usize = 100_000;

/// Appends a control message to the stream and publishes it with its id, in one step,
/// so the stream's order is the order every node hears.
/// KEYS: control stream, control topic. ARGV: message, most entries kept.
const CONTROL_LUA: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'p', ARGV[1])
redis.call('PUBLISH', KEYS[2], id .. '\n' .. ARGV[1])
return id
";

/// Stream entries as Redis answers them: id, then field/value pairs.
type Entries<V> = Vec<(String, Vec<(String, V)>)>;

static CONTROL: LazyLock<Script> = LazyLock::new(|| Script::new(CONTROL_LUA));
/// The same on a Redis Cluster: sharded pub/sub, so it reaches only the slot's shard.
static SCONTROL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&CONTROL_LUA.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"))
});

/// A control message: an identity joined or left a channel on node `n`. A join that was
/// news cluster-wide carries its `onSubscribe` (timestamp `t`, data `d`), which the
/// identity's sessions on the other nodes hear from it, and not from the bus.
#[derive(serde::Deserialize)]
struct Control {
    n: String,
    op: String,
    m: String,
    c: String,
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    d: Option<serde_json::Value>,
}

impl Control {
    /// The `onSubscribe` this join carries, if it carries a well-formed one.
    fn told(&self) -> Option<Envelope> {
        let d = self.d.as_ref()?;
        if d.get("command").and_then(|c| c.as_str()) != Some("onSubscribe") {
            return None;
        }
        Some(Envelope {
            kind: "command",
            channel: Some(self.c.clone()),
            identity: identity_of(&self.m).map(Arc::from),
            timestamp: wire::time_of(self.t?)?,
            data: d.clone(),
        })
    }
}

impl Worker {
    /// Tells the other nodes that an identity joined or left a channel, so its sessions
    /// there follow (anonymous members live on one node: nothing to tell).
    pub(super) async fn control(
        &mut self,
        conn: &mut MultiplexedConnection,
        op: &str,
        change: &Change,
        told: Option<&Envelope>,
    ) -> Result<(), ClusterError> {
        if identity_of(&change.member).is_none() {
            return Ok(());
        }
        let mut payload = serde_json::json!({
            "n": &*self.node, "op": op, "m": change.member, "c": change.channel,
        });
        if let Some(env) = told {
            payload["t"] = wire::millis_of(env.timestamp).into();
            payload["d"] = env.data.clone();
        }
        let payload = payload.to_string();
        let script = if self.keys.sharded {
            &SCONTROL
        } else {
            &CONTROL
        };
        let id: String = script
            .key(self.keys.control_log())
            .key(self.keys.control())
            .arg(payload)
            .arg(KEPT)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("publishing a control message"))?;
        self.control_seen(&id);
        Ok(())
    }

    /// Applies the control messages this node missed while it was away (everything the
    /// stream holds when Redis lost its data); on its first connection it only notes
    /// where the stream ends. Run before the resync reads the hub.
    pub(super) async fn catch_up_control(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        data_lost: bool,
    ) -> Result<(), ClusterError> {
        let key = self.keys.control_log();
        let mut gap = false;
        let start = match (&self.ctl_seen, data_lost) {
            (None, _) => {
                let last: Entries<String> = redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(conn)
                    .await
                    .map_err(ClusterError::redis("reading where control messages end"))?;
                let end = last.into_iter().next().map(|(id, _)| id);
                self.ctl_seen = Some(end.unwrap_or_else(|| "0-0".to_owned()));
                return Ok(());
            }
            // The stream's ids start again with the new data set: all of it is news.
            (Some(_), true) => {
                self.ctl_seen = Some("0-0".to_owned());
                "-".to_owned()
            }
            (Some(seen), false) => {
                let first: Entries<String> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(conn)
                    .await
                    .map_err(ClusterError::redis("reading where control messages begin"))?;
                gap = trimmed_past(seen, first.first().map(|(id, _)| id.as_str()));
                format!("({seen}")
            }
        };
        let missed: Entries<Vec<u8>> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg("+")
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading missed control messages"))?;
        let n = missed.len();
        for (id, fields) in missed {
            if let Some((_, raw)) = fields.into_iter().find(|(f, _)| f == "p") {
                self.apply_control(hub, Some(&id), &raw, false);
            }
        }
        if n > 0 {
            info!(node = %self.node, messages = n, "applied the control messages missed while Redis was away");
        }
        if gap {
            self.follow_identities(hub, conn).await?;
        }
        Ok(())
    }

    /// Control messages were trimmed before this node read them: its identities' tabs
    /// take their channels from Redis instead (`P:ms:{member}`, the channels each is in
    /// cluster-wide), except where this node changed them while away. Not when a change
    /// is still queued, nor leaves when the others had reaped this node (a channel
    /// missing then may be the reaping's doing): the resync writes those back, as before.
    async fn follow_identities(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        let snap = hub.snapshot();
        // The hub queues a change's op as it makes it: with none queued, every change the
        // snapshot holds was settled, offline (then in `dirty`) or in Redis. One queued
        // now (a subscribe or unsubscribe in this very instant) is not in Redis yet, and
        // would pass for a change made elsewhere.
        if !(self.ops.is_empty() && self.held == 0) {
            warn!(node = %self.node, "control messages were trimmed before this node read them, and a change is under way: its identities keep their channels here");
            return Ok(());
        }
        let mut identities: Vec<&str> = snap
            .members
            .iter()
            .chain(snap.subscriptions.iter().map(|(_, m)| m))
            .map(String::as_str)
            .filter(|m| identity_of(m).is_some())
            .collect();
        identities.sort_unstable();
        identities.dedup();
        let mut cluster: HashMap<&str, HashSet<String>> = HashMap::new();
        for chunk in identities.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for m in chunk {
                pipe.cmd("SMEMBERS").arg(self.keys.member_channels(m));
            }
            let sets: Vec<HashSet<String>> = pipe
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("reading identities' channels"))?;
            cluster.extend(chunk.iter().copied().zip(sets));
        }
        let here: HashSet<(&str, &str)> = snap
            .subscriptions
            .iter()
            .map(|(c, m)| (c.as_str(), m.as_str()))
            .collect();
        let (mut joined, mut left) = (0usize, 0usize);
        for (m, channels) in &cluster {
            for c in channels {
                if !here.contains(&(c.as_str(), *m))
                    && !self.dirty.contains(&entry(c, m))
                    && hub.accepts_channel(c)
                {
                    hub.adopt(m, c);
                    joined += 1;
                }
            }
        }
        if !self.reaped {
            for (c, m) in &here {
                let gone = cluster.get(m).is_some_and(|chs| !chs.contains(*c));
                if gone && !self.dirty.contains(&entry(c, m)) {
                    hub.drop_remote(m, c);
                    left += 1;
                }
            }
        }
        warn!(
            node = %self.node, joined, left, reaped = self.reaped,
            "control messages were trimmed before this node read them: its identities' channels taken from Redis"
        );
        Ok(())
    }

    /// A control message heard on the bus (`id\nmessage`), or read from the stream.
    pub(super) fn inbound_control(&mut self, hub: &Arc<dyn Inbound>, raw: &[u8]) {
        match log::split(raw) {
            Some((id, raw)) => self.apply_control(hub, Some(id), raw, true),
            None => self.apply_control(hub, None, raw, true),
        }
    }

    /// Applies one control message; `live` when heard on the bus, where the membership
    /// event it follows went out too (one read from the stream after an outage follows
    /// an event nobody here heard, so its news is not told late to the identity alone).
    fn apply_control(&mut self, hub: &Arc<dyn Inbound>, id: Option<&str>, raw: &[u8], live: bool) {
        // Heard live and read from the stream too: applied once.
        if let Some(id) = id
            && !self.control_seen(id)
        {
            return;
        }
        let ctl: Control = match serde_json::from_slice(raw) {
            Ok(c) => c,
            Err(e) => {
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(redis_channel = %self.keys.control(), error = %e, "dropped a malformed control message from the bus");
                return;
            }
        };
        if ctl.n == *self.node {
            return;
        }
        let valid = identity_of(&ctl.m).is_some() && hub.accepts_channel(&ctl.c);
        match ctl.op.as_str() {
            "join" if valid => {
                hub.adopt(&ctl.m, &ctl.c);
                match ctl.told() {
                    Some(env) if live => hub.announce_to(&ctl.m, &env),
                    None if ctl.d.is_some() => {
                        warn!(redis_channel = %self.keys.control(), "a control message carried a malformed onSubscribe; joined without it");
                    }
                    _ => {}
                }
            }
            "leave" if valid => hub.drop_remote(&ctl.m, &ctl.c),
            _ => {
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(redis_channel = %self.keys.control(), op = %ctl.op, "dropped a control message that makes no sense");
            }
        }
    }

    /// Notes control message `id` as applied; false if it (or a later one) was already.
    fn control_seen(&mut self, id: &str) -> bool {
        let Some(offset) = log::offset_of(id) else {
            return true;
        };
        let seen = self.ctl_seen.as_deref().and_then(log::offset_of);
        if seen.is_some_and(|seen| offset <= seen) {
            return false;
        }
        self.ctl_seen = Some(id.to_owned());
        true
    }
}

/// Whether control messages after `seen` (the last applied) may have left the stream
/// before they were read: `seen` itself is gone, and so may be what followed it.
fn trimmed_past(seen: &str, first: Option<&str>) -> bool {
    match log::offset_of(seen) {
        None | Some(0) => false,
        Some(seen) => first
            .and_then(log::offset_of)
            .is_none_or(|first| first > seen),
    }
}

#[cfg(test)]
mod tests {
    use super::trimmed_past;

    #[test]
    fn a_gap_is_where_the_last_applied_message_is_gone() {
        // Still there: whatever follows it is there too.
        assert!(!trimmed_past("1700-3", Some("1700-3")));
        assert!(!trimmed_past("1700-3", Some("1600-0")));
        // Gone, and the stream starts later, or is empty.
        assert!(trimmed_past("1700-3", Some("1700-4")));
        assert!(trimmed_past("1700-3", None));
        // Nothing applied yet (the stream was empty when first read).
        assert!(!trimmed_past("0-0", None));
        assert!(!trimmed_past("0-0", Some("5-0")));
    }
}
