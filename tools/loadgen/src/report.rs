//! From the JSON lines of runs to BENCHMARKS.md: every figure as median [min–max] over the
//! rounds and as a ratio to each peer (the Node reference, socketioxide, the limit server)
//! measured in the same run, the checks, the
//! machine and versions, the command, and two SVG plots. Also the table one run prints,
//! and the check CI makes of a quick bench.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::stats::median;
use crate::svg::{self, Bar, Chart};

#[derive(Debug, Clone, Args)]
pub(crate) struct ReportArgs {
    /// JSON lines written by the scenario commands.
    #[arg(long)]
    pub results: PathBuf,
    /// The Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Directory for the SVG plots (linked from the Markdown by relative path).
    #[arg(long)]
    pub plots: PathBuf,
    /// The label of the server under test.
    #[arg(long, default_value = "realtime")]
    pub subject: String,
    /// The labels of the peers the ratios are taken against, one ratio column each (a peer
    /// with no run in the results gets none).
    #[arg(long, value_delimiter = ',', default_value = "reference")]
    pub reference: Vec<String>,
    /// The command that produced the results, quoted verbatim.
    #[arg(long, default_value = "")]
    pub command: String,
    /// KEY=VALUE lines for the versions table (repeatable).
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    /// A Markdown file whose text is appended (analysis, profile notes).
    #[arg(long)]
    pub notes: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CheckArgs {
    #[arg(long)]
    pub results: PathBuf,
    /// Servers (labels) that must each have every scenario.
    #[arg(long, value_delimiter = ',', default_value = "realtime,reference")]
    pub servers: Vec<String>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fanout,rate,idle,channels"
    )]
    pub scenarios: Vec<String>,
}

/// A figure of the report: which metric of which scenario, and which way is better.
struct Figure {
    scenario: &'static str,
    metric: &'static str,
    label: &'static str,
    higher_is_better: bool,
}

const fn fig(
    scenario: &'static str,
    metric: &'static str,
    label: &'static str,
    higher_is_better: bool,
) -> Figure {
    Figure {
        scenario,
        metric,
        label,
        higher_is_better,
    }
}

/// The figures of the report, in the order of its table.
const FIGURES: &[Figure] = &[
    fig("fanout", "deliveries_per_s", "fan-out deliveries/s", true),
    fig(
        "fanout",
        "server_cpu_per_delivery_us",
        "server CPU per fan-out delivery (µs)",
        false,
    ),
    fig(
        "fanout",
        "latency_p50_ms",
        "fan-out latency p50 (ms)",
        false,
    ),
    fig(
        "fanout",
        "latency_p99_ms",
        "fan-out latency p99 (ms)",
        false,
    ),
    fig(
        "fanout",
        "latency_max_ms",
        "fan-out latency max (ms)",
        false,
    ),
    fig(
        "fanout-cross-node",
        "deliveries_per_s",
        "cross-node fan-out deliveries/s",
        true,
    ),
    fig(
        "fanout-cross-node",
        "latency_p50_ms",
        "cross-node fan-out latency p50 (ms)",
        false,
    ),
    fig(
        "fanout-cross-node",
        "latency_p99_ms",
        "cross-node fan-out latency p99 (ms)",
        false,
    ),
    fig(
        "rate",
        "latency_p50_ms",
        "fixed-rate latency p50 (ms)",
        false,
    ),
    fig(
        "rate",
        "latency_p99_ms",
        "fixed-rate latency p99 (ms)",
        false,
    ),
    fig(
        "rate",
        "latency_p999_ms",
        "fixed-rate latency p99.9 (ms)",
        false,
    ),
    fig(
        "rate-cross-node",
        "latency_p50_ms",
        "cross-node fixed-rate latency p50 (ms)",
        false,
    ),
    fig(
        "rate-cross-node",
        "latency_p99_ms",
        "cross-node fixed-rate latency p99 (ms)",
        false,
    ),
    fig(
        "idle",
        "rss_per_connection_kib",
        "RSS per idle connection (KiB)",
        false,
    ),
    fig("idle", "handshakes_per_s", "handshakes/s", true),
    fig(
        "idle",
        "server_cpu_per_handshake_us",
        "server CPU per handshake (µs)",
        false,
    ),
    fig("idle", "subscribe_acks_per_s", "subscribe acks/s", true),
    fig(
        "idle",
        "server_cpu_per_notice_us",
        "server CPU per membership notice (µs)",
        false,
    ),
    fig(
        "channels",
        "deliveries_per_s",
        "many-channels deliveries/s",
        true,
    ),
    fig("crowd", "handshakes_per_s", "crowd: handshakes/s", true),
    fig(
        "crowd",
        "rss_per_connection_kib",
        "crowd: RSS per connection (KiB)",
        false,
    ),
    fig(
        "crowd",
        "last_delivery_ms",
        "crowd: broadcast to the last connection (ms)",
        false,
    ),
    fig(
        "channels",
        "server_cpu_per_delivery_us",
        "server CPU per many-channels delivery (µs)",
        false,
    ),
];

