//! What a closed session leaves for the layer above, for a replay on a later connection.

use std::collections::VecDeque;
use std::sync::Arc;

use super::queue::Queue;
use super::socket::Outgoing;

/// What a closed session leaves for the layer above: the tagged items it already took
/// from its queue (its history), and the queue with whatever was never taken.
pub struct Backlog {
    pub(super) history: VecDeque<Outgoing>,
    pub(super) queue: Option<Arc<Queue>>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").finish_non_exhaustive()
    }
}

impl Backlog {
    pub fn empty() -> Backlog {
        Backlog {
            history: VecDeque::new(),
            queue: None,
        }
    }

    /// Every tagged item, in the order it was queued, and how many of them (at the front)
    /// the session had already taken for writing: the rest never left the server. The
    /// queue is closed first, so a sender that comes later is refused rather than lost in
    /// silence.
    pub fn into_tagged(mut self) -> (VecDeque<Outgoing>, usize) {
        let mut items = std::mem::take(&mut self.history);
        let taken = items.len();
        if let Some(queue) = self.queue.take() {
            queue.close();
            let mut rest = Vec::new();
            queue.take(usize::MAX, &mut rest);
            items.extend(rest.into_iter().filter(|i| i.tag != 0));
        }
        (items, taken)
    }
}
