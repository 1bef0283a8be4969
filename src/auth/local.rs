//! Whether a request reaches the server as localhost: sent from this machine (a loopback
//! peer, no proxy in between) to a loopback name. A header alone never makes a caller local:
//! the peer address is the one thing a remote client cannot write.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use hyper::header;

use super::origin;

/// Headers a proxy adds: a request with one came from elsewhere, through a proxy that may
/// itself run on this machine (and so connect from loopback). Any `x-forwarded-*` too.
const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-real-ip", "via"];
const PROXY_PREFIX: &str = "x-forwarded-";

/// The peer is this machine: 127.0.0.0/8, `::1`, or IPv4 loopback mapped into IPv6 (a
/// dual-stack listener sees those).
pub fn is_loopback_peer(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| match p.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// Whether a proxy says it forwarded the request.
pub fn through_proxy(headers: &HeaderMap) -> bool {
    // Names are lower-case in a `HeaderMap`.
    headers.keys().any(|name| {
        PROXY_HEADERS.contains(&name.as_str()) || name.as_str().starts_with(PROXY_PREFIX)
    })
}

/// Sent from this machine by the client itself: a loopback peer, no proxy header, and one
/// `Host` (with two, which one a check reads is a guess).
pub fn from_this_machine(headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    is_loopback_peer(peer)
        && !through_proxy(headers)
        && headers.get_all(header::HOST).iter().count() == 1
}

/// The whole test: from this machine, to a server reached as `localhost`, 127.0.0.0/8 or
/// `[::1]`, by a page of such a host or by a client without an `Origin`.
pub fn reached_locally(headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    from_this_machine(headers, peer) && origin::names_loopback(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_peers() {
        for p in [
            "127.0.0.1:5",
            "127.8.0.1:5",
            "[::1]:5",
            "[::ffff:127.0.0.1]:5",
        ] {
            assert!(is_loopback_peer(peer(p)), "{p}");
        }
        for p in [
            "10.0.0.1:5",
            "[::ffff:10.0.0.1]:5",
            "[fe80::1]:5",
            "0.0.0.0:5",
        ] {
            assert!(!is_loopback_peer(peer(p)), "{p}");
        }
        assert!(!is_loopback_peer(None));
    }

    #[test]
    fn local_means_the_peer_and_the_headers_agree() {
        let local = peer("127.0.0.1:40000");
        let remote = peer("10.200.0.2:40000");
        let host = [("host", "localhost:8001")];
        assert!(reached_locally(&headers(&host), local));
        assert!(reached_locally(
            &headers(&[("host", "127.0.0.1"), ("origin", "http://localhost:3000")]),
            local
        ));
        // Forged headers from another machine.
        assert!(!reached_locally(&headers(&host), remote));
        assert!(!reached_locally(&headers(&host), None));
        // Loopback peer, but another name, a foreign page, or a proxy in between.
        assert!(!reached_locally(
            &headers(&[("host", "example.com")]),
            local
        ));
        assert!(!reached_locally(
            &headers(&[("host", "localhost"), ("origin", "https://evil.example")]),
            local
        ));
        for proxy in [
            "Forwarded",
            "X-Forwarded-For",
            "x-forwarded-host",
            "X-Forwarded-Proto",
            "X-Real-IP",
            "Via",
        ] {
            let h = headers(&[("host", "localhost"), (proxy, "10.0.0.9")]);
            assert!(!reached_locally(&h, local), "{proxy}");
        }
        let other = headers(&[("host", "localhost"), ("x-forwarder", "no")]);
        assert!(reached_locally(&other, local));
        // No Host, or two.
        assert!(!reached_locally(&HeaderMap::new(), local));
        let two = headers(&[("host", "localhost"), ("host", "localhost")]);
        assert!(!reached_locally(&two, local));
    }
}
