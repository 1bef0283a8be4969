//! The four benchmark scenarios (fan-out, fixed rate, idle, many channels), each a plan of
//! who subscribes where and who publishes what, run by [`measure`], and reported as one JSON
//! object whose `metrics` are flat numbers (names carry their unit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::check::Counts;
use crate::conn::{self, Target};
use crate::procfs::Proc;
use crate::run::{Outcome, Pace, Phases, Publisher, Subscriber, Tracker};
use crate::stats::{self, Latency};

/// What every scenario needs to know about the server under test.
pub(crate) struct Common {
    /// Where the subscribers connect.
    pub target: Arc<Target>,
    /// Where the publishers connect: `target`, or another node of the same cluster.
    pub publish_target: Arc<Target>,
    /// Publishers on another node than the subscribers (`--publish-url`).
    pub cross_node: bool,
    /// The server's process, for RSS and CPU time; `None` when it is not on this machine.
    pub server: Option<Proc>,
    /// The publishers' node, when it is another process: its CPU time.
    pub publish_server: Option<Proc>,
    /// What joins the nodes (Redis): its CPU time.
    pub bus: Option<Proc>,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// A run ends as failed when no message completes for this long.
    pub stall: Duration,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// Subscribers on the one channel.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages the one publisher sends.
    #[arg(long, default_value_t = 2000)]
    pub messages: u32,
    /// Bytes of each message's data object.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages sent but not yet received by every subscriber, at most.
    #[arg(long, default_value_t = 256)]
    pub window: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RateArgs {
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connection i subscribes to channel i mod this.
    #[arg(long, default_value_t = 100)]
    pub channels: u32,
    /// Seconds to wait after the last subscribe ack before reading the server's RSS.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ChannelsArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    #[arg(long, default_value_t = 1000)]
    pub channels: u32,
    /// Channels each connection joins.
    #[arg(long, default_value_t = 10)]
    pub per_connection: u32,
    /// Publishing connections; each owns an equal share of the channels.
    #[arg(long, default_value_t = 10)]
    pub publishers: u32,
    /// Messages sent to each channel.
    #[arg(long, default_value_t = 20)]
    pub messages: u32,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages in flight at most, all publishers together.
    #[arg(long, default_value_t = 1024)]
    pub window: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CrowdArgs {
    /// Connections, all on the one channel.
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    /// Broadcasts, one at a time: each waits until every connection has the previous one.
    #[arg(long, default_value_t = 1)]
    pub messages: u32,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

/// Who joins and who sends what.
struct Plan {
    names: Vec<String>,
    /// Channel indexes of each subscribing connection.
    subscribers: Vec<Vec<u32>>,
    /// Channel indexes each publisher sends to.
    publishers: Vec<Vec<u32>>,
    per_channel: u32,
    pace: Pace,
    size: usize,
    /// Idle runs only: wait this long, then read the server's RSS.
    settle: Option<Duration>,
}

/// Wall time and CPU time of one phase.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    wall: Duration,
    server_cpu: Option<Duration>,
    loadgen_cpu: Option<Duration>,
}

struct Meter {
    at: Instant,
    server: Option<(Proc, Duration)>,
    me: Option<Duration>,
}

impl Meter {
    fn start(server: Option<Proc>) -> Meter {
        Meter {
            server: server.and_then(|p| p.cpu().ok().map(|c| (p, c))),
            me: Proc::Me.cpu().ok(),
            at: Instant::now(),
        }
    }

    fn stop(self) -> Phase {
        let wall = self.at.elapsed();
        Phase {
            wall,
            server_cpu: self
                .server
                .and_then(|(p, c0)| p.cpu().ok().map(|c| c.saturating_sub(c0))),
            loadgen_cpu: self
                .me
                .and_then(|c0| Proc::Me.cpu().ok().map(|c| c.saturating_sub(c0))),
        }
    }
}

/// Everything a run observed.
#[derive(Default)]
struct Observed {
    connections: usize,
    subscriptions: u64,
    handshake: Phase,
    subscribe: Phase,
    publish: Phase,
    /// CPU time of the publishers' node and of the bus during the publish phase
    /// (cross-node runs).
    publish_node_cpu: Option<Duration>,
    bus_cpu: Option<Duration>,
    /// Publishing to last completion (or to the stall).
    elapsed: Duration,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    /// Once every connection is subscribed (before anything is published).
    rss_subscribed_kib: Option<u64>,
    latency: Latency,
    counts: Counts,
    failed_clients: usize,
    other_events: u64,
    published: u64,
    completed: bool,
    errors: Vec<String>,
}

async fn measure(common: &Common, plan: Plan) -> Result<Observed> {
    let mut subscribers_of = vec![0u32; plan.names.len()];
    for chans in &plan.subscribers {
        for &c in chans {
            subscribers_of[c as usize] += 1;
        }
    }
    let mut obs = Observed {
        connections: plan.subscribers.len(),
        subscriptions: plan.subscribers.iter().map(|c| c.len() as u64).sum(),
        rss_before_kib: common.server.and_then(|p| p.rss_kib().ok()),
        ..Observed::default()
    };
    let tracker = Arc::new(Tracker::new(subscribers_of, plan.per_channel));
    let phases = Arc::new(Phases::new(common.concurrency));
    let names = Arc::new(plan.names);
    let n = plan.subscribers.len();

    let meter = Meter::start(common.server);
    let tasks: Vec<_> = plan
        .subscribers
        .into_iter()
        .map(|channels| {
            Subscriber {
                target: common.target.clone(),
                names: names.clone(),
                channels,
                phases: phases.clone(),
                tracker: tracker.clone(),
            }
            .spawn()
        })
        .collect();
    phases.connected.wait(n).await;
    obs.handshake = meter.stop();

    let meter = Meter::start(common.server);
    phases.go_subscribe.cancel();
    // Clients that failed to connect never reach the subscribe phase.
    phases.subscribed.wait(n - phases.connected.failed()).await;
    obs.subscribe = meter.stop();
    obs.rss_subscribed_kib = common.server.and_then(|p| p.rss_kib().ok());
    let all_in = phases.connected.failed() + phases.subscribed.failed() == 0;

    if let Some(settle) = plan.settle {
        tokio::time::sleep(settle).await;
        obs.rss_after_kib = common.server.and_then(|p| p.rss_kib().ok());
        obs.completed = all_in;
    } else if all_in {
        let mut pubs = Vec::new();
        for channels in plan.publishers {
            let ws = conn::connect(&common.publish_target).await?;
            pubs.push(Publisher {
                ws,
                names: names.clone(),
                channels,
                tracker: tracker.clone(),
                pace: plan.pace,
                size: plan.size,
                stop: phases.stop.clone(),
            });
        }
        let others = (
            Meter::start(common.publish_server),
            Meter::start(common.bus),
        );
        let meter = Meter::start(common.server);
        let t0 = tracker.now_us();
        let handles: Vec<_> = pubs.into_iter().map(Publisher::spawn).collect();
        obs.completed = tracker.wait_done(common.stall).await;
        obs.publish = meter.stop();
        obs.publish_node_cpu = others.0.stop().server_cpu;
        obs.bus_cpu = others.1.stop().server_cpu;
        let end = if obs.completed {
            tracker.last_completion().as_micros() as u64
        } else {
            tracker.now_us()
        };
        obs.elapsed = Duration::from_micros(end.saturating_sub(t0));
        // A little longer, so a duplicate sent after the last message is still caught.
        tokio::time::sleep(Duration::from_millis(100)).await;
        phases.stop.cancel();
        for h in handles {
            match h.await {
                Ok(Ok(sent)) => obs.published += sent,
                Ok(Err(e)) => obs.errors.push(format!("publisher: {e:#}")),
                Err(e) => obs.errors.push(format!("publisher task: {e}")),
            }
        }
    }
    phases.stop.cancel();

    let mut latencies = Vec::new();
    for t in tasks {
        let out: Outcome = t.await?;
        if let Some(e) = out.error {
            // A client hung up on after the run ended is not a failure of the run.
            if !(obs.completed && out.counts.ok() && out.counts.received == out.counts.expected) {
                obs.failed_clients += 1;
                if obs.errors.len() < 5 {
                    obs.errors.push(e);
                }
            }
        }
        latencies.extend(out.latencies);
        obs.counts.add(&out.counts);
        obs.other_events += out.other_events;
    }
    obs.latency = stats::latency(latencies);
    Ok(obs)
}

fn per_sec(n: f64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n / d.as_secs_f64()
    }
}

fn us(d: Option<Duration>, per: f64) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e6 / per.max(1.0))
}

