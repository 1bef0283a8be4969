//! The Grafana dashboard shipped in the packages asks only for metrics the server exports:
//! every `realtime_*` name in its queries is a sample name of a live `/metrics`, read from
//! a node with everything that adds metrics on (a cluster and a monitor).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::redis::*;
use crate::support::*;

/// Every `expr` of the dashboard, panels nested in rows included.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(e)) = o.get("expr") {
                out.push(e.clone());
            }
            o.values().for_each(|v| queries(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `realtime_*` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("realtime_"))
}

#[tokio::test]
async fn dashboard_queries_use_exported_metrics() {
    let text = std::fs::read_to_string("packaging/grafana-dashboard.json").unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "no queries found in the dashboard");

    // An endpoint nobody answers: the monitor exists, and its metrics with it.
    let c = Cluster::start(1, "[Monitor]\nurl = http://127.0.0.1:9/hook\n").await;
    let (status, metrics) = get(c.port(0), "/metrics").await;
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let unknown: BTreeSet<&str> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|name| !exported.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "packaging/grafana-dashboard.json queries metrics /metrics does not export: \
         {unknown:?}\nexported: {exported:?}"
    );
}
