//! A node's worker on the in-memory backplane: applies the hub's ops in order, delivers
//! what the other nodes send, beats and removes silent nodes, and while cut off settles
//! every change locally, rewriting its presence from the hub when it is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::state::Ended;
use super::{Change, Inbox, MemoryBackplane, Op, Shared};
use crate::cluster::{ClusterError, Envelope, Inbound, Membership, identity_of};

/// The worker of one node, waiting for the hub it serves.
pub struct MemoryWorker {
    node: Arc<str>,
    backplane: Arc<MemoryBackplane>,
    ops: mpsc::UnboundedReceiver<Op>,
    inbox: mpsc::UnboundedReceiver<Inbox>,
    /// Shared with the handle, which reports it.
    up: Arc<AtomicBool>,
    heartbeat: Duration,
    timeout: Duration,
    /// Channels this node has members in, written back to the backplane on return.
    watched: HashSet<String>,
    /// Membership changes a resync found, told to the other nodes at the next heartbeat
    /// (as the Redis worker does, so every node has written its presence back by then).
    pending: Vec<(Change, Membership)>,
    /// Joined to the backplane now.
    joined: bool,
}

impl std::fmt::Debug for MemoryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWorker")
            .field("node", &self.node)
            .field("joined", &self.joined)
            .finish_non_exhaustive()
    }
}

impl MemoryWorker {
    pub(super) fn new(
        node: Arc<str>,
        backplane: Arc<MemoryBackplane>,
        ops: mpsc::UnboundedReceiver<Op>,
        inbox: mpsc::UnboundedReceiver<Inbox>,
        up: Arc<AtomicBool>,
        (heartbeat, timeout): (Duration, Duration),
    ) -> MemoryWorker {
        MemoryWorker {
            node,
            backplane,
            ops,
            inbox,
            up,
            heartbeat,
            timeout,
            watched: HashSet::new(),
            pending: Vec::new(),
            joined: false,
        }
    }

    /// Runs until the hub's handle is gone or the node departs.
    pub fn start(self, hub: Arc<dyn Inbound>) {
        tokio::spawn(self.run(hub));
    }

    async fn run(mut self, hub: Arc<dyn Inbound>) {
        self.connect(&hub);
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.reset();
        loop {
            tokio::select! {
                op = self.ops.recv() => {
                    let Some(op) = op else { return };
                    if self.op(&hub, op) {
                        return;
                    }
                }
                Some(msg) = self.inbox.recv(), if self.joined => self.inbound(&hub, msg),
                _ = tick.tick() => {
                    if self.joined {
                        self.beat(&hub);
                    } else {
                        self.connect(&hub);
                    }
                }
            }
        }
    }

    /// Runs `f` on the backplane unless this node is cut off.
    fn with<T>(&self, f: impl FnOnce(&mut Shared, &str) -> T) -> Result<T, ClusterError> {
        self.backplane.with(&self.node, |s| f(s, &self.node))
    }

    /// Joins (again): writes what this node watches, beats, and rewrites its presence.
    fn connect(&mut self, hub: &Arc<dyn Inbound>) {
        let watched = self.watched.clone();
        let (now, timeout) = (Instant::now(), self.timeout);
        let beat = self.with(|s, node| {
            if let Some(link) = s.links.get_mut(node) {
                link.watched = watched;
            }
            s.presence.beat(node, now, timeout)
        });
        let Ok((_, ended)) = beat else {
            return;
        };
        let joined = self.tell_ended(hub, ended).and_then(|()| self.resync(hub));
        if joined.is_ok() {
            self.joined = true;
            self.up.store(true, Ordering::Release);
            info!(node = %self.node, "joined the in-memory cluster");
        }
    }

    fn lost(&mut self, e: &ClusterError) {
        if self.joined {
            warn!(node = %self.node, error = %e, "lost the bus: serving this node's members only until it is back");
        }
        self.joined = false;
        self.up.store(false, Ordering::Release);
    }

    /// One op: applied on the backplane, or settled here while cut off. True on departure.
    fn op(&mut self, hub: &Arc<dyn Inbound>, op: Op) -> bool {
        if !self.joined {
            return self.offline_op(hub, op);
        }
        match self.online_op(hub, op) {
            Ok(departed) => departed,
            Err(e) => {
                self.lost(&e);
                false
            }
        }
    }

