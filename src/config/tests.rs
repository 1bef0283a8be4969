//! Tests of the whole reader: defaults, the 2012 file, the sample file, every key, errors.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// `etc/realtime.conf` of justinfx/realtime as of its last change (commit aad88b4,
/// 2012-10-12), verbatim, trailing spaces included.
const ORIGINAL_2012: &str = r"#
# RealTime server config
#
# This conf specifies properties specific to the
# RealTime server process. Thes properties are the
# defaults, unless specifically overriden by command-line
# options to the program.
# 

[Server]
# server will print alot more output (and run slower)
debug = False

# if using websockets, accept connections on this port
websocket-port = 8001

# Number of seconds for a lost connection to be considered a full disconnect.
# If the client reconnects before this time with the same ID, their session will be
# resumed.
reconnect-timeout = 8

# the types of connection the server will support
# these are socket.io supported values, in the order
# of priority. Blank means allow ALL types
allowed-types = websocket, flashsocket, xhr-multipart, htmlfile, xhr-polling, json-polling


[Monitor]
# Uncomment and specify a URL for an endpoint that can receive
# POST requests notifying when various events occur in the message server
#url = http://localhost:8080/api/realtime/monitor


[Messaging]
# for each connection that uses an identity, the message queue 
# will hang on to a maxiumum of this many messages if the 
# connection leaves. one this limit is reached, any further
# messages are discarded. this acts as a buffer for people
# suddenly losing connection or switching web pages.
# Setting this to a ridiculously high number will use a lot of RAM
message-cache-limit = 100
";

/// The same file as first released with license checks (commit ae90f7e, 2011-08-04):
/// a blank `allowed-types`, which meant "all".
const ORIGINAL_2011: &str = "
[Server]
# server will print alot more output (and run slower)
debug = False

# if using websockets, accept connections on this port
websocket-port = 8001

# the types of connection the server will support
# these are socket.io supported values, in the order
# of priority. Blank means allow ALL types
allowed-types = 
#allowed-types = websocket, flashsocket, xhr-multipart, xhr-polling, json-polling, htmlfile


[Messaging]
# for each connection that uses an identity, the message queue 
# will hang on to a maxiumum of this many messages if the 
# connection leaves. one this limit is reached, any further
# messages are discarded. this acts as a buffer for people
# suddenly losing connection or switching web pages.
# Setting this to a ridiculously high number will use a lot of RAM
message-cache-limit = 100
";

const SAMPLE: &str = include_str!("../../etc/realtime.conf");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "realtime.conf")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn defaults() {
    let c = Config::default();
    let s = &c.server;
    assert!(!s.debug);
    assert_eq!(s.bind, ["[::]:8001"]);
    assert_eq!(s.listen_addrs(), ["[::]:8001"]);
    assert_eq!((s.websocket_port, s.path.as_str()), (None, "/socket.io/"));
    assert_eq!((s.ping_interval, s.ping_timeout), (secs(25), secs(20)));
    assert_eq!((s.max_payload, s.max_connections), (1_000_000, 100_000));
    assert_eq!(
        (s.reconnect_timeout, s.connect_timeout),
        (secs(8), secs(45))
    );
    assert_eq!(s.allowed_types, [Transport::Polling, Transport::Websocket]);
    assert_eq!((&s.user, &s.www), (&None, &None));
    assert_eq!(
        (s.max_http_connections, s.body_timeout, s.shutdown_grace),
        (200_000, secs(30), secs(5))
    );
    assert_eq!(
        c.flash,
        FlashConfig {
            enabled: true,
            port: 843,
            policy_file: None
        }
    );
    let m = &c.monitor;
    assert_eq!((&m.url, &m.secret), (&None, &None));
    assert_eq!(m.events, ["subscribe", "unsubscribe"]);
    assert_eq!((m.queue, m.timeout, m.retries), (10_000, secs(5), 3));
    let g = &c.messaging;
    assert_eq!(
        (g.message_cache_limit, g.client_queue, g.max_channels),
        (100, 4096, 100)
    );
    assert_eq!((g.max_channel_name, g.max_identity), (256, 256));
    assert_eq!(
        c.license,
        LicenseConfig {
            file: None,
            secret: None,
            allowed_origins: vec![]
        }
    );
    assert!(c.api.keys.is_empty());
    assert_eq!(
        c.identity,
        IdentityConfig {
            secret: None,
            require: false
        }
    );
    assert_eq!(
        (
            &c.cluster.redis,
            c.cluster.prefix.as_str(),
            &c.cluster.node_id
        ),
        (&None, "realtime", &None)
    );
    assert_eq!(c.cluster.answer_timeout, secs(10));
    assert_eq!(
        (c.log.target, c.log.level.as_str()),
        (LogTarget::Auto, "info")
    );
    assert!(c.warnings().is_empty());
}

