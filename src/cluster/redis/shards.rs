//! Redis Cluster: which node is the primary of the one slot all of this cluster's keys
//! and shard channels hash to. The seeds (and every node a seed named before) are asked
//! `CLUSTER SLOTS` at each (re)connect, so a failover or a slot move is followed by
//! asking again, as with Sentinel.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, Value,
};
use tracing::debug;

use crate::cluster::ClusterError;
use crate::config::ClusterUrl;

/// How long one seed may take to connect and answer before the next one is asked.
const SEED_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's `host` and `port`.
type Addr = (String, u16);

pub(super) struct Shards {
    url: ClusterUrl,
    /// A key of this cluster: its slot is the slot of every key (they share a hash tag).
    key: String,
    /// Learnt from the first seed that answers; it never changes.
    slot: Option<u16>,
    /// Nodes the seeds named, asked after the seeds: the configured seeds may all have
    /// been replaced since.
    known: Vec<Addr>,
}

impl Shards {
    pub(super) fn new(url: ClusterUrl, key: String) -> Shards {
        Shards {
            url,
            key,
            slot: None,
            known: Vec::new(),
        }
    }

    /// A client for `host:port` with the URL's login and TLS.
    pub(super) fn client(&self, host: &str, port: u16) -> Result<Client, ClusterError> {
        let addr = if self.url.tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let mut redis = RedisConnectionInfo::default();
        if let Some(user) = &self.url.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.url.password {
            redis = redis.set_password(password);
        }
        let info: ConnectionInfo = addr
            .into_connection_info()
            .map_err(ClusterError::Address)?
            .set_redis_settings(redis);
        Client::open(info).map_err(ClusterError::Address)
    }

    /// A client for the primary that owns the slot now, from the first node that tells.
    pub(super) async fn primary(&mut self) -> Result<Client, ClusterError> {
        let mut candidates: Vec<Addr> = Vec::new();
        for n in self.url.seeds.iter().chain(&self.known) {
            if !candidates.contains(n) {
                candidates.push(n.clone());
            }
        }
        let mut last = ClusterError::Unavailable;
        for (host, port) in candidates {
            let found = tokio::time::timeout(SEED_TIMEOUT, self.ask(&host, port))
                .await
                .unwrap_or(Err(ClusterError::Timeout("asking a seed for the slots")));
            match found {
                Ok((owner, nodes)) => {
                    for n in nodes {
                        if !self.url.seeds.contains(&n) && !self.known.contains(&n) {
                            self.known.push(n);
                        }
                    }
                    let (host, port) = owner;
                    debug!(%host, port, slot = ?self.slot, "the slot's primary");
                    return self.client(&host, port);
                }
                Err(e) => {
                    debug!(%host, port, error = %e, "a Redis Cluster seed did not tell");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Asks one node: the slot's primary, and every node it knows.
    async fn ask(&mut self, host: &str, port: u16) -> Result<(Addr, Vec<Addr>), ClusterError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(SEED_TIMEOUT))
            .set_response_timeout(Some(SEED_TIMEOUT));
        let mut conn: MultiplexedConnection = self
            .client(host, port)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(ClusterError::redis("connecting to a seed"))?;
        let slot = match self.slot {
            Some(s) => s,
            None => {
                let s: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(&self.key)
                    .query_async(&mut conn)
                    .await
                    .map_err(ClusterError::redis("asking a seed for the key slot"))?;
                self.slot = Some(s);
                s
            }
        };
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .map_err(ClusterError::redis("asking a seed for the slots"))?;
        owner_of(&slots, slot, host).ok_or(ClusterError::Answer(
            "no primary owns the slot of this cluster's keys",
        ))
    }
}

/// From a `CLUSTER SLOTS` answer: the primary owning `slot`, and every node named. A node
/// named without an address (`""` or `"?"`) is the one asked, `asked`.
fn owner_of(slots: &Value, slot: u16, asked: &str) -> Option<(Addr, Vec<Addr>)> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    let node = |v: &Value| -> Option<Addr> {
        let Value::Array(fields) = v else { return None };
        let host = match fields.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = match fields.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            _ => return None,
        };
        let host = if host.is_empty() || host == "?" {
            asked.to_owned()
        } else {
            host
        };
        Some((host, port))
    };
    let mut owner = None;
    let mut nodes = Vec::new();
    for range in ranges {
        let Value::Array(r) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (r.first(), r.get(1)) else {
            continue;
        };
        let members: Vec<Addr> = r.iter().skip(2).filter_map(node).collect();
        if (*start..=*end).contains(&i64::from(slot)) && r.len() > 2 {
            owner = r.get(2).and_then(node);
        }
        nodes.extend(members);
    }
    owner.map(|o| (o, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn the_owner_is_the_first_node_of_its_range() {
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("", 7001),
                node("10.0.0.5", 7004),
            ]),
        ]);
        let (owner, nodes) = owner_of(&slots, 42, "seed").expect("an owner");
        assert_eq!(owner, ("10.0.0.1".to_owned(), 7000));
        assert_eq!(nodes.len(), 4);
        let (owner, _) = owner_of(&slots, 9000, "seed").expect("an owner");
        assert_eq!(owner, ("seed".to_owned(), 7001));
        assert!(owner_of(&Value::Array(vec![]), 42, "seed").is_none());
    }

    #[test]
    fn the_cluster_publish_script_is_sharded() {
        use super::super::scripts::{publish, publish_lua};
        assert!(publish_lua(true).contains("redis.call('SPUBLISH'"));
        assert!(!publish_lua(true).contains("redis.call('PUBLISH'"));
        assert_ne!(publish(true).get_hash(), publish(false).get_hash());
    }
}
