//! Status and watchdog: every period, probe the service off the runtime (the daemon says
//! how: the hub's shards), then send WATCHDOG=1 (if systemd asked for it) and refresh
//! STATUS=.
//!
//! The ping follows the probe: a hub shard whose lock is stuck makes the probe hang, the
//! loop waits for it, and the pings stop, so systemd kills and restarts the service. A
//! timer alone would keep pinging and hide it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::notify;

/// How often STATUS= is refreshed when no watchdog asks for more.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// The STATUS= text.
pub fn status_line(connections: usize, members: usize, channels: usize) -> String {
    format!("{connections} connections, {members} members, {channels} channels")
}

/// What the watchdog asks each period, on a blocking thread: the STATUS= text, or `None`
/// when the service is broken (pings withheld). It may hang: so do the pings.
pub type Probe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Runs until `shutdown`.
pub async fn supervise(probe: Probe, shutdown: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    // systemd's advice: ping at half the interval.
    let period = watchdog.map_or(STATUS_PERIOD, |w| (w / 2).min(STATUS_PERIOD));
    if let Some(w) = watchdog {
        info!(interval = ?w, ping_every = ?period, "systemd watchdog enabled");
    }
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => return,
        }
        // A blocking thread, so a stuck lock stalls this loop and not a runtime worker.
        let probed = probe.clone();
        let mut asked = tokio::task::spawn_blocking(move || probed());
        let answer = loop {
            tokio::select! {
                r = &mut asked => match r {
                    Ok(r) => break r,
                    Err(e) => {
                        error!(error = %e, "hub probe failed; withholding watchdog pings");
                        return;
                    }
                },
                _ = tokio::time::sleep(period * 2) => {
                    error!("hub probe has not answered; withholding watchdog pings");
                }
                _ = shutdown.cancelled() => return,
            }
        };
        let Some(status) = answer else {
            error!("a hub shard is poisoned; withholding watchdog pings");
            continue;
        };
        if watchdog.is_some() {
            notify::watchdog();
        }
        if status != last_status {
            notify::status(&status);
            last_status = status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_the_three_counts() {
        assert_eq!(status_line(3, 4, 2), "3 connections, 4 members, 2 channels");
    }
}
