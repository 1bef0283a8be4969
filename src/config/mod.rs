//! Configuration (docs/design.md#configuration): the INI file, its built-in defaults, lookup and
//! error reporting.
//!
//! `Config::discover` finds the file, `Config::parse` turns its text into typed settings.
//! Every problem is a [`ConfigError`] naming file, line, section and key; things that are
//! accepted but worth telling (legacy names, a key set twice) are in [`Config::warnings`].

mod ini;
pub mod keys;
mod redis_cluster;
mod reference;
mod sections;
mod sentinel;
mod server;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

pub use keys::{Apply, KEYS, Key};
pub use redis_cluster::ClusterUrl;
pub use reference::{reference, write_reference};
pub use sections::{
    ApiConfig, ClusterConfig, IdentityConfig, LOG_LEVELS, LicenseConfig, LogConfig, LogTarget,
    MONITOR_EVENTS, MessagingConfig, MonitorConfig,
};
pub use sentinel::SentinelUrl;
pub use server::{FlashConfig, ServerConfig, Transport};
pub use value::{ValueError, redacted};

/// Where [`Config::discover`] looks when no path is given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["/etc/realtime/realtime.conf", "./etc/realtime.conf"];

/// All settings. `Default` is the built-in configuration used when no file is found.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub flash: FlashConfig,
    pub monitor: MonitorConfig,
    pub messaging: MessagingConfig,
    pub license: LicenseConfig,
    pub api: ApiConfig,
    pub identity: IdentityConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
    warnings: Vec<String>,
}

/// Compares settings only: warnings are diagnostics about the text, not configuration,
/// so a reload that changes nothing compares equal.
impl PartialEq for Config {
    fn eq(&self, o: &Self) -> bool {
        self.server == o.server
            && self.flash == o.flash
            && self.monitor == o.monitor
            && self.messaging == o.messaging
            && self.license == o.license
            && self.api == o.api
            && self.identity == o.identity
            && self.cluster == o.cluster
            && self.log == o.log
    }
}

impl Eq for Config {}

/// A configuration that cannot be used. Display: `file:line: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line that is not a comment, a `[Section]` or a `key = value`.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: u32,
        message: String,
    },
    #[error("{file}:{line}: unknown section [{section}]")]
    UnknownSection {
        file: String,
        line: u32,
        section: String,
    },
    #[error("{file}:{line}: key {key:?} is outside any section")]
    KeyOutsideSection {
        file: String,
        line: u32,
        key: String,
    },
    #[error("{file}:{line}: unknown key {key:?} in [{section}]")]
    UnknownKey {
        file: String,
        line: u32,
        section: String,
        key: String,
    },
    #[error("{file}:{line}: [{section}] {key}: {error}")]
    InvalidValue {
        file: String,
        line: u32,
        section: String,
        key: String,
        error: ValueError,
    },
}

impl ConfigError {
    /// The file (as given to `parse`, or the path for `load`).
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::Io { path, .. } => path.to_str(),
            ConfigError::Syntax { file, .. }
            | ConfigError::UnknownSection { file, .. }
            | ConfigError::KeyOutsideSection { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::InvalidValue { file, .. } => Some(file),
        }
    }

    /// 1-based line number, when the error is about a line.
    pub fn line(&self) -> Option<u32> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownSection { line, .. }
            | ConfigError::KeyOutsideSection { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::InvalidValue { line, .. } => Some(*line),
        }
    }

    /// The section: its canonical name (`Server`) when known, else as written.
    pub fn section(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownSection { section, .. }
            | ConfigError::UnknownKey { section, .. }
            | ConfigError::InvalidValue { section, .. } => Some(section),
            _ => None,
        }
    }

    /// The key, as written.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::KeyOutsideSection { key, .. }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// What a section setter reports; `parse` adds the location.
#[derive(Debug)]
enum SetError {
    UnknownKey,
    Invalid(ValueError),
}

impl From<ValueError> for SetError {
    fn from(error: ValueError) -> Self {
        SetError::Invalid(error)
    }
}

/// The sections, by canonical name (as in etc/realtime.conf); matched case-insensitively.
const SECTIONS: [&str; 9] = [
    "Server",
    "Flash",
    "Monitor",
    "Messaging",
    "License",
    "Api",
    "Identity",
    "Cluster",
    "Log",
];

