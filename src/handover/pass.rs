//! The descriptors that cross the exec: the state in a sealed memfd, the listening sockets,
//! and the environment variable that names them (`REALTIME_HANDOVER`).
//!
//! The state never touches a file system: it lives in an anonymous memory file, sealed
//! before the exec so nothing can change it afterwards, readable only through the
//! descriptor this process hands to its successor.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpListener as StdListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, FdFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::state::MAX_STATE;
use crate::systemd::Inherited;

/// Names the descriptors handed over: `pid:N;state:FD;http:FD,FD;flash:FD`.
pub const ENV: &str = "REALTIME_HANDOVER";

/// What a process inherits from the one before it.
#[derive(Debug)]
pub struct Passed {
    pub listeners: Inherited,
    /// The state's memfd; `None` when the predecessor had none to give.
    pub state: Option<OwnedFd>,
}

/// The listeners of a run, duplicated so they outlive the run's accept loops: the
/// duplicate has no close-on-exec flag (dup(2) clears it), so it crosses the exec.
#[derive(Debug, Default)]
pub(super) struct Kept {
    pub(super) http: Vec<OwnedFd>,
    pub(super) flash: Vec<OwnedFd>,
}

impl Kept {
    pub(super) fn dup(http: &[RawFd], flash: &[RawFd]) -> io::Result<Kept> {
        let dup = |fds: &[RawFd]| -> io::Result<Vec<OwnedFd>> {
            fds.iter()
                .map(|&fd| {
                    // SAFETY of the borrow: the caller's listeners are open for this call.
                    let borrowed = borrow(fd);
                    nix::unistd::dup(borrowed)
                        .map_err(|e| io::Error::other(format!("dup listener {fd}: {e}")))
                })
                .collect()
        };
        Ok(Kept {
            http: dup(http)?,
            flash: dup(flash)?,
        })
    }
}

#[allow(unsafe_code)]
fn borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only called for the length of one call (dup(2), fcntl(2), getsockopt(2)) on
    // a listener the caller still owns, or on a descriptor inherited across the exec that
    // nothing in this process owns yet; the borrow does not outlive that call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Writes the state into a new memfd and seals it (no write, grow or shrink, no more seals).
pub(super) fn seal(state: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd_create(c"realtime-handover", MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| io::Error::other(format!("memfd_create: {e}")))?;
    let mut file = File::from(fd);
    file.write_all(state)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals))
        .map_err(|e| io::Error::other(format!("sealing the state: {e}")))?;
    Ok(OwnedFd::from(file))
}

