//! The origin check of docs/design.md#origin-check: which web pages (by their `Origin`) and which
//! non-browser clients (by the `Host` they reached) may open a session.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use hyper::header;

use super::{license, local};

/// One entry of `[License] allowed-origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every origin, and every client without one.
    Any,
    /// `https://app.example.com[:port]`: that exact origin (scheme, host and port).
    Origin(String),
    /// `app.example.com`: that host, any scheme and port.
    Host(String),
    /// `*.example.com`: any subdomain of `example.com` (not `example.com` itself), any
    /// scheme and port. Held as `.example.com`.
    Suffix(String),
}

impl Pattern {
    /// Parses one entry; `None` for one that can never match (reported by the caller).
    pub fn parse(raw: &str) -> Option<Pattern> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw == "*" {
            return Some(Pattern::Any);
        }
        if raw.contains("://") {
            return Origin::parse(&raw).map(|o| Pattern::Origin(o.serialized()));
        }
        if let Some(rest) = raw.strip_prefix("*.") {
            return valid_host(rest).then(|| Pattern::Suffix(format!(".{rest}")));
        }
        valid_host(&raw).then_some(Pattern::Host(raw))
    }

    fn matches(&self, origin: Option<&Origin>, host: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Origin(o) => origin.is_some_and(|origin| origin.serialized() == *o),
            Pattern::Host(h) => host == h,
            Pattern::Suffix(s) => host.ends_with(s.as_str()),
        }
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
        })
}

/// An `Origin` header value, parsed at the edge: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    /// Lower-case; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Origin {
    /// `None` for anything that is not a plain serialized origin (`null`, paths, junk).
    pub fn parse(raw: &str) -> Option<Origin> {
        let (scheme, rest) = raw.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest)?;
        if !valid_host(&host) {
            return None;
        }
        Some(Origin {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
        })
    }

    /// `scheme://host[:port]`, the default port of http/https left out as browsers do.
    pub fn serialized(&self) -> String {
        match (self.scheme.as_str(), self.port) {
            ("http" | "ws", Some(80)) | ("https" | "wss", Some(443)) | (_, None) => {
                format!("{}://{}", self.scheme, self.host)
            }
            (_, Some(p)) => format!("{}://{}:{p}", self.scheme, self.host),
        }
    }
}

/// `host[:port]` or `[v6][:port]` → lower-case host and port; `None` when malformed.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{v6}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// Whether a host name means this machine: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback(host: &str) -> bool {
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Whether the headers name this machine: a loopback `Host`, and an `Origin` absent or
/// loopback too. Half of [`local::reached_locally`]; the peer address is the other half.
pub fn names_loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(split_host_port);
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().ok().and_then(Origin::parse));
    host.is_some_and(|(h, _)| is_loopback(&h))
        && match origin {
            None => true,
            Some(parsed) => parsed.is_some_and(|o| is_loopback(&o.host)),
        }
}

/// The rules, built from `[License]` and the license file.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    patterns: Vec<Pattern>,
    /// License keys, lower-case hex.
    keys: HashSet<String>,
    secret: String,
}

/// What the check decided, and about what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; the origin (or host, without one) as the client sent it, for the log.
    Refused(String),
}

impl OriginPolicy {
    pub fn new(patterns: Vec<Pattern>, keys: HashSet<String>, secret: String) -> OriginPolicy {
        OriginPolicy {
            patterns,
            keys,
            secret,
        }
    }

    /// Whether the license file or the allowlist admits anything besides loopback.
    pub fn is_open_only_to_loopback(&self) -> bool {
        self.patterns.is_empty() && self.keys.is_empty()
    }

    /// The check of docs/design.md#origin-check on a request's `Origin` and `Host` headers,
    /// and for loopback, on the peer it came from.
    pub fn check(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Verdict {
        if self.patterns.contains(&Pattern::Any) {
            return Verdict::Allowed;
        }
        let host_raw = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let host = split_host_port(host_raw).map(|(h, _)| h);
        let origin_raw = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or(""));
        let shown = |s: &str| s.chars().take(200).collect::<String>();
        let origin = match origin_raw {
            None => None,
            Some(raw) => match Origin::parse(raw) {
                Some(o) => Some(o),
                None => return Verdict::Refused(shown(raw)),
            },
        };
        // A server reached as localhost by a page of localhost (or by a local tool), from
        // this machine: the headers are the caller's to write, the peer address is not.
        if host.as_deref().is_some_and(is_loopback)
            && origin.as_ref().is_none_or(|o| is_loopback(&o.host))
            && local::from_this_machine(headers, peer)
        {
            return Verdict::Allowed;
        }
        // Without an Origin (not a browser), the host the client reached is checked, as
        // the 2012 server did.
        let Some(subject) = origin.as_ref().map(|o| o.host.clone()).or(host) else {
            return Verdict::Refused(String::new());
        };
        if self
            .patterns
            .iter()
            .any(|p| p.matches(origin.as_ref(), &subject))
            || self.licensed(&subject)
        {
            return Verdict::Allowed;
        }
        Verdict::Refused(shown(origin_raw.unwrap_or(host_raw)))
    }

