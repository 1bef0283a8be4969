//! Logging (docs/design.md#daemon): one event a line, to the journal, syslog or plain stderr, with
//! the level changeable at run time (SIGHUP).
//!
//! The destination is chosen once at start:
//! - journald: stderr is the journal (`JOURNAL_STREAM` equals `dev:ino` of stderr, as
//!   systemd.exec(5) says to check) or `[Log] target = journald`; each line starts with a
//!   `<N>` priority prefix, which journald turns into the entry's PRIORITY;
//! - syslog: `[Log] target = syslog`, RFC 3164 datagrams to `/dev/log` (or
//!   `$REALTIME_SYSLOG_SOCKET`), facility daemon;
//! - stderr otherwise, with timestamps.
//!
//! Events are formatted by `tracing_subscriber::fmt` into a per-event buffer: the spans
//! the event happened in, with their fields (a session's `session{sid=… peer=…
//! transport=…}:`, so its lines need not repeat them), then the message and its own
//! fields. The buffer is written as one line when the event is done, with any newline
//! inside it escaped so an event never spans two lines. The same formatter serves every
//! destination, so span fields reach the journal and syslog too.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogTarget;

/// Where syslog datagrams go unless `$REALTIME_SYSLOG_SOCKET` names another socket.
const SYSLOG_SOCKET: &str = "/dev/log";

/// The destination of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Journald,
    Syslog,
    Stderr,
}

/// What `init` decided, for the caller to report once logging works.
#[derive(Debug)]
pub struct Logging {
    pub destination: Destination,
    /// Why the configured destination could not be used, if it could not.
    pub fallback: Option<String>,
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over `[Log] level`, at start and on reload.
    env_override: bool,
}

impl Logging {
    /// Replaces the level (`error` … `trace`) of every event from now on.
    pub fn set_level(&self, level: &str) -> Result<(), LevelError> {
        if self.env_override {
            return Err(LevelError::EnvOverride);
        }
        self.handle
            .reload(filter(level))
            .map_err(LevelError::Reload)
    }
}

/// Why the log level was not changed.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error("RUST_LOG is set and takes precedence over [Log] level")]
    EnvOverride,
    #[error("cannot change the log level: {0}")]
    Reload(reload::Error),
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("realtime={level},{level}"))
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(target: LogTarget, level: &str) -> Logging {
    let (destination, sink, fallback) = choose(target);
    let env_override = std::env::var_os("RUST_LOG").is_some();
    let initial = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter(level));
    let (filter_layer, handle) = reload::Layer::new(initial);
    let fmt = fmt_layer(destination, Arc::new(sink));
    // A second `init` (tests of this module) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init();
    Logging {
        destination,
        fallback,
        handle,
        env_override,
    }
}

/// The formatter for `destination`, writing each event to `sink` as one line.
fn fmt_layer<S>(destination: Destination, sink: Arc<Sink>) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(LineWriter { sink })
        .with_target(false);
    // The journal and syslog stamp each entry themselves.
    match destination {
        Destination::Stderr => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        Destination::Journald | Destination::Syslog => fmt.without_time().with_ansi(false).boxed(),
    }
}

fn choose(target: LogTarget) -> (Destination, Sink, Option<String>) {
    match target {
        LogTarget::Stderr => (Destination::Stderr, Sink::Stderr, None),
        LogTarget::Journald => (Destination::Journald, Sink::Journald, None),
        LogTarget::Auto if stderr_is_journal() => (Destination::Journald, Sink::Journald, None),
        LogTarget::Auto => (Destination::Stderr, Sink::Stderr, None),
        LogTarget::Syslog => {
            let path = std::env::var_os("REALTIME_SYSLOG_SOCKET")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(SYSLOG_SOCKET));
            match Syslog::connect(path.clone()) {
                Ok(s) => (Destination::Syslog, Sink::Syslog(Mutex::new(s)), None),
                Err(e) => {
                    let why = format!(
                        "cannot log to syslog at {}: {e}; logging to stderr",
                        path.display()
                    );
                    (Destination::Stderr, Sink::Stderr, Some(why))
                }
            }
        }
    }
}

/// systemd.exec(5): `JOURNAL_STREAM` holds `dev:ino` of the stream the journal gave us; it
/// is inherited by children whose stderr may go elsewhere, so compare with stderr itself.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    journal_stream_matches(&value.to_string_lossy(), stat.st_dev, stat.st_ino)
}

fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// `<N>` prefix / syslog severity of a level (sd-daemon(3), RFC 5424).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An open syslog connection; reopened once when a send fails (syslogd restarted).
struct Syslog {
    path: PathBuf,
    logger: syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>,
}

impl Syslog {
    fn connect(path: PathBuf) -> Result<Syslog, syslog::Error> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "realtime".to_owned(),
            pid: std::process::id(),
        };
        let logger = syslog::unix_custom(formatter, &path)?;
        Ok(Syslog { path, logger })
    }

    fn send(&mut self, level: Level, line: &str) -> Result<(), syslog::Error> {
        let logger = &mut self.logger;
        match level {
            Level::ERROR => logger.err(line),
            Level::WARN => logger.warning(line),
            Level::INFO => logger.info(line),
            Level::DEBUG | Level::TRACE => logger.debug(line),
        }
    }
}

enum Sink {
    Journald,
    /// Behind a lock because the logger's send takes `&mut self`; held for one datagram.
    Syslog(Mutex<Syslog>),
    Stderr,
    /// Lines kept for the tests of this module.
    #[cfg(test)]
    Memory(Mutex<Vec<String>>),
}

impl Sink {
    fn emit(&self, level: Level, line: &str) {
        match self {
            #[cfg(test)]
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(format!("<{}>{line}", priority(level)));
                }
            }
            Sink::Stderr => {
                let _ = writeln!(io::stderr().lock(), "{line}");
            }
            Sink::Journald => {
                let _ = writeln!(io::stderr().lock(), "<{}>{line}", priority(level));
            }
            Sink::Syslog(syslog) => {
                let Ok(mut s) = syslog.lock() else { return };
                if s.send(level, line).is_err()
                    && let Ok(fresh) = Syslog::connect(s.path.clone())
                {
                    *s = fresh;
                    let _ = s.send(level, line);
                }
            }
        }
    }
}

/// Hands `fmt` a fresh buffer per event; the buffer becomes one line when dropped.
#[derive(Clone)]
struct LineWriter {
    sink: Arc<Sink>,
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> EventBuffer {
        self.buffer(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> EventBuffer {
        self.buffer(*meta.level())
    }
}

impl LineWriter {
    fn buffer(&self, level: Level) -> EventBuffer {
        EventBuffer {
            sink: self.sink.clone(),
            level,
            buf: Vec::with_capacity(256),
        }
    }
}

pub struct EventBuffer {
    sink: Arc<Sink>,
    level: Level,
    buf: Vec<u8>,
}

impl std::fmt::Debug for EventBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBuffer").finish_non_exhaustive()
    }
}

impl Write for EventBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        self.sink.emit(self.level, &one_line(&text));
    }
}

/// The event without its final newline, inner line breaks escaped.
fn one_line(text: &str) -> String {
    text.trim_end_matches('\n')
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_match_both_numbers() {
        assert!(journal_stream_matches("64769:1234", 64769, 1234));
        assert!(!journal_stream_matches("64769:1235", 64769, 1234));
        assert!(!journal_stream_matches("1:1234", 64769, 1234));
        assert!(!journal_stream_matches("64769", 64769, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }

    #[test]
    fn events_become_single_lines() {
        assert_eq!(one_line("a b=1\n"), "a b=1");
        assert_eq!(one_line("first\nsecond\r\n"), "first\\nsecond\\r");
    }

    #[test]
    fn a_session_span_is_in_every_line_of_the_session() {
        let sink = Arc::new(Sink::Memory(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::registry()
            .with(fmt_layer(Destination::Journald, sink.clone()))
            .with(EnvFilter::new("debug"));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::debug_span!(
                "session",
                sid = %"abc",
                peer = %"127.0.0.1:9",
                transport = %"polling",
                identity = tracing::field::Empty,
            );
            span.in_scope(|| tracing::debug!(reason = "client close", "session closed"));
            span.record("identity", "alice");
            span.in_scope(|| tracing::warn!("slow"));
            tracing::info!("outside");
        });
        let Sink::Memory(lines) = &*sink else {
            unreachable!()
        };
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("<7>"), "{lines:?}");
        for field in [
            "sid=abc",
            "peer=127.0.0.1:9",
            "transport=polling",
            "session closed",
        ] {
            assert!(lines[0].contains(field), "{field}: {lines:?}");
        }
        assert!(lines[0].contains("reason=\"client close\""), "{lines:?}");
        assert!(lines[1].starts_with("<4>") && lines[1].contains("identity=\"alice\""));
        assert!(!lines[2].contains("sid="), "{lines:?}");
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
