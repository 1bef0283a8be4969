//! Realtime: a message server for web clients over Socket.IO.
//!
//! The request path follows the folders, each layer depending only on the ones before it:
//! - [`engineio`]: Engine.IO v4 sessions over polling and WebSocket (packet codec, session
//!   task, upgrade);
//! - [`socketio`]: Socket.IO v5 on top of it (packet codec, namespaces, acks, binary
//!   attachments);
//! - [`hub`]: channels, members and the message envelope;
//! - [`cluster`]: what the hub shares with other nodes (message bus, presence), through
//!   Redis when there are several (or in memory, for tests of several nodes in-process);
//! - [`http`]: the one routing function for everything on the HTTP port, and `/metrics`;
//! - [`server`]: listeners in, connections served, shutdown out;
//! - [`config`]: the INI file and its defaults; [`cli`]: the command line.
//!
//! Around the product, the daemon (docs/design.md#daemon): [`service`] (sockets in, signals, run),
//! [`systemd`] (named sockets, sd_notify, watchdog), [`reload`] (SIGHUP), [`log`]
//! (journald, syslog, stderr), [`privileges`] (dropping root), [`flash`] (the Flash
//! socket policy responder).
//!
//! Beside the request path: [`auth`] (origins, license keys, API keys, identity tokens)
//! and [`monitor`] (webhooks for what happens in the hub).
//!
//! How a message flows through these, and what each area promises: `docs/design.md`.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engineio;
pub mod flash;
pub mod http;
pub mod hub;
pub mod log;
pub mod monitor;
pub mod privileges;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod service;
pub mod socketio;
pub mod systemd;
