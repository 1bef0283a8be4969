//! What differs between one node and a cluster (docs/design.md#cluster): the message bus that
//! carries broadcasts to the other nodes, and the presence that decides membership changes
//! cluster-wide. The hub owns this port; this layer never reaches into the hub.
//!
//! - `contract`: the traits ([`Bus`], [`Presence`] outward, [`Inbound`] back to the hub)
//!   and the words they speak: member keys, [`Membership`] changes, [`ChannelInfo`],
//!   [`History`].
//! - `envelope`: the publication the bus carries ([`Envelope`]); `wire`: its bytes on Redis.
//! - `error`: [`ClusterError`].
//! - `single`: one node is the whole cluster ([`SingleNode`]).
//! - `memory`: nodes in one process sharing an in-memory bus and presence, for tests.
//! - `redis`: nodes joined through Redis.

mod contract;
mod envelope;
mod error;
pub mod memory;
pub mod redis;
mod single;
mod wire;

pub use contract::{
    Bus, ChannelInfo, History, Inbound, Membership, Presence, Query, Replay, Replayed, Settle,
    Snapshot, identity_of, member_key,
};
pub use envelope::Envelope;
pub use error::ClusterError;
pub use memory::{MemoryBackplane, MemoryCluster, MemoryWorker};

pub use redis::{Reachable, RedisCluster};
pub use single::SingleNode;

/// A node id for a node that was not given one: host, process and a random part, so a
/// fresh start is a new node (the old one's members are removed by the others); a
/// hand-over passes the id on, and the node stays the node.
pub fn generated_node_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".to_owned());
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!(
        "{host}-{}-{:02x}{:02x}{:02x}",
        std::process::id(),
        r[0],
        r[1],
        r[2]
    )
}
