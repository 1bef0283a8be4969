//! Re-execution in place (SIGUSR1): the process becomes the binary at the path it was
//! started as, same PID, so any supervisor (supervisord, systemd with `Type=notify`) sees
//! no exit. The listeners stay open across the exec (connections queue in their backlog),
//! the sessions wait in their grace window and the state goes in a sealed memfd.

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use nix::sys::signal::{SigHandler, SigSet, Signal};
use nix::unistd::{AccessFlags, access};
use tracing::{error, info, warn};

use super::pass::{self, Kept};
use super::state::{MemberState, State};
use crate::cluster::redis::Succession;

/// What is handed over is taken from this: the hub (`hub/handover.rs`).
pub trait Source {
    /// Every member and its sessions waiting in the grace window, with how many sessions
    /// were left out; the sockets of WebSockets kept open go in `sockets`.
    fn members(&self, sockets: &mut Vec<std::os::fd::OwnedFd>) -> (Vec<MemberState>, usize);
    /// The last offset given to a broadcast.
    fn offset(&self) -> u64;
}

static START_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Notes the path this process was started as; call first thing in `main`, before
/// anything can replace the binary. Also drops a SIGUSR1 that came during a re-execution
/// (see [`exec`]), before its handler is installed.
pub fn note_start_path() {
    settle_sigusr1();
    match pass::start_path() {
        Ok(p) => {
            let _ = START_PATH.set(p);
        }
        Err(e) => warn!("cannot tell the path of this binary ({e}); SIGUSR1 will not re-execute"),
    }
}

/// A hand-over about to happen: the binary to run and the listeners kept for it.
#[derive(Debug)]
pub struct Plan {
    path: PathBuf,
    kept: Kept,
}

/// Checks that there is an executable to hand over to and keeps the listeners; nothing is
/// changed when this fails, so the process serves on.
pub fn prepare(http: &[RawFd], flash: &[RawFd]) -> io::Result<Plan> {
    let path = START_PATH
        .get()
        .cloned()
        .ok_or_else(|| io::Error::other("the path of this binary is unknown"))?;
    access(path.as_path(), AccessFlags::X_OK)
        .map_err(|e| io::Error::other(format!("{} is not executable: {e}", path.display())))?;
    Ok(Plan {
        path,
        kept: Kept::dup(http, flash)?,
    })
}

/// Writes the hub's state and executes the new binary; returns only if neither it nor
/// this very binary (`/proc/self/exe`, the fallback) could be executed. `node`: the
/// cluster node the new process carries on as (its worker stopped already); `monitor`: the
/// monitor's events not posted yet.
pub fn exec(
    plan: Plan,
    hub: &dyn Source,
    node: Option<Succession>,
    monitor: Vec<Bytes>,
) -> io::Error {
    // Kept open until the exec, which they cross.
    let mut sockets = Vec::new();
    let (bytes, sessions, skipped) = state(hub, node, monitor, &mut sockets);
    let memfd = match pass::seal(&bytes) {
        Ok(fd) => fd,
        Err(e) => return io::Error::other(format!("cannot write the hand-over state: {e}")),
    };
    let env = pass::env_value(std::process::id(), &memfd, &plan.kept);
    info!(
        sessions,
        skipped,
        live = sockets.len(),
        bytes = bytes.len(),
        binary = %plan.path.display(),
        "handing over: executing the new binary"
    );
    // The new process pings once it serves: this ping covers the time until then.
    crate::systemd::notify::watchdog();
    // A second SIGUSR1 (a restart command sent twice) must not kill the new process before
    // it handles the signal (the default action ends it): blocked here, the mask crosses
    // the exec and the new process drops it (`settle_sigusr1`).
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let _ = usr1.thread_block();
    let first = pass::exec(&plan.path, &env);
    error!("{first}; executing this binary again to keep the sessions");
    let again = pass::exec(std::path::Path::new("/proc/self/exe"), &env);
    let _ = usr1.thread_unblock();
    drop(memfd);
    drop(sockets);
    io::Error::other(format!("{first}; then {again}"))
}

/// Ignores SIGUSR1 until the service installs its handler, dropping one left pending by the
/// previous process, then unblocks it (the mask crosses exec; threads inherit it).
#[allow(unsafe_code)]
fn settle_sigusr1() {
    // SAFETY: SIG_IGN is no handler: nothing runs in signal context.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGUSR1, SigHandler::SigIgn) };
    let _ = SigSet::from(Signal::SIGUSR1).thread_unblock();
}

