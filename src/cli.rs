//! The command line: flags that override the config file, and the helper commands.

use std::path::PathBuf;

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
        assert!(Cli::try_parse_from(["realtime", "--port", "x"]).is_err());
        assert!(Cli::try_parse_from(["realtime", "--port", "70000"]).is_err());
    }
}
