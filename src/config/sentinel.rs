//! The Sentinel form of `[Cluster] redis`: which sentinels to ask, for which primary, with
//! which credentials.
//!
//! `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]`, with
//! `?sentinel-user=U&sentinel-password=P` when the sentinels themselves need a login, and
//! `rediss+sentinel://` for TLS to the sentinels and the primary alike. The login before
//! `@` is the primary's (its `requirepass`), because sentinels usually have none and a
//! sentinel without a password refuses `AUTH`.

use percent_encoding::percent_decode_str;

use super::value::{ValueError, expected};

/// The schemes of the Sentinel form.
const SENTINEL_SCHEMES: [&str; 2] = ["redis+sentinel", "rediss+sentinel"];

/// A sentinel's port when the URL names none.
const SENTINEL_PORT: u16 = 26379;

const FORM: &str = "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]";

/// A parsed Sentinel URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel`: TLS to the sentinels and to the primary.
    pub tls: bool,
    /// The sentinels, in the order they are asked.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels know the primary by.
    pub master: String,
    pub db: i64,
    /// The primary's login.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sentinels' login.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

/// Passwords stay out of logs.
impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SentinelUrl {
    /// Whether `v` is meant to be in the Sentinel form (its scheme says so).
    pub fn is_sentinel(v: &str) -> bool {
        v.split_once("://").is_some_and(|(scheme, _)| {
            SENTINEL_SCHEMES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
        })
    }

    /// Parses the Sentinel form; the error shows the value with its passwords masked.
    pub fn parse(v: &str) -> Result<SentinelUrl, ValueError> {
        Self::parse_inner(v).map_err(|why| expected(&format!("{FORM} ({why})"), &masked(v)))
    }

    fn parse_inner(v: &str) -> Result<SentinelUrl, &'static str> {
        let (scheme, rest) = v.split_once("://").ok_or("no scheme")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => false,
            "rediss+sentinel" => true,
            _ => return Err("not a sentinel scheme"),
        };
        if v.contains(char::is_whitespace) {
            return Err("spaces");
        }
        if rest.contains('#') {
            return Err("a fragment");
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').ok_or("no master name")?;
        let (login, hosts) = match authority.rsplit_once('@') {
            Some((login, hosts)) => (Some(login), hosts),
            None => (None, authority),
        };
        let (username, password) = match login {
            Some(login) => credentials(login)?,
            None => (None, None),
        };
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts = path.split('/');
        let master = decode(parts.next().unwrap_or(""))?;
        if master.is_empty() {
            return Err("no master name");
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or("the database is not a number")?,
        };
        if parts.next().is_some() {
            return Err("more path after the database");
        }
        let mut url = SentinelUrl {
            tls,
            sentinels,
            master,
            db,
            username,
            password,
            sentinel_username: None,
            sentinel_password: None,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair.split_once('=').ok_or("a query item without '='")?;
            let value = Some(decode(value)?).filter(|s| !s.is_empty());
            match key {
                "sentinel-user" => url.sentinel_username = value,
                "sentinel-password" => url.sentinel_password = value,
                _ => return Err("a query item other than sentinel-user, sentinel-password"),
            }
        }
        Ok(url)
    }
}

/// `user:password`, `:password` or `user`, percent-decoded; empty parts are unset.
pub(super) fn credentials(login: &str) -> Result<(Option<String>, Option<String>), &'static str> {
    let (user, password) = match login.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (login, None),
    };
    let user = Some(decode(user)?).filter(|u| !u.is_empty());
    let password = password.map(decode).transpose()?.filter(|p| !p.is_empty());
    Ok((user, password))
}

/// A sentinel's `host[:port]`, with the sentinel port by default.
fn host_port(item: &str) -> Result<(String, u16), &'static str> {
    address(item, SENTINEL_PORT).map_err(|e| match e {
        EMPTY_HOST => "an empty sentinel host",
        BAD_PORT => "a sentinel port that is not 1-65535",
        e => e,
    })
}

const EMPTY_HOST: &str = "an empty host";
const BAD_PORT: &str = "a port that is not 1-65535";

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `default` when no port is given.
pub(super) fn address(item: &str, default: u16) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(v6) = item.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an unclosed '[' in a host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("text after ']' in a host")?),
        };
        (host, port)
    } else {
        match item.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err(EMPTY_HOST);
    }
    let port = match port {
        None => default,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(BAD_PORT)?,
    };
    Ok((host.to_owned(), port))
}

