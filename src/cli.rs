//! The command line: flags that override the config file, and the helper commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Realtime: a message server for web clients over Socket.IO.
#[derive(Debug, Parser)]
#[command(name = "realtime", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: /etc/realtime/realtime.conf, else ./etc/realtime.conf,
    /// else built-in defaults).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Port to listen on, replacing the port of every `[Server] bind` address (0 picks a free one).
    #[arg(short, long)]
    pub port: Option<u16>,

    /// Log at debug level.
    #[arg(short, long)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The flags that override the file, kept so a reload applies them again.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            port: self.port,
            debug: self.debug,
        }
    }
}

/// Command-line settings that win over the configuration file, at start and on reload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub port: Option<u16>,
    pub debug: bool,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(port) = self.port {
            config.server.websocket_port = Some(port);
        }
        if self.debug {
            config.server.debug = true;
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file and exit (0 if valid, 64 if not).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the license key of a domain, for the license file ([License] secret from the config).
    License {
        /// A domain (`mydomain.com`) or an origin (`https://www.mydomain.com`); keys are
        /// issued for the last two labels of a name, or a whole IP address.
        domain: String,
    },
    /// Print an identity token signed with [Identity] secret from the config.
    Token {
        /// The identity (the token's `sub`).
        identity: String,
        /// Channels the token allows (names or `prefix*`), comma-separated; default: all.
        #[arg(long, value_delimiter = ',')]
        channels: Option<Vec<String>>,
        /// How long the token is valid (e.g. 90s, 15m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_flags_and_commands() {
        let cli =
            Cli::try_parse_from(["realtime", "--port", "9000", "-d", "-c", "x.conf"]).unwrap();
        assert_eq!(cli.port, Some(9000));
        assert!(cli.debug);
        assert_eq!(cli.config, Some(PathBuf::from("x.conf")));
        let cli = Cli::try_parse_from(["realtime", "check-config", "a.conf"]).unwrap();
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
        let cli = Cli::try_parse_from(["realtime", "license", "mydomain.com"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::License { domain }) if domain == "mydomain.com")
        );
        let cli = Cli::try_parse_from([
            "realtime",
            "token",
            "alice",
            "--channels",
            "chat,room-*",
            "--ttl",
            "15m",
        ])
        .unwrap();
        let Some(Command::Token {
            identity,
            channels,
            ttl,
        }) = cli.command
        else {
            panic!("not a token command")
        };
        assert_eq!(identity, "alice");
        assert_eq!(channels.unwrap(), ["chat", "room-*"]);
        assert_eq!(ttl, Duration::from_secs(900));
        assert!(Cli::try_parse_from(["realtime", "--port", "x"]).is_err());
        assert!(Cli::try_parse_from(["realtime", "--port", "70000"]).is_err());
    }
}
