//! Whether a restart follows this stop: the type of the job systemd runs on this service,
//! asked over D-Bus (`busctl`) when the stop begins.
//!
//! A stop and a restart send the same SIGTERM; only the pending job tells them apart
//! (`restart`, or `try-restart` from a package upgrade, against `stop`). A restart keeps the
//! clients' connections in the file descriptor store; a plain stop tells every client to
//! disconnect, as it always has.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::time::timeout;

/// How long each question to systemd may take, and all of them together: the stop waits
/// for the answer, within `TimeoutStopSec=`.
const ASK_LIMIT: Duration = Duration::from_secs(2);
const ALL_LIMIT: Duration = Duration::from_secs(3);

/// The job types that start this service again once it has stopped.
const RESTARTS: &[&str] = &["restart", "try-restart"];

/// `Ok(true)` when the job stopping this service starts it again; `Ok(false)` for a plain
/// stop or no job at all (a signal sent by hand); an error names why systemd could not say.
pub async fn restart_follows() -> Result<bool, String> {
    timeout(ALL_LIMIT, ask())
        .await
        .map_err(|_| format!("no answer within {ALL_LIMIT:?}"))?
}

async fn ask() -> Result<bool, String> {
    let pid = std::process::id().to_string();
    let unit = busctl(&[
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "GetUnitByPID",
        "u",
        &pid,
    ])
    .await?;
    let unit = object_path(&unit).ok_or_else(|| format!("GetUnitByPID answered {unit}"))?;
    let job = busctl(&[
        "get-property",
        "org.freedesktop.systemd1",
        &unit,
        "org.freedesktop.systemd1.Unit",
        "Job",
    ])
    .await?;
    let Some(job) = job_path(&job)? else {
        return Ok(false);
    };
    let kind = busctl(&[
        "get-property",
        "org.freedesktop.systemd1",
        &job,
        "org.freedesktop.systemd1.Job",
        "JobType",
    ])
    .await?;
    let kind = kind
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JobType answered {kind}"))?;
    Ok(RESTARTS.contains(&kind))
}

/// One `busctl --system --json=short` call, its answer parsed. Asked again once if a
/// signal ended it: under `KillMode=control-group` the stop's SIGTERM can reach it too.
async fn busctl(args: &[&str]) -> Result<Value, String> {
    match busctl_once(args).await {
        Err((why, true)) => busctl_once(args)
            .await
            .map_err(|(again, _)| format!("{why}; asked again: {again}")),
        other => other.map_err(|(why, _)| why),
    }
}

/// One call; an error says why, and whether a signal ended busctl.
async fn busctl_once(args: &[&str]) -> Result<Value, (String, bool)> {
    let mut cmd = Command::new("busctl");
    cmd.args(["--system", "--json=short"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = timeout(ASK_LIMIT, cmd.output())
        .await
        .map_err(|_| {
            (
                format!("busctl {} took more than {ASK_LIMIT:?}", args[0]),
                false,
            )
        })?
        .map_err(|e| (format!("cannot run busctl: {e}"), false))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = format!("busctl {}: {}: {}", args[0], out.status, err.trim());
        return Err((why, out.status.signal().is_some()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| (format!("busctl {}: {e}", args[0]), false))
}

/// The object path in `{"type":"o","data":["/…"]}` (a method's reply) or `{"type":"o","data":"/…"}`.
fn object_path(v: &Value) -> Option<String> {
    let data = v.get("data")?;
    let path = data
        .as_str()
        .or_else(|| data.as_array()?.first()?.as_str())?;
    path.starts_with('/').then(|| path.to_owned())
}

/// The job in a unit's `Job` property, `{"type":"(uo)","data":[ID,"/…"]}`; `None` when
/// the id is 0 (no job pending).
fn job_path(v: &Value) -> Result<Option<String>, String> {
    let bad = || format!("Job answered {v}");
    let data = v.get("data").and_then(Value::as_array).ok_or_else(bad)?;
    let id = data.first().and_then(Value::as_u64).ok_or_else(bad)?;
    if id == 0 {
        return Ok(None);
    }
    let path = data.get(1).and_then(Value::as_str).ok_or_else(bad)?;
    Ok(Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_answers_busctl_gives() {
        let unit =
            json!({"type": "o", "data": ["/org/freedesktop/systemd1/unit/realtime_2eservice"]});
        assert_eq!(
            object_path(&unit).as_deref(),
            Some("/org/freedesktop/systemd1/unit/realtime_2eservice")
        );
        let job = json!({"type": "(uo)", "data": [77, "/org/freedesktop/systemd1/job/77"]});
        assert_eq!(
            job_path(&job).unwrap().as_deref(),
            Some("/org/freedesktop/systemd1/job/77")
        );
        let none = json!({"type": "(uo)", "data": [0, "/"]});
        assert_eq!(job_path(&none).unwrap(), None);
        assert!(job_path(&json!({"type": "s", "data": "x"})).is_err());
        assert_eq!(object_path(&json!({"type": "o", "data": ["x"]})), None);
    }
}