#[test]
fn original_2012_file_parses() {
    let c = parse(ORIGINAL_2012).unwrap();
    assert!(!c.server.debug);
    assert_eq!(c.server.websocket_port, Some(8001));
    assert_eq!(c.server.listen_addrs(), ["[::]:8001"]);
    assert_eq!(c.server.reconnect_timeout, secs(8));
    // The original's priority order survives: websocket first.
    assert_eq!(
        c.server.allowed_types,
        [Transport::Websocket, Transport::Polling]
    );
    assert_eq!(c.monitor.url, None);
    assert_eq!(c.messaging.message_cache_limit, 100);
    let w = c.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("realtime.conf:25: [Server] allowed-types: "),
        "{}",
        w[0]
    );
    for (w, name) in w.iter().zip(["flashsocket", "xhr-multipart", "htmlfile"]) {
        assert!(w.contains(&format!("{name:?}")), "{w}");
    }
    // Every other setting is the default.
    let mut expected = Config::default();
    expected.server.websocket_port = Some(8001);
    expected.server.allowed_types = vec![Transport::Websocket, Transport::Polling];
    assert_eq!(c, expected);
}

#[test]
fn original_2011_file_parses() {
    let c = parse(ORIGINAL_2011).unwrap();
    assert_eq!(
        c.server.allowed_types,
        [Transport::Polling, Transport::Websocket]
    );
    assert_eq!(c.server.websocket_port, Some(8001));
    assert!(c.warnings().is_empty());
    // The July 2011 keys are accepted, with a warning.
    let c = parse("[Server]\nallowed-domain = *:8001\nflash-server-port = 843\n").unwrap();
    assert_eq!(c.warnings().len(), 2);
}

