//! Why the cluster could not do something: the one error type of this layer.

/// A cluster failure. None is fatal to a running node: it settles changes locally until
/// the cluster is back; only a bad address refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configured Redis address cannot be used.
    #[error("[Cluster] redis: {0}")]
    Address(#[source] redis::RedisError),
    /// Redis is not reachable now.
    #[error("redis unavailable")]
    Unavailable,
    /// A Redis command failed; `doing` says which.
    #[error("redis {doing}: {source}")]
    Redis {
        doing: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// A script answered other than its contract says; says which.
    #[error("redis answered unexpectedly: {0}")]
    Answer(&'static str),
    /// Redis took too long to answer.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The server the sentinels (or a Redis Cluster's seeds) named as the primary of this
    /// master name (or slot) answered that it is not one (a failover is under way).
    #[error("the server named as primary of {0} is not a primary (yet)")]
    NotPrimary(String),
    /// A Redis Cluster moved the slot of this cluster's keys to another node.
    #[error("the Redis Cluster moved this cluster's slot to another node")]
    Moved,
    /// The subscription connection ended.
    #[error("the subscription connection closed")]
    Closed,
    /// A session cannot be resumed exactly; says why.
    #[error("not recoverable: {0}")]
    Unrecoverable(&'static str),
    /// This node is cut off from the in-memory bus.
    #[error("node {0:?} is cut off from the bus")]
    Cut(String),
}

impl ClusterError {
    /// Wraps a Redis error with what was being done.
    pub(crate) fn redis(doing: &'static str) -> impl FnOnce(redis::RedisError) -> ClusterError {
        move |source| ClusterError::Redis { doing, source }
    }
}
