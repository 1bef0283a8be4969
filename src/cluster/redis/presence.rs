//! The worker's side of presence: the scripts run for each change, the heartbeat and
//! the removal of dead nodes, and the announcements these decide (the resynchronisation
//! after an outage is `resync.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tracing::info;

use super::{BATCH, Change, Worker, entry, membership, quiet, scripts};
use crate::cluster::{ClusterError, Envelope, Inbound, Membership, identity_of, member_key, wire};

/// A dead node's entries undone in one script call: a few milliseconds of Redis.
const REAP_CHUNK: usize = 2000;

impl Worker {
    pub(super) async fn run_change(
        &self,
        conn: &mut MultiplexedConnection,
        script: &Script,
        change: &Change,
    ) -> Result<(bool, usize), ClusterError> {
        let pair = [(change.channel.as_str(), change.member.as_str())];
        let done = self.run_many(conn, script, &pair).await?;
        done.first()
            .copied()
            .ok_or(ClusterError::Answer("a membership script answered nothing"))
    }

    /// [`scripts::JOIN`] or [`scripts::LEAVE`] over many (channel, member) pairs in one
    /// call: for each, whether it was the first (last) cluster-wide and the count after.
    pub(super) async fn run_many(
        &self,
        conn: &mut MultiplexedConnection,
        script: &Script,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<(bool, usize)>, ClusterError> {
        let mut call = script.key(self.keys.sub(&self.node));
        call.key(self.keys.channels()).arg(&self.keys.prefix);
        for (channel, member) in pairs {
            call.arg(*channel).arg(*member);
        }
        let flat: Vec<usize> = call
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("running a membership script"))?;
        if flat.len() != pairs.len() * 2 {
            return Err(ClusterError::Answer("a membership script answered short"));
        }
        Ok(flat.chunks_exact(2).map(|p| (p[0] == 1, p[1])).collect())
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

    pub(super) async fn online(
        &self,
        conn: &mut MultiplexedConnection,
        member: &str,
        on: bool,
    ) -> Result<bool, ClusterError> {
        let firsts = self.online_many(conn, &[member], on).await?;
        Ok(firsts.first().copied().unwrap_or(false))
    }

    /// Members whose first session here began (`on`) or whose last one ended, in one
    /// call: for each, whether that was its first (last) node.
    pub(super) async fn online_many(
        &self,
        conn: &mut MultiplexedConnection,
        members: &[&str],
        on: bool,
    ) -> Result<Vec<bool>, ClusterError> {
        let mut call = scripts::ONLINE.key(self.keys.node_members(&self.node));
        call.key(self.keys.members())
            .arg(if on { "1" } else { "0" });
        for m in members {
            call.arg(*m);
        }
        let flags: Vec<u8> = call
            .invoke_async(conn)
            .await
            .map_err(ClusterError::redis("marking members online"))?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
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

    /// An identity's first join, decided here: announced like any change, except that
    /// its own sessions on the other nodes hear it with the control message that joins
    /// them. Heard on the bus, it would reach only those already in the channel there
    /// (joined by a new tab's own lookup, with the channel watched in time), so some of
    /// its tabs would hear their own join and some not.
    pub(super) async fn announce_join(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        change: &Change,
        count: usize,
    ) -> Result<(), ClusterError> {
        let env = membership(change, Membership::Subscribe, count);
        hub.announce(Membership::Subscribe, &env, Some(&change.member), true);
        let identity = identity_of(&change.member).map(|_| change.member.as_str());
        self.publish_events(conn, std::slice::from_ref(&env), identity)
            .await?;
        self.control(conn, "join", change, Some(&env)).await
    }

    pub(super) async fn send(
        &self,
        conn: &mut MultiplexedConnection,
        env: &Envelope,
    ) -> Result<(), ClusterError> {
        self.send_many(conn, std::slice::from_ref(env)).await
    }

    /// Publishes membership events in pipelines of [`BATCH`].
    pub(super) async fn send_many(
        &self,
        conn: &mut MultiplexedConnection,
        envs: &[Envelope],
    ) -> Result<(), ClusterError> {
        self.publish_events(conn, envs, None).await
    }

    /// Publishes membership events in pipelines of [`BATCH`], each marked as not for
    /// `except`'s sessions when given.
    async fn publish_events(
        &self,
        conn: &mut MultiplexedConnection,
        envs: &[Envelope],
        except: Option<&str>,
    ) -> Result<(), ClusterError> {
        for chunk in envs.chunks(BATCH) {
            let mut pipe = redis::pipe();
            let mut sent = 0u64;
            for env in chunk {
                let Some(channel) = env.channel.as_deref() else {
                    continue;
                };
                let payload = wire::encode(&self.node, env, &[], None, except);
                pipe.cmd(self.keys.publish())
                    .arg(self.keys.topic(channel))
                    .arg(payload.as_ref())
                    .ignore();
                sent += 1;
            }
            if sent == 0 {
                continue;
            }
            let _: () = pipe
                .query_async(conn)
                .await
                .map_err(ClusterError::redis("publishing membership events"))?;
            self.stats.sent.fetch_add(sent, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Heartbeat, and removal of the nodes that stopped beating.
    /// Returns true when the other nodes had removed this one (it missed its heartbeats
    /// while up): its presence must be written back.
    pub(super) async fn beat(
        &mut self,
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
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        mode: &str,
    ) -> Result<bool, ClusterError> {
        // A dead node's members are removed once their clients could have come back
        // elsewhere: one that did is still a member there, and nobody hears it leave.
        let silent = self.timeout + self.window;
        let timeout_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
        let (mut removed, mut changes) = (false, 0usize);
        loop {
            let ended: Vec<String> = scripts::REAP
                .key(self.keys.nodes())
                .arg(&self.keys.prefix)
                .arg(&*self.node)
                .arg(timeout_ms)
                .arg(mode)
                .arg(REAP_CHUNK)
                .invoke_async(conn)
                .await
                .map_err(ClusterError::redis("reaping silent nodes"))?;
            let Some((head, ended)) = ended.split_first_chunk::<4>() else {
                return Err(ClusterError::Answer(
                    "the reaping script answered no header",
                ));
            };
            removed |= head[1] == "1";
            changes += ended.len() / 4;
            // Announced here one by one, sent to the other nodes in pipelines.
            let mut gone = Vec::new();
            for item in ended.chunks_exact(4) {
                match item[0].as_str() {
                    "s" => {
                        let change = quiet(&item[1], &item[2]);
                        let count = item[3].parse().unwrap_or(0);
                        let env = membership(&change, Membership::Unsubscribe, count);
                        hub.announce(Membership::Unsubscribe, &env, None, true);
                        // Gone: not to be announced again if Redis now loses its data.
                        self.elsewhere
                            .remove(&entry(&change.channel, &change.member));
                        gone.push(env);
                    }
                    "m" => hub.announce_presence(&item[1], false),
                    _ => {}
                }
            }
            // What did not reach the other nodes is told to them once Redis is back.
            for (i, chunk) in gone.chunks(BATCH).enumerate() {
                if let Err(e) = self.send_many(conn, chunk).await {
                    self.unsent.extend(gone.into_iter().skip(i * BATCH));
                    return Err(e);
                }
            }
            // Each call beats again, so a large dead node does not make this one look dead.
            if head[2] != "1" {
                break;
            }
        }
        if mode == "leave" {
            info!(node = %self.node, changes, "left the cluster: this node's members are removed");
        } else if changes > 0 {
            info!(node = %self.node, changes, "removed the members of nodes that stopped beating");
        }
        Ok(removed)
    }

    /// A membership event from another node (or a change decided here): who else
    /// holds whom, for the changes settled while Redis is away.
    pub(super) fn heard_membership(&mut self, env: &Envelope) {
        let (Some(channel), Some(identity)) = (env.channel.as_deref(), env.identity.as_deref())
        else {
            return;
        };
        let key = entry(channel, &member_key(Some(identity), ""));
        match env.data.get("command").and_then(|c| c.as_str()) {
            Some("onSubscribe") => self.elsewhere.insert(key),
            Some("onUnsubscribe") => self.elsewhere.remove(&key),
            _ => false,
        };
    }

    /// No members here in `channel`: nothing of it is watched or remembered.
    pub(super) fn forget_channel(&mut self, channel: &str) {
        self.watched.remove(channel);
        let prefix = entry(channel, "");
        self.elsewhere.retain(|e| !e.starts_with(&prefix));
    }
}
