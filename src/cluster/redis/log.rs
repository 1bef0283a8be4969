//! The message log: every broadcast is appended to one Redis stream before any node
//! delivers it, so its stream id is its offset on every node, and a session resumed on
//! another node is replayed from it. The stream is trimmed to the recovery window by age
//! and to a bound by count; what it no longer holds is refused, never passed off. Here
//! too, the worker's side of it: appending, where the log begins, and a replay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Keys, Worker, scripts};
use crate::cluster::{ClusterError, Inbound, Replayed, wire};

/// Stream entries as `XRANGE` answers them: each id, then its fields and values in turn.
pub(super) type Entries = Vec<(String, Vec<Vec<u8>>)>;

/// Entries the log keeps at most, whatever their age.
pub(super) const MAX_ENTRIES: usize = 100_000;
/// Entries one resumption replays at most (of every channel: the session's are picked).
pub(super) const REPLAY_LIMIT: usize = 20_000;
/// How long the log keeps an entry beyond the recovery window: a client's offset is the
/// last message it got, which may be older than its drop by as long as its channels were
/// quiet.
pub(super) const QUIET_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Bits of an offset left for the sequence within one millisecond.
const SEQ_BITS: u32 = 20;

/// The offset of a stream id `ms-seq`; `None` for one that does not fit (a sequence past a
/// million within one millisecond), which is then delivered without an offset.
pub(super) fn offset_of(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    if seq >> SEQ_BITS != 0 || ms >> (64 - SEQ_BITS) != 0 {
        return None;
    }
    Some(ms << SEQ_BITS | seq)
}

/// The first offset of millisecond `ms`.
pub(super) fn offset_at(ms: u64) -> u64 {
    if ms >> (64 - SEQ_BITS) != 0 {
        return u64::MAX;
    }
    ms << SEQ_BITS
}

/// The stream id of an offset.
pub(super) fn id_of(offset: u64) -> String {
    format!("{}-{}", offset >> SEQ_BITS, offset & ((1 << SEQ_BITS) - 1))
}

/// A broadcast as it comes back from the log through pub/sub: its stream id on the first
/// line, then the bus message. `None` for a message that did not go through the log (a
/// membership event).
pub(super) fn split(raw: &[u8]) -> Option<(&str, &[u8])> {
    if !raw.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let nl = raw.iter().position(|&b| b == b'\n')?;
    let id = std::str::from_utf8(&raw[..nl]).ok()?;
    Some((id, &raw[nl + 1..]))
}

/// Everything the log holds after `offset`, at most `limit` entries, if it still holds
/// `offset` itself: otherwise what followed it may have been trimmed (or Redis lost the
/// stream), and a replay would have a gap.
pub(super) async fn after(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    offset: u64,
    limit: usize,
) -> Result<Vec<Replayed>, ClusterError> {
    let from = id_of(offset);
    // The one field is `p`, the bus message.
    let reply: Entries = redis::cmd("XRANGE")
        .arg(keys.log())
        .arg(&from)
        .arg("+")
        .arg("COUNT")
        .arg(limit.saturating_add(2))
        .query_async(conn)
        .await
        .map_err(ClusterError::redis("reading the message log"))?;
    let mut entries = reply.into_iter();
    if entries.next().map(|(id, _)| id) != Some(from) {
        return Err(ClusterError::Unrecoverable(
            "the offset is no longer in the message log",
        ));
    }
    let mut out = Vec::new();
    for (id, fields) in entries {
        if out.len() >= limit {
            return Err(ClusterError::Unrecoverable(
                "more was published since the offset than a replay holds",
            ));
        }
        let Some(raw) = fields.chunks_exact(2).find(|f| f[0] == b"p").map(|f| &f[1]) else {
            continue;
        };
        let Some(offset) = offset_of(&id) else {
            continue;
        };
        let m = wire::decode(raw)
            .map_err(|_| ClusterError::Unrecoverable("a malformed entry in the message log"))?;
        out.push(Replayed {
            envelope: m.envelope,
            attachments: m.attachments,
            to: m.to,
            offset,
        });
    }
    Ok(out)
}

