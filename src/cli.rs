//! The command line: flags that override the config file, and the helper commands; and
//! the man page, realtime(8), generated from this definition (`realtime man`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Print the man page, realtime(8), as roff (the packages install it).
    #[command(hide = true)]
    Man,
    /// Print the configuration reference, docs/configuration.md, as Markdown.
    #[command(hide = true)]
    ConfigReference,
}

/// realtime(8): NAME, SYNOPSIS and OPTIONS from the clap definition, COMMANDS from its
/// visible subcommands, then what a daemon's page needs besides. No date, so the same
/// binary always writes the same bytes.
pub fn write_man_page(out: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    out.write_all(MAN_DESCRIPTION.as_bytes())?;
    man.render_options_section(out)?;
    out.write_all(b".SH COMMANDS\n")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_long() != Some("help"))
            .collect();
        let mut usage = format!("\\fBrealtime {}\\fR", sub.get_name());
        for a in &args {
            match a.get_long() {
                Some(long) => {
                    usage += &format!(" [\\fB\\-\\-{long}\\fR \\fI{}\\fR]", value_name(a))
                }
                None => usage += &format!(" \\fI{}\\fR", value_name(a)),
            }
        }
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(out, ".TP\n{usage}\n{}", roff_text(&about))?;
        for a in args.iter().filter(|a| a.get_long().is_some()) {
            let long = a.get_long().unwrap_or_default();
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".RS\n.TP\n\\fB\\-\\-{long}\\fR \\fI{}\\fR\n{}\n.RE",
                value_name(a),
                roff_text(&help)
            )?;
        }
    }
    out.write_all(MAN_SECTIONS.as_bytes())?;
    man.render_version_section(out)
}

/// An argument's value name as the usage line shows it: `DOMAIN`, `CHANNELS`.
fn value_name(arg: &clap::Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// Help text as roff body text: backslashes escaped, no line read as a request.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const MAN_DESCRIPTION: &str = r#".SH DESCRIPTION
\fBrealtime\fR is a message server for web clients. Browsers and backends connect with
the stock Socket.IO client (Engine.IO v4, Socket.IO v5, over WebSocket or HTTP long-polling),
join named channels and publish to them; every member of a channel hears every message.
The same port serves an HTTP API (\fB/api/publish\fR, \fB/api/channels\fR, \fB/healthz\fR,
\fB/readyz\fR), the client bundle (\fB/realtime.js\fR) and a chat demo (\fB/\fR).
A Flash socket policy responder answers on port 843 when it can bind it.
.PP
Under systemd, \fBrealtime.socket\fR and \fBrealtime\-flash.socket\fR hold the ports and
pass them to \fBrealtime.service\fR, which reports readiness, status and watchdog pings
with sd_notify(3); a restart refuses no connection. Started as root (supervisord,
\fBsudo realtime\fR), it binds its ports, then switches to \fB[Server] user\fR.
"#;

const MAN_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/realtime/realtime.conf\fR
The configuration (INI). Without \fB\-\-config\fR, this file is read if it exists, else
\fI./etc/realtime.conf\fR, else built\-in defaults. Every key is listed with its default
in the sample file, and with its type and whether a reload applies it in
\fI/usr/share/doc/realtime/configuration.md\fR. An unknown key or a bad value stops the
server with an error naming the file, line and key.
.TP
\fI/etc/realtime/license.txt\fR
License keys, one a line: hex sha1 of a domain and \fB[License] secret\fR
(\fBrealtime license\fR prints one). Read when \fB[License] file\fR is unset.
.TP
\fI/usr/share/realtime/www/\fR
The demo page and client bundle of the packages (\fB[Server] www\fR); the binary
carries its own copies.
.TP
\fI/usr/share/doc/realtime/examples/supervisor/\fR
supervisord configuration and \fBstart\fR, \fBstop\fR, \fBstatus\fR, \fBrestart\fR
commands, for machines without systemd.
.TP
\fI/usr/share/doc/realtime/operating.md\fR
The log lines and metrics worth an alert, with suggested alert rules.
.TP
\fI/usr/share/realtime/grafana\-dashboard.json\fR
A Grafana dashboard for \fB/metrics\fR.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, tell every client to disconnect, wait for them at most
\fB[Server] shutdown-grace\fR, flush the monitor queue briefly, exit 0.
.TP
\fBSIGHUP\fR
Reload the configuration file: what can change live is applied, every other changed key
is named in the log as needing a restart. A file with errors is not applied.
.TP
\fBSIGUSR1\fR
Restart in place: close every session into its grace window, then execute the binary
again (same PID) and hand the sessions over to it; clients recover them. \fBrealtimectl
restart\fR sends it.
.SH ENVIRONMENT
.TP
\fBLISTEN_FDS\fR, \fBLISTEN_FDNAMES\fR, \fBLISTEN_PID\fR
Sockets passed by the service manager, by name: \fBhttp\fR and \fBflash\fR.
What was not passed is bound from the configuration.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Where READY=1, STATUS=, RELOADING=1, STOPPING=1 and WATCHDOG=1 go.
.TP
\fBREALTIME_HANDOVER\fR
Set by the server for itself across a SIGUSR1 restart: the descriptors it hands over.
.TP
\fBJOURNAL_STREAM\fR
When it matches standard error, log lines carry journal priorities.
.TP
\fBREALTIME_SYSLOG_SOCKET\fR
The syslog socket for \fB[Log] target = syslog\fR (default \fI/dev/log\fR).
.TP
\fBRUST_LOG\fR
A log filter that wins over \fB[Log] level\fR.
.SH EXIT STATUS
0 after a clean stop; 64 for a configuration error; 1 for any other failure.
.SH EXAMPLES
.nf
systemctl enable \-\-now realtime.socket
systemctl reload realtime
journalctl \-u realtime
realtime check\-config /etc/realtime/realtime.conf
.fi
.SH SEE ALSO
systemctl(1), journalctl(1), systemd.socket(5), sd_notify(3), supervisord(1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn man_page_is_section_8_with_every_visible_command() {
        let mut page = Vec::new();
        write_man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("\n.TH realtime 8 "), "{page}");
        for want in [".SH NAME", ".SH OPTIONS", ".SH FILES", "\\-\\-config"] {
            assert!(page.contains(want), "no {want:?} in\n{page}");
        }
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            let usage = format!("\\fBrealtime {}\\fR", sub.get_name());
            assert!(page.contains(&usage), "no {usage:?} in\n{page}");
        }
        assert!(
            !page.contains("realtime man"),
            "the hidden command is listed"
        );
        let mut again = Vec::new();
        write_man_page(&mut again).unwrap();
        assert_eq!(page.as_bytes(), again, "not deterministic");
    }
}
