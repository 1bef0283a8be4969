//! Status and watchdog: every period, probe the hub off the runtime, then send WATCHDOG=1
//! (if systemd asked for it) and refresh STATUS=.
//!
//! The ping follows the probe: a hub shard whose lock is stuck makes the probe hang, the
//! loop waits for it, and the pings stop, so systemd kills and restarts the service. A
//! timer alone would keep pinging and hide it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::notify;
use crate::engineio::Engine;
use crate::hub::{Hub, HubStats};

/// How often STATUS= is refreshed when no watchdog asks for more.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// The STATUS= text.
pub fn status_line(connections: usize, stats: HubStats) -> String {
    format!(
        "{connections} connections, {} members, {} channels",
        stats.members, stats.channels
    )
}

/// Runs until `shutdown`. `engine` counts connections; `hub` is probed.
pub async fn supervise(hub: Arc<Hub>, engine: Engine, shutdown: CancellationToken) {
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
        let probed = hub.clone();
        // A blocking thread, so a stuck lock stalls this loop and not a runtime worker.
        let mut probe = tokio::task::spawn_blocking(move || {
            let answered = probed.probe();
            (answered, probed.stats())
        });
        let (answered, stats) = loop {
            tokio::select! {
                r = &mut probe => match r {
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
        if !answered {
            error!("a hub shard is poisoned; withholding watchdog pings");
            continue;
        }
        if watchdog.is_some() {
            notify::watchdog();
        }
        let status = status_line(engine.session_count(), stats);
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
        let stats = HubStats {
            channels: 2,
            members: 4,
            subscriptions: 5,
        };
        assert_eq!(
            status_line(3, stats),
            "3 connections, 4 members, 2 channels"
        );
    }
}
