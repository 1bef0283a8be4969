//! A session's outbound queue: bounded, many senders, one receiver, and cheap per item.
//!
//! A broadcast pushes into thousands of these per message, so a push is one short lock and
//! wakes the receiver only when the queue goes from empty to not empty (the receiver drains
//! everything before it waits again).

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
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    closed: bool,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
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
        out.extend(st.items.drain(..n));
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

    /// Refuses every later push; what is queued stays to be taken.
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
}
