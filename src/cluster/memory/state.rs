//! The shared presence of an in-memory cluster: the same bookkeeping the Redis scripts do
//! (`redis/scripts.rs`), each change atomic under the backplane's lock, so exactly one node
//! learns that a member was the first or the last.

use std::collections::{HashMap, HashSet};

use tokio::time::{Duration, Instant};

/// What one membership change did cluster-wide: whether it was the first join (the last
/// leave) of the member in the channel, and the member count after it.
pub(super) type Outcome = (bool, usize);

/// Something a removed node's departure ended cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// The member is no longer in the channel on any node; the count after it.
    Subscription {
        channel: String,
        member: String,
        count: usize,
    },
    /// The member has no session on any node.
    Member(String),
}

/// Who is where, cluster-wide.
#[derive(Debug, Default)]
pub(super) struct Presence {
    /// node → (channel, member) pairs it holds.
    subs: HashMap<String, HashSet<(String, String)>>,
    /// channel → member → how many nodes hold it there.
    channels: HashMap<String, HashMap<String, usize>>,
    /// member → the channels it is in anywhere (a new tab on another node joins them).
    member_channels: HashMap<String, HashSet<String>>,
    /// node → members with sessions there.
    node_members: HashMap<String, HashSet<String>>,
    /// member → how many nodes it has sessions on.
    members: HashMap<String, usize>,
    /// node → its last heartbeat.
    beats: HashMap<String, Instant>,
}

impl Presence {
    pub(super) fn join(&mut self, node: &str, channel: &str, member: &str) -> Outcome {
        let pair = (channel.to_owned(), member.to_owned());
        let mut first = false;
        if self.subs.entry(node.to_owned()).or_default().insert(pair) {
            let n = self.channels.entry(channel.to_owned()).or_default();
            let held = n.entry(member.to_owned()).or_default();
            *held += 1;
            first = *held == 1;
            self.member_channels
                .entry(member.to_owned())
                .or_default()
                .insert(channel.to_owned());
        }
        (first, self.count(channel))
    }

    pub(super) fn leave(&mut self, node: &str, channel: &str, member: &str) -> Outcome {
        let pair = (channel.to_owned(), member.to_owned());
        let held = self.subs.get_mut(node).is_some_and(|s| s.remove(&pair));
        let last = held && self.release(channel, member);
        self.forget_if_empty(channel);
        (last, self.count(channel))
    }