    /// A key for the host's domain (last two labels), or for the whole host name (what
    /// the 2012 server hashed for clients without an Origin).
    fn licensed(&self, host: &str) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let whole = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        let domain = license::licensed_domain(whole);
        self.keys.contains(&license::key(&domain, &self.secret))
            || (whole != domain && self.keys.contains(&license::key(whole, &self.secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn policy(patterns: &[&str], domains: &[&str]) -> OriginPolicy {
        let secret = license::ORIGINAL_SECRET.to_owned();
        OriginPolicy::new(
            patterns.iter().filter_map(|p| Pattern::parse(p)).collect(),
            domains.iter().map(|d| license::key(d, &secret)).collect(),
            secret,
        )
    }

    const LOCAL_PEER: Option<SocketAddr> = Some(SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        40000,
    ));

    fn allowed(p: &OriginPolicy, host: Option<&str>, origin: Option<&str>) -> bool {
        p.check(&headers(host, origin), LOCAL_PEER) == Verdict::Allowed
    }

    #[test]
    fn loopback_is_always_allowed() {
        let p = policy(&[], &[]);
        for host in [
            "localhost:8001",
            "127.0.0.1",
            "127.9.9.9:1",
            "[::1]:8001",
            "LOCALHOST",
        ] {
            assert!(allowed(&p, Some(host), None), "{host}");
            assert!(
                allowed(&p, Some(host), Some("http://localhost:3000")),
                "{host}"
            );
            assert!(allowed(&p, Some(host), Some("http://127.0.0.1")), "{host}");
        }
        assert!(!allowed(
            &p,
            Some("localhost"),
            Some("https://evil.example")
        ));
        assert!(!allowed(&p, Some("example.com"), None));
        assert!(!allowed(&p, Some("example.com"), Some("http://localhost")));
        assert!(!allowed(&p, None, None));
    }

    #[test]
    fn loopback_headers_from_another_machine_are_not_loopback() {
        let p = policy(&[], &[]);
        let remote = Some(SocketAddr::from(([10, 200, 0, 2], 40000)));
        for (host, origin) in [
            ("localhost:8001", None),
            ("127.0.0.1", Some("http://localhost:3000")),
            ("[::1]:8001", None),
        ] {
            let h = headers(Some(host), origin);
            assert!(names_loopback(&h), "{host}");
            assert_ne!(p.check(&h, remote), Verdict::Allowed, "{host}");
            assert_ne!(p.check(&h, None), Verdict::Allowed, "{host}");
        }
        // Through a proxy on this machine.
        let mut h = headers(Some("localhost"), None);
        h.insert("x-forwarded-for", "10.0.0.9".parse().unwrap());
        assert_ne!(p.check(&h, LOCAL_PEER), Verdict::Allowed);
        // An allowed origin does not need a local peer.
        let open = policy(&["https://app.example.com"], &[]);
        let h = headers(Some("rt.example.com"), Some("https://app.example.com"));
        assert_eq!(open.check(&h, remote), Verdict::Allowed);
        assert!(!names_loopback(&headers(Some("localhost"), Some("null"))));
    }

    #[test]
    fn license_keys_cover_the_domain_and_its_subdomains() {
        let p = policy(&[], &["mydomain.com"]);
        assert!(allowed(
            &p,
            Some("rt.mydomain.com"),
            Some("https://mydomain.com")
        ));
        assert!(allowed(
            &p,
            Some("x"),
            Some("https://www.mydomain.com:8443")
        ));
        assert!(allowed(&p, Some("rt.mydomain.com"), None));
        assert!(!allowed(&p, Some("x"), Some("https://mydomain.org")));
        assert!(!allowed(&p, Some("x"), Some("https://notmydomain.com")));
        let whole = policy(&[], &["rt.other.org", "10.0.0.7"]);
        assert!(allowed(&whole, Some("rt.other.org:8001"), None));
        assert!(allowed(&whole, Some("10.0.0.7:8001"), None));
        assert!(!allowed(&whole, Some("10.0.0.8:8001"), None));
    }

    #[test]
    fn allowlist_patterns() {
        let p = policy(
            &["https://app.example.com", "*.example.org", "other.net"],
            &[],
        );
        assert!(allowed(&p, Some("x"), Some("https://app.example.com")));
        assert!(allowed(&p, Some("x"), Some("https://app.example.com:443")));
        assert!(!allowed(&p, Some("x"), Some("http://app.example.com")));
        assert!(!allowed(
            &p,
            Some("x"),
            Some("https://app.example.com:8443")
        ));
        assert!(allowed(&p, Some("x"), Some("http://a.b.example.org:81")));
        assert!(!allowed(&p, Some("x"), Some("http://example.org")));
        assert!(!allowed(&p, Some("x"), Some("http://badexample.org")));
        assert!(allowed(&p, Some("x"), Some("http://other.net:9")));
        let any = policy(&["*"], &[]);
        assert!(allowed(&any, None, Some("null")));
        assert!(allowed(&any, Some("anything"), None));
    }

    #[test]
    fn garbage_origins_are_refused() {
        let p = policy(&["*.example.com"], &["example.com"]);
        for bad in [
            "null",
            "",
            "example.com",
            "https://",
            "https://a.example.com/path",
            "https://user@a.example.com",
            "https://a.example.com:99999",
            "javascript://a.example.com%0a",
            "http://[::1",
        ] {
            assert!(!allowed(&p, Some("localhost"), Some(bad)), "{bad:?}");
        }
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(Pattern::parse("*"), Some(Pattern::Any));
        assert_eq!(
            Pattern::parse("HTTPS://App.Example.com/"),
            Some(Pattern::Origin("https://app.example.com".into()))
        );
        assert_eq!(
            Pattern::parse("*.example.com"),
            Some(Pattern::Suffix(".example.com".into()))
        );
        assert_eq!(Pattern::parse("https://a/b"), None);
        assert_eq!(Pattern::parse("a b"), None);
    }
}