/// Whether a service manager listens for this process's notifications (systemd).
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// At a stop under systemd: leaves the state in the service's file descriptor store
/// (`FileDescriptorStoreMax=`), and after it the sockets of the WebSocket sessions kept
/// open (a stop that a restart follows: see `Engine::hand_over`). A restart passes them to
/// the next process, which resumes the sessions; a plain stop empties the store. A cluster
/// node leaves them only with `node` (a restart follows and the worker stopped): otherwise
/// it departs, and its sessions cannot go on under its id.
pub fn store(hub: &dyn Source, cluster: bool, node: Option<Succession>, monitor: Vec<Bytes>) {
    if !under_systemd() || (cluster && node.is_none()) {
        return;
    }
    // Kept open until this process ends: the store holds its own duplicates.
    let mut sockets = Vec::new();
    let (bytes, sessions, _) = state(hub, node, monitor, &mut sockets);
    let stored = pass::seal(&bytes).and_then(|memfd| {
        sd_notify::notify_with_fds(
            &[
                sd_notify::NotifyState::FdStore,
                sd_notify::NotifyState::FdName(crate::systemd::STATE_NAME),
            ],
            &[std::os::fd::AsFd::as_fd(&memfd)],
        )
    });
    match stored {
        Ok(()) => {
            // After the state: should the store be full, the state is what must be in it.
            let live = super::fdstore::keep(&sockets);
            info!(
                sessions,
                live,
                bytes = bytes.len(),
                "state left with systemd for a restart"
            );
        }
        Err(e) => warn!("cannot leave the state with systemd ({e}); a restart starts fresh"),
    }
}

/// Takes the state out of systemd's store once read: the store keeps what it holds until
/// told otherwise, so it would otherwise pass this stale state again at the next start
/// and refuse the next stop's.
pub fn release_stored() {
    let removed = sd_notify::notify(&[
        sd_notify::NotifyState::FdStoreRemove,
        sd_notify::NotifyState::FdName(crate::systemd::STATE_NAME),
    ]);
    if let Err(e) = removed {
        warn!("cannot take the state out of systemd's store: {e}");
    }
}

/// The state to hand over, encoded, with how many sessions it holds and how many were
/// left out. A cluster node's offset is where the next process catches up in the
/// message log; the members stay in Redis under the node's id.
fn state(
    hub: &dyn Source,
    node: Option<Succession>,
    monitor: Vec<Bytes>,
    sockets: &mut Vec<std::os::fd::OwnedFd>,
) -> (Vec<u8>, usize, usize) {
    let (members, skipped) = hub.members(sockets);
    let sessions: usize = members.iter().map(|m| m.sessions.len()).sum();
    let (node_id, offset) = match node {
        Some(n) => (Some(n.node), n.offset.max(hub.offset())),
        None => (None, hub.offset()),
    };
    let state = State {
        written_ms: super::state::boot_ms().unwrap_or(0),
        node_id,
        offset,
        monitor,
        members,
    };
    let mut bytes = match state.encode() {
        Ok(b) => b,
        Err(e) => {
            error!("{e}; handing over no session");
            sockets.clear();
            State::default().encode().unwrap_or_default()
        }
    };
    if test_corruption() {
        bytes.truncate(bytes.len() / 2);
    }
    (bytes, sessions, skipped)
}

/// Tests only: `REALTIME_TEST_HOOKS=1` with `REALTIME_TEST_HANDOVER=truncate` hands over a
/// state cut in half, to see the new process refuse it.
fn test_corruption() -> bool {
    std::env::var("REALTIME_TEST_HOOKS").as_deref() == Ok("1")
        && std::env::var("REALTIME_TEST_HANDOVER").as_deref() == Ok("truncate")
}

/// Reads what the previous process handed over. A state that cannot be read is logged
/// once with the reason, and the server starts fresh (clients reconnect as after a restart).
pub fn take_state(fd: Option<std::os::fd::OwnedFd>) -> Option<State> {
    let fd = fd?;
    let decoded = pass::read(fd)
        .map_err(|e| e.to_string())
        .and_then(|bytes| super::decode(&bytes).map_err(|e| e.to_string()));
    match decoded {
        Ok(mut state) => {
            let age = state.subtract_age();
            info!(
                ms = age.as_millis(),
                "hand-over state read; the time the restart took comes off every grace window"
            );
            Some(state)
        }
        Err(why) => {
            warn!("hand-over state refused: {why}; starting without the previous sessions");
            None
        }
    }
}
