//! Bounded waits on a condition, in place of fixed sleeps: poll until the condition holds,
//! and fail with what was awaited once the bound passes. Bounds are generous on purpose
//! (CI is a small machine under load); a wait that succeeds returns as soon as it can.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it returns `Some`; `None` once `within` passed.
pub(crate) fn poll_until<T>(within: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds; panics naming `what` once `within` passed.
pub(crate) fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if poll_until(within, || cond().then_some(())).is_none() {
        panic!("timed out after {within:?} waiting for {what}");
    }
}

/// The async `poll_until`: `cond` is awaited until it returns `Some`; `None` once `within`
/// passed.
pub(crate) async fn poll_until_async<T, F>(
    within: Duration,
    mut cond: impl FnMut() -> F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    loop {
        if let Some(v) = cond().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The async `wait_until`: panics naming `what` once `within` passed.
pub(crate) async fn wait_until_async<F>(within: Duration, what: &str, mut cond: impl FnMut() -> F)
where
    F: Future<Output = bool>,
{
    if poll_until_async(within, || {
        let f = cond();
        async move { f.await.then_some(()) }
    })
    .await
    .is_none()
    {
        panic!("timed out after {within:?} waiting for {what}");
    }
}
