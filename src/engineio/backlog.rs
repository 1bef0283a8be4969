//! What a closed session leaves for the layer above, for a replay on a later connection.

use std::collections::VecDeque;
use std::sync::Arc;

use super::queue::Queue;
use super::socket::Outgoing;

/// What a closed session leaves for the layer above: its queue, which holds the tagged
/// items the session already took (its history) and whatever was never taken.
pub struct Backlog {
    pub(super) queue: Option<Arc<Queue>>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").finish_non_exhaustive()
    }
}

impl Backlog {
    pub fn empty() -> Backlog {
        Backlog { queue: None }
    }

    /// Every tagged item, in the order it was queued, and how many of them (at the front)
    /// the session had already taken for writing: the rest never left the server. The
    /// queue is closed first, so a sender that comes later is refused rather than lost in
    /// silence.
    pub fn into_tagged(mut self) -> (VecDeque<Outgoing>, usize) {
        self.queue
            .take()
            .and_then(|queue| queue.seize_if(|_| true))
            .unwrap_or_default()
    }
}