    /// An unsubscribe: the member leaves the channel on every node at once. The flag says
    /// whether it was in the channel.
    pub(super) fn drop_everywhere(&mut self, channel: &str, member: &str) -> Outcome {
        let had = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.remove(member))
            .is_some();
        let pair = (channel.to_owned(), member.to_owned());
        for held in self.subs.values_mut() {
            held.remove(&pair);
        }
        if let Some(chs) = self.member_channels.get_mut(member) {
            chs.remove(channel);
        }
        self.forget_if_empty(channel);
        (had, self.count(channel))
    }

    /// The member's first session on `node` (`on`) or its last one gone there; true when
    /// that was its first (last) node.
    pub(super) fn online(&mut self, node: &str, member: &str, on: bool) -> bool {
        let here = self.node_members.entry(node.to_owned()).or_default();
        if on {
            if !here.insert(member.to_owned()) {
                return false;
            }
            let n = self.members.entry(member.to_owned()).or_default();
            *n += 1;
            return *n == 1;
        }
        here.remove(member) && self.release_member(member)
    }

    /// `node` is alive at `now`; every node silent for `timeout` is removed. Returns whether
    /// `node` had been removed itself, and what the removals ended.
    pub(super) fn beat(
        &mut self,
        node: &str,
        now: Instant,
        timeout: Duration,
    ) -> (bool, Vec<Ended>) {
        let was = self.beats.insert(node.to_owned(), now).is_some();
        let dead: Vec<String> = self
            .beats
            .iter()
            .filter(|(_, last)| now.saturating_duration_since(**last) >= timeout)
            .map(|(n, _)| n.clone())
            .collect();
        let mut ended = Vec::new();
        for n in dead {
            ended.extend(self.remove_node(&n));
        }
        (!was, ended)
    }

    /// Takes `node` out of the cluster with everything it held.
    pub(super) fn remove_node(&mut self, node: &str) -> Vec<Ended> {
        self.beats.remove(node);
        let mut ended = Vec::new();
        let mut held: Vec<_> = self
            .subs
            .remove(node)
            .unwrap_or_default()
            .into_iter()
            .collect();
        held.sort();
        for (channel, member) in held {
            if self.release(&channel, &member) {
                self.forget_if_empty(&channel);
                let count = self.count(&channel);
                ended.push(Ended::Subscription {
                    channel,
                    member,
                    count,
                });
            }
        }
        let mut members: Vec<_> = self
            .node_members
            .remove(node)
            .unwrap_or_default()
            .into_iter()
            .collect();
        members.sort();
        for m in members {
            if self.release_member(&m) {
                ended.push(Ended::Member(m));
            }
        }
        ended
    }

    /// What `node` holds: its (channel, member) pairs and its members.
    pub(super) fn held_by(&self, node: &str) -> (HashSet<(String, String)>, HashSet<String>) {
        (
            self.subs.get(node).cloned().unwrap_or_default(),
            self.node_members.get(node).cloned().unwrap_or_default(),
        )
    }

    pub(super) fn member_channels(&self, member: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .member_channels
            .get(member)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        all.sort();
        all
    }

    pub(super) fn count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, HashMap::len)
    }

    /// Every channel with members, with its count, sorted by name.
    pub(super) fn channel_counts(&self) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = self
            .channels
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(c, m)| (c.clone(), m.len()))
            .collect();
        all.sort();
        all
    }

    pub(super) fn members_of(&self, channel: &str) -> Vec<String> {
        self.channels
            .get(channel)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// One node fewer holds the member in the channel; true when none does any more.
    fn release(&mut self, channel: &str, member: &str) -> bool {
        let Some(members) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(held) = members.get_mut(member) else {
            return false;
        };
        *held = held.saturating_sub(1);
        if *held > 0 {
            return false;
        }
        members.remove(member);
        if let Some(chs) = self.member_channels.get_mut(member) {
            chs.remove(channel);
            if chs.is_empty() {
                self.member_channels.remove(member);
            }
        }
        true
    }

    /// One node fewer has sessions of the member; true when none does any more.
    fn release_member(&mut self, member: &str) -> bool {
        let Some(n) = self.members.get_mut(member) else {
            return false;
        };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return false;
        }
        self.members.remove(member);
        true
    }

    fn forget_if_empty(&mut self, channel: &str) {
        if self.channels.get(channel).is_some_and(HashMap::is_empty) {
            self.channels.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_on_two_nodes_joins_and_leaves_once() {
        let mut p = Presence::default();
        assert_eq!(p.join("a", "c", "@x"), (true, 1));
        assert_eq!(p.join("b", "c", "@x"), (false, 1));
        assert_eq!(p.join("b", "c", "@x"), (false, 1));
        assert_eq!(p.leave("a", "c", "@x"), (false, 1));
        assert_eq!(p.leave("b", "c", "@x"), (true, 0));
        assert_eq!(p.leave("b", "c", "@x"), (false, 0));
        assert!(p.channel_counts().is_empty());
        assert!(p.online("a", "@x", true));
        assert!(!p.online("b", "@x", true));
        assert!(!p.online("a", "@x", false));
        assert!(p.online("b", "@x", false));
    }

    #[test]
    fn an_unsubscribe_takes_the_member_out_on_every_node() {
        let mut p = Presence::default();
        p.join("a", "c", "@x");
        p.join("b", "c", "@x");
        p.join("b", "c", "@y");
        assert_eq!(p.drop_everywhere("c", "@x"), (true, 1));
        // The other node's own leave afterwards is no news.
        assert_eq!(p.leave("b", "c", "@x"), (false, 1));
        assert!(p.member_channels("@x").is_empty());
    }

    #[test]
    fn a_silent_node_is_removed_with_what_only_it_held() {
        let mut p = Presence::default();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        p.beat("a", t0, timeout);
        p.beat("b", t0, timeout);
        p.join("a", "c", "@x");
        p.join("b", "c", "@x");
        p.join("a", "c", "#s");
        p.online("a", "@x", true);
        p.online("b", "@x", true);
        p.online("a", "#s", true);
        let (removed, ended) = p.beat("b", t0 + timeout, timeout);
        assert!(!removed);
        assert_eq!(
            ended,
            [
                Ended::Subscription {
                    channel: "c".into(),
                    member: "#s".into(),
                    count: 1
                },
                Ended::Member("#s".into()),
            ]
        );
        // Node a comes back: it had been removed.
        assert!(p.beat("a", t0 + timeout, timeout).0);
    }
}
