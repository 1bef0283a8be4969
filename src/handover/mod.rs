//! Sessions that outlive the process: what a session is, written down so that the next
//! process (after a restart or an upgrade) can take it over (docs/design.md#hand-over).
//!
//! - `state`: the hand-over state, its types and its versioned binary format.
//! - `decode`: the format read back, refusing what it cannot read with the reason.

mod decode;
mod state;

pub use decode::{DecodeError, decode};
pub use state::{
    Connection, Frame, Item, MAX_STATE, MemberState, SessionState, SocketState, State, Transport,
    VERSION,
};

#[cfg(test)]
mod tests;
