//! Listeners in, connections served, shutdown out: `serve(listeners, router, shutdown)`.
//!
//! `main` binds (or, later, inherits) the listeners and passes them in, so tests can pass
//! port-0 sockets; shutdown flows signal → cancellation → sessions closed → their tasks
//! and the HTTP connections awaited, at most `[Server] shutdown-grace`.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::accept::AcceptBackoff;
use crate::auth::{AuthError, Security};
use crate::cluster::redis::{Keeping, Succession};
use crate::cluster::{ClusterError, RedisCluster};
use crate::config::{Config, ServerConfig, Transport};
use crate::engineio::client_tcp::ClientTcp;
use crate::engineio::{Engine, EngineConfig};
use crate::http::{Api, Metrics, Router, metrics};
use crate::hub::{Hub, HubApp, HubConfig, Notices, Observer};
use crate::monitor::Monitor;
use crate::socketio::{SocketIo, SocketIoConfig};

/// Broadcasts each session keeps after writing them, for connection state recovery.
const HISTORY: usize = 32;

/// How many packets of `max-payload` bytes unfinished binary packets may hold, all
/// sessions together.
const ATTACHMENT_BUDGET_PACKETS: usize = 64;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long a connection accepted without a request yet may take to send one.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown keeps posting queued monitor events (docs/design.md#monitor: a few seconds).
const MONITOR_FLUSH: Duration = Duration::from_secs(3);

/// What `serve` bounds, from `[Server]`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// HTTP connections served at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// At shutdown, how long sessions and connections get to finish.
    pub grace: Duration,
}

impl Default for Bounds {
    /// The defaults of `[Server]`.
    fn default() -> Bounds {
        Bounds::from_config(&ServerConfig::default())
    }
}

impl Bounds {
    pub fn from_config(s: &ServerConfig) -> Bounds {
        Bounds {
            max_connections: s.max_http_connections,
            grace: s.shutdown_grace,
        }
    }
}

/// What stops the product from being built: a config that is valid text but unusable.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot start the monitor: {0}")]
    Monitor(io::Error),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[source] ClusterError),
}

/// Binds `addr` (`host:port`); `[::]` listens on IPv4 too, and falls back to `0.0.0.0`
/// where IPv6 is off.
pub fn bind(addr: &str) -> io::Result<StdListener> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {addr}: {e}")))?
        .collect();
    let first = *resolved.first().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to nothing"),
        )
    })?;
    match bind_one(first) {
        Err(e) if first.ip().is_unspecified() && first.is_ipv6() => {
            warn!(%addr, error = %e, "IPv6 unavailable, listening on IPv4 only");
            bind_one(SocketAddr::from(([0, 0, 0, 0], first.port())))
        }
        other => other,
    }
    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn bind_one(addr: SocketAddr) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The product's parts, for `main` (serving) and the systemd glue (status, watchdog).
pub struct Product {
    pub router: Arc<Router>,
    pub engine: Engine,
    pub hub: Arc<Hub>,
    /// The rules of who may connect; `reload` it on SIGHUP.
    pub security: Arc<Security>,
    pub monitor: Option<Arc<Monitor>>,
    /// The Redis cluster this node joined, if any (it departs at shutdown).
    pub cluster: Option<Arc<RedisCluster>>,
}

impl std::fmt::Debug for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Product").finish_non_exhaustive()
    }
}

/// The product: the hub behind Socket.IO at the configured path.
pub fn product(config: &Config) -> Result<Product, StartError> {
    product_after(config, Carried::default(), |_| {})
}

/// What a process that takes over from a previous one carries on with, besides the
/// sessions: the cluster node it is, and the monitor's events not posted yet.
#[derive(Debug, Default)]
pub struct Carried {
    /// When the previous process was a cluster node: this process carries on as that node.
    pub succession: Option<Succession>,
    /// Event bodies, posted before any of this process's.
    pub monitor: Vec<Bytes>,
}

