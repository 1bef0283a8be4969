//! Realtime: a message server for web clients over Socket.IO.
//!
//! The request path follows the folders, each layer depending only on the ones before it:
//! - [`engineio`]: Engine.IO v4 sessions. `service` routes a request (one `match`),
//!   `polling` and `websocket` serve the two transports, `session` is the task that owns
//!   one session and its `transport` (one enum), `errors` maps failures to the reference
//!   server's answers, `packet` is the pure codec;
//! - [`socketio`]: Socket.IO v5 on top of it (packet codec, namespaces, acks, binary
//!   attachments); its [`socketio::App`] trait is the seam to the application, which
//!   owns each socket's state in the session task;
//! - [`hub`]: the application. At the edge, `request`, `legacy` (the 2012 envelope) and
//!   `validate` parse a client's request once into one typed request, `admission` admits a
//!   CONNECT, `dispatch` carries a request out and answers it; inside, `lifecycle`
//!   (sessions and the grace window), `membership` (subscribe, unsubscribe and their
//!   events), `deliver` (publish), `query` (counts), `remote` (what the cluster tells
//!   the hub);
//! - [`cluster`]: the port between the hub and other nodes. `contract` holds the traits
//!   ([`cluster::Bus`], [`cluster::Presence`] out, [`cluster::Inbound`] back in) and the
//!   words they speak; `single` is one node, `memory` several nodes in one process (for
//!   tests), `redis` nodes joined through Redis;
//! - [`http`]: the one routing function for everything on the HTTP port, the HTTP API
//!   (`api`) and `/metrics`;
//! - [`server`]: listeners in, connections served, shutdown out;
//! - [`config`]: the INI file and its defaults; [`cli`]: the command line.
//!
//! Around the product, the daemon: [`service`] (sockets in, signals, run), [`systemd`]
//! (named sockets, sd_notify, watchdog), [`reload`] (SIGHUP), [`log`] (journald, syslog,
//! stderr), [`privileges`] (dropping root), [`flash`] (the Flash socket policy responder),
//! [`handover`] (sessions passed to the next process on a restart or an upgrade).
//!
//! Beside the request path: [`auth`] (origins, license keys, API keys, identity tokens),
//! [`ratelimit`], [`refusals`] (refused clients, counted and logged now and then, from
//! every layer) and [`monitor`] (webhooks for what happens in the hub).
//!
//! For tests only, `json_doc` generates arbitrary JSON documents and checks that a payload
//! came through with every number as written.
//!
//! How a message flows through these, and what each area promises: `docs/design.md`.

pub mod accept;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engineio;
pub mod flash;
pub mod handover;
pub mod http;
pub mod hub;
pub mod log;
pub mod monitor;
pub mod privileges;
pub mod ratelimit;
pub mod refusals;
pub mod reload;
pub mod server;
pub mod service;
pub mod socketio;
pub mod systemd;

#[cfg(test)]
mod json_doc;
