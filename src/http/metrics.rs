//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! Every figure already lives somewhere (hub counters and maps, engine sessions, monitor
//! queue), so nothing is recorded twice: one collector reads them at scrape time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::auth::Security;
use crate::cluster::RedisCluster;
use crate::engineio::{Engine, TransportKind};
use crate::hub::Hub;
use crate::monitor::Monitor;

/// `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Where the figures come from.
pub struct Sources {
    pub hub: Arc<Hub>,
    pub engines: Vec<Engine>,
    pub monitor: Option<Arc<Monitor>>,
    pub security: Option<Arc<Security>>,
    /// The Redis cluster this node is part of, if any.
    pub cluster: Option<Arc<RedisCluster>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metrics sources")
    }
}

/// The registry behind `/metrics`.
pub struct Metrics {
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::with_prefix("realtime");
        registry.register_collector(Box::new(sources));
        Metrics { registry }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector error would leave it partial.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: &AtomicU64) -> fmt::Result {
    let c = ConstCounter::new(v.load(Ordering::Relaxed));
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let (mut polling, mut websocket) = (0u64, 0u64);
        for engine in &self.engines {
            for s in engine.sockets() {
                match s.transport() {
                    TransportKind::Polling => polling += 1,
                    TransportKind::WebSocket => websocket += 1,
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut family = enc.encode_descriptor(
                "connections",
                "Engine.IO sessions open, by transport.",
                None,
                g.metric_type(),
            )?;
            for (transport, n) in [("polling", polling), ("websocket", websocket)] {
                let g = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
                g.encode(family.encode_family(&[("transport", transport)])?)?;
            }
        }

        let stats = self.hub.stats();
        let e = &mut enc;
        gauge(
            e,
            "members",
            "Members: identities and anonymous connections, in the grace window too.",
            stats.members as u64,
        )?;
        gauge(
            e,
            "channels",
            "Channels with at least one member.",
            stats.channels as u64,
        )?;
        gauge(
            e,
            "subscriptions",
            "Channel memberships.",
            stats.subscriptions as u64,
        )?;

        let c = &self.hub.counters;
        counter(
            e,
            "messages_published",
            "Messages and commands published (in).",
            &c.published,
        )?;
        counter(
            e,
            "messages_delivered",
            "Deliveries queued to a connection (out).",
            &c.delivered,
        )?;
        counter(
            e,
            "messages_kept",
            "Deliveries kept for a session away in the grace window.",
            &c.kept,
        )?;
        counter(
            e,
            "messages_dropped",
            "Deliveries to a session that had ended.",
            &c.dropped,
        )?;
        counter(
            e,
            "slow_client_disconnects",
            "Clients disconnected because they fell too far behind (or stopped reading).",
            &c.slow_clients,
        )?;
        counter(
            e,
            "recovery_cache_evictions",
            "Messages dropped from a disconnected session's cache (message-cache-limit) to make room; its recovery then fails.",
            &c.cache_evictions,
        )?;
        counter(
            e,
            "recovered",
            "Connections whose state was recovered after a drop.",
            &c.recovered,
        )?;

        {
            let zero = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "refusals",
                "Client requests refused, by reason (logged at info at most every 10 s per reason).",
                None,
                zero.metric_type(),
            )?;
            for (reason, n) in crate::refusals::counts() {
                ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }

        let zero = AtomicU64::new(0);
        let refused = self.security.as_ref().map_or(&zero, |s| &s.refused);
        counter(
            e,
            "origin_refused",
            "Handshakes refused by the origin check.",
            refused,
        )?;

        // Zeros without a monitor, so dashboards and alerts need no special case.
        let none = crate::monitor::MonitorStats::default();
        let m = self.monitor.as_ref().map_or(&none, |m| m.stats());
        gauge(
            e,
            "monitor_queue",
            "Monitor events waiting to be posted.",
            m.queued.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "monitor_sent",
            "Monitor events the endpoint accepted.",
            &m.sent,
        )?;
        counter(
            e,
            "monitor_failed",
            "Monitor events given up on (retries spent, 3xx/4xx, shutdown).",
            &m.failed,
        )?;
        counter(
            e,
            "monitor_dropped",
            "Monitor events dropped because the queue was full.",
            &m.dropped,
        )?;

        if let Some(c) = &self.cluster {
            gauge(
                e,
                "cluster_redis_up",
                "1 while Redis is reachable (this node is joined to the cluster), else 0.",
                u64::from(c.is_up()),
            )?;
            if let Some(up) = c.shards_up() {
                gauge(
                    e,
                    "cluster_bus_shards_up",
                    "Bus shards reachable, of [Cluster] bus-shards (spread bus only).",
                    up as u64,
                )?;
            }
            let zero = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "cluster_bus_messages",
                "Broadcasts sent to and received from the other nodes through Redis.",
                None,
                zero.metric_type(),
            )?;
            for (direction, v) in [("sent", &c.stats.sent), ("received", &c.stats.received)] {
                let n = ConstCounter::new(v.load(Ordering::Relaxed));
                n.encode(family.encode_family(&[("direction", direction)])?)?;
            }
            counter(
                e,
                "cluster_bus_dropped",
                "Broadcasts not sent because Redis was away, or received malformed.",
                &c.stats.dropped,
            )?;
        }
        Ok(())
    }
}
