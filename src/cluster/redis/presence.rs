//! The worker's side of presence: the scripts run for each change, the heartbeat and
//! the removal of dead nodes, the resynchronisation after an outage, and the
//! announcements these decide.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tracing::{info, warn};

use super::{Change, Worker, entry, membership, quiet, scripts};
use crate::cluster::{ClusterError, Envelope, Inbound, Membership, identity_of, wire};
use crate::engineio::Sid;

impl Worker {
    pub(super) async fn run_change(
        &self,
        conn: &mut MultiplexedConnection,
        script: &Script,
        change: &Change,
    ) -> Result<(bool, usize), ClusterError> {
        let (flag, count): (u8, usize) = script
            .key(self.keys.sub(&self.node))
            .key(self.keys.channel(&change.channel))
            .key(self.keys.channels())
            .key(self.keys.member_channels(&change.member))
            .arg(&change.channel)
            .arg(&change.member)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("running a membership script"))?;
        Ok((flag == 1, count))
    }

    /// An unsubscribe: out of the channel on every node at once.
    pub(super) async fn drop_everywhere(
        &self,
        conn: &mut MultiplexedConnection,
        change: &Change,
    ) -> Result<(bool, usize), ClusterError> {
        let (had, count): (u8, usize) = scripts::DROP
            .key(self.keys.channel(&change.channel))
            .key(self.keys.channels())
            .key(self.keys.member_channels(&change.member))
            .key(self.keys.nodes())
            .arg(&self.keys.prefix)
            .arg(&change.channel)
            .arg(&change.member)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("dropping a member everywhere"))?;
        Ok((had == 1, count))
    }

    /// Tells the other nodes that an identity joined or left a channel, so its sessions
    /// there follow (anonymous members live on one node: nothing to tell).
    pub(super) async fn control(
        &self,
        conn: &mut MultiplexedConnection,
        op: &str,
        change: &Change,
    ) -> Result<(), ClusterError> {
        if identity_of(&change.member).is_none() {
            return Ok(());
        }
        let payload = serde_json::json!({
            "n": &*self.node, "op": op, "m": change.member, "c": change.channel,
        })
        .to_string();
        let _: () = redis::cmd("PUBLISH")
            .arg(self.keys.control())
            .arg(payload)
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("publishing a control message"))?;
        Ok(())
    }

    pub(super) async fn online(
        &self,
        conn: &mut MultiplexedConnection,
        member: &str,
        on: bool,
    ) -> Result<bool, ClusterError> {
        let flag: u8 = scripts::ONLINE
            .key(self.keys.node_members(&self.node))
            .key(self.keys.members())
            .arg(member)
            .arg(if on { "1" } else { "0" })
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("marking a member online"))?;
        Ok(flag == 1)
    }

    /// A membership change decided here: to the monitor, this node's members of the
    /// channel and the other nodes (`leaving`: the member's own sessions here too).
    pub(super) async fn announce(
        &self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        change: &Change,
        event: Membership,
        count: usize,
        leaving: bool,
    ) -> Result<(), ClusterError> {
        let env = membership(change, event, count);
        let member = leaving.then_some(change.member.as_str());
        hub.announce(event, &env, member, true);
        self.send(conn, &env).await
    }

    pub(super) async fn send(
        &self,
        conn: &mut MultiplexedConnection,
        env: &Envelope,
    ) -> Result<(), ClusterError> {
        let Some(channel) = env.channel.as_deref() else {
            return Ok(());
        };
        let payload = wire::encode(&self.node, env, &[], None);
        let _: () = redis::cmd("PUBLISH")
            .arg(self.keys.topic(channel))
            .arg(payload.as_ref())
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("publishing a membership event"))?;
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Heartbeat, and removal of the nodes that stopped beating.
    /// Returns true when the other nodes had removed this one (it missed its heartbeats
    /// while up): its presence must be written back.
    pub(super) async fn beat(
        &self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<bool, ClusterError> {
        let removed = self.reap(hub, conn, "beat").await?;
        // This node's sessions stay findable while it beats, and as long after as the
        // others wait before reaping it.
        let keep = (self.timeout + self.window).saturating_mul(2);
        let _: () = redis::cmd("PEXPIRE")
            .arg(self.keys.pids(&self.node))
            .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX))
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("keeping this node's sessions"))?;
        Ok(removed)
    }

    pub(super) async fn reap(
        &self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        mode: &str,
    ) -> Result<bool, ClusterError> {
        // A dead node's members are removed once their clients could have come back
        // elsewhere: one that did is still a member there, and nobody hears it leave.
        let silent = self.timeout + self.window;
        let timeout_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
        let ended: Vec<String> = scripts::REAP
            .key(self.keys.nodes())
            .arg(&self.keys.prefix)
            .arg(&*self.node)
            .arg(timeout_ms)
            .arg(mode)
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("reaping silent nodes"))?;
        // A beat's answer starts with whether this node was missing from the nodes.
        let (removed, ended) = match ended.split_first_chunk::<4>() {
            Some((first, rest)) if first[0] == "r" => (first[1] == "1", rest),
            _ => (false, &ended[..]),
        };
        if mode == "leave" {
            info!(node = %self.node, changes = ended.len() / 4, "left the cluster: this node's members are removed");
        } else if !ended.is_empty() {
            info!(node = %self.node, changes = ended.len() / 4, "removed the members of nodes that stopped beating");
        }
        for item in ended.chunks_exact(4) {
            match item[0].as_str() {
                "s" => {
                    let change = quiet(&item[1], &item[2]);
                    let count = item[3].parse().unwrap_or(0);
                    self.announce(hub, conn, &change, Membership::Unsubscribe, count, false)
                        .await?;
                }
                "m" => hub.announce_presence(&item[1], false),
                _ => {}
            }
        }
        Ok(removed)
    }

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
        }
        // Unless Redis lost its data, what differs is news: changes made while it was away,
        // or this node's members removed by the others meanwhile.
        let news = |key: &str| !data_lost || self.dirty.contains(key);
        let snap = hub.snapshot();
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
        let mut changed = 0usize;
        for (entry, (channel, member)) in &here {
            if held.contains(entry) {
                continue;
            }
            let change = quiet(channel, member);
            let (first, _) = self.run_change(conn, &scripts::JOIN, &change).await?;
            if first && news(entry) {
                self.pending.push((change, Membership::Subscribe));
            }
            changed += 1;
        }
        for entry in held.iter().filter(|e| !here.contains_key(*e)) {
            let Some((channel, member)) = entry.split_once('\0') else {
                continue;
            };
            let change = quiet(channel, member);
            let (last, _) = self.run_change(conn, &scripts::LEAVE, &change).await?;
            if last && news(entry) {
                self.pending.push((change, Membership::Unsubscribe));
            }
            changed += 1;
        }
        let members: HashSet<&String> = snap.members.iter().collect();
        for m in members.iter().filter(|m| !online.contains(**m)) {
            if self.online(conn, m, true).await? && news(m) {
                hub.announce_presence(m, true);
            }
            changed += 1;
        }
        for m in online.iter().filter(|m| !members.contains(m)) {
            if self.online(conn, m, false).await? && news(m) {
                hub.announce_presence(m, false);
            }
            changed += 1;
        }
        if changed > 0 {
            info!(node = %self.node, changes = changed, "presence resynchronised with Redis");
        }
        self.dirty.clear();
        self.epoch = Some(epoch);
        Ok(())
    }

    /// A change applied after a resync found it supersedes what the resync would tell.
    pub(super) fn forget_pending(&mut self, change: &Change) {
        self.pending
            .retain(|(c, _)| !(c.channel == change.channel && c.member == change.member));
    }

    /// Tells what the last resync found, with the counts as they are now.
    pub(super) async fn tell_pending(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        while let Some((change, event)) = self.pending.first() {
            let count: usize = redis::cmd("HLEN")
                .arg(self.keys.channel(&change.channel))
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("counting channel members"))?;
            self.announce_remote(hub, conn, change, *event, count)
                .await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    /// Tells the monitor and the other nodes, not this node's members.
    pub(super) async fn announce_remote(
        &self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        change: &Change,
        event: Membership,
        count: usize,
    ) -> Result<(), ClusterError> {
        let env = membership(change, event, count);
        hub.observe_only(event, &env);
        self.send(conn, &env).await
    }
}
