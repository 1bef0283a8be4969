//! The daemon around the product: which sockets it serves (inherited or bound), and the
//! run itself: serve, tell systemd, reload on SIGHUP, stop on SIGTERM/SIGINT.
//!
//! `main` calls [`listeners`] before the runtime starts (systemd's fds must be taken while
//! the process has one thread, and privileges are dropped after binding), then [`run`].

use std::future::pending;
use std::io;
use std::net::TcpListener as StdListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::redis::Succession;
use crate::config::Config;
use crate::hub::{Hub, Restored};
use crate::reload::Reloader;
use crate::systemd::{self, Inherited, notify};
use crate::{flash, handover, server};

/// How long the test hook holds the hub's locks.
const TEST_HANG: Duration = Duration::from_secs(3);

/// The listening sockets, by role.
#[derive(Debug, Default)]
pub struct Listeners {
    pub http: Vec<StdListener>,
    pub flash: Vec<StdListener>,
}

impl Listeners {
    /// The ports HTTP is served on (for the Flash policy).
    pub fn http_ports(&self) -> Vec<u16> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.port())
            .collect()
    }
}

/// Takes what systemd passed and binds the rest: HTTP on `[Server] bind` unless `http`
/// sockets were passed; Flash on `[Flash] port` unless `flash` sockets were passed, and
/// only when enabled. A Flash port that cannot be bound (843 needs root) is a warning.
pub fn listeners(config: &Config, inherited: Inherited) -> io::Result<Listeners> {
    let http = if inherited.http.is_empty() {
        config
            .server
            .listen_addrs()
            .iter()
            .map(|addr| server::bind(addr))
            .collect::<io::Result<Vec<_>>>()?
    } else {
        info!(
            sockets = inherited.http.len(),
            "HTTP sockets passed by the service manager; [Server] bind is not used"
        );
        inherited.http
    };
    let flash = if !config.flash.enabled {
        if !inherited.flash.is_empty() {
            warn!("flash sockets were passed but [Flash] enabled = false; not answering on them");
        }
        Vec::new()
    } else if !inherited.flash.is_empty() {
        inherited.flash
    } else {
        match server::bind(&format!("[::]:{}", config.flash.port)) {
            Ok(l) => vec![l],
            Err(e) => {
                warn!("{e}; Flash policy requests will not be answered");
                Vec::new()
            }
        }
    };
    Ok(Listeners { http, flash })
}

/// What ends a run with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
    /// The configuration is valid text but the product cannot be built from it.
    #[error(transparent)]
    Start(#[from] server::StartError),
    /// Serving stopped on its own: a listener failed.
    #[error(transparent)]
    Serve(io::Error),
    #[error("the HTTP server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot hand over to a new process: {0}")]
    Handover(io::Error),
}

/// Takes in the sessions the previous process handed over, before anything is served
/// (and before the cluster worker first reads the hub).
fn take_in(hub: &Arc<Hub>, state: &handover::State) -> Restored {
    let r = hub.restore(&state.members, state.offset);
    info!(
        members = r.members,
        sessions = r.sessions,
        skipped = r.skipped,
        live = r.live.len(),
        polling = r.polling.len(),
        offset = state.offset,
        node = state.node_id.as_deref().unwrap_or(""),
        "took over the sessions of the previous process"
    );
    r
}

/// Resumes the sessions taken in whose connection the previous process kept open, each
/// on its socket (its first ping sent), before the caller sends READY=1.
async fn resume(product: &server::Product, r: Restored) {
    // Under the sid their clients poll with; one that cannot be resumed so recovers.
    for p in r.polling {
        if let Err(e) = product.engine.resume_polling(&p.sid, &p.inbound, p.auth) {
            warn!("handed-over polling session not resumed: {e}");
        }
    }
    // Each on the socket it had: a session that cannot be resumed so is closed, and its
    // client recovers it from the grace window as after a lost connection.
    let resumed = r.live.into_iter().map(|live| {
        let engine = product.engine.clone();
        async move {
            let fd = handover::adopt_socket(live.fd)?;
            engine.resume(fd, &live.unread, live.auth).await
        }
    });
    let failed: Vec<_> = futures_util::future::join_all(resumed)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if let Some(first) = failed.first() {
        warn!(
            count = failed.len(),
            "handed-over WebSockets not resumed ({first}); their clients recover"
        );
    }
}

