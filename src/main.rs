//! The `realtime` binary: parse the command line and config, bind, serve until a signal.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use realtime::cli::{Cli, Command};
use realtime::config::Config;
use realtime::server;

/// sysexits EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;
/// How long shutdown waits for sessions to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(file) {
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
        };
    }

    let (mut config, path) = match Config::discover(cli.config.as_deref()) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("realtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(port) = cli.port {
        config.server.websocket_port = Some(port);
    }
    match &cli.command {
        Some(Command::License { domain }) => {
            let (key, reduced) = realtime::auth::license_key(domain, &config);
            eprintln!("license key for {reduced}:");
            println!("{key}");
            return ExitCode::SUCCESS;
        }
        Some(Command::Token {
            identity,
            channels,
            ttl,
        }) => {
            return match realtime::auth::mint_token(&config, identity, channels.clone(), *ttl) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("realtime: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            };
        }
        _ => {}
    }
    let level = if cli.debug || config.server.debug {
        "debug".to_owned()
    } else {
        config.log.level.clone()
    };
    init_logging(&level);
    match &path {
        Some(p) => info!("configuration from {}", p.display()),
        None => info!("no configuration file; using built-in defaults"),
    }
    for w in config.warnings() {
        warn!("{w}");
    }
    // Everything the config names (license file, monitor) is checked before binding.
    let product = match server::product(&config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("realtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    // Bind before the runtime starts, so a port in use fails fast and plainly.
    let mut listeners = Vec::new();
    for addr in config.server.listen_addrs() {
        match server::bind(&addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("realtime: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realtime: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        server::serve(listeners, product.router, shutdown, SHUTDOWN_GRACE).await
    });
    match result {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("realtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("realtime={level},{level}"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
