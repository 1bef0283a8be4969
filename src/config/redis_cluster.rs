//! The Redis Cluster form of `[Cluster] redis`: the seed nodes to ask for the cluster's
//! layout, and the login they all share.
//!
//! `redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/]`, and
//! `rediss+cluster://` for TLS. A Redis Cluster has one database, so there is no path.

use super::sentinel::{address, credentials, masked};
use super::value::{ValueError, expected};

const CLUSTER_SCHEMES: [&str; 2] = ["redis+cluster", "rediss+cluster"];

/// A seed's port when the URL names none.
const REDIS_PORT: u16 = 6379;

const FORM: &str = "redis+cluster://[[user]:password@]host[:port][,host[:port]...]";

/// A parsed Redis Cluster URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `rediss+cluster`: TLS to every node.
    pub tls: bool,
    /// The nodes asked for the layout, in order; any one that answers is enough.
    pub seeds: Vec<(String, u16)>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Passwords stay out of logs.
impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("tls", &self.tls)
            .field("seeds", &self.seeds)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ClusterUrl {
    /// Whether `v` is meant to be in the Redis Cluster form (its scheme says so).
    pub fn is_cluster(v: &str) -> bool {
        v.split_once("://").is_some_and(|(scheme, _)| {
            CLUSTER_SCHEMES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
        })
    }

    /// Parses the Redis Cluster form; the error shows the value with its password masked.
    pub fn parse(v: &str) -> Result<ClusterUrl, ValueError> {
        Self::parse_inner(v).map_err(|why| expected(&format!("{FORM} ({why})"), &masked(v)))
    }

    fn parse_inner(v: &str) -> Result<ClusterUrl, &'static str> {
        let (scheme, rest) = v.split_once("://").ok_or("no scheme")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis+cluster" => false,
            "rediss+cluster" => true,
            _ => return Err("not a cluster scheme"),
        };
        if v.contains(char::is_whitespace) {
            return Err("spaces");
        }
        if rest.contains(['#', '?']) {
            return Err("a query or a fragment");
        }
        let authority = match rest.split_once('/') {
            Some((a, "")) => a,
            Some(_) => return Err("a path (a Redis Cluster has one database)"),
            None => rest,
        };
        let (login, hosts) = match authority.rsplit_once('@') {
            Some((login, hosts)) => (Some(login), hosts),
            None => (None, authority),
        };
        let (username, password) = match login {
            Some(login) => credentials(login)?,
            None => (None, None),
        };
        let seeds = hosts
            .split(',')
            .map(|h| address(h, REDIS_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterUrl {
            tls,
            seeds,
            username,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms() {
        let u = ClusterUrl::parse("rediss+cluster://app:p%40ss@n1:7000,[::1],n3:7002/")
            .expect("a valid url");
        assert!(u.tls);
        assert_eq!(
            u.seeds,
            [
                ("n1".to_owned(), 7000),
                ("::1".to_owned(), REDIS_PORT),
                ("n3".to_owned(), 7002)
            ]
        );
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert!(!format!("{u:?}").contains("p@ss"));
        let u = ClusterUrl::parse("REDIS+CLUSTER://h").expect("a valid url");
        assert!(!u.tls);
        assert_eq!(u.seeds, [("h".to_owned(), REDIS_PORT)]);
        assert!(ClusterUrl::is_cluster("rediss+cluster://h"));
        assert!(!ClusterUrl::is_cluster("redis+sentinel://h/m"));
    }

    #[test]
    fn malformed_forms_say_why() {
        for (bad, why) in [
            ("redis+cluster://", "an empty host"),
            ("redis+cluster://a,,b", "an empty host"),
            ("redis+cluster://h:0", "not 1-65535"),
            ("redis+cluster://h/0", "a path"),
            ("redis+cluster://h?x=1", "a query"),
            ("redis+cluster://h p", "spaces"),
        ] {
            let e = ClusterUrl::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = ClusterUrl::parse("redis+cluster://u:hunter2@h:x")
            .expect_err("a bad port")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