impl Config {
    /// Parse INI text; `origin` is the file name used in error messages.
    /// Keys not in the text keep their defaults.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let lines = ini::read(text).map_err(|e| ConfigError::Syntax {
            file: origin.to_owned(),
            line: e.line,
            message: e.message,
        })?;
        let mut config = Config::default();
        let mut section: Option<&'static str> = None;
        // (section, key) → line of its last setting, to warn about repeats.
        let mut seen: HashMap<(&'static str, String), u32> = HashMap::new();
        for parsed in lines {
            match parsed {
                ini::Line::Section { line, name } => {
                    let known = SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(name));
                    let Some(&known) = known else {
                        return Err(ConfigError::UnknownSection {
                            file: origin.to_owned(),
                            line,
                            section: name.to_owned(),
                        });
                    };
                    section = Some(known);
                }
                ini::Line::Entry { line, key, value } => {
                    let Some(sect) = section else {
                        return Err(ConfigError::KeyOutsideSection {
                            file: origin.to_owned(),
                            line,
                            key: key.to_owned(),
                        });
                    };
                    let lower = key.to_ascii_lowercase();
                    let mut notes = Vec::new();
                    let result = config.set(sect, &lower, value, &mut notes);
                    let at = |e: SetError| match e {
                        SetError::UnknownKey => ConfigError::UnknownKey {
                            file: origin.to_owned(),
                            line,
                            section: sect.to_owned(),
                            key: key.to_owned(),
                        },
                        SetError::Invalid(error) => ConfigError::InvalidValue {
                            file: origin.to_owned(),
                            line,
                            section: sect.to_owned(),
                            key: key.to_owned(),
                            error,
                        },
                    };
                    result.map_err(at)?;
                    for note in notes {
                        config
                            .warnings
                            .push(format!("{origin}:{line}: [{sect}] {key}: {note}"));
                    }
                    if let Some(first) = seen.insert((sect, lower), line) {
                        config.warnings.push(format!(
                            "{origin}:{line}: [{sect}] {key} is set again (before on line {first}); \
                             the last value wins"
                        ));
                    }
                }
            }
        }
        // A node must miss a few heartbeats before the others think it dead.
        let cluster = &config.cluster;
        if cluster.node_timeout <= cluster.heartbeat {
            let line = seen
                .get(&("Cluster", "node-timeout".to_owned()))
                .or_else(|| seen.get(&("Cluster", "heartbeat".to_owned())))
                .copied()
                .unwrap_or(0);
            return Err(ConfigError::InvalidValue {
                file: origin.to_owned(),
                line,
                section: "Cluster".to_owned(),
                key: "node-timeout".to_owned(),
                error: ValueError::NodeTimeoutNotAboveHeartbeat {
                    node_timeout: cluster.node_timeout,
                    heartbeat: cluster.heartbeat,
                },
            });
        }
        // Spreading needs shards: one Redis (or Sentinel's) has one.
        let cluster = &config.cluster;
        if cluster.bus_shards > 1 && !cluster.redis.as_deref().is_some_and(ClusterUrl::is_cluster) {
            return Err(ConfigError::InvalidValue {
                file: origin.to_owned(),
                line: seen
                    .get(&("Cluster", "bus-shards".to_owned()))
                    .copied()
                    .unwrap_or(0),
                section: "Cluster".to_owned(),
                key: "bus-shards".to_owned(),
                error: ValueError::BusShardsWithoutRedisCluster(cluster.bus_shards),
            });
        }
        Ok(config)
    }

    /// Read and parse a file (the error names the path on I/O failure too).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_error = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io_error)?;
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|e| {
            // Point at the line, which read_to_string's error would not.
            let valid = e.utf8_error().valid_up_to();
            let newlines = e
                .as_bytes()
                .iter()
                .take(valid)
                .filter(|&&b| b == b'\n')
                .count();
            ConfigError::Syntax {
                file: origin.clone(),
                line: u32::try_from(newlines)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
                message: "not valid UTF-8".to_owned(),
            }
        })?;
        Config::parse(&text, &origin)
    }

    /// docs/design.md#configuration lookup: explicit path if given; else
    /// /etc/realtime/realtime.conf if it exists; else ./etc/realtime.conf if it exists; else
    /// defaults. Returns the path used (None = defaults).
    pub fn discover(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let candidates: Vec<PathBuf> = DEFAULT_PATHS.iter().map(PathBuf::from).collect();
        Config::discover_in(explicit, &candidates)
    }

    /// `discover` with the search list as a parameter, so it can be tested.
    fn discover_in(
        explicit: Option<&Path>,
        candidates: &[PathBuf],
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        if let Some(path) = explicit {
            return Ok((Config::load(path)?, Some(path.to_owned())));
        }
        for path in candidates {
            // A file we cannot even stat is an error, not a silent fall-back to defaults.
            let exists = path.try_exists().map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            if exists {
                return Ok((Config::load(path)?, Some(path.clone())));
            }
        }
        Ok((Config::default(), None))
    }

    /// Warnings collected while parsing (e.g. ignored legacy transport names), for the
    /// caller to log. Each starts with `file:line:`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn set(
        &mut self,
        section: &str,
        key: &str,
        value: &str,
        notes: &mut Vec<String>,
    ) -> Result<(), SetError> {
        // The key table decides what is a key, so the reference lists all there are.
        if let Some(instead) = keys::legacy(section, key) {
            notes.push(format!("2011 key ignored; use {instead}"));
            return Ok(());
        }
        if keys::find(section, key).is_none() {
            return Err(SetError::UnknownKey);
        }
        match section {
            "Server" => self.server.set(key, value, notes),
            "Flash" => self.flash.set(key, value),
            "Monitor" => self.monitor.set(key, value),
            "Messaging" => self.messaging.set(key, value),
            "License" => self.license.set(key, value),
            "Api" => self.api.set(key, value),
            "Identity" => self.identity.set(key, value),
            "Cluster" => self.cluster.set(key, value),
            "Log" => self.log.set(key, value),
            _ => Err(SetError::UnknownKey),
        }
    }
}