/// Reads a sealed state back, refusing a descriptor that is not a sealed memfd or is larger
/// than any state may be.
pub(super) fn read(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS)
        .map_err(|e| io::Error::other(format!("not a sealed memory file: {e}")))?;
    if !SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_WRITE) {
        return Err(io::Error::other("the state's memory file is not sealed"));
    }
    let mut file = File::from(fd);
    let len = file.metadata()?.len();
    if len > MAX_STATE as u64 {
        return Err(io::Error::other(format!(
            "state of {len} bytes, more than the {MAX_STATE} allowed"
        )));
    }
    let mut out = Vec::with_capacity(len as usize);
    // Read from the start: the writer's offset is shared through the descriptor.
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    file.take(MAX_STATE as u64 + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// The environment value naming `state` and `kept` for a process with id `pid`.
pub(super) fn env_value(pid: u32, state: &impl AsRawFd, kept: &Kept) -> String {
    let list = |fds: &[OwnedFd]| {
        fds.iter()
            .map(|f| f.as_raw_fd().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "pid:{pid};state:{};http:{};flash:{}",
        state.as_raw_fd(),
        list(&kept.http),
        list(&kept.flash)
    )
}

/// The descriptors named by `value`, for this process `pid`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Named {
    pub(super) state: Option<RawFd>,
    pub(super) http: Vec<RawFd>,
    pub(super) flash: Vec<RawFd>,
}

/// Parses [`ENV`]; an error names what is wrong. A value for another pid is refused: it was
/// inherited by accident (an exec keeps the pid, nothing else does).
pub(super) fn parse(value: &str, pid: u32) -> Result<Named, String> {
    let mut named = Named::default();
    let mut seen_pid = None;
    for part in value.split(';') {
        let (key, list) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` is not key:value"))?;
        let fds = || -> Result<Vec<RawFd>, String> {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<RawFd>()
                        .ok()
                        .filter(|fd| *fd > 2)
                        .ok_or_else(|| format!("`{s}` is not a descriptor above 2"))
                })
                .collect()
        };
        match key {
            "pid" => seen_pid = Some(list.parse::<u32>().map_err(|_| "bad pid".to_owned())?),
            "state" => named.state = fds()?.first().copied(),
            "http" => named.http = fds()?,
            "flash" => named.flash = fds()?,
            other => return Err(format!("unknown key `{other}`")),
        }
    }
    // Each descriptor is owned once: a name listed twice would be closed twice.
    let mut all: Vec<RawFd> = named
        .state
        .iter()
        .chain(&named.http)
        .chain(&named.flash)
        .copied()
        .collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Err("a descriptor is named twice".to_owned());
    }
    match seen_pid {
        Some(p) if p == pid => Ok(named),
        Some(p) => Err(format!("meant for process {p}, this is {pid}")),
        None => Err("no pid".to_owned()),
    }
}

/// Takes what the predecessor passed, if [`ENV`] is set; removes the variable so nothing
/// started later inherits it. Call before any thread starts (like systemd's sockets).
pub fn inherit() -> io::Result<Option<Passed>> {
    let Some(value) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    // SAFETY of the call: still one thread, as the caller promises.
    remove_env();
    let value = value.to_string_lossy().into_owned();
    let named =
        parse(&value, std::process::id()).map_err(|e| io::Error::other(format!("{ENV}: {e}")))?;
    let adopt = |fds: &[RawFd]| -> io::Result<Vec<StdListener>> {
        fds.iter()
            .map(|&fd| {
                let owned = own(fd);
                set_cloexec(&owned, true)?;
                crate::systemd::check_listener(owned)
                    .map_err(|e| io::Error::new(e.kind(), format!("handed-over socket {fd}: {e}")))
            })
            .collect()
    };
    let listeners = Inherited {
        http: adopt(&named.http)?,
        flash: adopt(&named.flash)?,
        state: None,
        live: Vec::new(),
    };
    let state = match named.state {
        Some(fd) => {
            let owned = own(fd);
            set_cloexec(&owned, true)?;
            Some(owned)
        }
        None => None,
    };
    Ok(Some(Passed { listeners, state }))
}

#[allow(unsafe_code)]
fn remove_env() {
    // SAFETY: called while the process has one thread (see `inherit`), so no other thread
    // reads the environment meanwhile.
    unsafe { std::env::remove_var(ENV) }
}

#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is named by REALTIME_HANDOVER, set by this very process (same pid,
    // checked) before its exec for the descriptors it kept open across it; nothing else in
    // the process owns them, and each is taken once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Lets a client's socket cross the exec (clears its close-on-exec flag).
pub fn keep_open(fd: &impl AsFd) -> io::Result<()> {
    set_cloexec(fd, false)
}

/// Takes a client's socket named by the handed-over state: a descriptor the previous
/// process (same pid, checked with the state) kept open across the exec. Refuses one
/// taken before, or that is not a connected stream socket (checked before it is owned, so
/// a listener named by mistake stays with its owner); close-on-exec is set again. After a
/// restart through systemd's store, the socket stored under that index instead.
pub fn adopt_socket(fd: u32) -> io::Result<OwnedFd> {
    if let Some(stored) = super::fdstore::take(fd) {
        return stored;
    }
    static TAKEN: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    let raw = RawFd::try_from(fd)
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or_else(|| io::Error::other(format!("`{fd}` is not a descriptor above 2")))?;
    let mut taken = TAKEN.lock().map_err(|_| io::Error::other("poisoned"))?;
    if taken.contains(&raw) {
        return Err(io::Error::other(format!("descriptor {raw} named twice")));
    }
    if !is_client(raw) {
        return Err(io::Error::other(format!(
            "descriptor {raw} is not a connected stream socket"
        )));
    }
    taken.push(raw);
    let owned = own(raw);
    set_cloexec(&owned, true)?;
    Ok(owned)
}

/// Closes the client sockets the previous process kept open across the exec that `keep`
/// does not name: those of a state refused, or of sessions not taken in. Without this
/// their clients would wait for a server that no longer reads them, until their heartbeat
/// gives up. Only connected stream sockets without close-on-exec are touched: this
/// process opens everything with the flag, and its listeners are not connected.
pub fn close_strays(keep: &[u32]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && u32::try_from(*fd).is_ok_and(|fd| !keep.contains(&fd)))
        .collect();
    for fd in fds {
        let inherited = fcntl(borrow(fd), FcntlArg::F_GETFD)
            .is_ok_and(|f| !FdFlag::from_bits_truncate(f).contains(FdFlag::FD_CLOEXEC));
        if inherited && is_client(fd) {
            drop(own(fd));
        }
    }
}

/// Whether `fd` is an open, connected stream socket (a client's, not a listener).
fn is_client(fd: RawFd) -> bool {
    use nix::sys::socket::{SockType, SockaddrStorage, getpeername, getsockopt, sockopt};
    getsockopt(&borrow(fd), sockopt::SockType).is_ok_and(|t| t == SockType::Stream)
        && getpeername::<SockaddrStorage>(fd).is_ok()
}

/// Sets or clears close-on-exec.
pub(super) fn set_cloexec(fd: &impl AsFd, on: bool) -> io::Result<()> {
    let flag = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flag))
        .map(|_| ())
        .map_err(|e| io::Error::other(format!("F_SETFD: {e}")))
}

/// The binary to exec: the path this process was started as, made absolute at start, so
/// an upgraded package's new binary runs (after an upgrade `/proc/self/exe` is the deleted
/// old file). Falls back to `/proc/self/exe`'s target when argv[0] is a bare name.
pub(super) fn start_path() -> io::Result<PathBuf> {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let p = PathBuf::from(&argv0);
    if p.components().count() > 1 {
        return if p.is_absolute() {
            Ok(p)
        } else {
            Ok(std::env::current_dir()?.join(p))
        };
    }
    std::env::current_exe()
}

/// Replaces this process with `path`, same arguments, the environment with `handover` set
/// and the socket activation variables removed (their fds are named by `handover` now).
/// Returns only on failure.
pub(super) fn exec(path: &std::path::Path, handover: &str) -> io::Error {
    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::other("a NUL byte in an argument"));
    let build = || -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = c(path.as_os_str().as_bytes())?;
        let args = std::env::args_os()
            .map(|a| c(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            if k == "LISTEN_PID" || k == "LISTEN_FDS" || k == "LISTEN_FDNAMES" || k == ENV {
                continue;
            }
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            env.push(c(kv.as_bytes())?);
        }
        env.push(c(format!("{ENV}={handover}").as_bytes())?);
        Ok((path, args, env))
    };
    match build() {
        Ok((path, args, env)) => match nix::unistd::execve(&path, &args, &env) {
            Err(e) => io::Error::other(format!("execve {}: {e}", path.to_string_lossy())),
        },
        Err(e) => e,
    }
}