fn pct(d: Option<Duration>, wall: Duration) -> Option<f64> {
    d.map(|d| 100.0 * d.as_secs_f64() / wall.as_secs_f64().max(1e-9))
}

/// The JSON object of one run. `metrics` holds only numbers, so the report can treat every
/// scenario alike; `null` where the server's process could not be read.
fn report(
    scenario: &str,
    params: Value,
    obs: &Observed,
    metrics: Vec<(&str, Option<f64>)>,
) -> Value {
    let mut m = Map::new();
    for (k, v) in metrics {
        m.insert(k.to_owned(), v.map_or(Value::Null, Value::from));
    }
    let c = &obs.counts;
    let ok = obs.completed && c.ok() && obs.failed_clients == 0 && obs.errors.is_empty();
    json!({
        "scenario": scenario,
        "params": params,
        "metrics": m,
        "check": {
            "expected": c.expected, "received": c.received, "lost": c.lost,
            "duplicated": c.duplicated, "reordered": c.reordered, "unexpected": c.unexpected,
            "failed_clients": obs.failed_clients, "other_events": obs.other_events,
            "completed": obs.completed,
        },
        "ok": ok,
        "errors": obs.errors,
    })
}

/// The name a publishing scenario is recorded under: `fanout`, or `fanout-cross-node`
/// when the publishers are on another node than the subscribers.
fn scenario_name(common: &Common, base: &str) -> String {
    if common.cross_node {
        format!("{base}-cross-node")
    } else {
        base.to_owned()
    }
}

