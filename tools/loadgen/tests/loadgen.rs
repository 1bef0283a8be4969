//! The load generator against a small run of the real server: its counts add up, and a
//! server that drops deliveries makes the run fail.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use realtime::config::Config;
use realtime::server;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The server, built from the product's library and served by this process on a free
/// port, so the run always measures the tree under test. Stopped on drop.
struct Server {
    port: u16,
    runtime: Option<Runtime>,
    shutdown: CancellationToken,
}

impl Server {
    /// Serves with this INI text as its config.
    fn start(config: &str) -> Server {
        let config = Config::parse(config, "test.conf").unwrap();
        let runtime = Runtime::new().unwrap();
        let shutdown = CancellationToken::new();
        let port = runtime.block_on(async {
            let product = server::product(&config).unwrap();
            let listener = server::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(server::serve(
                vec![listener],
                product.router,
                shutdown.clone(),
                server::Bounds::from_config(&config.server),
            ));
            port
        });
        Server {
            port,
            runtime: Some(runtime),
            shutdown,
        }
    }

    /// The process serving it, whose CPU time and memory the load generator reads.
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Runs one scenario; returns its exit status and JSON.
fn loadgen(server: &Server, scenario: &str, args: &[&str]) -> (bool, Value) {
    loadgen_via(server.port, server, scenario, args)
}

/// As [`loadgen`], the clients connecting to `port` (a proxy in front of the server).
fn loadgen_via(port: u16, server: &Server, scenario: &str, args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_realtime-loadgen"))
        .arg(scenario)
        .args(["--url", &format!("ws://127.0.0.1:{port}")])
        .args(["--server-pid", &server.pid().to_string()])
        .args(["--label", "realtime", "--stall-timeout", "3"])
        .args(args)
        .output()
        .expect("run realtime-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON ({e}); stdout {stdout}\nstderr {stderr}"));
    let name = if args.contains(&"--publish-url") {
        format!("{scenario}-cross-node")
    } else {
        scenario.to_owned()
    };
    assert_eq!(json["scenario"], name.as_str());
    assert!(
        stderr.contains(&format!("{name} on realtime")),
        "no table: {stderr}"
    );
    (out.status.success(), json)
}

fn clean(json: &Value, expected: u64) {
    let c = &json["check"];
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(c["expected"], expected, "{json}");
    assert_eq!(c["received"], expected, "{json}");
    for k in [
        "lost",
        "duplicated",
        "reordered",
        "unexpected",
        "failed_clients",
    ] {
        assert_eq!(c[k], 0, "{k}: {json}");
    }
}

#[test]
fn every_scenario_counts_every_delivery() {
    let server = Server::start("");
    let (ok, j) = loadgen(
        &server,
        "fanout",
        &["--subscribers", "10", "--messages", "100", "--window", "8"],
    );
    assert!(ok);
    clean(&j, 10 * 100);
    assert!(j["metrics"]["deliveries_per_s"].as_f64().unwrap() > 0.0);
    assert!(j["metrics"]["latency_p99_ms"].as_f64().unwrap() > 0.0);

    let (ok, j) = loadgen(
        &server,
        "rate",
        &["--subscribers", "5", "--rate", "50", "--duration", "0.5"],
    );
    assert!(ok);
    clean(&j, 5 * 25);
    assert!(j["metrics"]["elapsed_s"].as_f64().unwrap() >= 0.4, "{j}");

    let (ok, j) = loadgen(
        &server,
        "channels",
        &[
            "--connections",
            "60",
            "--channels",
            "6",
            "--per-connection",
            "2",
            "--publishers",
            "3",
            "--messages",
            "5",
        ],
    );
    assert!(ok);
    clean(&j, 60 * 2 * 5);

    let (ok, j) = loadgen(
        &server,
        "idle",
        &["--connections", "50", "--channels", "5", "--settle", "0"],
    );
    assert!(ok);
    clean(&j, 0);
    let m = &j["metrics"];
    assert!(m["rss_after_kib"].as_f64().unwrap() > 0.0, "{j}");
    assert!(m["handshakes_per_s"].as_f64().unwrap() > 0.0);
    assert!(m["subscribe_acks_per_s"].as_f64().unwrap() > 0.0);
    assert!(m["server_cpu_per_handshake_us"].is_number(), "{j}");

    // From three loopback addresses in turn.
    let (ok, j) = loadgen(
        &server,
        "crowd",
        &["--connections", "40", "--messages", "2", "--sources", "3"],
    );
    assert!(ok, "{j}");
    clean(&j, 40 * 2);
    assert_eq!(j["params"]["sources"], 3, "{j}");
    assert!(
        j["metrics"]["last_delivery_ms"].as_f64().unwrap() > 0.0,
        "{j}"
    );
}

/// `--publish-url` connects the publisher elsewhere (here: the same server by another
/// address) and records the run under its own name, with the publishers' node's CPU.
#[test]
fn publishers_can_be_pointed_at_another_node() {
    let server = Server::start("");
    let other = format!("http://localhost:{}", server.port);
    let pid = server.pid().to_string();
    let (ok, j) = loadgen(
        &server,
        "fanout",
        &[
            "--subscribers",
            "5",
            "--messages",
            "50",
            "--publish-url",
            &other,
            "--publish-server-pid",
            &pid,
        ],
    );
    assert!(ok);
    clean(&j, 5 * 50);
    assert_eq!(j["publish_url"], other.as_str(), "{j}");
    assert!(j["metrics"]["publish_server_cpu_pct"].is_number(), "{j}");
    assert!(j["metrics"]["bus_cpu_pct"].is_null(), "{j}");
}

/// A proxy that passes at most `limit` bytes from the server to each client, then hangs
/// up on both: a server that drops its subscribers mid-run, as seen from the clients.
fn cutting_proxy(server_port: u16, limit: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut passed = 0;
                while passed < limit {
                    match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c_out.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            passed += n;
                        }
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = s_in.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// Subscribers cut off mid-run (by a proxy that hangs up after 64 KiB) lose deliveries:
/// the load generator must report the loss and fail the run.
#[test]
fn a_lossy_server_fails_the_run() {
    let server = Server::start("");
    let proxy = cutting_proxy(server.port, 64 * 1024);
    let direct = format!("http://127.0.0.1:{}", server.port);
    let pid = server.pid().to_string();
    let (ok, j) = loadgen_via(
        proxy,
        &server,
        "fanout",
        &[
            "--subscribers",
            "5",
            "--messages",
            "1000",
            "--size",
            "1000",
            "--publish-url",
            &direct,
            "--publish-server-pid",
            &pid,
        ],
    );
    assert!(!ok, "{j}");
    assert_eq!(j["ok"], false);
    assert!(j["check"]["lost"].as_u64().unwrap() > 0, "{j}");
    assert!(j["check"]["failed_clients"].as_u64().unwrap() > 0, "{j}");
}
