//! The systemd glue (docs/design.md#daemon): sockets passed by name, sd_notify state changes,
//! the watchdog that pings only while the hub answers, and whether a restart follows a stop.
//!
//! Everything here is a no-op without systemd (no `LISTEN_FDS`, no `NOTIFY_SOCKET`, no
//! `WATCHDOG_USEC`), so the daemon runs the same from a shell.

mod job;
mod listen;
pub mod notify;
mod watchdog;

pub use job::restart_follows;
pub use listen::{Inherited, STATE_NAME, check_listener, inherited_listeners};
pub use watchdog::{Probe, status_line, supervise};
