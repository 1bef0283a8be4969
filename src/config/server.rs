//! The `[Server]` and `[Flash]` sections: listening, Engine.IO/Socket.IO tuning, transports.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::SetError;
use super::value::{
    ValueError, boolean, duration, expected, list, nonzero_duration, optional, port, positive,
    size, word,
};

/// An Engine.IO transport a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling (`xhr-polling`, `json-polling`, `jsonp-polling` in socket.io 0.6).
    Polling,
    /// WebSocket, including the polling → websocket upgrade.
    Websocket,
}

impl Transport {
    /// The Engine.IO name: `polling` or `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
        }
    }
}

/// `[Server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// More logging (the original's `debug`).
    pub debug: bool,
    /// Listen addresses as `host:port` (IPv6 in brackets); resolved by the server.
    pub bind: Vec<String>,
    /// Legacy: when set, replaces the port of every `bind` address (see [`Self::listen_addrs`]).
    /// The command line's `--port` may set this too: it has the same meaning.
    pub websocket_port: Option<u16>,
    /// Socket.IO resource path, always with a leading and a trailing `/`.
    pub path: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest accepted packet / HTTP body, in bytes.
    pub max_payload: usize,
    pub max_connections: usize,
    /// Grace period after an identity's last connection goes (docs/design.md#grace-window).
    pub reconnect_timeout: Duration,
    /// Allowed transports, in the configured order; never empty.
    pub allowed_types: Vec<Transport>,
    /// User to switch to after binding, when started as root.
    pub user: Option<String>,
    /// Directory served at `/` (the demo).
    pub www: Option<PathBuf>,
    /// Time a client has to send its Socket.IO CONNECT after the Engine.IO handshake.
    pub connect_timeout: Duration,
    /// HTTP connections served at once (a polling session may hold two); more are closed
    /// as they are accepted.
    pub max_http_connections: usize,
    /// How long a request body (a polling POST, an `/api/` request) may take to arrive.
    pub body_timeout: Duration,
    /// At shutdown, how long sessions and connections get to finish; zero: no wait.
    pub shutdown_grace: Duration,
    /// Packets one long-polling answer carries at most (python-engineio takes 16).
    pub max_poll_packets: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            debug: false,
            bind: vec!["[::]:8001".to_owned()],
            websocket_port: None,
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_connections: 100_000,
            reconnect_timeout: Duration::from_secs(8),
            allowed_types: vec![Transport::Polling, Transport::Websocket],
            user: None,
            www: None,
            connect_timeout: Duration::from_secs(45),
            max_http_connections: 200_000,
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            max_poll_packets: 16,
        }
    }
}

impl ServerConfig {
    /// The addresses to listen on: `bind`, with the port replaced by `websocket-port` if set.
    pub fn listen_addrs(&self) -> Vec<String> {
        let Some(port) = self.websocket_port else {
            return self.bind.clone();
        };
        self.bind
            .iter()
            .map(|addr| match addr.rsplit_once(':') {
                // A bracketed IPv6 host ends in `]`, so its colons are never the split point.
                Some((host, _)) if !host.is_empty() => format!("{host}:{port}"),
                _ => format!("[::]:{port}"),
            })
            .collect()
    }

