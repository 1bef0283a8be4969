//! Value syntax of the configuration file: booleans, durations, sizes, counts, lists, URLs.
//!
//! Every parser returns a [`ValueError`], which reads "expected ..., got \"...\""; the
//! caller adds file, line, section and key.

use std::time::Duration;

/// A value its key cannot take; [`super::ConfigError::InvalidValue`] says where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not of the form the key takes.
    #[error("expected {what}, got {got:?}")]
    Expected { what: String, got: String },
    /// `[Cluster] node-timeout` not longer than `heartbeat`: a node would be thought dead
    /// between two of its beats.
    #[error(
        "must be longer than heartbeat ({} is not longer than {})",
        humantime::format_duration(*.node_timeout),
        humantime::format_duration(*.heartbeat)
    )]
    NodeTimeoutNotAboveHeartbeat {
        node_timeout: Duration,
        heartbeat: Duration,
    },
    /// `[Cluster] bus-shards` above 1 without a Redis Cluster to spread over.
    #[error("must be 1 unless [Cluster] redis is a redis+cluster:// URL (got {0})")]
    BusShardsWithoutRedisCluster(usize),
}

/// The common "expected X, got "Y"" error.
pub(super) fn expected(what: &str, got: &str) -> ValueError {
    ValueError::Expected {
        what: what.to_owned(),
        got: got.to_owned(),
    }
}

/// Booleans as the original's goconfig read them (`t`, `y`, `on`, ...), case-insensitively.
pub(super) fn boolean(v: &str) -> Result<bool, ValueError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
        "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
        _ => Err(expected("a boolean (true/false, yes/no, on/off, 1/0)", v)),
    }
}

/// A duration: a plain number is seconds (the legacy `reconnect-timeout = 8`), otherwise a
/// number with one unit: `ms`, `s`, `m`, `h` (decimals allowed, e.g. `1.5s`).
pub(super) fn duration(v: &str) -> Result<Duration, ValueError> {
    let err = || expected("a duration (e.g. 8, 500ms, 25s, 2m)", v);
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let millis: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => 1,
        "" | "s" | "sec" | "secs" => 1_000,
        "m" | "min" | "mins" => 60_000,
        "h" => 3_600_000,
        _ => return Err(err()),
    };
    // Digits only (no sign, exponent, inf or NaN), so the value cannot be negative.
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(err());
    }
    if let Ok(n) = number.parse::<u64>() {
        // Whole numbers stay exact (no float rounding of e.g. 500ms).
        return n
            .checked_mul(millis)
            .map(Duration::from_millis)
            .ok_or_else(err);
    }
    let n: f64 = number.parse().map_err(|_| err())?;
    Duration::try_from_secs_f64(n * millis as f64 / 1000.0).map_err(|_| err())
}

/// A size in bytes: plain bytes, or decimal `K`/`M`/`G` (with optional `B`), or binary
/// `KiB`/`MiB`/`GiB`. Decimal because Socket.IO's own default `maxHttpBufferSize` is 1e6.
pub(super) fn size(v: &str) -> Result<usize, ValueError> {
    let err = || expected("a size in bytes (e.g. 1000000 or 1M)", v);
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        _ => return Err(err()),
    };
    let n: usize = number.parse().map_err(|_| err())?;
    n.checked_mul(scale).ok_or_else(err)
}

/// A plain non-negative integer (counts, limits).
pub(super) fn count<T: std::str::FromStr>(v: &str) -> Result<T, ValueError> {
    v.parse().map_err(|_| expected("a whole number", v))
}

/// A count that must be at least 1 because 0 would make the server unusable.
pub(super) fn positive(v: &str) -> Result<usize, ValueError> {
    match count::<usize>(v)? {
        0 => Err(expected("a whole number of at least 1", v)),
        n => Ok(n),
    }
}

/// A duration that must not be zero (timers that would spin or time out at once).
pub(super) fn nonzero_duration(v: &str) -> Result<Duration, ValueError> {
    match duration(v)? {
        d if d.is_zero() => Err(expected("a duration greater than 0", v)),
        d => Ok(d),
    }
}

/// A TCP port, 1-65535.
pub(super) fn port(v: &str) -> Result<u16, ValueError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(expected("a port number (1-65535)", v)),
    }
}

/// A list separated by commas and/or whitespace; empty items are dropped.
pub(super) fn list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An optional string: the empty value means "not set".
pub(super) fn optional(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

/// A single word (no whitespace), e.g. a user name or a key prefix.
pub(super) fn word(v: &str, what: &str) -> Result<String, ValueError> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(expected(what, v));
    }
    Ok(v.to_owned())
}

