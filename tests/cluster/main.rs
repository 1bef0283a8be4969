//! Cluster mode: nodes of the real binary sharing a `redis-server` of their own, over
//! plain TCP and over TLS, following a Sentinel failover, and across a Redis Cluster.

#[path = "../support/mod.rs"]
mod support;

mod client;
mod dashboard;
mod delivery;
mod failures;
mod handover;
mod history;
mod presence;
mod reaping_faults;
mod redis_cluster;
mod redis_faults;
mod scale;
mod sentinel;
mod tls;