/// CPU use during the measured phase: a load generator near 100% means the figure is
/// bounded by the load generator, not by the server.
const SATURATION: &[(&str, &str)] = &[
    ("fanout", "fan-out"),
    ("rate", "fixed rate"),
    ("idle", "idle (handshakes)"),
    ("channels", "many channels"),
    ("crowd", "crowd (handshakes)"),
    ("fanout-cross-node", "cross-node fan-out"),
    ("rate-cross-node", "cross-node fixed rate"),
    ("channels-cross-node", "cross-node many channels"),
];

/// Whether any run of `scenario` is in the results: a figure of a scenario the run left
/// out (e.g. `--scenarios fanout`) gets no row.
fn has(runs: &[Value], scenario: &str) -> bool {
    runs.iter().any(|r| r["scenario"] == scenario)
}

/// Whether the results hold cross-node runs (publishers on another node).
fn cross_node(runs: &[Value]) -> bool {
    runs.iter().any(|r| {
        r["scenario"]
            .as_str()
            .is_some_and(|s| s.ends_with("-cross-node"))
    })
}

/// The goals and their peers, measured earlier on this machine type; context, not this run.
const BAR: &str = "\
| scenario (medians of 5 rounds) | Node socket.io | socketioxide | minimal limit | goal for Realtime |
|---|---|---|---|---|
| fan-out deliveries/s (1,000 subs) | 124k | 1.72M | 4.03M | ≥ 3.2M (≥ 25× Node) |
| fixed rate 100 msg/s × 1,000 subs, latency p99 | 115 ms | 20 ms | 11 ms | ≤ 12 ms |
| RSS per idle connection (10k) | 17.1 KiB | 24.9 KiB | 11.2 KiB | ≤ 8 KiB |
| server CPU per handshake (WS + EIO + SIO) | 225 µs | 66 µs | 39 µs | ≤ 45 µs |
| many channels deliveries/s | 59k | 334k | 1.45M | ≥ 1.15M |
";

pub(crate) fn load(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad JSON", path.display(), i + 1))
        })
        .collect()
}

fn values(runs: &[Value], server: &str, scenario: &str, metric: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r["server"] == server && r["scenario"] == scenario)
        .filter_map(|r| r["metrics"][metric].as_f64())
        .collect()
}

fn bar(v: &[f64]) -> Bar {
    Bar {
        median: median(v),
        min: v.iter().copied().fold(f64::NAN, f64::min),
        max: v.iter().copied().fold(f64::NAN, f64::max),
    }
}

/// A figure in the report's style: three significant digits, thousands as k and M.
fn num(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else if v.abs() >= 1000.0 {
        svg::si(v)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "no run".to_owned();
    }
    let b = bar(v);
    if v.len() == 1 {
        num(b.median)
    } else {
        format!("{} [{}–{}]", num(b.median), num(b.min), num(b.max))
    }
}

