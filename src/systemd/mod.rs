//! The systemd glue (docs/design.md#daemon): sockets passed by name, sd_notify state changes, and
//! the watchdog that pings only while the hub answers.
//!
//! Everything here is a no-op without systemd (no `LISTEN_FDS`, no `NOTIFY_SOCKET`, no
//! `WATCHDOG_USEC`), so the daemon runs the same from a shell.

mod jobs;
mod listen;
pub mod notify;
mod watchdog;

pub use jobs::restart_pending;
pub use listen::{Inherited, STATE_NAME, check_listener, inherited_listeners};
pub use watchdog::{status_line, supervise};