/// Metrics every publishing scenario has.
fn delivery_metrics(common: &Common, obs: &Observed) -> Vec<(&'static str, Option<f64>)> {
    let l = &obs.latency;
    let mut m = vec![
        (
            "deliveries_per_s",
            Some(per_sec(obs.counts.received as f64, obs.elapsed)),
        ),
        ("latency_p50_ms", Some(l.p50)),
        ("latency_p99_ms", Some(l.p99)),
        ("latency_p999_ms", Some(l.p999)),
        ("latency_max_ms", Some(l.max)),
        ("elapsed_s", Some(obs.elapsed.as_secs_f64())),
        (
            "server_cpu_pct",
            pct(obs.publish.server_cpu, obs.publish.wall),
        ),
        (
            "loadgen_cpu_pct",
            pct(obs.publish.loadgen_cpu, obs.publish.wall),
        ),
        // Unlike a rate, this holds on a machine shared with other work.
        (
            "server_cpu_per_delivery_us",
            us(obs.publish.server_cpu, obs.counts.received as f64),
        ),
    ];
    if common.cross_node {
        m.push((
            "publish_server_cpu_pct",
            pct(obs.publish_node_cpu, obs.publish.wall),
        ));
        m.push(("bus_cpu_pct", pct(obs.bus_cpu, obs.publish.wall)));
    }
    m
}