#[test]
fn sample_file_is_the_defaults() {
    let c = parse(SAMPLE).unwrap();
    assert_eq!(c, Config::default());
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn sample_file_commented_keys_are_valid_and_present() {
    // Uncomment `#key = value` lines (not prose comments, which have a space after `#`).
    let text: String = SAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // Every key the reader knows is in the sample.
    let mut section = "";
    for line in EVERY_KEY.lines() {
        if line.starts_with('[') {
            section = line;
        } else if let Some((key, _)) = line.split_once(" = ") {
            let (_, rest) = text.split_once(section).unwrap();
            let body = rest.split("\n[").next().unwrap_or("");
            assert!(
                body.contains(&format!("\n{key} =")),
                "{section} {key} missing"
            );
        }
    }
    let c = parse(&text).unwrap();
    assert_eq!(c.server.websocket_port, Some(8001));
    assert_eq!(c.server.user.as_deref(), Some("realtime"));
    assert!(c.monitor.url.is_some() && c.monitor.secret.is_some());
    assert!(c.license.file.is_some() && c.license.secret.is_some());
    assert!(
        c.identity.secret.is_some() && c.cluster.redis.is_some() && c.cluster.node_id.is_some()
    );
    assert!(c.flash.policy_file.is_some() && c.server.www.is_some());
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

const EVERY_KEY: &str = "
[Server]
debug = yes
bind = 127.0.0.1:9000, [::1]:9001
websocket-port = 9100
path = realtime
ping-interval = 500ms
ping-timeout = 2m
max-payload = 64K
max-connections = 12
reconnect-timeout = 0
allowed-types = websocket
user = nobody
www = /srv/www
connect-timeout = 10s
max-http-connections = 13
body-timeout = 3s
shutdown-grace = 0
[Flash]
enabled = off
port = 8430
policy-file = /etc/p.xml
[Monitor]
url = https://example.com/hook
events = connect disconnect message command
secret = s3
queue = 7
timeout = 1s
retries = 0
[Messaging]
message-cache-limit = 5
client-queue = 6
max-channels = 7
max-channel-name = 8
max-identity = 9
[License]
file = /etc/l.txt
secret = ls
allowed-origins = https://a.example.com, *.example.org
[Api]
keys = k1 k2
[Identity]
secret = is
require = 1
[Cluster]
redis = redis+cluster://r:7000,r:7001
prefix = rt
node-id = n1
heartbeat = 2s
node-timeout = 9s
answer-timeout = 250ms
bus-shards = 3
[Log]
target = stderr
level = trace
";

#[test]
fn every_key_is_read() {
    let c = parse(EVERY_KEY).unwrap();
    let s = &c.server;
    assert!(s.debug);
    assert_eq!(s.bind, ["127.0.0.1:9000", "[::1]:9001"]);
    assert_eq!(s.listen_addrs(), ["127.0.0.1:9100", "[::1]:9100"]);
    assert_eq!(s.path, "/realtime/");
    assert_eq!(
        (s.ping_interval, s.ping_timeout),
        (Duration::from_millis(500), secs(120))
    );
    assert_eq!((s.max_payload, s.max_connections), (64_000, 12));
    assert_eq!(
        (s.reconnect_timeout, s.connect_timeout),
        (Duration::ZERO, secs(10))
    );
    assert_eq!(s.allowed_types, [Transport::Websocket]);
    assert_eq!(
        (s.max_http_connections, s.body_timeout, s.shutdown_grace),
        (13, secs(3), Duration::ZERO)
    );
    assert_eq!(
        (s.user.as_deref(), s.www.clone()),
        (Some("nobody"), Some(PathBuf::from("/srv/www")))
    );
    assert_eq!(
        c.flash,
        FlashConfig {
            enabled: false,
            port: 8430,
            policy_file: Some("/etc/p.xml".into())
        }
    );
    let m = &c.monitor;
    assert_eq!(m.url.as_deref(), Some("https://example.com/hook"));
    assert_eq!(m.events, ["connect", "disconnect", "message", "command"]);
    assert_eq!(
        (m.secret.as_deref(), m.queue, m.timeout, m.retries),
        (Some("s3"), 7, secs(1), 0)
    );
    let g = &c.messaging;
    let limits = (
        g.message_cache_limit,
        g.client_queue,
        g.max_channels,
        g.max_channel_name,
        g.max_identity,
    );
    assert_eq!(limits, (5, 6, 7, 8, 9));
    assert_eq!(c.license.file, Some(PathBuf::from("/etc/l.txt")));
    assert_eq!(c.license.secret.as_deref(), Some("ls"));
    assert_eq!(
        c.license.allowed_origins,
        ["https://a.example.com", "*.example.org"]
    );
    assert_eq!(c.api.keys, ["k1", "k2"]);
    assert_eq!(
        c.identity,
        IdentityConfig {
            secret: Some("is".into()),
            require: true
        }
    );
    assert_eq!(
        c.cluster.redis.as_deref(),
        Some("redis+cluster://r:7000,r:7001")
    );
    assert_eq!(c.cluster.bus_shards, 3);
    assert_eq!(
        (c.cluster.heartbeat, c.cluster.node_timeout),
        (Duration::from_secs(2), Duration::from_secs(9))
    );
    assert_eq!(c.cluster.answer_timeout, Duration::from_millis(250));
    assert_eq!(
        (c.cluster.prefix.as_str(), c.cluster.node_id.as_deref()),
        ("rt", Some("n1"))
    );
    assert_eq!(
        (c.log.target, c.log.level.as_str()),
        (LogTarget::Stderr, "trace")
    );
    assert!(c.warnings().is_empty());
}

/// Parses `text`, expects an error and checks where it points.
fn error_at(text: &str, line: u32, section: Option<&str>, key: Option<&str>) -> String {
    let e = parse(text).unwrap_err();
    assert_eq!(e.file(), Some("realtime.conf"), "{e}");
    assert_eq!(e.line(), Some(line), "{e}");
    assert_eq!(e.section(), section, "{e}");
    assert_eq!(e.key(), key, "{e}");
    e.to_string()
}

#[test]
fn errors_name_file_line_section_and_key() {
    let e = error_at("[Server]\n\nfoo = 1\n", 3, Some("Server"), Some("foo"));
    assert_eq!(e, "realtime.conf:3: unknown key \"foo\" in [Server]");
    let e = error_at("[Server]\ndebug = 1\n[Foo]\n", 3, Some("Foo"), None);
    assert_eq!(e, "realtime.conf:3: unknown section [Foo]");
    let e = error_at(
        "[Server]\ndebug = maybe\n",
        2,
        Some("Server"),
        Some("debug"),
    );
    assert!(
        e.starts_with("realtime.conf:2: [Server] debug: expected a boolean"),
        "{e}"
    );
    let e = error_at(
        "[Server]\nping-interval = soon\n",
        2,
        Some("Server"),
        Some("ping-interval"),
    );
    assert!(
        e.contains("expected a duration") && e.contains("\"soon\""),
        "{e}"
    );
    let e = error_at(
        "[Server]\n\n\nmax-payload = abc",
        4,
        Some("Server"),
        Some("max-payload"),
    );
    let want = "realtime.conf:4: [Server] max-payload: expected a size in bytes (e.g. 1000000 or 1M), got \"abc\"";
    assert_eq!(e, want);
    let e = error_at(
        "[Monitor]\nurl = localhost:8080\n",
        2,
        Some("Monitor"),
        Some("url"),
    );
    assert!(
        e.contains("expected a URL starting with http:// or https://"),
        "{e}"
    );
    let e = error_at(
        "[Cluster]\nredis = http://r\n",
        2,
        Some("Cluster"),
        Some("redis"),
    );
    assert!(e.contains("redis://"), "{e}");
    let e = error_at(
        "[Cluster]\nredis = redis+sentinel://:pw@s1:26379,s2:26379\n",
        2,
        Some("Cluster"),
        Some("redis"),
    );
    assert!(
        e.contains("/master[/db]") && e.contains("no master name"),
        "{e}"
    );
    assert!(!e.contains("pw"), "{e}");
    let e = error_at(
        "[Cluster]\nheartbeat = 10s\nnode-timeout = 10s\n",
        3,
        Some("Cluster"),
        Some("node-timeout"),
    );
    assert!(e.contains("longer than heartbeat"), "{e}");
    // Spreading needs a Redis Cluster; one Redis or Sentinel's primary is one shard.
    for redis in [
        "",
        "redis = redis://r:6379/0\n",
        "redis = redis+sentinel://s1/m\n",
    ] {
        let e = error_at(
            &format!("[Cluster]\n{redis}bus-shards = 2\n"),
            2 + u32::from(!redis.is_empty()),
            Some("Cluster"),
            Some("bus-shards"),
        );
        assert!(e.contains("redis+cluster://") && e.contains("got 2"), "{e}");
    }
    for shards in ["0", "65", "many"] {
        let e = error_at(
            &format!("[Cluster]\nredis = redis+cluster://r:7000\nbus-shards = {shards}\n"),
            3,
            Some("Cluster"),
            Some("bus-shards"),
        );
        assert!(e.contains(&format!("{shards:?}")), "{e}");
    }
    assert_eq!(
        parse("[Cluster]\nredis = redis+cluster://r:7000\nbus-shards = 64\n")
            .map(|c| c.cluster.bus_shards)
            .ok(),
        Some(64)
    );
    let e = error_at(
        "[Server]\nallowed-types = flashsocket, htmlfile\n",
        2,
        Some("Server"),
        Some("allowed-types"),
    );
    assert!(e.contains("at least one usable transport"), "{e}");
    error_at(
        "[Monitor]\nevents = subscribe, joined\n",
        2,
        Some("Monitor"),
        Some("events"),
    );
    error_at("[Log]\nlevel = loud\n", 2, Some("Log"), Some("level"));
    error_at("[Server]\nbind =\n", 2, Some("Server"), Some("bind"));
    // The bounds: malformed, zero where zero cannot work, and more than fits.
    for (key, bad, want) in [
        ("max-http-connections", "many", "expected a whole number"),
        (
            "max-http-connections",
            "0",
            "expected a whole number of at least 1",
        ),
        (
            "max-http-connections",
            "9999999999999999999",
            "expected a whole number from 1 to",
        ),
        ("body-timeout", "soon", "expected a duration"),
        ("body-timeout", "0s", "expected a duration greater than 0"),
        (
            "body-timeout",
            "99999999999999999999h",
            "expected a duration",
        ),
        ("shutdown-grace", "-1", "expected a duration"),
        (
            "shutdown-grace",
            "99999999999999999999h",
            "expected a duration",
        ),
    ] {
        let e = error_at(
            &format!("[Server]\n{key} = {bad}\n"),
            2,
            Some("Server"),
            Some(key),
        );
        assert!(e.contains(want), "{key} = {bad}: {e}");
    }
    for (bad, want) in [
        ("soon", "expected a duration"),
        ("0", "expected a duration greater than 0"),
        ("99999999999999999999h", "expected a duration"),
    ] {
        let e = error_at(
            &format!("[Cluster]\nanswer-timeout = {bad}\n"),
            2,
            Some("Cluster"),
            Some("answer-timeout"),
        );
        assert!(e.contains(want), "answer-timeout = {bad}: {e}");
    }
    // `port` is not a key: the command line's --port is.
    error_at("[Server]\nport = 80\n", 2, Some("Server"), Some("port"));
}

#[test]
fn syntax_errors() {
    let e = error_at("debug = true\n", 1, None, Some("debug"));
    assert_eq!(e, "realtime.conf:1: key \"debug\" is outside any section");
    let e = error_at("[Server]\ndebug\n", 2, None, None);
    assert!(e.contains("expected `key = value`"), "{e}");
    error_at("[Server\n", 1, None, None);
}

#[test]
fn comments_line_endings_and_spacing() {
    let text = "# hash\r\n; semicolon\r\n[Server]\r\n  debug   =   true   # why\r\n\tpath=/realtime/ ; old clients\r\n";
    let c = parse(text).unwrap();
    assert!(c.server.debug);
    assert_eq!(c.server.path, "/realtime/");
    let e = parse("[Server]\r\n\r\nfoo=1\r\n").unwrap_err();
    assert_eq!(e.line(), Some(3));
}

#[test]
fn names_are_case_insensitive_and_empty_options_are_none() {
    let c =
        parse("[server]\nDebug = TRUE\nuser =\n[MONITOR]\nurl = \n[log]\nlevel = Warn\n").unwrap();
    assert!(c.server.debug);
    assert_eq!((c.server.user.clone(), c.monitor.url.clone()), (None, None));
    assert_eq!(c.log.level, "warn");
}

#[test]
fn a_repeated_key_keeps_the_last_value_and_warns() {
    let c = parse("[Server]\ndebug = true\n[Messaging]\n[Server]\ndebug = false\n").unwrap();
    assert!(!c.server.debug);
    assert_eq!(c.warnings().len(), 1);
    assert!(
        c.warnings()[0]
            .starts_with("realtime.conf:5: [Server] debug is set again (before on line 2)")
    );
}

/// A fresh directory under the system temp dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("realtime-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_reports_io_and_encoding_errors() {
    let dir = scratch("load");
    let missing = dir.join("nope.conf");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{e}"
    );
    assert_eq!(e.file(), missing.to_str());
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, b"[Server]\ndebug = \xff\n").unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    let good = dir.join("good.conf");
    std::fs::write(&good, "[Server]\ndebug = on\n").unwrap();
    assert!(Config::load(&good).unwrap().server.debug);
    let e = {
        std::fs::write(&good, "[Server]\nnope = 1\n").unwrap();
        Config::load(&good).unwrap_err()
    };
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: unknown key", good.display())),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn discover_order() {
    let dir = scratch("discover");
    let first = dir.join("first.conf");
    let second = dir.join("second.conf");
    let candidates = [first.clone(), second.clone()];
    let (c, used) = Config::discover_in(None, &candidates).unwrap();
    assert_eq!((c, used), (Config::default(), None));
    std::fs::write(&second, "[Server]\ndebug = true\n").unwrap();
    let (c, used) = Config::discover_in(None, &candidates).unwrap();
    assert!(c.server.debug);
    assert_eq!(used, Some(second.clone()));
    std::fs::write(&first, "[Server]\nmax-connections = 5\n").unwrap();
    let (c, used) = Config::discover_in(None, &candidates).unwrap();
    assert_eq!((c.server.max_connections, used), (5, Some(first.clone())));
    // An explicit path wins, and must exist.
    let (c, used) = Config::discover_in(Some(&second), &candidates).unwrap();
    assert!(c.server.debug && used == Some(second));
    assert!(Config::discover_in(Some(&dir.join("missing")), &candidates).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = parse(&text);
    }

    #[test]
    fn ini_like_text_never_panics(text in "([\\[\\]=:#; \t\r\na-z0-9.-]|server|Server|debug|path|bind|url|http://){0,80}") {
        let _ = parse(&text);
    }
}