/// The cluster node a hand-over passes on, once this process's worker stopped: the
/// presence stays in Redis for the next process, which carries on as this node from
/// where the message log was then.
async fn pass_node(product: &server::Product) -> Option<Succession> {
    let cluster = product.cluster.as_ref()?;
    let end = cluster.hand_over(CLUSTER_DEPART).await;
    Some(Succession {
        node: cluster.node().to_owned(),
        offset: end.unwrap_or(0).max(product.hub.offset()),
    })
}

/// The monitor's events not posted yet, for the next process to post first.
fn unposted(product: &server::Product) -> Vec<Bytes> {
    let left = product
        .monitor
        .as_ref()
        .map(|m| m.hand_over())
        .unwrap_or_default();
    if !left.is_empty() {
        info!(
            count = left.len(),
            "monitor: events not posted yet go to the next process"
        );
    }
    left
}

/// How long shutdown waits for this node to leave the cluster.
const CLUSTER_DEPART: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves until SIGTERM or SIGINT, then closes every session and returns. `handed` is what
/// the previous process handed over (SIGUSR1), taken in before serving; on SIGUSR1 this
/// process closes its sessions into their grace window and hands them over in turn.
pub async fn run(
    config: Config,
    listeners: Listeners,
    policy: Bytes,
    mut reloader: Reloader,
    handed: Option<handover::State>,
) -> Result<(), ServiceError> {
    // Handlers first: SIGHUP's default action would kill the process.
    let handler = |kind| signal(kind).map_err(ServiceError::Signals);
    let mut hup = handler(SignalKind::hangup())?;
    let mut term = handler(SignalKind::terminate())?;
    let mut int = handler(SignalKind::interrupt())?;
    let mut usr1 = handler(SignalKind::user_defined1())?;
    let mut hang = match std::env::var("REALTIME_TEST_HOOKS").as_deref() {
        Ok("1") => {
            warn!("REALTIME_TEST_HOOKS=1: SIGUSR2 makes the hub hang (tests only)");
            Some(handler(SignalKind::user_defined2())?)
        }
        _ => None,
    };

    // A cluster node's state carries the node: this process carries on as it; and the
    // monitor's events still to post.
    let carried = server::Carried {
        succession: handed.as_ref().and_then(|s| {
            let node = s.node_id.clone()?;
            Some(Succession {
                node,
                offset: s.offset,
            })
        }),
        monitor: handed
            .as_ref()
            .map(|s| s.monitor.clone())
            .unwrap_or_default(),
    };
    let mut restored = None;
    let product = server::product_after(&config, carried, |hub| {
        restored = handed.as_ref().map(|state| take_in(hub, state));
    })?;
    reloader.guard(product.security.clone());
    if let Some(r) = restored {
        resume(&product, r).await;
    }
    let unclaimed = handover::close_unclaimed();
    if unclaimed > 0 {
        warn!(
            count = unclaimed,
            "closed the stored connections no session took; their clients reconnect"
        );
    }
    let fds = |ls: &[StdListener]| ls.iter().map(|l| l.as_raw_fd()).collect::<Vec<_>>();
    let (http_fds, flash_fds) = (fds(&listeners.http), fds(&listeners.flash));
    let mut handing_over = None;
    let mut restarting = false;
    let shutdown = CancellationToken::new();
    let mut http = tokio::spawn(server::serve(
        listeners.http,
        product.router.clone(),
        shutdown.clone(),
        server::Bounds::from_config(&config.server),
    ));
    let flash = if listeners.flash.is_empty() {
        None
    } else {
        Some(tokio::spawn(flash::serve(
            listeners.flash,
            policy,
            shutdown.clone(),
        )))
    };
    // The watchdog pings only after every hub shard's lock was taken: a stuck hub stops them.
    let (hub, engine) = (product.hub.clone(), product.engine.clone());
    let probe: systemd::Probe = Arc::new(move || {
        let stats = hub.probe().then(|| hub.stats())?;
        Some(systemd::status_line(
            engine.session_count(),
            stats.members,
            stats.channels,
        ))
    });
    tokio::spawn(systemd::supervise(probe, shutdown.clone()));
    // The sockets are bound and listening: connections wait in their backlog until the
    // accept loops (already spawned) take them.
    notify::ready(&systemd::status_line(0, 0, 0));

    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                notify::reloading();
                reloader.reload();
                notify::ready_again();
            }
            _ = term.recv() => {
                info!("SIGTERM: shutting down");
                restarting = restart_follows().await;
                break;
            }
            _ = int.recv() => {
                info!("SIGINT: shutting down");
                break;
            }
            _ = usr1.recv() => match handover::prepare(&http_fds, &flash_fds) {
                Ok(plan) => {
                    info!("SIGUSR1: handing the sessions over to a new process");
                    handing_over = Some(plan);
                    break;
                }
                Err(e) => warn!("SIGUSR1: cannot hand over ({e}); serving on"),
            },
            _ = recv(&mut hang) => {
                warn!(seconds = TEST_HANG.as_secs(), "SIGUSR2 test hook: holding every hub shard");
                product.hub.hang_shards_for_test(TEST_HANG);
            }
            ended = &mut http => {
                // Only an error ends serving before shutdown is asked for.
                return ended?.map_err(ServiceError::Serve);
            }
        }
    }
    if handing_over.is_some() {
        product.engine.hand_over();
        // systemd waits for the READY=1 of the new process (same PID) as after a reload.
        notify::reloading();
    } else {
        if restarting {
            // The WebSockets stay open, their sockets kept for the store (`handover::store`).
            product.engine.hand_over();
        }
        notify::stopping();
    }
    shutdown.cancel();
    if let Some(flash) = flash {
        let _ = flash.await;
    }
    let served = http.await?.map_err(ServiceError::Serve);
    if let Some(plan) = handing_over {
        // A cluster node does not depart: the next process is the same node.
        let node = pass_node(&product).await;
        let monitor = unposted(&product);
        // Returns only when no binary could be executed.
        let e = handover::exec(plan, &*product.hub, node, monitor);
        return Err(ServiceError::Handover(e));
    }
    // Every session waits in its grace window: under systemd the state stays in the file
    // descriptor store, so a restart resumes them (a plain stop empties the store). A
    // cluster node stays the node only when a restart follows; else it departs at once,
    // its members announced leaving, rather than when the others miss its heartbeat.
    let node = if restarting {
        pass_node(&product).await
    } else {
        None
    };
    let departs = node.is_none();
    // After a plain stop's drain, what the endpoint did not take; it goes nowhere then.
    let monitor = if restarting {
        unposted(&product)
    } else {
        Vec::new()
    };
    handover::store(&*product.hub, product.cluster.is_some(), node, monitor);
    if departs && let Some(cluster) = &product.cluster {
        cluster.depart(CLUSTER_DEPART).await;
    }
    served
}

/// Whether systemd restarts this service once it has stopped (asked only under systemd).
/// When systemd cannot say, the stop is a plain one: the clients reconnect and recover,
/// and a cluster node departs.
async fn restart_follows() -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    match systemd::restart_follows().await {
        Ok(restart) => {
            info!(restart, "asked systemd whether a restart follows");
            restart
        }
        Err(e) => {
            warn!("cannot ask systemd whether a restart follows ({e}); connections close");
            false
        }
    }
}

/// The next signal of an optional handler; never, without one.
async fn recv(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => pending().await,
    }
}