/// Subject ÷ reference of the medians, and whether that is the better direction.
fn ratio(subject: &[f64], reference: &[f64], higher_is_better: bool) -> String {
    let (s, r) = (median(subject), median(reference));
    if !(s.is_finite() && r.is_finite()) || r == 0.0 {
        return "–".to_owned();
    }
    let x = s / r;
    let better = if higher_is_better { x >= 1.0 } else { x <= 1.0 };
    let shown = if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.2}×")
    };
    format!("{shown} ({})", if better { "better" } else { "worse" })
}

/// Labels of the servers in the results, subject first, then the peers in the order given.
fn servers(runs: &[Value], a: &ReportArgs) -> Vec<String> {
    let mut out = vec![a.subject.clone()];
    out.extend(
        a.reference
            .iter()
            .filter(|p| !p.is_empty() && **p != a.subject)
            .cloned(),
    );
    for r in runs {
        if let Some(s) = r["server"].as_str()
            && !out.iter().any(|o| o == s)
        {
            out.push(s.to_owned());
        }
    }
    out
}

fn machine() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1048576.0)
        });
    vec![
        ("CPUs (nproc)".into(), cpus.to_string()),
        ("CPU model".into(), model),
        ("memory".into(), mem),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
    ]
}

/// `to` as a path relative to the directory `from_dir` when it lies inside it.
fn relative(to: &Path, from_dir: &Path) -> String {
    let (Ok(t), Ok(f)) = (to.canonicalize(), from_dir.canonicalize()) else {
        return to.display().to_string();
    };
    t.strip_prefix(&f)
        .map_or_else(|_| t.display().to_string(), |p| p.display().to_string())
}

