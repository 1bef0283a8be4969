//! The names of this cluster's Redis keys and pub/sub channels, all under one prefix
//! (what each holds: `scripts.rs`).

#[derive(Clone)]
pub(super) struct Keys {
    /// The configured prefix; on a Redis Cluster within braces, a hash tag, so that every
    /// key and shard channel hashes to one slot and each script touches one slot.
    pub(super) prefix: String,
    /// A Redis Cluster: sharded pub/sub.
    pub(super) sharded: bool,
}

impl Keys {
    /// The publish command: on a Redis Cluster `SPUBLISH`, which reaches only the shard
    /// that owns the slot, where `PUBLISH` reaches every node of the cluster.
    pub(super) fn publish(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
    }
    pub(super) fn topic(&self, channel: &str) -> String {
        format!("{}:m:{channel}", self.prefix)
    }
    pub(super) fn direct(&self) -> String {
        format!("{}:direct", self.prefix)
    }
    /// Where nodes tell each other that a member joined or left a channel, so its
    /// sessions on every node follow.
    pub(super) fn control(&self) -> String {
        format!("{}:ctl", self.prefix)
    }
    /// The control messages kept, for a node that was away (`control.rs`).
    pub(super) fn control_log(&self) -> String {
        format!("{}:ctlog", self.prefix)
    }
    pub(super) fn member_channels(&self, member: &str) -> String {
        format!("{}:ms:{member}", self.prefix)
    }
    pub(super) fn sub(&self, node: &str) -> String {
        format!("{}:sub:{node}", self.prefix)
    }
    pub(super) fn channel(&self, channel: &str) -> String {
        format!("{}:ch:{channel}", self.prefix)
    }
    pub(super) fn channels(&self) -> String {
        format!("{}:channels", self.prefix)
    }
    pub(super) fn node_members(&self, node: &str) -> String {
        format!("{}:nm:{node}", self.prefix)
    }
    pub(super) fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }
    pub(super) fn history(&self, channel: &str) -> String {
        format!("{}:h:{channel}", self.prefix)
    }
    pub(super) fn history_gone(&self, channel: &str) -> String {
        format!("{}:hg:{channel}", self.prefix)
    }
    pub(super) fn log(&self) -> String {
        format!("{}:log", self.prefix)
    }
    pub(super) fn pids(&self, node: &str) -> String {
        format!("{}:pids:{node}", self.prefix)
    }
    pub(super) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
}
