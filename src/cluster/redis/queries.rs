//! The HTTP API's questions about the whole cluster, answered from Redis: every channel
//! with its member count, and one channel's members (history: `history.rs`).

use redis::aio::MultiplexedConnection;

use super::Keys;
use crate::cluster::{ChannelInfo, ClusterError};

/// Every channel with members, sorted, with its member count.
pub(super) async fn channels(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> Result<Vec<(String, usize)>, ClusterError> {
    let mut names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.channels())
        .query_async(conn)
        .await
        .map_err(ClusterError::redis("listing channels"))?;
    names.sort();
    let mut pipe = redis::pipe();
    for n in &names {
        pipe.hlen(keys.channel(n));
    }
    let counts: Vec<usize> = if names.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(conn)
            .await
            .map_err(ClusterError::redis("counting channel members"))?
    };
    Ok(names
        .into_iter()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .collect())
}

/// The members of `name` on every node.
pub(super) async fn channel(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
) -> Result<ChannelInfo, ClusterError> {
    let members: Vec<String> = redis::cmd("HKEYS")
        .arg(keys.channel(name))
        .query_async(conn)
        .await
        .map_err(ClusterError::redis("listing channel members"))?;
    Ok(ChannelInfo::of(name, members.iter().map(String::as_str)))
}