    pub(super) fn set(
        &mut self,
        key: &str,
        v: &str,
        warn: &mut Vec<String>,
    ) -> Result<(), SetError> {
        match key {
            "debug" => self.debug = boolean(v)?,
            "bind" => {
                let addrs = list(v)
                    .iter()
                    .map(|a| host_port(a))
                    .collect::<Result<Vec<_>, _>>()?;
                if addrs.is_empty() {
                    return Err(expected("at least one host:port address", v).into());
                }
                self.bind = addrs;
            }
            // The original's only port setting; an empty value keeps the `bind` ports.
            "websocket-port" => self.websocket_port = optional(v).map(|p| port(&p)).transpose()?,
            "path" => self.path = resource_path(v)?,
            "ping-interval" => self.ping_interval = nonzero_duration(v)?,
            "ping-timeout" => self.ping_timeout = nonzero_duration(v)?,
            "max-payload" => {
                self.max_payload = match size(v)? {
                    0 => return Err(expected("a size of at least 1 byte", v).into()),
                    n => n,
                }
            }
            "max-connections" => self.max_connections = positive(v)?,
            // 0 is allowed: no grace period.
            "reconnect-timeout" => self.reconnect_timeout = duration(v)?,
            "allowed-types" => self.allowed_types = transports(v, warn)?,
            "user" => self.user = optional(v).map(|u| word(&u, "a user name")).transpose()?,
            "www" => self.www = optional(v).map(PathBuf::from),
            "connect-timeout" => self.connect_timeout = nonzero_duration(v)?,
            "max-http-connections" => self.max_http_connections = connection_cap(v)?,
            "body-timeout" => self.body_timeout = nonzero_duration(v)?,
            // 0 is allowed: sessions are told to close, and nothing waits for them.
            "shutdown-grace" => self.shutdown_grace = duration(v)?,
            "max-poll-packets" => self.max_poll_packets = positive(v)?,
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[Flash]`: the Flash socket policy server (docs/design.md#flash-policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashConfig {
    pub enabled: bool,
    pub port: u16,
    /// A policy XML file to serve instead of the built-in one.
    pub policy_file: Option<PathBuf>,
}

impl Default for FlashConfig {
    fn default() -> Self {
        FlashConfig {
            enabled: true,
            port: 843,
            policy_file: None,
        }
    }
}

impl FlashConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "enabled" => self.enabled = boolean(v)?,
            "port" => self.port = port(v)?,
            "policy-file" => self.policy_file = optional(v).map(PathBuf::from),
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// A cap on connections at once: at least 1, and no more than a semaphore holds.
fn connection_cap(v: &str) -> Result<usize, ValueError> {
    match positive(v)? {
        n if n > tokio::sync::Semaphore::MAX_PERMITS => Err(expected(
            &format!(
                "a whole number from 1 to {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ),
            v,
        )),
        n => Ok(n),
    }
}

/// Checks and normalises one `bind` address: `host:port`, `[v6]:port`, `:port` or `port`
/// (the last two mean every interface, dual-stack). Port 0 (any free port) is allowed.
fn host_port(a: &str) -> Result<String, ValueError> {
    let what = "a listen address host:port (IPv6 in brackets, e.g. [::]:8001)";
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        return host_port(&format!(":{a}"));
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(expected(what, a));
    };
    if port.parse::<u16>().is_err() {
        return Err(expected(what, a));
    }
    if host.is_empty() {
        return Ok(format!("[::]:{port}"));
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        // Unbracketed colons would make the port ambiguous.
        None => !host.contains([':', '[', ']', '/']),
    };
    if !host_ok {
        return Err(expected(what, a));
    }
    Ok(a.to_owned())
}

/// `path = realtime` → `/realtime/`.
fn resource_path(v: &str) -> Result<String, ValueError> {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || matches!(c, '?' | '#' | '\\')) {
        return Err(expected("a URL path such as /socket.io/", v));
    }
    let trimmed = v.trim_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    Ok(format!("/{trimmed}/"))
}

/// Legacy transport names map onto the two Engine.IO transports; the other socket.io 0.6
/// transports have no counterpart and are skipped with a warning. A blank value means all,
/// as the original's comment said ("Blank means allow ALL types").
fn transports(v: &str, warn: &mut Vec<String>) -> Result<Vec<Transport>, ValueError> {
    let names = list(v);
    if names.is_empty() {
        return Ok(ServerConfig::default().allowed_types);
    }
    let mut out = Vec::new();
    for name in &names {
        let t = match name.to_ascii_lowercase().as_str() {
            "websocket" => Transport::Websocket,
            "polling" | "xhr-polling" | "json-polling" | "jsonp-polling" => Transport::Polling,
            "flashsocket" | "htmlfile" | "xhr-multipart" => {
                warn.push(format!(
                    "socket.io 0.6 transport {name:?} has no Engine.IO counterpart; ignored"
                ));
                continue;
            }
            _ => {
                let what = "transports polling, websocket (or socket.io 0.6 names)";
                return Err(expected(what, name));
            }
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        let what = "at least one usable transport (polling, websocket)";
        return Err(expected(what, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(host_port("[::]:8001").as_deref(), Ok("[::]:8001"));
        assert_eq!(host_port("0.0.0.0:80").as_deref(), Ok("0.0.0.0:80"));
        assert_eq!(host_port("localhost:0").as_deref(), Ok("localhost:0"));
        assert_eq!(host_port(":8001").as_deref(), Ok("[::]:8001"));
        assert_eq!(host_port("8001").as_deref(), Ok("[::]:8001"));
        for bad in [
            "",
            "::1:80",
            "[::1]",
            "host",
            "host:x",
            "host:70000",
            "[zz]:1",
            "a/b:1",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn websocket_port_replaces_bind_ports() {
        let mut s = ServerConfig {
            bind: vec!["[::]:8001".into(), "127.0.0.1:9".into()],
            ..ServerConfig::default()
        };
        assert_eq!(s.listen_addrs(), ["[::]:8001", "127.0.0.1:9"]);
        s.websocket_port = Some(7000);
        assert_eq!(s.listen_addrs(), ["[::]:7000", "127.0.0.1:7000"]);
    }

    #[test]
    fn paths() {
        assert_eq!(resource_path("/realtime/").as_deref(), Ok("/realtime/"));
        assert_eq!(resource_path("realtime").as_deref(), Ok("/realtime/"));
        assert_eq!(resource_path("/a/b").as_deref(), Ok("/a/b/"));
        assert_eq!(resource_path("/").as_deref(), Ok("/"));
        assert!(resource_path("/a b/").is_err() && resource_path("/x?y").is_err());
    }

    #[test]
    fn legacy_transports() {
        let mut warn = Vec::new();
        let got = transports(
            "websocket, flashsocket, xhr-multipart, htmlfile, xhr-polling, json-polling",
            &mut warn,
        );
        assert_eq!(got, Ok(vec![Transport::Websocket, Transport::Polling]));
        assert_eq!(warn.len(), 3);
        assert!(warn[0].contains("\"flashsocket\""));
        assert_eq!(
            transports("", &mut warn),
            Ok(vec![Transport::Polling, Transport::Websocket])
        );
        assert!(transports("flashsocket htmlfile", &mut warn).is_err());
        assert!(transports("websockets", &mut warn).is_err());
    }
}
