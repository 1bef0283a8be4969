//! A node passing from one process to the next (a hand-over): where the old process
//! stopped in the message log, and the new one catching up from there, so every broadcast
//! reaches this node's sessions once, in order, with its offset.

use std::sync::Arc;

use futures_util::FutureExt;
use redis::aio::MultiplexedConnection;
use tracing::{info, warn};

use super::Worker;
use super::log::{self, Entries, MAX_ENTRIES};
use super::subs::{self, Heard};
use crate::cluster::{ClusterError, Inbound};

/// Tests only: `REALTIME_TEST_HOOKS=1` with `REALTIME_TEST_CATCH_UP_DELAY_MS=N` makes a
/// process that took over a node wait N ms before it first reaches Redis, so that what
/// other nodes publish meanwhile can only come through the catch-up.
pub(super) fn test_delay() -> Option<std::time::Duration> {
    if std::env::var("REALTIME_TEST_HOOKS").as_deref() != Ok("1") {
        return None;
    }
    let ms = std::env::var("REALTIME_TEST_CATCH_UP_DELAY_MS").ok()?;
    ms.parse().ok().map(std::time::Duration::from_millis)
}

impl Worker {
    /// The old process's last step: the log's last entry now, then every message Redis
    /// published before a ping on the subscription connection (its answer comes after
    /// them) is delivered. Whatever the log holds past the larger of that entry and the
    /// hub's offset was not delivered here, and the next process catches up from there.
    /// `None` when Redis could not tell: the next process then counts on the hub's offset.
    pub(super) async fn pass_on(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
        stream: &mut subs::Stream,
    ) -> Option<u64> {
        let last: Result<Entries, _> = redis::cmd("XREVRANGE")
            .arg(self.keys.log())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await;
        let end = match last {
            Ok(entries) => entries
                .first()
                .and_then(|(id, _)| log::offset_of(id))
                .unwrap_or(0),
            Err(e) => {
                warn!(error = %e, "handing over: cannot read where the message log ends");
                return None;
            }
        };
        if let Err(e) = sink.ping().await {
            warn!(error = %e, "handing over: the subscription connection did not answer");
            return None;
        }
        // The connection's reader put every message before the answer in the stream.
        while let Some(Some(heard)) = stream.next().now_or_never() {
            if let Heard::Message(msg) = heard {
                self.inbound(hub, &msg);
            }
        }
        Some(end)
    }

    /// The new process's first step once Redis answers: what the log holds after the
    /// offset the previous process stopped at is delivered here, before anything pub/sub
    /// brings (whose copies of these are then skipped). Subscribed already, so nothing
    /// falls between the two. A log that no longer holds that offset (trimmed, or Redis
    /// lost its data) cannot say what was missed: logged, and delivery goes on from now.
    pub(super) async fn catch_up(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        let Some(offset) = self.catch_up else {
            return Ok(());
        };
        match log::after(conn, &self.keys, offset, MAX_ENTRIES).await {
            Ok(missed) => {
                let n = missed.len();
                for m in missed {
                    self.caught_up = self.caught_up.max(m.offset);
                    hub.deliver(&m.envelope, m.attachments, m.to.as_deref(), Some(m.offset));
                }
                info!(node = %self.node, messages = n, "caught up with the message log after the hand-over");
            }
            Err(ClusterError::Unrecoverable(why)) => {
                warn!(node = %self.node, offset, "after the hand-over: {why}; what was published meanwhile is not delivered to this node's sessions");
            }
            Err(e) => return Err(e),
        }
        self.catch_up = None;
        Ok(())
    }
}
