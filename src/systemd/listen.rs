//! Sockets passed by the service manager (`LISTEN_FDS`, `LISTEN_FDNAMES`), sorted by name.
//!
//! systemd names each fd after its unit's `FileDescriptorName=`; the order of fds between
//! two .socket units is not stable across starts, so only the name counts, and one name may
//! carry several fds (e.g. an IPv4 and an IPv6 `ListenStream=`).

use std::io;
use std::net::TcpListener as StdListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{getsockopt, sockopt};
use socket2::{Socket, Type};
use tracing::warn;

/// Listening sockets inherited from the service manager, by role.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Named `http`, or anything but `flash`.
    pub http: Vec<StdListener>,
    /// Named `flash`.
    pub flash: Vec<StdListener>,
    /// Named [`STATE_NAME`]: the hand-over state the previous process left in the file
    /// descriptor store at its stop (see `crate::handover`).
    pub state: Option<OwnedFd>,
    /// Client sockets the previous process left in the store at a stop that a restart
    /// followed, each with the index its session has in the state (its name).
    pub live: Vec<(u32, OwnedFd)>,
}

/// The name the hand-over state has in systemd's file descriptor store.
pub const STATE_NAME: &str = "handover";

/// The index of a stored client socket, from its name in the store: the number alone, so
/// that thousands of names fit in `LISTEN_FDNAMES` (one environment string, 128 KiB at most).
fn live_index(name: &str) -> Option<u32> {
    name.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| name.parse().ok())
        .flatten()
}

/// Takes the passed sockets. Call before any thread starts: the fds are process-wide and
/// `LISTEN_PID` must still be ours. Without socket activation, returns nothing.
pub fn inherited_listeners() -> io::Result<Inherited> {
    let mut inherited = Inherited::default();
    for (fd, name) in sd_notify::listen_fds_with_names()? {
        if name == STATE_NAME {
            // Checked and read by `crate::handover`; a second one is closed.
            let state = OwnedFd::from(own(fd));
            inherited.state.get_or_insert(state);
            continue;
        }
        if let Some(index) = live_index(&name) {
            // Checked and resumed by `crate::handover`, or closed.
            inherited.live.push((index, OwnedFd::from(own(fd))));
            continue;
        }
        let listener = adopt(fd).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("inherited socket {fd} ({name}) is unusable: {e}"),
            )
        })?;
        match name.as_str() {
            "flash" => inherited.flash.push(listener),
            "http" => inherited.http.push(listener),
            // systemd's default name is the unit's name: a socket unit written without
            // FileDescriptorName= most likely means the main port.
            other => {
                warn!(
                    fd,
                    name = other,
                    "inherited socket has no known name (http, flash); serving HTTP on it"
                );
                inherited.http.push(listener);
            }
        }
    }
    Ok(inherited)
}

/// Turns a passed fd into a listener.
fn adopt(fd: RawFd) -> io::Result<StdListener> {
    check_listener(own(fd).into())
}

/// Checks that a passed fd is a listening TCP socket (the accept loop would otherwise spin
/// on errors) and makes it a non-blocking listener.
pub fn check_listener(fd: OwnedFd) -> io::Result<StdListener> {
    let socket = Socket::from(fd);
    if socket.r#type()? != Type::STREAM {
        return Err(io::Error::other("not a stream socket"));
    }
    if socket.local_addr()?.as_socket().is_none() {
        return Err(io::Error::other("not a TCP socket (IPv4 or IPv6)"));
    }
    if !getsockopt(&socket, sockopt::AcceptConn)? {
        return Err(io::Error::other("not listening"));
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[allow(unsafe_code)]
fn own(fd: RawFd) -> Socket {
    // SAFETY: `fd` comes from `sd_notify::listen_fds_with_names`, which yields only the
    // descriptors the service manager passed to this very process (3 .. 3+LISTEN_FDS, after
    // checking LISTEN_PID); nothing else in the process owns them, and each is taken once.
    unsafe { Socket::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::live_index;

    #[test]
    fn a_stored_connection_is_named_by_its_number_alone() {
        assert_eq!(live_index("42"), Some(42));
        for other in ["", "http", "handover", "+1", "-1", "4x", "99999999999"] {
            assert_eq!(live_index(other), None, "{other}");
        }
    }
}
