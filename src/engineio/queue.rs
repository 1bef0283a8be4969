//! A session's outbound queue: bounded, many senders, one receiver, and cheap per item.
//!
//! A broadcast pushes into thousands of these per message, so a push is one short lock and
//! wakes the receiver only when the queue goes from empty to not empty (the receiver drains
//! everything before it waits again).
//!
//! A receiver is judged by its progress, not by one length a single burst can pass: past
//! its limit, a queue still takes items as long as the receiver keeps taking (it never
//! goes [`STALL`] without) and is back to half the limit within [`CATCH_UP`], up to
//! [`CAP_FACTOR`] times the limit (the memory bound). Past any of these, the receiver is
//! slow: the next push is refused.
//!
//! It also keeps the last tagged items taken, under the same lock as the queue, so that what
//! a replay needs can be handed over at once, even while the session is still writing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::socket::{Outgoing, SendError};

/// Capacity kept after a burst has drained; more is given back (idle connections are many).
const KEEP_CAPACITY: usize = 8;

/// How long a receiver past its limit may go without taking anything.
pub(crate) const STALL: Duration = Duration::from_secs(5);

/// How long a receiver past its limit has to get back to half of it: one that reads, but
/// slower than its channel, cannot hold paced publishers back for longer.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(30);

/// How many times its limit a queue may hold while its receiver catches up.
pub(crate) const CAP_FACTOR: usize = 4;

/// How long a paced publisher waits for a receiver past its limit that took nothing: a
/// stalled reader holds its channel's publishers up at most this long, once.
pub(crate) const PATIENCE: Duration = Duration::from_millis(500);

/// How often a paced publisher looks whether the queues it waits for caught up.
const PACE_POLL: Duration = Duration::from_millis(2);

/// Queues past their limit right now, process-wide: when none is, a publisher need not
/// look for one (the usual case costs one load).
static BEHIND: AtomicUsize = AtomicUsize::new(0);

/// Whether any queue is past its limit: a hint, for skipping the search.
pub(crate) fn any_behind() -> bool {
    BEHIND.load(Ordering::Relaxed) > 0
}

/// Waits until none of `queues` is catching up any more: each has caught up, closed, or
/// gone [`STALL`] without taking anything.
pub(crate) async fn wait_caught_up(mut queues: Vec<super::SessionTx>) {
    while !queues.is_empty() {
        tokio::time::sleep(PACE_POLL).await;
        queues.retain(super::SessionTx::is_catching_up);
    }
}

pub(crate) struct Queue {
    /// Held only to push or pop; never across an await.
    state: Mutex<State>,
    /// Wakes the receiver; a notification sent while it is busy is kept for its next wait.
    notify: Notify,
    /// Woken by an item that is not lazy while the writer waits for more lazy ones.
    urgent: Notify,
    limit: usize,
    cap: usize,
    /// How many tagged items taken are kept for a replay (0: none).
    history: usize,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    closed: bool,
    /// Set once the queue passes its limit, until it is back to half of it: when it passed
    /// it, and when the receiver last took something since.
    behind: Option<Behind>,
    /// The last tagged items taken, oldest first: taken is not delivered.
    taken: VecDeque<Outgoing>,
    /// The writer waits for more lazy items (see `wait_lazily`).
    lazy_wait: bool,
}

#[derive(Clone, Copy)]
struct Behind {
    since: Instant,
    progress: Instant,
}

impl Behind {
    fn is_stalled(&self) -> bool {
        self.progress.elapsed() >= STALL || self.since.elapsed() >= CATCH_UP
    }
}

impl Queue {
    /// As [`Queue::with_history`], with no history.
    #[cfg(test)]
    pub(crate) fn new(limit: usize) -> Queue {
        Queue::with_history(limit, 0)
    }

    /// A queue whose receiver may fall `limit` items behind, or up to [`CAP_FACTOR`] times
    /// that while it keeps taking, remembering the last `history` tagged items taken from it.
    pub(crate) fn with_history(limit: usize, history: usize) -> Queue {
        Queue::build(limit, limit.saturating_mul(CAP_FACTOR), history)
    }

    /// A queue with its hard cap given.
    #[cfg(test)]
    pub(crate) fn bounded(limit: usize, cap: usize) -> Queue {
        Queue::build(limit, cap, 0)
    }

    fn build(limit: usize, cap: usize, history: usize) -> Queue {
        let limit = limit.max(1);
        Queue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            urgent: Notify::new(),
            limit,
            cap: cap.max(limit),
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
        let len = st.items.len();
        if len >= self.limit {
            if len >= self.cap {
                return Err((SendError::Full, item));
            }
            match st.behind {
                None => {
                    let now = Instant::now();
                    st.behind = Some(Behind {
                        since: now,
                        progress: now,
                    });
                    BEHIND.fetch_add(1, Ordering::Relaxed);
                }
                Some(b) if b.is_stalled() => return Err((SendError::Full, item)),
                Some(_) => {}
            }
        }
        let urgent = st.lazy_wait && !item.is_lazy();
        if urgent {
            st.lazy_wait = false;
        }
        st.items.push_back(item);
        let was_empty = st.items.len() == 1;
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        if urgent {
            self.urgent.notify_one();
        }
        Ok(())
    }

