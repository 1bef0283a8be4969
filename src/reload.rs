//! SIGHUP (docs/design.md#configuration): re-read the configuration file used at start, apply what
//! can change live, and name every changed key that needs a restart.
//!
//! [`KEYS`], the configuration's key table, says of every key whether it is
//! [`Apply::Live`]. The running configuration takes a live key's new value; a restart-only key keeps the value the daemon runs with,
//! so it is reported again on every reload until the restart. Making a key live later is a
//! one-word change in that table plus its effect in [`Reloader::apply_live`].

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::auth::Security;
use crate::cli::Overrides;
use crate::config::{Apply, Config, KEYS, Key};
use crate::log::Logging;

/// The keys whose value differs between `old` and `new`.
pub fn changed<'k>(old: &Config, new: &Config) -> Vec<&'k Key> {
    KEYS.iter().filter(|k| (k.changed)(old, new)).collect()
}

/// The log level a configuration asks for: `[Server] debug` (or `--debug`) means debug.
pub fn log_level(config: &Config) -> &str {
    if config.server.debug {
        "debug"
    } else {
        &config.log.level
    }
}

/// Holds what a reload needs: the file, the command-line overrides, the running settings
/// and the handles of whatever changes live.
pub struct Reloader {
    path: Option<PathBuf>,
    overrides: Overrides,
    running: Config,
    logging: Logging,
    /// Origins, license keys, API keys and identity rules, once the product exists.
    security: Option<Arc<Security>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        overrides: Overrides,
        running: Config,
        logging: Logging,
    ) -> Reloader {
        Reloader {
            path,
            overrides,
            running,
            logging,
            security: None,
        }
    }

    /// Reloads apply the license, API and identity rules to `security` too.
    pub fn guard(&mut self, security: Arc<Security>) {
        self.security = Some(security);
    }

    /// Re-reads the file and applies it; a file that does not parse changes nothing.
    /// Everything is logged, nothing is returned: a reload never stops the service.
    pub fn reload(&mut self) {
        let Some(path) = &self.path else {
            info!("reload: no configuration file was used at start; nothing to reload");
            return;
        };
        let mut new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload failed; keeping the running configuration: {e}");
                return;
            }
        };
        self.overrides.apply(&mut new);
        for w in new.warnings() {
            warn!("{w}");
        }
        let changes = changed(&self.running, &new);
        // The rules of who may connect are built first, from every live change: when they
        // cannot be (a license file that cannot be read), none of their keys is applied,
        // and the log says so rather than "applied". Built every time, even with no key
        // changed: new license keys go in the license file.
        let rules_kept = match &self.security {
            Some(security) => {
                let mut next = self.running.clone();
                for key in changes.iter().filter(|k| k.apply == Apply::Live) {
                    (key.take)(&mut next, &new);
                }
                security.reload(&next).err()
            }
            None => None,
        };
        let mut live = false;
        let mut not_applied = Vec::new();
        for key in &changes {
            match key.apply {
                Apply::Live if rules_kept.is_some() && key.is_rule() => {
                    // Left out of the running settings: the next reload tries it again.
                    not_applied.push(format!("[{}] {}", key.section, key.name));
                }
                Apply::Live => {
                    (key.take)(&mut self.running, &new);
                    live = true;
                    info!("reload: [{}] {} changed; applied", key.section, key.name);
                }
                Apply::Restart => warn!(
                    "reload: [{}] {} changed; it takes effect after a restart",
                    key.section, key.name
                ),
            }
        }
        if live {
            self.apply_live();
        }
        if let Some(e) = rules_kept {
            let changed = if not_applied.is_empty() {
                String::new()
            } else {
                format!(" ({} changed, not applied)", not_applied.join(", "))
            };
            error!(
                "reload: {e}; keeping the previous license, origin, API and identity rules{changed}"
            );
        }
        info!(
            changed = changes.len(),
            "configuration reloaded from {}",
            path.display()
        );
    }

    /// Hands the live settings to the parts that use them.
    fn apply_live(&self) {
        if let Err(e) = self.logging.set_level(log_level(&self.running)) {
            warn!("reload: [Log] level not applied: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(seen.insert((k.section, k.name)), "{} {}", k.section, k.name);
        }
        // Every field of every section: a new key must be classified here.
        assert_eq!(KEYS.len(), 50);
    }

    #[test]
    fn each_key_maps_to_its_own_setting() {
        let values = [
            ("Server", "debug", "true"),
            ("Server", "bind", "127.0.0.1:1"),
            ("Server", "websocket-port", "1"),
            ("Server", "path", "/x/"),
            ("Server", "ping-interval", "1s"),
            ("Server", "ping-timeout", "1s"),
            ("Server", "max-payload", "1"),
            ("Server", "max-connections", "1"),
            ("Server", "reconnect-timeout", "1s"),
            ("Server", "allowed-types", "websocket"),
            ("Server", "user", "nobody"),
            ("Server", "www", "/www"),
            ("Server", "connect-timeout", "1s"),
            ("Server", "max-http-connections", "1"),
            ("Server", "body-timeout", "1s"),
            ("Server", "shutdown-grace", "1s"),
            ("Server", "max-poll-packets", "1"),
            ("Flash", "enabled", "false"),
            ("Flash", "port", "1"),
            ("Flash", "policy-file", "/p.xml"),
            ("Monitor", "url", "http://h/"),
            ("Monitor", "events", "connect"),
            ("Monitor", "secret", "s"),
            ("Monitor", "queue", "1"),
            ("Monitor", "timeout", "1s"),
            ("Monitor", "retries", "1"),
            ("Messaging", "message-cache-limit", "1"),
            ("Messaging", "client-queue", "1"),
            ("Messaging", "max-channels", "1"),
            ("Messaging", "max-channel-name", "1"),
            ("Messaging", "max-identity", "1"),
            ("Messaging", "history-size", "1"),
            ("Messaging", "history-ttl", "1s"),
            ("Messaging", "quiet-channels", "a*"),
            ("Messaging", "notices-max-members", "1"),
            ("License", "file", "/l.txt"),
            ("License", "secret", "s"),
            ("License", "allowed-origins", "*"),
            ("Api", "keys", "k"),
            ("Identity", "secret", "s"),
            ("Identity", "require", "true"),
            ("Cluster", "redis", "redis://h/"),
            ("Cluster", "prefix", "p"),
            ("Cluster", "node-id", "n"),
            ("Cluster", "heartbeat", "2s"),
            ("Cluster", "node-timeout", "30s"),
            ("Cluster", "answer-timeout", "1s"),
            ("Cluster", "bus-shards", "2"),
            ("Log", "target", "stderr"),
            ("Log", "level", "debug"),
        ];
        assert_eq!(values.len(), KEYS.len());
        for (section, name, value) in values {
            // Spreading needs a Redis Cluster, in both.
            let base = match name {
                "bus-shards" => "[Cluster]\nredis = redis+cluster://h:1\n",
                _ => "",
            };
            let old = Config::parse(base, "t").unwrap();
            let new =
                Config::parse(&format!("{base}[{section}]\n{name} = {value}\n"), "t").unwrap();
            let got: Vec<_> = changed(&old, &new)
                .iter()
                .map(|k| (k.section, k.name))
                .collect();
            assert_eq!(got, [(section, name)]);
        }
    }

    #[test]
    fn changes_are_named_by_section_and_key() {
        let old = Config::default();
        let new = Config::parse(
            "[Log]\nlevel = debug\n[Server]\nping-interval = 5s\n",
            "t.conf",
        )
        .unwrap();
        let names: Vec<_> = changed(&old, &new)
            .iter()
            .map(|k| (k.section, k.name, k.apply))
            .collect();
        assert_eq!(
            names,
            [
                ("Server", "ping-interval", Apply::Restart),
                ("Log", "level", Apply::Live)
            ]
        );
        assert!(changed(&old, &Config::default()).is_empty());
    }

    #[test]
    fn taking_a_live_key_leaves_the_others() {
        let mut running = Config::default();
        let new = Config::parse("[Log]\nlevel = warn\n[Server]\npath = /x/\n", "t.conf").unwrap();
        for k in changed(&running, &new) {
            if k.apply == Apply::Live {
                (k.take)(&mut running, &new);
            }
        }
        assert_eq!(running.log.level, "warn");
        assert_eq!(running.server.path, "/socket.io/");
        assert_eq!(changed(&running, &new).len(), 1);
    }

    #[test]
    fn debug_means_debug_level() {
        let mut c = Config::default();
        assert_eq!(log_level(&c), "info");
        c.server.debug = true;
        assert_eq!(log_level(&c), "debug");
    }
}
