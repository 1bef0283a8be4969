//! Where this node's Redis is: the configured address, or, with Sentinel, the primary the
//! sentinels name at each (re)connect, checked to be one; with a Redis Cluster, the primary
//! the seeds name for the slot of this cluster's keys (`shards.rs`), checked likewise. A
//! command refused with `READONLY` (the primary was demoted under the node) ends the
//! connected stretch like any Redis error, so the next connect asks again.

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ErrorKind, RedisError, Role, TlsMode};

use super::RESPONSE_TIMEOUT;
use super::shards::Shards;
use crate::cluster::ClusterError;
use crate::config::{ClusterUrl, SentinelUrl};

/// How the worker finds the Redis to connect to.
pub(super) enum Endpoint {
    Direct(Box<Client>),
    Sentinel {
        /// Keeps its connections to the sentinels from one lookup to the next.
        sentinels: Box<SentinelClient>,
        master: String,
    },
    Cluster(Box<Shards>),
}

impl Endpoint {
    /// Reads `[Cluster] redis`; nothing is connected yet. `key` is one of this cluster's
    /// keys: with a Redis Cluster, its slot is where the node connects.
    pub(super) fn new(url: &str, key: &str) -> Result<Endpoint, ClusterError> {
        if ClusterUrl::is_cluster(url) {
            let u = ClusterUrl::parse(url).map_err(|e| {
                ClusterError::Address(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "not a Redis Cluster URL",
                    e.to_string(),
                )))
            })?;
            return Ok(Endpoint::Cluster(Box::new(Shards::new(u, key.to_owned()))));
        }
        if !SentinelUrl::is_sentinel(url) {
            return Client::open(url)
                .map(|c| Endpoint::Direct(Box::new(c)))
                .map_err(ClusterError::Address);
        }
        // The configuration checked the form already; this only fails if it did not.
        let u = SentinelUrl::parse(url).map_err(|e| {
            ClusterError::Address(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a Sentinel URL",
                e.to_string(),
            )))
        })?;
        let addresses = u.sentinels.iter().map(|(host, port)| {
            if u.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b = SentinelClientBuilder::new(addresses, &u.master, SentinelServerType::Master)
            .map_err(ClusterError::Address)?
            .set_client_to_redis_db(u.db);
        if u.tls {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
        if let Some(user) = &u.username {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(password) = &u.password {
            b = b.set_client_to_redis_password(password);
        }
        if let Some(user) = &u.sentinel_username {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &u.sentinel_password {
            b = b.set_client_to_sentinel_password(password);
        }
        let sentinels = b.build().map_err(ClusterError::Address)?;
        Ok(Endpoint::Sentinel {
            sentinels: Box::new(sentinels),
            master: u.master,
        })
    }

    /// A client for the primary as of now. With Sentinel the sentinels are asked every
    /// time: after a failover the address known before is a replica's, or nobody's.
    pub(super) async fn primary(&mut self) -> Result<Client, ClusterError> {
        match self {
            Endpoint::Direct(client) => Ok(Client::clone(client)),
            Endpoint::Sentinel { sentinels, .. } => {
                tokio::time::timeout(RESPONSE_TIMEOUT, sentinels.async_get_client())
                    .await
                    .map_err(|_| {
                        ClusterError::Timeout("finding the primary through the sentinels")
                    })?
                    .map_err(ClusterError::redis(
                        "finding the primary through the sentinels",
                    ))
            }
            Endpoint::Cluster(shards) => shards.primary().await,
        }
    }

    /// Checks that `conn` reached a primary. The sentinels' answer may be stale by the time
    /// the node connects (a failover demotes the old primary when it comes back), and a
    /// node writing to a replica would be cut off from the others. A plain address is
    /// taken as given: some Redis-compatible servers refuse `ROLE`.
    pub(super) async fn check(&self, conn: &mut MultiplexedConnection) -> Result<(), ClusterError> {
        let master = match self {
            Endpoint::Direct(_) => return Ok(()),
            Endpoint::Sentinel { master, .. } => format!("{master:?}"),
            Endpoint::Cluster(_) => "the slot of this cluster's keys".to_owned(),
        };
        let role: Role = redis::cmd("ROLE")
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("asking the primary its role"))?;
        match role {
            Role::Primary { .. } => Ok(()),
            _ => Err(ClusterError::NotPrimary(master)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_picks_the_way() {
        for (url, sentinel) in [
            ("redis://h:6379/0", false),
            ("rediss://h:6380/0", false),
            ("redis+sentinel://:pw@s1,s2:26380/mymaster/1", true),
            (
                "rediss+sentinel://s1:26379/mymaster?sentinel-password=x",
                true,
            ),
        ] {
            match Endpoint::new(url, "{realtime}:log") {
                Ok(Endpoint::Sentinel { master, .. }) if sentinel => assert_eq!(master, "mymaster"),
                Ok(Endpoint::Direct(_)) if !sentinel => {}
                Ok(_) => panic!("{url}: the wrong way"),
                Err(e) => panic!("{url}: {e}"),
            }
        }
        assert!(Endpoint::new("redis+sentinel://s1:26379", "k").is_err());
        assert!(matches!(
            Endpoint::new("redis+cluster://n1:7000,n2:7001", "{realtime}:log"),
            Ok(Endpoint::Cluster(_))
        ));
    }
}
