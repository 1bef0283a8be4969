//! sd_notify(3) messages to the service manager; each does nothing when `NOTIFY_SOCKET`
//! is unset. A failed send is logged, never fatal: the service keeps serving.

use sd_notify::NotifyState;
use tracing::warn;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify the service manager");
    }
}

/// Startup (or a reload) is done: systemd marks the unit active, `systemctl reload` returns.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload is done. STATUS= is left to the status loop, which sends it on change only.
pub fn ready_again() {
    send(&[NotifyState::Ready]);
}

/// The one-line status `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload begins. MONOTONIC_USEC ties it to this moment (systemd ≥ 253 requires it,
/// older versions ignore it); `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            warn!(error = %e, "cannot read CLOCK_MONOTONIC");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
