//! Sessions that outlive the process: what a session is, written down so that the next
//! process (after a restart or an upgrade) can take it over (docs/design.md#hand-over).
//!
//! - `state`: the hand-over state, its types and its versioned binary format.
//! - `decode`: the format read back, refusing what it cannot read with the reason.
//! - `pass`: the descriptors that cross the exec (sealed memfd, listeners) and the
//!   environment variable that names them.
//! - `reexec`: SIGUSR1, re-execution in place.
//! - `fdstore`: the clients' sockets in systemd's file descriptor store over a restart.

mod decode;
mod fdstore;
mod pass;
mod reexec;
mod state;

pub use decode::{DecodeError, decode};
pub use fdstore::{MAX_LIVE, adopt_stored, close_unclaimed};
pub use pass::{ENV, Passed, adopt_socket, close_strays, inherit, keep_open};
pub use reexec::{
    Plan, Source, exec, note_start_path, prepare, release_stored, store, take_state, under_systemd,
};
pub use state::{
    Connection, Frame, Item, MAX_STATE, MemberState, SessionState, SocketState, State, Transport,
    VERSION,
};

#[cfg(test)]
mod size_tests;
#[cfg(test)]
mod tests;
