//! The worker while Redis is away: each op settled by this node alone, and what it must
//! tell the cluster once Redis is back.

use std::sync::Arc;
use std::time::Duration;

use super::{Op, Worker, entry, membership};
use crate::cluster::{ClusterError, Inbound, Membership, identity_of};

impl Worker {
    /// One op with Redis away: settled by this node alone. Returns true when the worker
    /// stops (a departure or a hand-over).
    pub(super) fn offline_op(&mut self, hub: &Arc<dyn Inbound>, op: Op) -> bool {
        match op {
            Op::Publish { payload, .. } => self.deliver_here(hub, &payload),
            // Written back when Redis is back (`sessions.rs`).
            Op::Session { pid, member, on } => self.sessions.note(&pid, &member, on, false),
            Op::Resume { reply, .. } => {
                let _ = reply.send(Err(ClusterError::Unavailable));
            }
            Op::Watch(channel, on) => {
                if on {
                    self.watched.insert(channel);
                } else {
                    self.forget_channel(&channel);
                }
            }
            // An identity another node holds in the channel neither joins nor leaves it
            // cluster-wide: its members here heard it join already.
            Op::Join(change) => {
                let key = entry(&change.channel, &change.member);
                let count = hub.local_count(&change.channel);
                if !self.elsewhere.contains(&key) {
                    let env = membership(&change, Membership::Subscribe, count);
                    hub.announce(Membership::Subscribe, &env, None, false);
                }
                self.dropped.remove(&key);
                self.dirty.insert(key);
                let _ = change.reply.send(count);
            }
            Op::Leave(change) => {
                let key = entry(&change.channel, &change.member);
                let count = hub.local_count(&change.channel);
                if change.explicit || !self.elsewhere.contains(&key) {
                    let env = membership(&change, Membership::Unsubscribe, count);
                    hub.announce(Membership::Unsubscribe, &env, Some(&change.member), false);
                }
                if change.explicit && identity_of(&change.member).is_some() {
                    // Out everywhere, by this node's word: nobody holds it elsewhere.
                    self.elsewhere.remove(&key);
                    self.dropped.insert(key.clone());
                }
                self.dirty.insert(key);
                let _ = change.reply.send(count);
            }
            // Told to the monitor at the resync, once the cluster can decide.
            Op::Online(member, _) => {
                self.dirty.insert(member);
            }
            Op::Depart(done) => {
                let _ = done.send(());
                return true;
            }
            // Nothing to send and nothing to hear: the next process catches up from the
            // offset the hub last delivered, once Redis is back.
            Op::HandOver(reply) => {
                let _ = reply.send(None);
                return true;
            }
        }
        false
    }

    /// Settles ops locally for `wait`; true when the node departed meanwhile.
    pub(super) async fn offline_for(&mut self, hub: &Arc<dyn Inbound>, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => if self.offline_op(hub, op) { return true },
                    None => return true,
                },
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}