/// The worker's side of the log: what it keeps, where it begins, appending a broadcast,
/// and what a resumed session missed.
impl Worker {
    /// How long the log keeps a broadcast.
    pub(super) fn keep(&self) -> Duration {
        self.window.saturating_mul(2) + QUIET_MARGIN
    }

    /// Reads where the message log begins, as far as a resumption before the next beat
    /// may count on: its first entry, or what its trimming by age may have reached by then.
    pub(super) async fn refresh_floor(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        let (first, (secs, micros)): (Entries, (u64, u64)) = redis::pipe()
            .cmd("XRANGE")
            .arg(self.keys.log())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("TIME")
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading where the message log begins"))?;
        let now = secs.saturating_mul(1000) + micros / 1000;
        let soon = u64::try_from((self.heartbeat * 2).as_millis()).unwrap_or(u64::MAX);
        let keep = u64::try_from(self.keep().as_millis()).unwrap_or(u64::MAX);
        let edge = offset_at(now.saturating_sub(keep).saturating_add(soon));
        // An empty log has nothing to replay: only what comes next is safe.
        let first = match first.first() {
            Some((id, _)) => offset_of(id).unwrap_or(u64::MAX),
            None => offset_at(now),
        };
        self.floor.store(first.max(edge), Ordering::Release);
        Ok(())
    }

    /// Appends the log script's run for one broadcast to `pipe`, kept in `channel`'s
    /// history too when given.
    pub(super) fn logged<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        topic: &str,
        payload: &[u8],
        channel: Option<&str>,
    ) -> &'p mut redis::Pipeline {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (history, gone, size) = match channel {
            Some(c) => (
                self.keys.history(c),
                self.keys.history_gone(c),
                self.history.size,
            ),
            // Keys still, so the script names every key it may touch.
            None => (self.keys.history(""), self.keys.history_gone(""), 0),
        };
        pipe.cmd("EVALSHA")
            .arg(scripts::publish(self.keys.sharded).get_hash())
            .arg(4)
            .arg(self.keys.log())
            .arg(topic)
            .arg(history)
            .arg(gone)
            .arg(payload)
            .arg(ms(self.keep()))
            .arg(MAX_ENTRIES)
            .arg(size)
            .arg(ms(self.history.ttl))
    }

    /// What session `pid` of `member`, held by a node still known, missed after `offset`.
    /// Its channels are adopted here first, so that what the log holds and what arrives
    /// here from now on overlap: nothing falls between the two.
    pub(super) async fn replay(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        sink: &mut super::subs::Sink,
        pid: &str,
        member: &str,
        offset: u64,
    ) -> Result<Vec<crate::cluster::Replayed>, ClusterError> {
        let holder: Option<String> = scripts::FIND
            .key(self.keys.nodes())
            .arg(&self.keys.prefix)
            .arg(pid)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("finding a session"))?;
        if holder.as_deref() != Some(member) {
            return Err(ClusterError::Unrecoverable(
                "no such session in the cluster",
            ));
        }
        let channels: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.member_channels(member))
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading a member's channels"))?;
        for channel in channels {
            hub.adopt(member, &channel);
            // Subscribed before the log is read (the watch the hub queued comes later).
            if self.watched.insert(channel.clone()) {
                sink.subscribe(&[self.keys.topic(&channel)])
                    .await
                    .map_err(ClusterError::redis("changing a subscription"))?;
            }
        }
        after(conn, &self.keys, offset, REPLAY_LIMIT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_its_stream_id_and_back() {
        let o = offset_of("1796000000123-7").unwrap();
        assert_eq!(id_of(o), "1796000000123-7");
        assert!(offset_of("1796000000123-8").unwrap() > o);
        assert!(offset_of("1796000000124-0").unwrap() > offset_of("1796000000123-99").unwrap());
        assert_eq!(offset_of("1-1048576"), None);
        assert_eq!(offset_of("x-1"), None);
        assert_eq!(
            offset_at(1796000000123),
            offset_of("1796000000123-0").unwrap()
        );
        assert_eq!(offset_at(u64::MAX), u64::MAX);
        assert_eq!(split(b"12-0\n{\"n\":1}"), Some(("12-0", &b"{\"n\":1}"[..])));
        assert_eq!(split(b"{\"n\":1}\n"), None);
    }
}