/// The product of a process that takes over from a previous one, with what it `carried`;
/// `restore` takes the
/// handed-over sessions into the hub before the cluster worker first reads it (it would
/// otherwise find this node's members gone from the hub, and announce them leaving).
pub fn product_after(
    config: &Config,
    carried: Carried,
    restore: impl FnOnce(&Arc<Hub>),
) -> Result<Product, StartError> {
    let s = &config.server;
    let engine_config = EngineConfig {
        ping_interval: s.ping_interval,
        ping_timeout: s.ping_timeout,
        max_payload: s.max_payload,
        allow_polling: s.allowed_types.contains(&Transport::Polling),
        allow_websocket: s.allowed_types.contains(&Transport::Websocket),
        queue_capacity: config.messaging.client_queue,
        max_sessions: s.max_connections,
        // Enough history to replay what a lost transport may not have delivered: what was in
        // flight when it went, not a whole cache (it costs memory on every connection).
        history: config.messaging.message_cache_limit.min(HISTORY),
        body_timeout: s.body_timeout,
        max_poll_packets: s.max_poll_packets,
        ..EngineConfig::default()
    };
    let security = Arc::new(Security::from_config(config)?);
    let monitor = Monitor::start(&config.monitor, carried.monitor).map_err(StartError::Monitor)?;
    let mut hub = Hub::new(HubConfig {
        max_channel_name: config.messaging.max_channel_name,
        max_identity: config.messaging.max_identity,
        max_channels: config.messaging.max_channels,
        cache_limit: config.messaging.message_cache_limit,
        grace: s.reconnect_timeout,
        cluster_answer: config.cluster.answer_timeout,
        history_size: config.messaging.history_size,
        history_ttl: config.messaging.history_ttl,
        notices: Notices {
            quiet: config.messaging.quiet_channels.clone(),
            max_members: config.messaging.notices_max_members,
        },
    });
    if let Some(m) = &monitor {
        hub = hub.with_observer(m.clone() as Arc<dyn Observer>);
    }
    let mut worker = None;
    let history = Keeping {
        size: config.messaging.history_size,
        ttl: config.messaging.history_ttl,
    };
    let cluster = match &config.cluster.redis {
        Some(url) => {
            let (cluster, w) = RedisCluster::new(
                &config.cluster,
                url,
                s.reconnect_timeout,
                history,
                carried.succession,
            )
            .map_err(StartError::Cluster)?;
            hub = hub.with_cluster(cluster.clone(), cluster.clone());
            worker = Some(w);
            Some(cluster)
        }
        None => None,
    };
    let hub = Arc::new(hub);
    restore(&hub);
    if let Some(w) = worker {
        w.start(hub.clone());
    }
    let sio = SocketIo::new(
        Arc::new(HubApp::new(hub.clone()).guarded(security.clone())),
        SocketIoConfig {
            connect_timeout: s.connect_timeout,
            max_attachment_bytes: s.max_payload,
            // A client that keeps up answers pings within this; so do its attachments.
            attachment_timeout: s.ping_timeout,
            attachment_budget: s.max_payload.saturating_mul(ATTACHMENT_BUDGET_PACKETS),
        },
    );
    let engine = Engine::new(engine_config, Arc::new(sio));
    engine.set_gate(security.clone());
    let metrics = Metrics::new(metrics::Sources {
        hub: hub.clone(),
        engines: vec![engine.clone()],
        monitor: monitor.clone(),
        security: Some(security.clone()),
        cluster: cluster.clone(),
    });
    let router = Router::new()
        .mount(&s.path, engine.clone())
        .api(
            Api::new(hub.clone(), s.max_payload)
                .body_timeout(s.body_timeout)
                .guarded(security.clone()),
        )
        .www(s.www.clone())
        .metrics(metrics)
        .cluster(cluster.as_ref().map(|c| c.reachable()))
        .monitor(monitor.clone());
    Ok(Product {
        router: Arc::new(router),
        engine,
        hub,
        security,
        monitor,
        cluster,
    })
}