fn params_line(runs: &[Value], scenario: &str) -> String {
    runs.iter()
        .find(|r| r["scenario"] == scenario)
        .and_then(|r| r["params"].as_object())
        .map(|p| {
            p.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "not run".to_owned())
}

pub(crate) fn write(a: &ReportArgs) -> Result<()> {
    let runs = load(&a.results)?;
    if runs.is_empty() {
        bail!("{}: no runs", a.results.display());
    }
    let servers = servers(&runs, a);
    // The peers measured in this run: a ratio to a peer that did not run means nothing.
    let peers: Vec<&String> = a
        .reference
        .iter()
        .filter(|p| **p != a.subject && runs.iter().any(|r| r["server"] == p.as_str()))
        .collect();
    let rounds = runs
        .iter()
        .filter_map(|r| r["round"].as_u64())
        .max()
        .unwrap_or(0);
    std::fs::create_dir_all(&a.plots)?;
    let out_dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir)?;

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `tests/bench/run` (do not edit by hand: re-run it). {rounds} round(s), servers \
         run in turn (A B A B), each on a fresh process pinned to CPU 0 with the load generator \
         on CPU 1. Each figure is the median [min–max] over the rounds; each ratio is {} ÷ a \
         peer of the medians, measured in this same run.\n",
        a.subject
    );
    if cross_node(&runs) {
        let _ = writeln!(
            md,
            "A cross-node figure is its single-node scenario, same sizes, on a cluster of two \
             nodes joined by a fresh Redis: the subscribers on node B (pinned to CPU 0 like a \
             single server), the publisher on node A, node A and Redis on CPU 1 with the load \
             generator. The reference's cluster is the same socket.io with the stock \
             @socket.io/redis-adapter.\n"
        );
    }
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "| figure | {} |{}",
        servers.join(" | "),
        peers
            .iter()
            .map(|p| format!(" {} ÷ {p} |", a.subject))
            .collect::<String>()
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(servers.len() + peers.len()));
    for f in FIGURES.iter().filter(|f| has(&runs, f.scenario)) {
        let subject = values(&runs, &a.subject, f.scenario, f.metric);
        let cols: Vec<String> = servers
            .iter()
            .map(|s| spread(&values(&runs, s, f.scenario, f.metric)))
            .chain(peers.iter().map(|p| {
                ratio(
                    &subject,
                    &values(&runs, p, f.scenario, f.metric),
                    f.higher_is_better,
                )
            }))
            .collect();
        let _ = writeln!(md, "| {} | {} |", f.label, cols.join(" | "));
    }

    let _ = writeln!(md, "\n## Checks\n");
    let _ = writeln!(
        md,
        "Every subscriber must get every message exactly once, in order; a run that loses, \
         duplicates or reorders anything, or whose clients fail, is marked failed. Other \
         events are what a server sent besides the deliveries (Realtime's membership \
         notices, docs/design.md#server-events): work the server did that the figures include.\n"
    );
    let _ = writeln!(
        md,
        "| server | runs | failed runs | deliveries expected | lost | duplicated | reordered | other events |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for s in &servers {
        let mine: Vec<&Value> = runs.iter().filter(|r| r["server"] == s.as_str()).collect();
        let sum = |k: &str| -> u64 { mine.iter().filter_map(|r| r["check"][k].as_u64()).sum() };
        let failed = mine.iter().filter(|r| r["ok"] != Value::Bool(true)).count();
        let _ = writeln!(
            md,
            "| {s} | {} | {failed} | {} | {} | {} | {} | {} |",
            mine.len(),
            sum("expected"),
            sum("lost"),
            sum("duplicated"),
            sum("reordered"),
            sum("other_events")
        );
    }

    let _ = writeln!(md, "\n## CPU use while measuring\n");
    let _ = writeln!(
        md,
        "Median share of one CPU used during the measured phase. A load generator near 100% \
         means that figure is bounded by the load generator rather than the server.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | {} |",
        servers
            .iter()
            .map(|s| format!("{s} server | {s} loadgen"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|---|".repeat(servers.len()));
    for (scenario, label) in SATURATION.iter().filter(|(s, _)| has(&runs, s)) {
        let cols: Vec<String> = servers
            .iter()
            .map(|s| {
                let pct = |m: &str| {
                    let v = median(&values(&runs, s, scenario, m));
                    if v.is_finite() {
                        format!("{v:.0}%")
                    } else {
                        "–".into()
                    }
                };
                let server = if *scenario == "idle" {
                    "–".to_owned()
                } else {
                    pct("server_cpu_pct")
                };
                format!("{server} | {}", pct("loadgen_cpu_pct"))
            })
            .collect();
        let _ = writeln!(md, "| {label} | {} |", cols.join(" | "));
    }
    if cross_node(&runs) {
        let _ = writeln!(
            md,
            "\nCross-node runs, every process (median share of one CPU): node B holds the \
             subscribers (the server column above), node A the publisher.\n"
        );
        let _ = writeln!(
            md,
            "| scenario | server | node B (subscribers) | node A (publisher) | Redis | loadgen |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (scenario, label) in SATURATION
            .iter()
            .filter(|(s, _)| s.ends_with("-cross-node") && has(&runs, s))
        {
            // A server with no cluster has no cross-node run: no row.
            for s in servers.iter().filter(|s| {
                runs.iter()
                    .any(|r| r["server"] == s.as_str() && r["scenario"] == *scenario)
            }) {
                let pct = |m: &str| {
                    let v = median(&values(&runs, s, scenario, m));
                    if v.is_finite() {
                        format!("{v:.0}%")
                    } else {
                        "–".into()
                    }
                };
                let _ = writeln!(
                    md,
                    "| {label} | {s} | {} | {} | {} | {} |",
                    pct("server_cpu_pct"),
                    pct("publish_server_cpu_pct"),
                    pct("bus_cpu_pct"),
                    pct("loadgen_cpu_pct")
                );
            }
        }
    }

    let latency = Chart {
        title: "Latency, publish to delivery (median of rounds, whiskers min–max)",
        y_label: "milliseconds (log)",
        series: &servers,
        groups: FIGURES
            .iter()
            .filter(|f| f.metric.starts_with("latency_") && has(&runs, f.scenario))
            .map(|f| {
                let label = f.label.replace(" latency", "").replace(" (ms)", "");
                (
                    label,
                    servers
                        .iter()
                        .map(|s| bar(&values(&runs, s, f.scenario, f.metric)))
                        .collect(),
                )
            })
            .collect(),
    };
    let rates = Chart {
        title: "Throughput per scenario (median of rounds, whiskers min–max)",
        y_label: "per second (log)",
        series: &servers,
        groups: FIGURES
            .iter()
            .filter(|f| f.metric.ends_with("_per_s") && has(&runs, f.scenario))
            .map(|f| {
                (
                    f.label.to_owned(),
                    servers
                        .iter()
                        .map(|s| bar(&values(&runs, s, f.scenario, f.metric)))
                        .collect(),
                )
            })
            .collect(),
    };
    let latency_svg = a.plots.join("latency.svg");
    let rates_svg = a.plots.join("throughput.svg");
    std::fs::write(&latency_svg, latency.render())?;
    std::fs::write(&rates_svg, rates.render())?;
    let _ = writeln!(md, "\n## Plots\n");
    let _ = writeln!(md, "![latency]({})\n", relative(&latency_svg, out_dir));
    let _ = writeln!(md, "![throughput]({})\n", relative(&rates_svg, out_dir));
    let _ = writeln!(
        md,
        "Raw results, one JSON object per run: `{}`.",
        relative(&a.results, out_dir)
    );

    let _ = writeln!(md, "\n## Sizes\n");
    for (scenario, label) in SATURATION.iter().filter(|(s, _)| has(&runs, s)) {
        let _ = writeln!(md, "- {label}: {}", params_line(&runs, scenario));
    }

    let _ = writeln!(md, "\n## Machine and versions\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    for kv in &a.meta {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let _ = writeln!(md, "| {k} | {v} |");
    }
    if !a.command.is_empty() {
        let _ = writeln!(md, "\n## Command\n\n```sh\n{}\n```", a.command);
    }

    let _ = writeln!(md, "\n## The bar (context: not measured in this run)\n");
    let _ = writeln!(
        md,
        "The goals and their peers, measured earlier on a machine of this type (2 cores, server on \
         one pinned core): the reference Node socket.io 4.8.4, socketioxide 0.18.9, and a \
         deliberately minimal Rust fan-out server with pre-encoded frames (the practical limit \
         of the machine). Compare ratios, not absolute numbers, with the table above.\n"
    );
    md.push_str(BAR);
    if let Some(notes) = &a.notes {
        let text =
            std::fs::read_to_string(notes).with_context(|| format!("read {}", notes.display()))?;
        let _ = writeln!(md, "\n{}", text.trim_end());
    }
    std::fs::write(&a.out, md).with_context(|| format!("write {}", a.out.display()))?;
    eprintln!(
        "wrote {}, {} and {}",
        a.out.display(),
        latency_svg.display(),
        rates_svg.display()
    );
    Ok(())
}

/// Problems with a set of runs: a missing scenario, a failed run, anything lost.
pub(crate) fn problems(runs: &[Value], servers: &[String], scenarios: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for server in servers {
        for scenario in scenarios {
            let mine: Vec<&Value> = runs
                .iter()
                .filter(|r| r["server"] == server.as_str() && r["scenario"] == scenario.as_str())
                .collect();
            if mine.is_empty() {
                out.push(format!("{server}: no {scenario} run"));
            }
            for r in mine {
                let c = &r["check"];
                let bad: BTreeMap<&str, u64> = [
                    "lost",
                    "duplicated",
                    "reordered",
                    "unexpected",
                    "failed_clients",
                ]
                .into_iter()
                .filter_map(|k| c[k].as_u64().filter(|&n| n > 0).map(|n| (k, n)))
                .collect();
                if r["ok"] != Value::Bool(true) || !bad.is_empty() {
                    out.push(format!(
                        "{server} {scenario} round {}: failed {bad:?} {}",
                        r["round"], r["errors"]
                    ));
                }
            }
        }
    }
    out
}

pub(crate) fn check(a: &CheckArgs) -> Result<bool> {
    let runs = load(&a.results)?;
    let found = problems(&runs, &a.servers, &a.scenarios);
    for p in &found {
        eprintln!("check: {p}");
    }
    let expected = a.servers.len() * a.scenarios.len();
    eprintln!(
        "check: {} runs of {} servers × {} scenarios; {}",
        runs.len(),
        a.servers.len(),
        a.scenarios.len(),
        if found.is_empty() {
            format!("all {expected} present and clean")
        } else {
            format!("{} problem(s)", found.len())
        }
    );
    Ok(found.is_empty())
}

/// The readable table of one run.
pub(crate) fn table(run: &Value) -> String {
    let mut s = String::new();
    let status = if run["ok"] == Value::Bool(true) {
        "ok"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        s,
        "\n{} on {} (round {}): {status}",
        run["scenario"].as_str().unwrap_or("?"),
        run["server"].as_str().unwrap_or("?"),
        run["round"]
    );
    let _ = writeln!(s, "  params  {}", run["params"]);
    if let Some(m) = run["metrics"].as_object() {
        for (k, v) in m {
            let shown = v.as_f64().map_or_else(|| "–".to_owned(), num);
            let _ = writeln!(s, "  {k:<30} {shown:>12}");
        }
    }
    let c = &run["check"];
    let _ = writeln!(
        s,
        "  check   expected {} received {} lost {} duplicated {} reordered {} failed clients {}",
        c["expected"],
        c["received"],
        c["lost"],
        c["duplicated"],
        c["reordered"],
        c["failed_clients"]
    );
    if let Some(errors) = run["errors"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(s, "  errors  {}", Value::Array(errors.clone()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(server: &str, scenario: &str, round: u32, dps: f64, lost: u64) -> Value {
        json!({"server": server, "scenario": scenario, "round": round, "ok": lost == 0,
               "params": {"subscribers": 2},
               "metrics": {"deliveries_per_s": dps, "latency_p99_ms": 1.5, "loadgen_cpu_pct": 50.0},
               "check": {"expected": 10, "received": 10 - lost, "lost": lost, "duplicated": 0,
                         "reordered": 0, "unexpected": 0, "failed_clients": 0},
               "errors": []})
    }

    #[test]
    fn figures_and_ratios() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), "2.00 [1.00–3.00]");
        assert_eq!(spread(&[2_000_000.0]), "2M");
        assert_eq!(spread(&[]), "no run");
        assert_eq!(ratio(&[300.0], &[10.0], true), "30× (better)");
        assert_eq!(ratio(&[5.0], &[10.0], false), "0.50× (better)");
        assert_eq!(ratio(&[5.0], &[10.0], true), "0.50× (worse)");
        assert_eq!(ratio(&[5.0], &[], true), "–");
    }

    #[test]
    fn check_finds_missing_and_failed_runs() {
        let servers = vec!["a".to_owned(), "b".to_owned()];
        let scenarios = vec!["fanout".to_owned()];
        let runs = vec![
            run("a", "fanout", 1, 10.0, 0),
            run("b", "fanout", 1, 5.0, 0),
        ];
        assert!(problems(&runs, &servers, &scenarios).is_empty());
        let runs = vec![
            run("a", "fanout", 1, 10.0, 0),
            run("b", "fanout", 1, 5.0, 3),
        ];
        let p = problems(&runs, &servers, &scenarios);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("\"lost\": 3"), "{p:?}");
        let p = problems(&runs[..1], &servers, &scenarios);
        assert_eq!(p, vec!["b: no fanout run".to_owned()]);
    }

    #[test]
    fn writes_markdown_and_plots() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let results = dir.join("results.jsonl");
        let lines: Vec<String> = [
            run("realtime", "fanout", 1, 3e6, 0),
            run("reference", "fanout", 1, 1e5, 0),
            run("realtime", "fanout", 2, 2e6, 0),
            run("reference", "fanout", 2, 2e5, 0),
            run("realtime", "fanout-cross-node", 1, 1e6, 0),
            run("reference", "fanout-cross-node", 1, 5e4, 0),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        std::fs::write(&results, lines.join("\n")).unwrap();
        let notes = dir.join("notes.md");
        std::fs::write(&notes, "## Notes\n\nhot: the hub\n").unwrap();
        let a = ReportArgs {
            results: results.clone(),
            out: dir.join("BENCHMARKS.md"),
            plots: dir.join("plots"),
            subject: "realtime".into(),
            reference: vec!["reference".into()],
            command: "tests/bench/run --quick".into(),
            meta: vec!["rustc=1.95".into()],
            notes: Some(notes),
        };
        write(&a).unwrap();
        let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        assert!(
            md.contains(
                "| fan-out deliveries/s | 2.5M [2M–3M] | 150k [100k–200k] | 17× (better) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| cross-node fan-out deliveries/s | 1M | 50k | 20× (better) |"),
            "{md}"
        );
        assert!(md.contains("| cross-node fan-out | realtime | – | – | – | 50% |"));
        // Scenarios left out of the run get no rows.
        assert!(!md.contains("fixed-rate"), "{md}");
        assert!(md.contains("![latency](plots/latency.svg)"));
        assert!(md.contains("| rustc | 1.95 |"));
        assert!(md.contains("tests/bench/run --quick"));
        assert!(md.contains("minimal limit"));
        assert!(md.contains("hot: the hub"));
        assert!(dir.join("plots/throughput.svg").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One ratio column per peer that ran, all from the same run's medians.
    #[test]
    fn ratios_to_each_peer() {
        let dir = std::env::temp_dir().join(format!("loadgen-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let results = dir.join("results.jsonl");
        let lines: Vec<String> = [
            run("realtime", "fanout", 1, 2e6, 0),
            run("reference", "fanout", 1, 1e5, 0),
            run("limit", "fanout", 1, 4e6, 0),
            run("realtime", "fanout-cross-node", 1, 1e6, 0),
            run("reference", "fanout-cross-node", 1, 5e4, 0),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        std::fs::write(&results, lines.join("\n")).unwrap();
        let a = ReportArgs {
            results,
            out: dir.join("BENCHMARKS.md"),
            plots: dir.join("plots"),
            subject: "realtime".into(),
            reference: vec!["reference".into(), "socketioxide".into(), "limit".into()],
            command: String::new(),
            meta: Vec::new(),
            notes: None,
        };
        write(&a).unwrap();
        let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        // socketioxide did not run: its column says so, and it gets no ratio.
        assert!(
            md.contains(
                "| figure | realtime | reference | socketioxide | limit | realtime ÷ reference | realtime ÷ limit |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| fan-out deliveries/s | 2M | 100k | no run | 4M | 20× (better) | 0.50× (worse) |"
            ),
            "{md}"
        );
        // The limit has no cluster: no cross-node figure, no ratio, no CPU row.
        assert!(
            md.contains(
                "| cross-node fan-out deliveries/s | 1M | 50k | no run | no run | 20× (better) | – |"
            ),
            "{md}"
        );
        assert!(md.contains("| cross-node fan-out | reference |"), "{md}");
        assert!(!md.contains("| cross-node fan-out | limit |"), "{md}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_table_shows_the_check() {
        let t = table(&run("realtime", "fanout", 1, 1234567.0, 0));
        assert!(t.contains("fanout on realtime (round 1): ok"));
        assert!(t.contains("1.23M"));
        assert!(t.contains("lost 0"));
    }
}
