//! "Reached as localhost" is judged by the peer address, not by headers: requests from
//! another machine with a forged `Host: localhost` or `Origin: http://localhost` are
//! refused, on `/api` and on the Engine.IO handshake, while the same from loopback pass.
//!
//! The other machine is a network namespace the test makes, joined to the host by a veth
//! pair with addresses it assigns (the traffic stays between the two). That needs root
//! (CI runs as root): without it the test fails, unless REALTIME_SKIP_ROOT_TESTS is set.

#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::process::{Command, Output};

/// One namespace and the veth pair into it, removed on drop.
struct Netns {
    name: String,
    /// The host's end of the pair (its peer in the namespace goes with it).
    host_if: String,
    /// The host side's address: the server listens there.
    host_ip: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().unwrap()
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let tag = format!("{:06x}", rand_suffix() & 0xff_ffff);
        let name = format!("rt-test-{tag}");
        // Interface names are at most 15 bytes.
        let (host_if, ns_if) = (format!("rth{tag}"), format!("rtn{tag}"));
        // A /30 in 10.200.0.0/16 that no interface here uses yet.
        let used = String::from_utf8_lossy(&ip(&["-o", "-4", "addr"]).stdout).into_owned();
        let (host_ip, ns_ip) = (0..64)
            .map(|i| {
                let n = rand_suffix().wrapping_add(i);
                let (third, fourth) = ((n >> 8) & 0xff, (n & 0x3f) * 4);
                (
                    format!("10.200.{third}.{}", fourth + 1),
                    format!("10.200.{third}.{}", fourth + 2),
                )
            })
            .find(|(h, n)| !used.contains(&format!("{h}/")) && !used.contains(&format!("{n}/")))
            .unwrap();
        ip_ok(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            host_ip,
        };
        ip_ok(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip_ok(&["link", "set", &ns_if, "netns", &ns.name]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip_ok(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip_ok(&all);
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// `curl` from inside the namespace: the status and the body.
    fn curl(&self, url: &str, headers: &[&str], body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "curl", "-sS", "-m", "20"]);
        cmd.args(["-w", "\n%{http_code}"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = cmd.arg(url).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Whether the test can run here; a clear failure when it cannot and nobody said skip.
fn can_make_namespaces() -> bool {
    let missing = if !is_root() {
        Some("root (to make a network namespace and a veth pair)")
    } else if !have("ip") || !have("curl") {
        Some("`ip` (iproute2) and `curl`")
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) if std::env::var_os("REALTIME_SKIP_ROOT_TESTS").is_some() => {
            eprintln!("SKIPPED: needs {what}; REALTIME_SKIP_ROOT_TESTS is set");
            false
        }
        Some(what) => panic!(
            "this test needs {what}; run it as root, or set REALTIME_SKIP_ROOT_TESTS=1 to skip it"
        ),
    }
}

/// Every port the server listens on, by address.
fn ports(server: &Server) -> Vec<(String, u16)> {
    server
        .log()
        .lines()
        .filter_map(|l| l.split("listening on ").nth(1))
        .filter_map(|a| {
            let (host, port) = a.trim().rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[test]
fn forged_loopback_headers_from_another_machine_are_refused() {
    if !can_make_namespaces() {
        return;
    }
    let ns = Netns::new();
    let mut server = Launch::new(&format!(
        "[Server]\nbind = {}:1, 127.0.0.1:1\n[Flash]\nenabled = no\n\
         [License]\nallowed-origins = https://app.example.com\n[Identity]\nsecret = s3cret\n",
        ns.host_ip
    ))
    .start();
    let found = ports(&server);
    let remote_port = found.iter().find(|(h, _)| *h == ns.host_ip).unwrap().1;
    let local_port = found.iter().find(|(h, _)| h == "127.0.0.1").unwrap().1;
    let remote = format!("http://{}:{remote_port}", ns.host_ip);
    let publish = r#"{"channel":"chat","data":1}"#;

    // Reachable at all from the namespace: the health check answers.
    assert_eq!(ns.curl(&format!("{remote}/healthz"), &[], None).0, 200);
    let forged: [&[&str]; 5] = [
        &[],
        &["Host: localhost"],
        &["Host: 127.0.0.1", "Origin: http://localhost"],
        &["Host: [::1]"],
        &["Host: rt.example.com", "Origin: https://app.example.com"],
    ];
    for headers in forged {
        let (status, body) = ns.curl(&format!("{remote}/api/publish"), headers, Some(publish));
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(body.contains("not a local request"), "{body}");
        let (status, _) = ns.curl(&format!("{remote}/api/channels/chat"), headers, None);
        assert_eq!(status, 403, "{headers:?}");
    }
    let handshake = "/socket.io/?EIO=4&transport=polling";
    for headers in [
        &["Host: localhost"][..],
        &["Host: 127.0.0.1", "Origin: http://localhost:3000"],
    ] {
        let (status, body) = ns.curl(&format!("{remote}{handshake}"), headers, None);
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // An allowed origin is a browser's page, which the origin check is for: that passes.
    let (status, body) = ns.curl(
        &format!("{remote}{handshake}"),
        &["Origin: https://app.example.com"],
        None,
    );
    assert_eq!(status, 200, "{body}");

    // The same from this machine, to localhost: accepted.
    let local = format!("Host: localhost:{local_port}\r\n");
    block_on(async {
        let r = raw(
            local_port,
            "POST",
            "/api/publish",
            local.as_bytes(),
            publish.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let r = raw(local_port, "GET", handshake, local.as_bytes(), b"").await;
        assert_eq!(r.status, 200, "{r:?}");
        let h = format!("{local}Origin: http://localhost:3000\r\n");
        let r = raw(local_port, "GET", handshake, h.as_bytes(), b"").await;
        assert_eq!(r.status, 200, "{r:?}");
    });
    assert!(
        server
            .log()
            .contains("loopback Host/Origin from another machine or through a proxy"),
        "{}",
        server.log()
    );
    assert!(server.alive(), "{}", server.log());
}
