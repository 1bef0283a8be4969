//! Realtime: a message server for web clients over Socket.IO.
//!
//! The request path follows the folders, each layer depending only on the ones before it:
//! - [`engineio`]: Engine.IO v4 sessions over polling and WebSocket (packet codec, session
//!   task, upgrade);
//! - [`socketio`]: Socket.IO v5 on top of it (packet codec, namespaces, acks, binary
//!   attachments);
//! - [`hub`]: channels, members and the message envelope;
//! - [`http`]: the one routing function for everything on the HTTP port, and `/metrics`;
//! - [`server`]: listeners in, connections served, shutdown out;
//! - [`config`]: the INI file and its defaults; [`cli`]: the command line.
//!
//! Beside the request path: [`auth`] (origins, license keys, API keys, identity tokens)
//! and [`monitor`] (webhooks for what happens in the hub).

pub mod auth;
pub mod cli;
pub mod config;
pub mod engineio;
pub mod http;
pub mod hub;
pub mod monitor;
pub mod ratelimit;
pub mod server;
pub mod socketio;
