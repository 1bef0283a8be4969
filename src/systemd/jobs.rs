//! Whether systemd stops this service to start it again: asked at a stop, so that a
//! cluster node stays the same node over `systemctl restart` and departs at a plain stop.

use std::time::Duration;

use tracing::{debug, warn};

/// How long systemd may take to answer; past it, no restart is assumed.
const ASK: Duration = Duration::from_secs(2);

/// Whether the job systemd runs on this service now is a restart (`systemctl restart`,
/// and `try-restart` as package upgrades use it): the stop phase of a restart runs as a
/// job of type `restart`, a plain stop as `stop`. False when it cannot tell (not under
/// systemd, `systemctl` missing or refused), so the node departs as at any stop.
pub async fn restart_pending() -> bool {
    let Some(unit) = own_unit() else {
        return false;
    };
    let asked = tokio::process::Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--no-pager", "--full", &unit])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(ASK, asked).await {
        Ok(Ok(out)) if out.status.success() => {
            let restart = is_restart(&String::from_utf8_lossy(&out.stdout), &unit);
            debug!(unit, restart, "asked systemd whether a restart follows");
            restart
        }
        Ok(Ok(out)) => {
            warn!(unit, status = %out.status, "cannot tell whether a restart follows; stopping as for good");
            false
        }
        Ok(Err(e)) => {
            warn!(unit, error = %e, "cannot ask systemd whether a restart follows; stopping as for good");
            false
        }
        Err(_) => {
            warn!(
                unit,
                "systemd did not say in time whether a restart follows; stopping as for good"
            );
            false
        }
    }
}

/// This process's service, from its control group (`0::/system.slice/realtime.service`).
fn own_unit() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_of(&cgroup)
}

fn unit_of(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .split('/')
        .rev()
        .find(|part| part.ends_with(".service"))
        .map(str::to_owned)
}

/// Whether `systemctl list-jobs` (`JOB UNIT TYPE STATE` a line) lists a restart of `unit`.
fn is_restart(listing: &str, unit: &str) -> bool {
    listing.lines().any(|line| {
        let mut f = line.split_whitespace();
        let (_, name, kind) = (f.next(), f.next(), f.next());
        name == Some(unit) && kind == Some("restart")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_service_of_the_control_group() {
        let cg = "0::/system.slice/realtime.service\n";
        assert_eq!(unit_of(cg).as_deref(), Some("realtime.service"));
        let nested = "0::/system.slice/realtime.service/payload\n";
        assert_eq!(unit_of(nested).as_deref(), Some("realtime.service"));
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
        assert_eq!(unit_of("12:pids:/x.service\n"), None);
    }

    #[test]
    fn only_a_restart_job_of_this_unit_counts() {
        let unit = "realtime.service";
        assert!(is_restart("1417 realtime.service restart running\n", unit));
        assert!(!is_restart("1417 realtime.service stop running\n", unit));
        assert!(!is_restart("1418 other.service restart running\n", unit));
        assert!(!is_restart("", unit));
    }
}
