//! Channel history shared by every node: each broadcast to a channel is also appended to
//! that channel's stream, with its id in the message log (its offset), trimmed to
//! `history-size` by the publish script and to `history-ttl` when read. A history answer
//! is then the same on every node, whether or not the node has members in the channel.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Keys, log, scripts};
use crate::cluster::{ClusterError, History, wire};

/// How long history is kept: by count (0: none) and by age.
#[derive(Debug, Clone, Copy)]
pub struct Keeping {
    pub size: usize,
    pub ttl: Duration,
}

/// What `channel`'s history holds after `since` (the newest `limit` without it).
pub(super) async fn read(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    keeping: Keeping,
    channel: &str,
    since: Option<u64>,
    limit: usize,
) -> Result<History, ClusterError> {
    let ttl = u64::try_from(keeping.ttl.as_millis()).unwrap_or(u64::MAX);
    let (gone, current, entries): (String, String, log::Entries) = scripts::HISTORY
        .key(keys.history(channel))
        .key(keys.history_gone(channel))
        .key(keys.log())
        .arg(ttl)
        .invoke_async(conn)
        .await
        .map_err(ClusterError::redis("reading a channel's history"))?;
    let offset = |id: &str| log::offset_of(id).unwrap_or(0);
    let (gone, current) = (offset(&gone), offset(&current));
    let kept: Vec<(u64, Vec<u8>)> = entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let p = fields.chunks_exact(2).find(|f| f[0] == b"p")?;
            Some((offset(&id), p[1].clone()))
        })
        .collect();
    let current = kept.last().map_or(current, |(o, _)| current.max(*o));
    let tail = since.is_none();
    let since = since.unwrap_or(0);
    // An offset ahead of the cluster's names nothing kept (Redis lost its data since):
    // everything kept is after it, and what came before is unknown.
    let known = since <= current;
    let complete = known && since >= gone;
    let after: Vec<_> = kept.iter().filter(|(o, _)| !known || *o > since).collect();
    let more = after.len() > limit;
    // After a `since`, the oldest first so the next ask goes on from the last one;
    // without one, the newest.
    let skip = if tail {
        after.len().saturating_sub(limit)
    } else {
        0
    };
    let mut messages = Vec::new();
    for (o, raw) in after.into_iter().skip(skip).take(limit) {
        let m = wire::decode(raw)
            .map_err(|_| ClusterError::Unrecoverable("a malformed entry in a history"))?;
        messages.push((*o, m.envelope));
    }
    Ok(History {
        messages,
        offset: current,
        complete,
        more,
    })
}