    /// Whether the writer, holding lazy items alone, may wait for more: only while nothing
    /// else is queued, and until something else is ([`Queue::urgent`]).
    pub(crate) fn wait_lazily(&self) -> bool {
        let mut st = self.lock();
        st.lazy_wait = st.items.iter().all(Outgoing::is_lazy);
        st.lazy_wait
    }

    /// Resolves once an item that is not lazy was pushed during a [`Queue::wait_lazily`].
    pub(crate) async fn urgent(&self) {
        self.urgent.notified().await
    }

    /// Moves up to `max` items into `out`; returns how many.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<Outgoing>) -> usize {
        let mut st = self.lock();
        st.lazy_wait = false;
        let n = st.items.len().min(max);
        let from = out.len();
        out.extend(st.items.drain(..n));
        if st.items.len() <= self.limit / 2 {
            if st.behind.take().is_some() {
                BEHIND.fetch_sub(1, Ordering::Relaxed);
            }
        } else if let Some(b) = st.behind.as_mut().filter(|_| n > 0) {
            // Progress: the receiver is catching up.
            b.progress = Instant::now();
        }
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

    /// Whether the receiver is behind, past the limit, still has time to catch up and took
    /// something within [`PATIENCE`]: what a publisher of a batch waits for.
    pub(crate) fn is_catching_up(&self) -> bool {
        let st = self.lock();
        !st.closed
            && st
                .behind
                .is_some_and(|b| !b.is_stalled() && b.progress.elapsed() < PATIENCE)
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

impl Drop for Queue {
    fn drop(&mut self) {
        if self.lock().behind.is_some() {
            BEHIND.fetch_sub(1, Ordering::Relaxed);
        }
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
        let q = Queue::bounded(2, 2);
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

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_catches_up_is_not_slow() {
        let q = Queue::new(4);
        // A burst past the limit is taken while the receiver has time to catch up.
        for n in 1..=10 {
            assert!(q.push(item(n)).is_ok());
        }
        assert!(q.is_catching_up());
        tokio::time::advance(STALL / 2).await;
        let mut out = Vec::new();
        q.take(8, &mut out);
        assert!(!q.is_catching_up(), "back to half the limit");
        // Later, the same again: the clock starts anew.
        tokio::time::advance(STALL * 2).await;
        for n in 11..=16 {
            assert!(q.push(item(n)).is_ok());
        }
        assert!(q.is_catching_up());
    }

    #[tokio::test(start_paused = true)]
    async fn publishers_stop_waiting_for_a_receiver_that_takes_nothing() {
        let q = Queue::new(4);
        for n in 1..=8 {
            assert!(q.push(item(n)).is_ok());
        }
        let mut out = Vec::new();
        tokio::time::advance(PATIENCE / 2).await;
        q.take(1, &mut out);
        tokio::time::advance(PATIENCE / 2).await;
        assert!(q.is_catching_up(), "it took one within the patience");
        tokio::time::advance(PATIENCE / 2).await;
        assert!(!q.is_catching_up(), "nothing taken for the whole patience");
        // Not slow yet: it may still take, and is cut only at the stall time.
        assert!(q.push(item(9)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_keeps_taking_has_until_the_catch_up_time() {
        let q = Queue::new(4);
        for n in 1..=12 {
            assert!(q.push(item(n)).is_ok());
        }
        let mut out = Vec::new();
        let mut n = 13;
        let mut waited = Duration::ZERO;
        let step = STALL - Duration::from_millis(1);
        while waited + step < CATCH_UP {
            tokio::time::advance(step).await;
            waited += step;
            q.take(1, &mut out);
            assert!(q.push(item(n)).is_ok(), "{n}");
            n += 1;
        }
        // Taking one at a time, it never got back to half the limit.
        tokio::time::advance(step).await;
        q.take(1, &mut out);
        assert!(matches!(q.push(item(n)), Err((SendError::Full, _))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_receiver_is_refused_after_the_stall_time_or_at_the_cap() {
        let q = Queue::new(4);
        for n in 1..=5 {
            assert!(q.push(item(n)).is_ok());
        }
        tokio::time::advance(STALL).await;
        assert!(!q.is_catching_up());
        assert!(matches!(q.push(item(6)), Err((SendError::Full, _))));

        let q = Queue::new(4);
        for n in 1..=16 {
            assert!(q.push(item(n)).is_ok(), "{n}");
        }
        assert!(matches!(q.push(item(17)), Err((SendError::Full, _))));
    }

    #[test]
    fn a_writer_waits_for_lazy_items_until_another_comes() {
        use futures_util::FutureExt;
        let q = Queue::new(8);
        let mut out = Vec::new();
        q.push(item(1).lazy()).unwrap();
        q.take(8, &mut out);
        assert!(q.wait_lazily());
        q.push(item(2).lazy()).unwrap();
        assert!(q.urgent().now_or_never().is_none(), "a notice waits");
        q.push(item(3)).unwrap();
        assert!(q.urgent().now_or_never().is_some(), "a message does not");
        q.take(8, &mut out);
        q.push(item(4)).unwrap();
        assert!(!q.wait_lazily(), "no wait with a message queued");
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
