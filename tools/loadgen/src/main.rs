//! `realtime-loadgen`: drives a Socket.IO server over WebSocket with the `subscribe` and
//! `publish` events of docs/design.md#client-events and checks the `message` deliveries of
//! docs/design.md#server-events, so it measures Realtime and any other server implementing those
//! two events (the Node reference peer of `tests/bench/`) the same way. Also writes BENCHMARKS.md
//! from the runs' JSON.
//!
//! Layout: `wire` is the pure packet codec; `ws` a lean WebSocket client; `conn` one
//! Socket.IO client; `run` the subscriber and
//! publisher tasks and the completion bookkeeping; `scenarios` the four scenarios; `check`
//! and `stats` the exactly-once check and the percentiles; `procfs` the server's RSS and
//! CPU time; `report` (with `svg`) the Markdown and the plots.

mod check;
mod conn;
mod procfs;
mod report;
mod run;
mod scenarios;
mod stats;
mod svg;
mod wire;
mod ws;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use scenarios::{ChannelsArgs, Common, CrowdArgs, FanoutArgs, IdleArgs, RateArgs};

#[derive(Debug, Parser)]
#[command(
    name = "realtime-loadgen",
    about = "Load generator for Socket.IO servers with subscribe/publish",
    // A later flag wins, so a script can append overrides to a preset list of flags.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N subscribers on one channel, one publisher, M messages with a bounded window.
    Fanout {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: FanoutArgs,
    },
    /// N subscribers on one channel, one publisher at a fixed rate: latency.
    Rate {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: RateArgs,
    },
    /// N connections each subscribed to a channel: RSS, handshakes/s, subscribe acks/s.
    Idle {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: IdleArgs,
    },
    /// N connections each in k of C channels, several publishers: deliveries/s.
    Channels {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: ChannelsArgs,
    },
    /// N connections (100,000 by default) on one channel, then one broadcast to all:
    /// handshakes/s, RSS per connection, time until the last has it.
    Crowd {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        args: CrowdArgs,
    },
    /// Writes BENCHMARKS.md and its plots from the JSON lines of runs.
    Report(report::ReportArgs),
    /// Checks the JSON lines of runs: every scenario of every server present, nothing lost.
    Check(report::CheckArgs),
}

#[derive(Debug, Clone, Args)]
struct ServerArgs {
    /// The server: ws://host:port (plain WebSocket; http:// means the same).
    #[arg(long, default_value = "ws://127.0.0.1:8001")]
    url: String,
    /// The Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    path: String,
    /// The server's process id, for its RSS and CPU time (same machine only).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where the publishers connect, if not to --url: another node of a cluster, so every
    /// message crosses from that node to the subscribers' node. The run is then recorded
    /// as `<scenario>-cross-node` (fanout, rate and channels).
    #[arg(long)]
    publish_url: Option<String>,
    /// The publishers' node's process id, for its CPU time (with --publish-url).
    #[arg(long)]
    publish_server_pid: Option<u32>,
    /// The process id of what joins the nodes (e.g. redis-server), for its CPU time.
    #[arg(long)]
    bus_pid: Option<u32>,
    /// The server's name in the JSON (e.g. realtime, reference).
    #[arg(long, default_value = "server")]
    label: String,
    /// Round number, recorded in the JSON.
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Seconds without progress after which a run ends as failed.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout: f64,
    /// Connect from this many loopback addresses (127.0.0.1 to 127.0.0.N) in turn; past
    /// about 28,000 connections one address runs out of ephemeral ports.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Runtime worker threads (default: the CPUs this process may use; 1 = single-threaded).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(a) => report::write(&a).map(|()| true),
        Command::Check(a) => report::check(&a),
        Command::Fanout { server, args } => drive(&server, |c| {
            Box::pin(async move { scenarios::fanout(&c, &args).await })
        }),
        Command::Rate { server, args } => drive(&server, |c| {
            Box::pin(async move { scenarios::rate(&c, &args).await })
        }),
        Command::Idle { server, args } => drive(&server, |c| {
            Box::pin(async move { scenarios::idle(&c, &args).await })
        }),
        Command::Channels { server, args } => drive(&server, |c| {
            Box::pin(async move { scenarios::channels(&c, &args).await })
        }),
        Command::Crowd { server, args } => drive(&server, |c| {
            Box::pin(async move { scenarios::crowd(&c, &args).await })
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("realtime-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

type ScenarioFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value>>>>;

/// Runs one scenario on a runtime sized to the CPUs given, prints its table (stderr) and
/// JSON line (stdout); returns whether the run passed its checks.
fn drive(server: &ServerArgs, scenario: impl FnOnce(Common) -> ScenarioFuture) -> Result<bool> {
    let nofile = procfs::raise_nofile();
    let threads = server.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // One thread: no work stealing and no cross-thread wakeups, the cheapest way to drive
    // many sockets from the one pinned CPU the bench gives the load generator.
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let mut target = conn::Target::new(&server.url, &server.path)?;
    if server.sources > 1 {
        target = target.with_loopback_sources(server.sources);
    }
    let target = Arc::new(target);
    let publish_target = match &server.publish_url {
        Some(url) => Arc::new(conn::Target::new(url, &server.path)?),
        None => target.clone(),
    };
    let common = Common {
        target,
        publish_target,
        cross_node: server.publish_url.is_some(),
        server: server.server_pid.map(procfs::Proc::Pid),
        publish_server: server.publish_server_pid.map(procfs::Proc::Pid),
        bus: server.bus_pid.map(procfs::Proc::Pid),
        concurrency: server.concurrency,
        stall: Duration::from_secs_f64(server.stall_timeout.max(0.1)),
    };
    let mut out = runtime.block_on(scenario(common))?;
    if let Value::Object(m) = &mut out {
        m.insert("server".into(), Value::from(server.label.as_str()));
        m.insert("round".into(), Value::from(server.round));
        m.insert("url".into(), Value::from(server.url.as_str()));
        if let Some(url) = &server.publish_url {
            m.insert("publish_url".into(), Value::from(url.as_str()));
        }
        m.insert("loadgen_threads".into(), Value::from(threads));
        m.insert("nofile_limit".into(), Value::from(nofile));
    }
    eprint!("{}", report::table(&out));
    println!("{out}");
    Ok(out["ok"] == Value::Bool(true))
}
