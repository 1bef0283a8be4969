//! The clients' own sockets in systemd's file descriptor store, across `systemctl restart`:
//! left there one by one at the stop, each named by the index its session has in the
//! state, and taken back by the next process, which resumes each session on its socket.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use sd_notify::NotifyState;
use tracing::warn;

/// At most this many client sockets go to the store at one stop; the unit's
/// `FileDescriptorStoreMax=` (16384) counts them and the state. systemd passes every stored
/// descriptor back named in `LISTEN_FDNAMES`, one environment string, which Linux caps at
/// 128 KiB: 16,383 names of up to six digits and a colon stay below it. The sessions past
/// it end at the stop and their clients recover.
pub const MAX_LIVE: usize = 16_383;

/// The sockets the previous process stored, by index, until their sessions resume.
static STORED: Mutex<Option<HashMap<u32, OwnedFd>>> = Mutex::new(None);

/// Leaves each socket in the store, named by its index (its descriptor number, as the
/// state has it). One message each: systemd gives every descriptor of a message the same
/// name. Returns how many were stored; the rest close with this process.
pub(super) fn keep(sockets: &[OwnedFd]) -> usize {
    let mut stored = 0;
    let mut failed = None;
    for fd in sockets.iter().take(MAX_LIVE) {
        let name = fd.as_raw_fd().to_string();
        let sent = sd_notify::notify_with_fds(
            &[NotifyState::FdStore, NotifyState::FdName(&name)],
            &[fd.as_fd()],
        );
        match sent {
            Ok(()) => stored += 1,
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let past = sockets.len().saturating_sub(MAX_LIVE);
    if let Some(e) = failed {
        warn!(
            failed = sockets.len().min(MAX_LIVE) - stored,
            "cannot leave some connections with systemd ({e}); their clients recover"
        );
    }
    if past > 0 {
        warn!(
            past,
            max = MAX_LIVE,
            "more connections than the store takes; the others' clients recover"
        );
    }
    stored
}

/// Takes the sockets systemd passed back (`LISTEN_FDNAMES`) out of its store at once, so
/// a later start never gets them again, and holds them for [`take`]. From now on the
/// sessions' sockets come from here, never by descriptor number.
pub fn adopt_stored(live: Vec<(u32, OwnedFd)>) {
    for (index, fd) in &live {
        let name = index.to_string();
        let removed = sd_notify::notify(&[NotifyState::FdStoreRemove, NotifyState::FdName(&name)]);
        if let Err(e) = removed {
            warn!("cannot take connection {name} out of systemd's store: {e}");
        }
        // Close-on-exec, as everything this process opens: nothing it runs inherits it.
        if let Err(e) = super::pass::set_cloexec(fd, true) {
            warn!("stored connection {name}: {e}");
        }
    }
    let (map, stale) = by_index(live);
    if stale > 0 {
        warn!(
            count = stale,
            "closed connections stored twice under one name; their clients reconnect"
        );
    }
    *STORED.lock().unwrap_or_else(PoisonError::into_inner) = Some(map);
}

/// The sockets by index, and how many were closed for sharing their index with another:
/// one of them was left from an earlier stop, and neither can be told from the other, so
/// neither is resumed (both clients recover).
fn by_index(live: Vec<(u32, OwnedFd)>) -> (HashMap<u32, OwnedFd>, usize) {
    let mut map = HashMap::with_capacity(live.len());
    let mut twice = std::collections::HashSet::new();
    let mut stale = 0;
    for (index, fd) in live {
        if twice.contains(&index) {
            stale += 1;
        } else if map.insert(index, fd).is_some() {
            twice.insert(index);
            stale += 1;
        }
    }
    for index in &twice {
        if map.remove(index).is_some() {
            stale += 1;
        }
    }
    (map, stale)
}

/// The stored socket of the session with `index`, when the sockets came from the store;
/// `None` when they did not (they crossed an exec, by descriptor number).
pub(super) fn take(index: u32) -> Option<io::Result<OwnedFd>> {
    let mut stored = STORED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = stored.as_mut()?;
    Some(
        map.remove(&index)
            .ok_or_else(|| io::Error::other(format!("connection {index} is not in the store"))),
    )
}

/// Closes the stored sockets no session took (a state refused, a session not restored):
/// their clients see the connection close and reconnect. Returns how many.
pub fn close_unclaimed() -> usize {
    let mut stored = STORED.lock().unwrap_or_else(PoisonError::into_inner);
    stored.as_mut().map_or(0, |map| map.drain().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> OwnedFd {
        OwnedFd::from(
            std::os::unix::net::UnixStream::pair()
                .expect("socketpair")
                .0,
        )
    }

    /// A name passed twice means one socket is stale: neither is resumed, every one of
    /// them is closed and counted, and the others are found by their index.
    #[test]
    fn sockets_stored_under_one_name_are_all_closed() {
        let live = vec![(7, socket()), (9, socket()), (7, socket()), (7, socket())];
        let (map, stale) = by_index(live);
        assert_eq!(stale, 3);
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [9]);
    }
}
