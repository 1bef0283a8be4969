//! Broadcasts spread over several Redis Cluster shards (`[Cluster] bus-shards`): each
//! channel's go to one shard's slot with `SPUBLISH`, and every node listens to each shard
//! with `SSUBSCRIBE` over a connection of its own, so the bus grows with the primaries
//! instead of one carrying every message. Nothing goes through the message log: a node
//! delivers its own broadcasts first (a publisher's reach every node in the order sent),
//! and a session resumes only on the node that held it. The shards' tasks: `shard.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::BusStats;
use crate::cluster::{Envelope, Settle, wire};
pub(super) use shard::ShardTask;

mod shard;

/// Redis Cluster's hash slots.
const SLOTS: u32 = 16_384;

/// The hash slot of a key whose hash tag is all of it (CRC16/XMODEM, as Redis Cluster's
/// specification gives it).
fn slot(tag: &str) -> u32 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    u32::from(crc) % SLOTS
}

/// The hash tag of shard `i` of `n`: one whose slot lies in the middle half of the `i`-th
/// of `n` equal parts of the slot range, so that shards land on different primaries where
/// the slots are split evenly (as `redis-cli --cluster create` splits them, give or take
/// a slot). Every node finds the same.
fn tag(prefix: &str, i: usize, n: usize) -> String {
    let (low, high) = part(i, n);
    (0..u32::MAX)
        .map(|j| format!("{prefix}.{i}.{j}"))
        .find(|t| (low..high).contains(&slot(t)))
        .unwrap_or_else(|| format!("{prefix}.{i}"))
}

/// The middle half of the `i`-th of `n` equal parts of the slot range.
fn part(i: usize, n: usize) -> (u32, u32) {
    let (i, n) = (i as u32, n as u32);
    let (start, end) = (SLOTS * i / n, SLOTS * (i + 1) / n);
    let quarter = (end - start) / 4;
    (start + quarter, end - quarter)
}

/// Which of `n` shards carries `name` (a channel, or an identity for direct messages):
/// FNV-1a, stable across nodes and versions.
fn shard_of(name: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// What the hub asks of one shard's task.
enum ShardOp {
    Publish {
        topic: String,
        payload: Bytes,
    },
    Watch(String, bool),
    /// Everything queued before goes out first (a hand-over, a shutdown).
    Flush(oneshot::Sender<()>),
}

/// One shard as the hub sees it: its queue and whether it is reachable.
struct Shard {
    tag: String,
    ops: mpsc::UnboundedSender<ShardOp>,
    up: Arc<AtomicBool>,
}

/// The broadcasts' side of the bus when it is spread over shards.
pub(super) struct Spread {
    node: Arc<str>,
    shards: Vec<Shard>,
}

fn topic(tag: &str, channel: &str) -> String {
    format!("{{{tag}}}:m:{channel}")
}

fn direct(tag: &str) -> String {
    format!("{{{tag}}}:direct")
}

impl Spread {
    /// `n` shards of the cluster at `url` (a `redis+cluster://` URL), and their tasks.
    pub(super) fn new(
        url: &str,
        prefix: &str,
        n: usize,
        node: Arc<str>,
        stats: &Arc<BusStats>,
        heartbeat: Duration,
    ) -> (Spread, Vec<ShardTask>) {
        let mut shards = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let subscribe_delay = shard::test_delay();
        if let Some(delay) = subscribe_delay {
            warn!(?delay, "test hook: bus shards listen to new channels late");
        }
        for i in 0..n {
            let tag = tag(prefix, i, n);
            let (tx, rx) = mpsc::unbounded_channel();
            let up = Arc::new(AtomicBool::new(false));
            shards.push(Shard {
                tag: tag.clone(),
                ops: tx,
                up: up.clone(),
            });
            tasks.push(ShardTask {
                url: url.to_owned(),
                tag,
                node: node.clone(),
                ops: rx,
                up,
                stats: stats.clone(),
                heartbeat,
                watched: HashSet::new(),
                subscribe_delay,
            });
        }
        (Spread { node, shards }, tasks)
    }

    /// Queues a broadcast on the shard of its channel (or of its identity).
    pub(super) fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        let (shard, topic) = match (to, envelope.channel.as_deref()) {
            (Some(id), _) => {
                let s = &self.shards[shard_of(id, self.shards.len())];
                (s, direct(&s.tag))
            }
            (None, Some(channel)) => {
                let s = &self.shards[shard_of(channel, self.shards.len())];
                (s, topic(&s.tag, channel))
            }
            (None, None) => return,
        };
        let payload = wire::encode(&self.node, envelope, attachments, to, None);
        let _ = shard.ops.send(ShardOp::Publish { topic, payload });
    }

    pub(super) fn watch(&self, channel: &str, on: bool) {
        let shard = &self.shards[shard_of(channel, self.shards.len())];
        let _ = shard.ops.send(ShardOp::Watch(channel.to_owned(), on));
    }

    /// The member count `count` will tell, told once the shard of `channel` has done what
    /// was queued before (listening to the channel, when it was new here).
    pub(super) fn once_listening(&self, channel: &str, count: oneshot::Receiver<usize>) -> Settle {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Settle::Later(count);
        };
        let shard = &self.shards[shard_of(channel, self.shards.len())];
        let (done, listening) = oneshot::channel();
        let _ = shard.ops.send(ShardOp::Flush(done));
        let (tx, rx) = oneshot::channel();
        runtime.spawn(async move {
            let _ = listening.await;
            if let Ok(n) = count.await {
                let _ = tx.send(n);
            }
        });
        Settle::Later(rx)
    }

    /// The flags of the shards' connections.
    pub(super) fn up_flags(&self) -> Vec<Arc<AtomicBool>> {
        self.shards.iter().map(|s| s.up.clone()).collect()
    }

    /// Waits, at most `within`, for what every shard had queued to go out.
    pub(super) async fn flush(&self, within: Duration) {
        let waits: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                let (tx, rx) = oneshot::channel();
                s.ops.send(ShardOp::Flush(tx)).ok().map(|()| rx)
            })
            .collect();
        let _ = tokio::time::timeout(within, futures_util::future::join_all(waits)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // The reference values of Redis Cluster's specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
    }

    #[test]
    fn each_shard_has_its_part_of_the_slots() {
        for n in [1, 2, 3, 7, 64] {
            let tags: Vec<String> = (0..n).map(|i| tag("realtime", i, n)).collect();
            for (i, t) in tags.iter().enumerate() {
                let s = slot(t);
                let (low, high) = part(i, n);
                assert!(
                    low >= SLOTS * i as u32 / n as u32
                        && high <= SLOTS * (i as u32 + 1) / n as u32
                        && (low..high).contains(&s),
                    "{t}: slot {s} not in the middle of part {i} of {n}"
                );
            }
            assert_eq!(
                tags,
                (0..n).map(|i| tag("realtime", i, n)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn channels_spread_over_the_shards() {
        let mut counts = [0usize; 4];
        for c in 0..4000 {
            counts[shard_of(&format!("room-{c}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
        assert_eq!(shard_of("room", 1), 0);
        assert_eq!(shard_of("room", 4), shard_of("room", 4));
    }
}
