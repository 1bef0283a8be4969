//! The resynchronisation after an outage: this node's presence written back in chunks,
//! the news it found told at the next heartbeat, and the queued ops whose change it took.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use tracing::{info, warn};

use super::{BATCH, Change, Worker, entry, membership, quiet, scripts};
use crate::cluster::{ClusterError, Envelope, Inbound, Membership};
use crate::engineio::Sid;

/// Entries written back in one script call by a resync.
const RESYNC_CHUNK: usize = 1000;

impl Worker {
    /// Makes this node's presence in Redis what the hub holds, announcing to the other
    /// nodes (and the monitor) what that changes cluster-wide. This node's members heard
    /// of those changes already, when they happened.
    pub(super) async fn resync(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        let fresh = Sid::random().to_string();
        let (epoch,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.epoch())
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(self.keys.epoch())
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading the data set epoch"))?;
        let data_lost = self.epoch.as_ref().is_some_and(|old| *old != epoch);
        if data_lost {
            warn!(node = %self.node, "Redis lost its data: writing this node's presence back");
            self.suspect_vanished();
        }
        // Unless Redis lost its data, what differs is news: changes made while it was away,
        // or this node's members removed by the others meanwhile.
        // What other nodes told while this one was away goes into the hub first: an
        // identity that unsubscribed elsewhere meanwhile is not written back.
        self.catch_up_control(hub, conn, data_lost).await?;
        let news = |key: &str| !data_lost || self.dirty.contains(key);
        let snap = hub.snapshot();
        // Ops queued now made changes the snapshot already holds.
        self.taken.clear();
        self.taken_ops = self.ops.len() + self.held;
        let held: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.sub(&self.node))
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading this node's subscriptions"))?;
        let online: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_members(&self.node))
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("reading this node's members"))?;
        let here: HashMap<String, (String, String)> = snap
            .subscriptions
            .into_iter()
            .map(|(c, m)| (entry(&c, &m), (c, m)))
            .collect();
        // Written in chunks, one script call each: a node with 100,000 subscriptions
        // resynchronises in a few hundred round trips, and no call holds Redis long.
        let joins: Vec<(&str, &str)> = here
            .iter()
            .filter(|(e, _)| !held.contains(*e))
            .map(|(_, (c, m))| (c.as_str(), m.as_str()))
            .collect();
        let leaves: Vec<(&str, &str)> = held
            .iter()
            .filter(|e| !here.contains_key(*e))
            .filter_map(|e| e.split_once('\0'))
            .collect();
        let mut changed = joins.len() + leaves.len();
        let mut beat_due = Instant::now() + self.heartbeat;
        let mut told = Vec::new();
        for (pairs, script, event) in [
            (&joins, &*scripts::JOIN, Membership::Subscribe),
            (&leaves, &*scripts::LEAVE, Membership::Unsubscribe),
        ] {
            for chunk in pairs.chunks(RESYNC_CHUNK) {
                beat_due = self.touch_if_due(conn, beat_due).await?;
                let done = self.run_many(conn, script, chunk).await?;
                for ((channel, member), (edge, _)) in chunk.iter().zip(done) {
                    let key = entry(channel, member);
                    if edge && self.taken_ops > 0 {
                        self.taken.insert(key.clone(), (event, false));
                    }
                    if edge && news(&key) {
                        told.push((quiet(channel, member), event));
                    }
                }
            }
        }
        // An unsubscribe settled while Redis was away takes the identity out on every
        // node, at the next heartbeat (when the others have written theirs back), unless
        // it left the channel cluster-wide here already.
        let left: HashSet<String> = told
            .iter()
            .map(|(c, _): &(Change, Membership)| entry(&c.channel, &c.member))
            .collect();
        for key in std::mem::take(&mut self.dropped) {
            if here.contains_key(&key) || left.contains(&key) {
                continue;
            }
            if let Some((channel, member)) = key.split_once('\0') {
                let mut change = quiet(channel, member);
                change.explicit = true;
                told.push((change, Membership::Unsubscribe));
            }
        }
        self.pending.extend(told);
        let members: HashSet<&str> = snap.members.iter().map(String::as_str).collect();
        let arrived: Vec<&str> = members
            .iter()
            .copied()
            .filter(|m| !online.contains(*m))
            .collect();
        let departed: Vec<&str> = online
            .iter()
            .map(String::as_str)
            .filter(|m| !members.contains(m))
            .collect();
        changed += arrived.len() + departed.len();
        for (list, on) in [(&arrived, true), (&departed, false)] {
            for chunk in list.chunks(RESYNC_CHUNK) {
                beat_due = self.touch_if_due(conn, beat_due).await?;
                let edges = self.online_many(conn, chunk, on).await?;
                for (m, edge) in chunk.iter().zip(edges) {
                    if edge && news(m) {
                        hub.announce_presence(m, on);
                    }
                }
            }
        }
        if changed > 0 {
            info!(node = %self.node, changes = changed, "presence resynchronised with Redis");
        }
        self.write_sessions_back(conn, data_lost).await?;
        self.dirty.clear();
        if data_lost {
            self.tell_unsent(conn, Some(&epoch)).await?;
        }
        self.epoch = Some(epoch);
        Ok(())
    }

    /// Whether the last resync took this op's `event` (its first join or last leave)
    /// while the op was queued: `Some(told)`, `told` when the other nodes heard of it.
    pub(super) fn took(&mut self, change: &Change, event: Membership) -> Option<bool> {
        let key = entry(&change.channel, &change.member);
        match self.taken.get(&key) {
            Some((e, told)) if *e == event => {
                let told = *told;
                self.taken.remove(&key);
                Some(told)
            }
            _ => None,
        }
    }

    /// `n` more ops applied since the last resync.
    pub(super) fn applied(&mut self, n: usize) {
        if self.taken_ops > 0 {
            self.taken_ops = self.taken_ops.saturating_sub(n);
            if self.taken_ops == 0 {
                self.taken.clear();
            }
        }
    }

    /// A change applied after a resync found it supersedes what the resync would tell.
    pub(super) fn forget_pending(&mut self, change: &Change) {
        self.pending
            .retain(|(c, _)| !(c.channel == change.channel && c.member == change.member));
    }

    /// Renews this node's heartbeat when `due` has passed; returns when it is next due.
    async fn touch_if_due(
        &self,
        conn: &mut MultiplexedConnection,
        due: Instant,
    ) -> Result<Instant, ClusterError> {
        if Instant::now() < due {
            return Ok(due);
        }
        let _: u8 = scripts::TOUCH
            .key(self.keys.nodes())
            .arg(&*self.node)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("beating during a resync"))?;
        Ok(Instant::now() + self.heartbeat)
    }

    /// Tells what the last resync found, with the counts as they are now, a pipeline
    /// of counts and one of events per [`BATCH`] changes. It beats as it goes: telling
    /// 100,000 changes takes longer than `node-timeout` on a busy machine, and a node
    /// that stops beating meanwhile is reaped and then writes it all back, told twice.
    pub(super) async fn tell_pending(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        let mut beat_due = Instant::now() + self.heartbeat;
        while let Some(i) = self.pending.iter().position(|(c, _)| c.explicit) {
            beat_due = self.touch_if_due(conn, beat_due).await?;
            let (had, count) = self.drop_everywhere(conn, &self.pending[i].0).await?;
            let (change, event) = self.pending.remove(i);
            if had {
                let env = membership(&change, event, count);
                hub.observe_only(event, &env);
                self.send(conn, &env).await?;
            }
            self.control(conn, "leave", &change, None).await?;
        }
        while !self.pending.is_empty() {
            beat_due = self.touch_if_due(conn, beat_due).await?;
            let chunk = &self.pending[..self.pending.len().min(BATCH)];
            let mut pipe = redis::pipe();
            for (change, _) in chunk {
                pipe.hlen(self.keys.channel(&change.channel));
            }
            let counts: Vec<usize> = pipe
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("counting channel members"))?;
            let envs: Vec<Envelope> = chunk
                .iter()
                .zip(counts)
                .map(|((change, event), count)| {
                    let key = entry(&change.channel, &change.member);
                    if let Some((_, told)) = self.taken.get_mut(&key) {
                        *told = true;
                    }
                    let env = membership(change, *event, count);
                    hub.observe_only(*event, &env);
                    env
                })
                .collect();
            self.send_many(conn, &envs).await?;
            let told = envs.len();
            self.pending.drain(..told);
        }
        Ok(())
    }
}
