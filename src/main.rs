//! The `realtime` binary: read the config, take or bind the sockets, drop root, serve
//! until a signal. Each step lives in its module; this file is their order.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};

use realtime::auth::AuthError;
use realtime::cli::{Cli, Command};
use realtime::config::Config;
use realtime::flash::PolicyError;
use realtime::privileges::PrivilegeError;
use realtime::reload::{self, Reloader};
use realtime::service::ServiceError;
use realtime::{flash, handover, log, privileges, service, systemd};

/// Every thread allocates from glibc's main heap. A worker thread's own arena grows a
/// page or two at a time, one `mprotect` each: about two per connection opened, where the
/// main heap grows by `brk` in 128 KiB steps; fewer arenas also fragment less. Each
/// thread's cache (tcache) still serves most allocations without the arena's lock. An
/// operator's own setting (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES=glibc.malloc.arena_max=N`)
/// wins, for a machine with many cores where the one lock would be contended.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena() {
    let set_by_operator = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc.arena_max"));
    if !set_by_operator {
        // SAFETY: called first in main, before any other thread exists; mallopt only sets
        // a parameter of the allocator.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        }
    }
}

/// Another allocator than glibc's: nothing to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

/// sysexits EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;
/// How long the runtime may take to wind down once serving is over (a probe of a stuck
/// hub never returns; it must not keep the process alive).
const RUNTIME_WIND_DOWN: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    one_malloc_arena();
    // Before anything can replace the binary: the path SIGUSR1 re-executes.
    handover::note_start_path();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::Man) => return man_page(),
        Some(Command::ConfigReference) => return config_reference(),
        _ => {}
    }

    let overrides = cli.overrides();
    let (mut config, path) = match Config::discover(cli.config.as_deref()) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("realtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    overrides.apply(&mut config);
    match &cli.command {
        Some(Command::License { domain }) => return print_license(domain, &config),
        Some(Command::Token {
            identity,
            channels,
            ttl,
        }) => return print_token(&config, identity, channels.clone(), *ttl),
        _ => {}
    }

    let logging = log::init(config.log.target, reload::log_level(&config));
    if let Some(why) = &logging.fallback {
        warn!("{why}");
    }
    match &path {
        Some(p) => info!("configuration from {}", p.display()),
        None => info!("no configuration file; using built-in defaults"),
    }
    for w in config.warnings() {
        warn!("{w}");
    }
    let reloader = Reloader::new(path, overrides, config.clone(), logging);
    match daemon(config, reloader) {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            e.exit_code()
        }
    }
}

/// What stops the daemon, at start or while serving.
#[derive(Debug, thiserror::Error)]
enum Fatal {
    /// The license file the configuration names (or finds) cannot be used.
    #[error(transparent)]
    License(#[from] AuthError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Taking the sockets systemd passed, or binding ours.
    #[error(transparent)]
    Sockets(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Fatal {
    /// The one place that decides the exit status: 64 for what the configuration can fix,
    /// 1 for the rest.
    fn exit_code(&self) -> ExitCode {
        let config = match self {
            Fatal::License(_) | Fatal::Policy(_) => true,
            Fatal::Privileges(e) => e.is_config(),
            Fatal::Sockets(_) | Fatal::Runtime(_) | Fatal::Service(_) => false,
        };
        if config {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    }
}

/// The daemon, configuration read: sockets, privileges, then the run until a signal.
fn daemon(config: Config, reloader: Reloader) -> Result<(), Fatal> {
    // The license file the configuration names (or finds) must be readable.
    realtime::auth::Rules::from_config(&config)?;
    let account = privileges::resolve(config.server.user.as_deref())?;

    // Sockets before the runtime: systemd's fds are taken while this is the only thread,
    // and a port in use fails fast and plainly.
    // What the previous process handed over (SIGUSR1) takes the place of systemd's sockets.
    let (inherited, handed) = match handover::inherit().map_err(Fatal::Sockets)? {
        Some(passed) => {
            let handed = handover::take_state(passed.state);
            handover::close_strays(
                &handed
                    .as_ref()
                    .map(handover::State::live_sockets)
                    .unwrap_or_default(),
            );
            (passed.listeners, handed)
        }
        None => {
            // A state systemd kept in its file descriptor store over a restart.
            let mut inherited = systemd::inherited_listeners().map_err(Fatal::Sockets)?;
            let stored = inherited.state.take();
            if stored.is_some() {
                handover::release_stored();
            }
            // The clients' sockets too, if the stop before was a restart's.
            handover::adopt_stored(std::mem::take(&mut inherited.live));
            let handed = handover::take_state(stored);
            (inherited, handed)
        }
    };
    let listeners = service::listeners(&config, inherited).map_err(Fatal::Sockets)?;
    let policy = flash::policy(config.flash.policy_file.as_deref(), &listeners.http_ports())?;
    // Every port is bound: root is no longer needed.
    privileges::drop_to(account.as_ref())?;

    let runtime = tokio::runtime::Runtime::new().map_err(Fatal::Runtime)?;
    let result = runtime.block_on(service::run(config, listeners, policy, reloader, handed));
    runtime.shutdown_timeout(RUNTIME_WIND_DOWN);
    Ok(result?)
}

/// `realtime man`: realtime(8) as roff on stdout, for the packages.
fn man_page() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match realtime::cli::write_man_page(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realtime: cannot write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `realtime config-reference`: docs/configuration.md, from the configuration's key table.
fn config_reference() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match realtime::config::write_reference(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realtime: cannot write the configuration reference: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `realtime check-config FILE`: 0 and `FILE: ok` if valid, 64 and the error if not.
fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(c) => {
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            // The license file it names (or finds) must be readable too.
            match realtime::auth::Rules::from_config(&c) {
                Ok((_, warnings)) => warnings.iter().for_each(|w| eprintln!("warning: {w}")),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `realtime license DOMAIN`: the key on stdout, the domain it is for on stderr.
fn print_license(domain: &str, config: &Config) -> ExitCode {
    let (key, reduced) = realtime::auth::license_key(domain, config);
    eprintln!("license key for {reduced}:");
    println!("{key}");
    ExitCode::SUCCESS
}

/// `realtime token IDENTITY`: a token signed with `[Identity] secret`, on stdout.
fn print_token(
    config: &Config,
    identity: &str,
    channels: Option<Vec<String>>,
    ttl: Duration,
) -> ExitCode {
    match realtime::auth::mint_token(config, identity, channels, ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("realtime: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