pub(crate) async fn fanout(common: &Common, a: &FanoutArgs) -> Result<Value> {
    let plan = Plan {
        names: vec!["fanout".into()],
        subscribers: vec![vec![0]; a.subscribers],
        publishers: vec![vec![0]],
        per_channel: a.messages,
        pace: Pace::Window(a.window.max(1)),
        size: a.size,
        settle: None,
    };
    let obs = measure(common, plan).await?;
    let params = json!({"subscribers": a.subscribers, "messages": a.messages, "size": a.size, "window": a.window});
    let name = scenario_name(common, "fanout");
    Ok(report(&name, params, &obs, delivery_metrics(common, &obs)))
}

pub(crate) async fn rate(common: &Common, a: &RateArgs) -> Result<Value> {
    let messages = (a.rate * a.duration).round() as u32;
    if messages == 0 {
        bail!("--rate × --duration must be at least one message");
    }
    let plan = Plan {
        names: vec!["rate".into()],
        subscribers: vec![vec![0]; a.subscribers],
        publishers: vec![vec![0]],
        per_channel: messages,
        pace: Pace::Rate(a.rate),
        size: a.size,
        settle: None,
    };
    let obs = measure(common, plan).await?;
    let params = json!({"subscribers": a.subscribers, "rate": a.rate, "duration_s": a.duration,
                        "messages": messages, "size": a.size});
    let name = scenario_name(common, "rate");
    Ok(report(&name, params, &obs, delivery_metrics(common, &obs)))
}

pub(crate) async fn idle(common: &Common, a: &IdleArgs) -> Result<Value> {
    let channels = a.channels.max(1);
    let plan = Plan {
        names: (0..channels).map(|c| format!("idle-{c}")).collect(),
        subscribers: (0..a.connections)
            .map(|i| vec![(i % channels as usize) as u32])
            .collect(),
        publishers: Vec::new(),
        per_channel: 0,
        pace: Pace::Window(1),
        size: 0,
        settle: Some(Duration::from_secs_f64(a.settle.max(0.0))),
    };
    let obs = measure(common, plan).await?;
    let n = obs.connections as f64;
    let rss_per_conn = match (obs.rss_before_kib, obs.rss_after_kib) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / n.max(1.0)),
        _ => None,
    };
    let metrics = vec![
        ("rss_per_connection_kib", rss_per_conn),
        ("rss_before_kib", obs.rss_before_kib.map(|v| v as f64)),
        ("rss_after_kib", obs.rss_after_kib.map(|v| v as f64)),
        ("handshakes_per_s", Some(per_sec(n, obs.handshake.wall))),
        (
            "server_cpu_per_handshake_us",
            us(obs.handshake.server_cpu, n),
        ),
        (
            "subscribe_acks_per_s",
            Some(per_sec(obs.subscriptions as f64, obs.subscribe.wall)),
        ),
        (
            "server_cpu_per_subscribe_us",
            us(obs.subscribe.server_cpu, obs.subscriptions as f64),
        ),
        // Membership notices are nearly all a subscribe costs when they are on.
        (
            "server_cpu_per_notice_us",
            (obs.other_events > 0)
                .then(|| us(obs.subscribe.server_cpu, obs.other_events as f64))
                .flatten(),
        ),
        (
            "loadgen_cpu_pct",
            pct(obs.handshake.loadgen_cpu, obs.handshake.wall),
        ),
    ];
    let params = json!({"connections": a.connections, "channels": channels, "settle_s": a.settle,
                        "concurrency": common.concurrency});
    Ok(report("idle", params, &obs, metrics))
}