/// Serves HTTP on every listener until `shutdown` is cancelled, then closes every session
/// and waits for their tasks and the HTTP connections (at most `bounds.grace`).
pub async fn serve(
    listeners: Vec<StdListener>,
    router: Arc<Router>,
    shutdown: CancellationToken,
    bounds: Bounds,
) -> io::Result<()> {
    // Every accepted connection, so shutdown can let the ones in flight finish: a
    // connection accepted just before the signal would otherwise be reset, and under
    // socket activation a restart must fail no request.
    let connections = TaskTracker::new();
    // One permit per connection served, shared by every listener.
    let permits = Arc::new(Semaphore::new(bounds.max_connections));
    let mut accept_loops = Vec::new();
    for std_listener in listeners {
        let listener = TcpListener::from_std(std_listener)?;
        info!("listening on {}", listener.local_addr()?);
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            router.clone(),
            shutdown.clone(),
            connections.clone(),
            permits.clone(),
        )));
    }
    shutdown.cancelled().await;
    router.set_ready(false);
    for l in accept_loops {
        let _ = l.await;
    }
    let engines: Vec<Engine> = router.engines().cloned().collect();
    for engine in &engines {
        engine.shut_down();
    }
    let deadline = tokio::time::Instant::now() + bounds.grace;
    for engine in &engines {
        let sessions = &engine.config().sessions;
        // Closed, so the wait ends once the tasks running now have; a handshake still
        // in flight may add one, and it is awaited too.
        sessions.close();
        if tokio::time::timeout_at(deadline, sessions.wait())
            .await
            .is_err()
        {
            warn!(
                sessions = sessions.len(),
                "shutdown grace period over; sessions dropped"
            );
        }
    }
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_err()
    {
        warn!(
            connections = connections.len(),
            "shutdown grace period over; HTTP connections dropped"
        );
    }
    // Last, so what happened while sessions closed is posted too (bounded). A hand-over
    // passes on what is unposted instead (`Monitor::hand_over`): no wait on the endpoint.
    let handing_over = engines.iter().any(Engine::is_handing_over);
    if let Some(monitor) = router.monitor_handle().filter(|_| !handing_over) {
        monitor.flush(MONITOR_FLUSH).await;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    permits: Arc<Semaphore>,
) {
    let mut backoff = AcceptBackoff::new("accept failed");
    while let Some((stream, peer)) = backoff.accept(&listener, &shutdown).await {
        // Like the Flash listener: past the cap a connection is closed at once, rather than
        // left in the backlog where it would look accepted to the client.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "too many HTTP connections; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            // Held for as long as the connection is served.
            let _permit = permit;
            // Signalled by every request; a stored permit means one has arrived.
            let requested = Arc::new(Notify::new());
            let on_request = requested.clone();
            let service = service_fn(move |req| {
                on_request.notify_one();
                let router = router.clone();
                let mut served = Box::pin(async move { router.handle(req, Some(peer)).await });
                // Polled once now, so a request reaches its handler even when its client
                // closes right after sending it: hyper drops a response it has not polled
                // yet when it sees the close first, and an aborted poll must still end
                // its session, as engine.io does. Later polls register the real waker.
                let first = served
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
                async move {
                    let res = match first {
                        Poll::Ready(res) => res,
                        Poll::Pending => served.await,
                    };
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(ClientTcp::new(stream)), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                biased;
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    // hyper closes a connection that has no request yet at once. One
                    // accepted just before the shutdown may have its request still in
                    // flight: wait for it (briefly) so it is answered, not reset.
                    let first = tokio::time::timeout(FIRST_REQUEST_GRACE, requested.notified());
                    let ended = tokio::select! {
                        biased;
                        r = conn.as_mut() => Some(r),
                        _ = first => None,
                    };
                    match ended {
                        Some(r) => r,
                        None => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    }
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_the_others_served() {
        let product = product(&Config::default()).unwrap();
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let bounds = Bounds {
            max_connections: 1,
            grace: Duration::from_secs(1),
        };
        let served = tokio::spawn(serve(
            vec![listener],
            product.router,
            shutdown.clone(),
            bounds,
        ));
        let wait = Duration::from_secs(5);
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(wait, second.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
        first
            .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answered = tokio::time::timeout(wait, first.read(&mut byte)).await;
        assert!(matches!(answered, Ok(Ok(1))), "{answered:?}");
        shutdown.cancel();
        tokio::time::timeout(wait, served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
