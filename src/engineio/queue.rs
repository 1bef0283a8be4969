//! A session's outbound queue: bounded, many senders, one receiver, and cheap per item.
//!
//! A broadcast pushes into thousands of these per message, so a push is one short lock and
//! wakes the receiver only when the queue goes from empty to not empty (the receiver drains
//! everything before it waits again).
//!
//! It also keeps the last tagged items taken, under the same lock as the queue, so that what
//! a replay needs can be handed over at once, even while the session is still writing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::socket::{Outgoing, SendError};

/// Capacity kept after a burst has drained; more is given back (idle connections are many).
const KEEP_CAPACITY: usize = 8;

pub(crate) struct Queue {
    /// Held only to push or pop; never across an await.
    state: Mutex<State>,
    /// Wakes the receiver; a notification sent while it is busy is kept for its next wait.
    notify: Notify,
    capacity: usize,
    /// How many tagged items taken are kept for a replay (0: none).
    history: usize,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    closed: bool,
    /// The last tagged items taken, oldest first: taken is not delivered.
    taken: VecDeque<Outgoing>,
}

impl Queue {
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue::with_history(capacity, 0)
    }

    /// A queue that remembers the last `history` tagged items taken from it.
    pub(crate) fn with_history(capacity: usize, history: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            history,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an item, or hands it back when the queue is full or closed.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        let mut st = self.lock();
        if st.closed {
            return Err((SendError::Closed, item));
        }
        if st.items.len() >= self.capacity {
            return Err((SendError::Full, item));
        }
        st.items.push_back(item);
        let was_empty = st.items.len() == 1;
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Moves up to `max` items into `out`; returns how many.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<Outgoing>) -> usize {
        let mut st = self.lock();
        let n = st.items.len().min(max);
        let from = out.len();
        out.extend(st.items.drain(..n));
        if self.history > 0 {
            for item in out[from..].iter().filter(|i| i.tag != 0) {
                if st.taken.len() == self.history {
                    st.taken.pop_front();
                }
                st.taken.push_back(item.clone());
            }
        }
        if st.items.is_empty() && st.items.capacity() > KEEP_CAPACITY {
            st.items.shrink_to(KEEP_CAPACITY);
        }
        n
    }

    /// Waits until at least one item is there, then moves up to `max` into `out`. Returns 0
    /// only once the queue is closed and empty. Cancel-safe: items are moved only when it
    /// completes.
    pub(crate) async fn wait_take(&self, max: usize, out: &mut Vec<Outgoing>) -> usize {
        loop {
            let n = self.take(max, out);
            if n > 0 || self.lock().closed {
                return n;
            }
            self.notify.notified().await;
        }
    }

    /// Hands over what a replay elsewhere needs: the tagged items taken (the history) and
    /// then those never taken, oldest first, with how many were taken. Only when `accept`
    /// takes them: then the queue is closed and emptied, so nothing is written twice; else
    /// it is left as it was. `None` too once handed over: a second taker would get nothing
    /// and take it for an empty history.
    pub(crate) fn seize_if(
        &self,
        accept: impl FnOnce(&VecDeque<Outgoing>) -> bool,
    ) -> Option<(VecDeque<Outgoing>, usize)> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        let taken = st.taken.len();
        let mut items = std::mem::take(&mut st.taken);
        items.extend(st.items.iter().filter(|i| i.tag != 0).cloned());
        if !accept(&items) {
            items.truncate(taken);
            st.taken = items;
            return None;
        }
        st.items.clear();
        st.closed = true;
        drop(st);
        self.notify.notify_one();
        Some((items, taken))
    }

    /// Refuses every later push; what is queued stays to be taken.
    #[cfg(test)]
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Str;
    use std::sync::Arc;

    fn item(n: u64) -> Outgoing {
        Outgoing::text(Str::from(format!("4{n}"))).tagged(n)
    }

    #[test]
    fn bounded_and_closable() {
        let q = Queue::new(2);
        assert!(q.push(item(1)).is_ok());
        assert!(q.push(item(2)).is_ok());
        assert!(matches!(q.push(item(3)), Err((SendError::Full, i)) if i.tag == 3));
        let mut out = Vec::new();
        assert_eq!(q.take(1, &mut out), 1);
        q.close();
        assert!(matches!(q.push(item(4)), Err((SendError::Closed, _))));
        assert_eq!(q.take(10, &mut out), 1);
        assert_eq!(out.iter().map(|i| i.tag).collect::<Vec<_>>(), [1, 2]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_nothing_is_lost() {
        let q = Arc::new(Queue::new(10_000));
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                for n in 1..=5000 {
                    while q.push(item(n)).is_err() {
                        tokio::task::yield_now().await;
                    }
                    if n % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                q.close();
            })
        };
        let mut got = Vec::new();
        loop {
            let mut batch = Vec::new();
            if q.wait_take(64, &mut batch).await == 0 {
                break;
            }
            got.extend(batch.iter().map(|i| i.tag));
        }
        producer.await.unwrap();
        assert_eq!(got, (1..=5000).collect::<Vec<_>>());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn the_history_is_handed_over_only_when_accepted() {
        let q = Queue::with_history(8, 2);
        for n in 1..=4 {
            q.push(item(n)).unwrap();
        }
        q.push(Outgoing::text(Str::from("3"))).unwrap();
        let mut out = Vec::new();
        assert_eq!(q.take(3, &mut out), 3);
        assert_eq!(q.seize_if(|_| false).map(|_| ()), None);
        assert!(
            q.push(item(5)).is_ok(),
            "a refused hand-over leaves the queue open"
        );
        let (items, taken) = q.seize_if(|_| true).unwrap();
        // Taken 1 to 3, of which the last two are kept; 4 and 5 were never taken.
        assert_eq!(
            items.iter().map(|i| i.tag).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert_eq!(taken, 2);
        assert_eq!(q.len(), 0);
        assert!(matches!(q.push(item(6)), Err((SendError::Closed, _))));
        assert!(q.seize_if(|_| true).is_none(), "handed over once");
    }
}