/// A URL with one of `schemes` (e.g. `["http", "https"]`) and a non-empty host part.
/// Only the shape is checked here; the client that uses it parses it fully.
pub(super) fn url(v: &str, schemes: &[&str]) -> Result<String, ValueError> {
    let what = || {
        let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        format!("a URL starting with {}", names.join(" or "))
    };
    let Some((scheme, rest)) = v.split_once("://") else {
        return Err(expected(&what(), &redacted(v)));
    };
    let scheme_ok = schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    if !scheme_ok || host.is_empty() || host.starts_with(':') || v.contains(char::is_whitespace) {
        return Err(expected(&what(), &redacted(v)));
    }
    Ok(v.to_owned())
}

/// `url` with the password of its `user:password@` part replaced by `***`, for errors and
/// logs: a configuration's secrets never reach a journal.
pub fn redacted(url: &str) -> String {
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((login, host)) => {
            let user = login.split(':').next().unwrap_or("");
            let hidden = if login.contains(':') { ":***" } else { "" };
            format!("{head}{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// One of a fixed set of words, case-insensitively; returns the lower-case form.
pub(super) fn one_of(v: &str, allowed: &[&str]) -> Result<String, ValueError> {
    let lower = v.to_ascii_lowercase();
    if allowed.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(expected(&format!("one of {}", allowed.join(", ")), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for t in ["True", "true", "YES", "on", "1", "t", "Y"] {
            assert_eq!(boolean(t), Ok(true), "{t}");
        }
        for f in ["False", "false", "no", "OFF", "0", "f", "N"] {
            assert_eq!(boolean(f), Ok(false), "{f}");
        }
        let e = boolean("maybe").unwrap_err().to_string();
        assert!(
            e.contains("expected a boolean") && e.contains("\"maybe\""),
            "{e}"
        );
        assert!(boolean("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(duration("25 s"), Ok(Duration::from_secs(25)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in [
            "", "s", "-1", "1x", "1e3", ".5", "5.", "NaN", "inf", "1.2.3s", "9e999",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(duration("99999999999999999999999999h").is_err());
        assert!(nonzero_duration("0s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1000000"), Ok(1_000_000));
        assert_eq!(size("1M"), Ok(1_000_000));
        assert_eq!(size("64k"), Ok(64_000));
        assert_eq!(size("64 KB"), Ok(64_000));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        for bad in ["", "abc", "-1", "1.5M", "1T", "M"] {
            let e = size(bad).unwrap_err().to_string();
            assert!(e.starts_with("expected a size in bytes (e.g. 1000000 or 1M), got"));
        }
        assert!(size("99999999999999999999G").is_err());
        assert!(size(&format!("{}G", usize::MAX)).is_err());
    }

    #[test]
    fn counts_ports_lists() {
        assert_eq!(count::<usize>("100"), Ok(100));
        assert!(count::<usize>("-1").is_err());
        assert!(positive("0").is_err());
        assert_eq!(port("843"), Ok(843));
        assert!(port("0").is_err() && port("65536").is_err());
        assert_eq!(list(" a, b  c,,d "), ["a", "b", "c", "d"]);
        assert!(list("  , ").is_empty());
        assert_eq!(optional(""), None);
        assert!(word("a b", "a user name").is_err());
    }

    #[test]
    fn redacted_urls_hide_only_the_password() {
        assert_eq!(
            redacted("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redacted("https://u:p@w@example.com/x?a=b@c"),
            "https://u:***@example.com/x?a=b@c"
        );
        assert_eq!(redacted("https://u@example.com"), "https://u@example.com");
        assert_eq!(redacted("http://example.com/a@b"), "http://example.com/a@b");
        assert_eq!(redacted("not a url:pw@x"), "not a url:***@x");
        let err = url("redis://:s3cret@h:6379 x", &["redis"])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn urls() {
        let web = ["http", "https"];
        assert!(url("http://localhost:8080/api/realtime/monitor", &web).is_ok());
        assert!(url("HTTPS://user:pw@example.com", &web).is_ok());
        for bad in [
            "localhost",
            "ftp://x",
            "http://",
            "http:///x",
            "http://a b",
            "http://:80",
        ] {
            assert!(url(bad, &web).is_err(), "{bad}");
        }
        assert!(url("redis://h:6379/0", &["redis", "rediss"]).is_ok());
    }
}
