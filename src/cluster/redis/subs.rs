//! The subscription connection: classic pub/sub on one Redis, sharded pub/sub
//! (`SSUBSCRIBE`, RESP3 pushes) on a Redis Cluster, where a classic `PUBLISH` would reach
//! every node of the cluster.

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Msg, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::RESPONSE_TIMEOUT;
use crate::cluster::ClusterError;

/// Where subscriptions are changed.
pub(super) enum Sink {
    Classic(PubSubSink),
    /// Every `SSUBSCRIBE` names one shard channel: the connection pairs each command with
    /// one confirmation.
    Sharded(MultiplexedConnection),
}

/// What the subscription connection hears.
pub(super) enum Stream {
    Classic(PubSubStream),
    Sharded(mpsc::UnboundedReceiver<PushInfo>),
}

/// One thing heard.
pub(super) enum Heard {
    Message(Msg),
    /// The server dropped a shard channel (its slot moved away), or confirmed that this
    /// node left it.
    Dropped(String),
    /// Nothing for the worker (a confirmation of a subscription).
    Nothing,
}

/// Opens the subscription connection to the server `client` reaches.
pub(super) async fn open(client: &Client, sharded: bool) -> Result<(Sink, Stream), ClusterError> {
    if !sharded {
        let pubsub = tokio::time::timeout(RESPONSE_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| ClusterError::Timeout("opening the subscription connection"))?
            .map_err(ClusterError::redis("opening the subscription connection"))?;
        let (sink, stream) = pubsub.split();
        return Ok((Sink::Classic(sink), Stream::Classic(stream)));
    }
    // Shard channel messages come as RESP3 pushes; RESP2 has no way to tell them apart.
    let info = client.get_connection_info().clone();
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(info.set_redis_settings(redis)).map_err(ClusterError::Address)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_push_sender(tx);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(ClusterError::redis("opening the subscription connection"))?;
    Ok((Sink::Sharded(conn), Stream::Sharded(rx)))
}

impl Sink {
    pub(super) async fn subscribe(&mut self, topics: &[String]) -> redis::RedisResult<()> {
        match self {
            Sink::Classic(sink) => sink.subscribe(topics).await,
            Sink::Sharded(conn) => {
                if topics.is_empty() {
                    return Ok(());
                }
                let mut pipe = redis::pipe();
                for topic in topics {
                    pipe.cmd("SSUBSCRIBE").arg(topic);
                }
                let answers: Vec<redis::Value> = pipe.query_async(conn).await?;
                for answer in answers {
                    answer.extract_error()?;
                }
                Ok(())
            }
        }
    }

    /// A ping on the subscription connection: its answer comes after every message the
    /// server sent on it before.
    pub(super) async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Sink::Classic(sink) => sink.ping::<redis::Value>().await.map(|_| ()),
            Sink::Sharded(conn) => {
                let answer: redis::Value = redis::cmd("PING").query_async(conn).await?;
                answer.extract_error().map(|_| ())
            }
        }
    }

    pub(super) async fn unsubscribe(&mut self, topic: &str) -> redis::RedisResult<()> {
        match self {
            Sink::Classic(sink) => sink.unsubscribe(topic).await,
            Sink::Sharded(conn) => {
                let answer: redis::Value = redis::cmd("SUNSUBSCRIBE")
                    .arg(topic)
                    .query_async(conn)
                    .await?;
                answer.extract_error().map(|_| ())
            }
        }
    }
}

impl Stream {
    /// The next thing heard; `None` when the connection is gone.
    pub(super) async fn next(&mut self) -> Option<Heard> {
        match self {
            Stream::Classic(stream) => stream.next().await.map(Heard::Message),
            Stream::Sharded(rx) => {
                let push = rx.recv().await?;
                match push.kind {
                    PushKind::Disconnection => None,
                    PushKind::SMessage => {
                        Some(Msg::from_push_info(push).map_or(Heard::Nothing, Heard::Message))
                    }
                    PushKind::SUnsubscribe => {
                        let topic = push.data.first().and_then(|v| match v {
                            redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                            _ => None,
                        });
                        Some(topic.map_or(Heard::Nothing, Heard::Dropped))
                    }
                    _ => Some(Heard::Nothing),
                }
            }
        }
    }
}
