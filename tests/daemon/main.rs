//! The binary as a daemon: configuration errors, the Flash policy port, where logs go,
//! dropping root privileges, shutdown on SIGTERM, systemd socket activation, the systemd
//! units, the files the packages ship from packaging/generated/, and the links of the docs.

#[path = "../support/mod.rs"]
mod support;

mod config_errors;
mod docs;
mod flash_policy;
mod generated;
mod logging;
mod privileges;
mod shutdown;
mod socket_activation;
mod units;
