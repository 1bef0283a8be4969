//! The binary as a daemon: configuration errors, the Flash policy port, where logs go,
//! dropping root privileges, shutdown on SIGTERM, systemd socket activation, the systemd
//! units and the files the packages ship from packaging/generated/.

#[path = "../support/mod.rs"]
mod support;

mod config_errors;
mod flash_policy;
mod generated;
mod logging;
mod privileges;
mod shutdown;
mod socket_activation;
mod units;
