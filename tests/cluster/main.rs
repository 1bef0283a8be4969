//! Cluster mode: nodes of the real binary sharing a `redis-server` of their own, over
//! plain TCP and over TLS, and following a Sentinel failover.

#[path = "../support/mod.rs"]
mod support;

mod client;
mod dashboard;
mod delivery;
mod failures;
mod history;
mod presence;
mod reaping_faults;
mod redis_faults;
mod scale;
mod sentinel;
mod tls;