    /// One op with the backplane reachable. If the backplane refuses the op, it is settled
    /// locally before the error is returned.
    fn online_op(&mut self, hub: &Arc<dyn Inbound>, op: Op) -> Result<bool, ClusterError> {
        match op {
            Op::Publish {
                envelope,
                attachments,
                to,
            } => {
                let channel = if to.is_some() {
                    None
                } else {
                    envelope.channel.as_deref()
                };
                self.backplane
                    .send(&self.node, channel, || Inbox::Broadcast {
                        envelope: envelope.clone(),
                        attachments: attachments.clone(),
                        to: to.clone(),
                    })?;
            }
            Op::Watch(channel, on) => {
                self.watch_locally(&channel, on);
                self.with(|s, node| {
                    if let Some(link) = s.links.get_mut(node) {
                        link.watched.clone_from(&self.watched);
                    }
                })?;
            }
            Op::Join(change) => {
                let joined =
                    self.with(|s, node| s.presence.join(node, &change.channel, &change.member));
                let (first, count) = match joined {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        self.offline_op(hub, Op::Join(change));
                        return Err(e);
                    }
                };
                self.forget_pending(&change);
                if first {
                    // Its own sessions elsewhere hear it with the control message.
                    let env = membership(&change, Membership::Subscribe, count);
                    hub.announce(Membership::Subscribe, &env, Some(&change.member), true);
                    let identity = identity_of(&change.member).map(|_| change.member.as_str());
                    self.broadcast(&env, identity)?;
                    self.control(true, &change, Some(&env))?;
                }
                let _ = change.reply.send(count);
            }
            Op::Leave(change) => {
                let everywhere = change.explicit && identity_of(&change.member).is_some();
                let left = self.with(|s, node| {
                    if everywhere {
                        s.presence.drop_everywhere(&change.channel, &change.member)
                    } else {
                        s.presence.leave(node, &change.channel, &change.member)
                    }
                });
                let (last, count) = match left {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        self.offline_op(hub, Op::Leave(change));
                        return Err(e);
                    }
                };
                self.forget_pending(&change);
                if last {
                    self.announce(hub, &change, Membership::Unsubscribe, count, true)?;
                    if change.explicit {
                        self.control(false, &change, None)?;
                    }
                }
                let _ = change.reply.send(count);
            }
            Op::Online(member, on) => {
                let first = self.with(|s, node| s.presence.online(node, &member, on))?;
                if first {
                    hub.announce_presence(&member, on);
                }
                if on && identity_of(&member).is_some() {
                    // A new tab here joins what its identity is in on other nodes.
                    let channels = self.with(|s, _| s.presence.member_channels(&member))?;
                    for channel in channels {
                        hub.adopt(&member, &channel);
                    }
                }
            }
            Op::Depart(done) => {
                let ended = self.with(|s, node| s.presence.remove_node(node));
                let told = ended.and_then(|ended| self.tell_ended(hub, ended));
                let _ = done.send(());
                if let Err(e) = told {
                    warn!(error = %e, "could not remove this node from the cluster; the others will after node-timeout");
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One op with the backplane away: settled by this node alone. True on departure.
    fn offline_op(&mut self, hub: &Arc<dyn Inbound>, op: Op) -> bool {
        match op {
            // What would have crossed nodes is lost, as on a Redis outage.
            Op::Publish { .. } => {}
            Op::Watch(channel, on) => self.watch_locally(&channel, on),
            Op::Join(change) => {
                let count = hub.local_count(&change.channel);
                let env = membership(&change, Membership::Subscribe, count);
                hub.announce(Membership::Subscribe, &env, None, false);
                let _ = change.reply.send(count);
            }
            Op::Leave(change) => {
                let count = hub.local_count(&change.channel);
                let env = membership(&change, Membership::Unsubscribe, count);
                hub.announce(Membership::Unsubscribe, &env, Some(&change.member), false);
                let _ = change.reply.send(count);
            }
            // Told at the resync, once the cluster can decide.
            Op::Online(..) => {}
            Op::Depart(done) => {
                let _ = done.send(());
                return true;
            }
        }
        false
    }

    fn watch_locally(&mut self, channel: &str, on: bool) {
        if on {
            self.watched.insert(channel.to_owned());
        } else {
            self.watched.remove(channel);
        }
    }

    /// Heartbeat, removal of the nodes that stopped beating, and what a resync found.
    fn beat(&mut self, hub: &Arc<dyn Inbound>) {
        let (now, timeout) = (Instant::now(), self.timeout);
        let result = self
            .with(|s, node| s.presence.beat(node, now, timeout))
            .and_then(|(removed, ended)| {
                self.tell_ended(hub, ended)?;
                if removed {
                    warn!(node = %self.node, "the other nodes had removed this node: writing its presence back");
                    self.resync(hub)?;
                }
                self.tell_pending(hub)
            });
        if let Err(e) = result {
            self.lost(&e);
        }
    }

    /// Announces what removing a node ended cluster-wide.
    fn tell_ended(&self, hub: &Arc<dyn Inbound>, ended: Vec<Ended>) -> Result<(), ClusterError> {
        if !ended.is_empty() {
            info!(node = %self.node, changes = ended.len(), "removed the members of nodes that stopped beating");
        }
        for e in ended {
            match e {
                Ended::Subscription {
                    channel,
                    member,
                    count,
                } => {
                    let change = Change::quiet(&channel, &member);
                    self.announce(hub, &change, Membership::Unsubscribe, count, false)?;
                }
                Ended::Member(member) => hub.announce_presence(&member, false),
            }
        }
        Ok(())
    }

    /// Makes this node's presence on the backplane what the hub holds; what that changes
    /// cluster-wide is told to the monitor and the other nodes (this node's members heard
    /// of it when it happened).
    fn resync(&mut self, hub: &Arc<dyn Inbound>) -> Result<(), ClusterError> {
        let snap = hub.snapshot();
        let (held, online) = self.with(|s, node| s.presence.held_by(node))?;
        let here: HashSet<(String, String)> = snap.subscriptions.into_iter().collect();
        let mut joins: Vec<_> = here.difference(&held).collect();
        joins.sort();
        for (channel, member) in joins {
            let (first, _) = self.with(|s, node| s.presence.join(node, channel, member))?;
            if first {
                self.pending
                    .push((Change::quiet(channel, member), Membership::Subscribe));
            }
        }
        let mut leaves: Vec<_> = held.difference(&here).collect();
        leaves.sort();
        for (channel, member) in leaves {
            let (last, _) = self.with(|s, node| s.presence.leave(node, channel, member))?;
            if last {
                self.pending
                    .push((Change::quiet(channel, member), Membership::Unsubscribe));
            }
        }
        let members: HashSet<String> = snap.members.into_iter().collect();
        for (m, on) in members
            .difference(&online)
            .map(|m| (m, true))
            .chain(online.difference(&members).map(|m| (m, false)))
        {
            if self.with(|s, node| s.presence.online(node, m, on))? {
                hub.announce_presence(m, on);
            }
        }
        Ok(())
    }

    /// A change applied after a resync found it supersedes what the resync would tell.
    fn forget_pending(&mut self, change: &Change) {
        self.pending
            .retain(|(c, _)| !(c.channel == change.channel && c.member == change.member));
    }

    /// Tells what the last resync found, with the counts as they are now.
    fn tell_pending(&mut self, hub: &Arc<dyn Inbound>) -> Result<(), ClusterError> {
        while let Some((change, event)) = self.pending.first() {
            let count = self.with(|s, _| s.presence.count(&change.channel))?;
            let env = membership(change, *event, count);
            hub.observe_only(*event, &env);
            self.broadcast(&env, None)?;
            self.pending.remove(0);
        }
        Ok(())
    }

    /// A membership change decided here: to the monitor, this node's members of the
    /// channel and the other nodes (`leaving`: the member's own sessions here too).
    fn announce(
        &self,
        hub: &Arc<dyn Inbound>,
        change: &Change,
        event: Membership,
        count: usize,
        leaving: bool,
    ) -> Result<(), ClusterError> {
        let env = membership(change, event, count);
        hub.announce(event, &env, leaving.then_some(change.member.as_str()), true);
        self.broadcast(&env, None)
    }

    /// Sends a membership event to the other nodes.
    fn broadcast(&self, env: &Envelope, except: Option<&str>) -> Result<(), ClusterError> {
        self.backplane
            .send(&self.node, env.channel.as_deref(), || Inbox::Announce {
                envelope: env.clone(),
                except: except.map(str::to_owned),
            })
    }

    /// Tells the other nodes that an identity joined or left a channel, so its sessions
    /// there follow (anonymous members live on one node: nothing to tell).
    fn control(
        &self,
        join: bool,
        change: &Change,
        told: Option<&Envelope>,
    ) -> Result<(), ClusterError> {
        if identity_of(&change.member).is_none() {
            return Ok(());
        }
        self.backplane.send(&self.node, None, || Inbox::Control {
            join,
            member: change.member.clone(),
            channel: change.channel.clone(),
            told: told.cloned(),
        })
    }

    /// What another node sent.
    fn inbound(&self, hub: &Arc<dyn Inbound>, msg: Inbox) {
        match msg {
            Inbox::Broadcast {
                envelope,
                attachments,
                to,
            } => hub.deliver(&envelope, attachments, to.as_deref(), None),
            Inbox::Announce { envelope, except } => {
                hub.announce_heard(&envelope, except.as_deref());
            }
            Inbox::Control {
                join,
                member,
                channel,
                told,
            } => {
                if identity_of(&member).is_none() || !hub.accepts_channel(&channel) {
                    return;
                }
                if join {
                    hub.adopt(&member, &channel);
                    if let Some(env) = told {
                        hub.announce_to(&member, &env);
                    }
                } else {
                    hub.drop_remote(&member, &channel);
                }
            }
        }
    }
}

fn membership(change: &Change, event: Membership, count: usize) -> Envelope {
    Envelope::membership(
        &change.channel,
        identity_of(&change.member).map(Arc::from),
        event,
        change.options.clone(),
        count,
    )
}