pub(crate) async fn crowd(common: &Common, a: &CrowdArgs) -> Result<Value> {
    let plan = Plan {
        names: vec!["crowd".into()],
        subscribers: vec![vec![0]; a.connections],
        publishers: vec![vec![0]],
        per_channel: a.messages.max(1),
        pace: Pace::Window(1),
        size: a.size,
        settle: None,
    };
    let obs = measure(common, plan).await?;
    let n = obs.connections as f64;
    let rss_per_conn = match (obs.rss_before_kib, obs.rss_subscribed_kib) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / n.max(1.0)),
        _ => None,
    };
    let metrics = vec![
        ("connections", Some(n)),
        ("handshakes_per_s", Some(per_sec(n, obs.handshake.wall))),
        (
            "server_cpu_per_handshake_us",
            us(obs.handshake.server_cpu, n),
        ),
        (
            "subscribe_acks_per_s",
            Some(per_sec(obs.subscriptions as f64, obs.subscribe.wall)),
        ),
        ("rss_per_connection_kib", rss_per_conn),
        (
            "rss_subscribed_kib",
            obs.rss_subscribed_kib.map(|v| v as f64),
        ),
        // A broadcast's latency is measured per recipient: the largest is its last one.
        ("last_delivery_ms", Some(obs.latency.max)),
        // While the connections open: who of the two bounds the handshakes.
        (
            "server_cpu_pct",
            pct(obs.handshake.server_cpu, obs.handshake.wall),
        ),
        (
            "loadgen_cpu_pct",
            pct(obs.handshake.loadgen_cpu, obs.handshake.wall),
        ),
        ("latency_p50_ms", Some(obs.latency.p50)),
        (
            "deliveries_per_s",
            Some(per_sec(obs.counts.received as f64, obs.elapsed)),
        ),
    ];
    let params = json!({"connections": a.connections, "messages": a.messages, "size": a.size,
                        "concurrency": common.concurrency,
                        "sources": common.target.sources.len().max(1)});
    Ok(report("crowd", params, &obs, metrics))
}

/// Connection i joins channels i, i + C/k, i + 2C/k, ... (mod C): k distinct channels each,
/// and every channel gets the same number of members when C/k divides the connections.
fn spread(connections: usize, channels: u32, per_connection: u32) -> Vec<Vec<u32>> {
    let k = per_connection.clamp(1, channels);
    let stride = (channels / k).max(1);
    (0..connections)
        .map(|i| {
            let mut set: Vec<u32> = (0..k)
                .map(|j| ((i as u64 + u64::from(j * stride)) % u64::from(channels)) as u32)
                .collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect()
}

pub(crate) async fn channels(common: &Common, a: &ChannelsArgs) -> Result<Value> {
    let channels = a.channels.max(1);
    let publishers = a.publishers.clamp(1, channels);
    let plan = Plan {
        names: (0..channels).map(|c| format!("ch-{c}")).collect(),
        subscribers: spread(a.connections, channels, a.per_connection),
        publishers: (0..publishers)
            .map(|p| (p..channels).step_by(publishers as usize).collect())
            .collect(),
        per_channel: a.messages,
        pace: Pace::Window(a.window.max(1)),
        size: a.size,
        settle: None,
    };
    let obs = measure(common, plan).await?;
    let params = json!({"connections": a.connections, "channels": channels,
        "per_connection": a.per_connection, "publishers": publishers, "messages_per_channel": a.messages,
        "size": a.size, "window": a.window});
    let name = scenario_name(common, "channels");
    Ok(report(&name, params, &obs, delivery_metrics(common, &obs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_gives_distinct_channels_and_even_membership() {
        let s = spread(10_000, 1000, 10);
        assert!(s.iter().all(|c| c.len() == 10));
        let mut members = vec![0u32; 1000];
        for c in s.iter().flatten() {
            members[*c as usize] += 1;
        }
        assert!(members.iter().all(|&m| m == 100));
        // Fewer channels than asked for: each connection is in every channel once.
        assert_eq!(spread(3, 2, 10), vec![vec![0, 1]; 3]);
    }

    #[test]
    fn rates() {
        assert_eq!(per_sec(10.0, Duration::from_millis(500)), 20.0);
        assert_eq!(per_sec(10.0, Duration::ZERO), 0.0);
        assert_eq!(us(Some(Duration::from_millis(1)), 10.0), Some(100.0));
        assert_eq!(
            pct(Some(Duration::from_millis(250)), Duration::from_secs(1)),
            Some(25.0)
        );
    }
}