fn decode(s: &str) -> Result<String, &'static str> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-encoding that is not UTF-8")
}

/// `v` with the password before `@` and any `sentinel-password` replaced by `***`.
pub(super) fn masked(v: &str) -> String {
    let (head, query) = match v.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (v, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((login, hosts)) => {
                    let user = login.split_once(':').map_or(login, |(u, _)| u);
                    let hidden = if login.contains(':') { ":***" } else { "" };
                    format!("{scheme}://{user}{hidden}@{hosts}{path}")
                }
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    if let Some(q) = query {
        let items: Vec<String> = q
            .split('&')
            .map(|item| match item.split_once('=') {
                Some(("sentinel-password", _)) => "sentinel-password=***".to_owned(),
                _ => item.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&items.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_form() {
        let u = SentinelUrl::parse(
            "rediss+sentinel://app:p%40ss@s1:26380,[::1],s3/my%20primary/2\
             ?sentinel-user=watch&sentinel-password=s%3Dcret",
        )
        .expect("a valid url");
        assert!(u.tls);
        assert_eq!(
            u.sentinels,
            [
                ("s1".to_owned(), 26380),
                ("::1".to_owned(), SENTINEL_PORT),
                ("s3".to_owned(), SENTINEL_PORT)
            ]
        );
        assert_eq!((u.master.as_str(), u.db), ("my primary", 2));
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.sentinel_username.as_deref(), Some("watch"));
        assert_eq!(u.sentinel_password.as_deref(), Some("s=cret"));
        assert!(!format!("{u:?}").contains("p@ss"));
    }

    #[test]
    fn the_short_form() {
        let u = SentinelUrl::parse("REDIS+SENTINEL://:pw@h/mymaster").expect("a valid url");
        assert!(!u.tls);
        assert_eq!(u.sentinels, [("h".to_owned(), SENTINEL_PORT)]);
        assert_eq!((u.master.as_str(), u.db), ("mymaster", 0));
        assert_eq!((u.username, u.password.as_deref()), (None, Some("pw")));
        assert_eq!((u.sentinel_username, u.sentinel_password), (None, None));
        assert!(SentinelUrl::is_sentinel("rediss+sentinel://h/m"));
        assert!(!SentinelUrl::is_sentinel("redis://h:6379/0"));
    }

    #[test]
    fn malformed_forms_say_why() {
        for (bad, why) in [
            ("redis+sentinel://h:26379", "no master name"),
            ("redis+sentinel://h:26379/", "no master name"),
            ("redis+sentinel:///m", "an empty sentinel host"),
            ("redis+sentinel://a,,b/m", "an empty sentinel host"),
            ("redis+sentinel://h:0/m", "not 1-65535"),
            ("redis+sentinel://h:x/m", "not 1-65535"),
            ("redis+sentinel://fe80::1/m", "not 1-65535"),
            ("redis+sentinel://[::1/m", "unclosed"),
            ("redis+sentinel://h/m/x", "database is not a number"),
            ("redis+sentinel://h/m/-1", "database is not a number"),
            ("redis+sentinel://h/m/1/2", "more path"),
            ("redis+sentinel://h/m?db=1", "other than sentinel-user"),
            ("redis+sentinel://h/m?sentinel-password", "without '='"),
            ("redis+sentinel://h/m#x", "fragment"),
            ("redis+sentinel://h /m", "spaces"),
            ("redis+sentinel://h/%ff", "not UTF-8"),
        ] {
            let e = SentinelUrl::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("redis+sentinel://[[user]:password@]"), "{e}");
        }
    }

    #[test]
    fn errors_hide_passwords() {
        let e = SentinelUrl::parse("redis+sentinel://u:hunter2@h/m/x?sentinel-password=topsecret")
            .expect_err("a bad database")
            .to_string();
        assert!(!e.contains("hunter2") && !e.contains("topsecret"), "{e}");
        assert!(
            e.contains("redis+sentinel://u:***@h/m/x?sentinel-password=***"),
            "{e}"
        );
    }
}
