//! The server as a client sees it, one real binary per test: the Engine.IO and Socket.IO
//! layers with bad input, slow clients, the HTTP API, origins, who is local, API keys,
//! identity tokens, the HTTP connection itself and the monitor's webhooks.

#[path = "../support/mod.rs"]
mod support;

mod api_keys;
mod connections;
mod disconnect;
mod engineio_errors;
mod http_api;
mod local_peer;
mod monitor;
mod notices;
mod origins;
mod refusals;
mod slow_client;
mod socketio_errors;
mod tokens;
mod upgrade;
