//! One op the worker applies with Redis up (broadcasts are pipelined in `worker.rs`);
//! with Redis away they are settled in `offline.rs`.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tracing::warn;

use super::{Op, Worker, entry, membership, scripts, subs};
use crate::cluster::{ClusterError, Inbound, Membership, identity_of};

impl Worker {
    /// One op with Redis up. On an error the op is settled locally before returning it.
    pub(super) async fn online_op(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
        op: Op,
    ) -> Result<bool, ClusterError> {
        match op {
            // `apply` pipelines broadcasts; one that gets here goes alone.
            Op::Publish {
                topic,
                payload,
                channel,
            } => {
                let mut pipe = redis::pipe();
                self.logged(&mut pipe, &topic, &payload, channel.as_deref())
                    .ignore();
                let mut queued = vec![payload];
                self.flush(hub, conn, &mut pipe, &mut queued).await?;
            }
            Op::Session { pid, member, on } => {
                let key = self.keys.pids(&self.node);
                let done: redis::RedisResult<()> = if on {
                    redis::cmd("HSET")
                        .arg(key)
                        .arg(&pid)
                        .arg(&member)
                        .query_async(conn)
                        .await
                } else {
                    redis::cmd("HDEL")
                        .arg(key)
                        .arg(&pid)
                        .query_async(conn)
                        .await
                };
                self.sessions.note(&pid, &member, on, done.is_ok());
                done.map_err(ClusterError::redis("recording a session"))?;
            }
            Op::Resume {
                pid,
                member,
                offset,
                reply,
            } => {
                let result = self.replay(hub, conn, sink, &pid, &member, offset).await;
                let lost = matches!(result, Err(ClusterError::Redis { .. }));
                let _ = reply.send(result);
                if lost {
                    return Err(ClusterError::Unavailable);
                }
            }
            Op::Watch(channel, on) => {
                let topic = self.keys.topic(&channel);
                let result = if on {
                    self.watched.insert(channel);
                    sink.subscribe(&[topic]).await
                } else {
                    self.forget_channel(&channel);
                    sink.unsubscribe(&topic).await
                };
                result.map_err(ClusterError::redis("changing a subscription"))?;
            }
            Op::Join(change) => match self.run_change(conn, &scripts::JOIN, &change).await {
                Ok((first, count)) => {
                    // A resync may have made this join first already, unannounced here.
                    let took = self.took(&change, Membership::Subscribe);
                    self.forget_pending(&change);
                    // Not first, and not because of the resync: another node holds it.
                    let key = entry(&change.channel, &change.member);
                    if first || took.is_some() {
                        self.elsewhere.remove(&key);
                    } else {
                        self.elsewhere.insert(key);
                    }
                    if first || took == Some(false) {
                        self.announce_join(hub, conn, &change, count).await?;
                    } else if took == Some(true) {
                        let env = membership(&change, Membership::Subscribe, count);
                        hub.announce(Membership::Subscribe, &env, Some(&change.member), false);
                    }
                    let _ = change.reply.send(count);
                }
                Err(e) => {
                    self.offline_op(hub, Op::Join(change));
                    return Err(e);
                }
            },
            Op::Leave(change) => {
                let result = if change.explicit && identity_of(&change.member).is_some() {
                    self.drop_everywhere(conn, &change).await
                } else {
                    self.run_change(conn, &scripts::LEAVE, &change).await
                };
                match result {
                    Ok((last, count)) => {
                        let took = self.took(&change, Membership::Unsubscribe);
                        self.forget_pending(&change);
                        if last {
                            self.elsewhere
                                .remove(&entry(&change.channel, &change.member));
                        }
                        if last || took == Some(false) {
                            self.announce(hub, conn, &change, Membership::Unsubscribe, count, true)
                                .await?;
                            if change.explicit {
                                self.control(conn, "leave", &change, None).await?;
                            }
                        } else if took == Some(true) {
                            let env = membership(&change, Membership::Unsubscribe, count);
                            let leaving = Some(change.member.as_str());
                            hub.announce(Membership::Unsubscribe, &env, leaving, false);
                        }
                        let _ = change.reply.send(count);
                    }
                    Err(e) => {
                        self.offline_op(hub, Op::Leave(change));
                        return Err(e);
                    }
                }
            }
            Op::Online(member, on) => {
                let first = match self.online(conn, &member, on).await {
                    Ok(first) => first,
                    Err(e) => {
                        self.offline_op(hub, Op::Online(member, on));
                        return Err(e);
                    }
                };
                if first {
                    hub.announce_presence(&member, on);
                }
                if on && identity_of(&member).is_some() {
                    // A new tab here joins what its identity is in on other nodes.
                    let channels: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(self.keys.member_channels(&member))
                        .query_async(conn)
                        .await
                        .map_err(ClusterError::redis("reading a member's channels"))?;
                    for channel in channels {
                        hub.adopt(&member, &channel);
                    }
                }
            }
            Op::Depart(done) => {
                let result = self.reap(hub, conn, "leave").await;
                let _ = done.send(());
                if let Err(e) = result {
                    warn!(error = %e, "could not remove this node from Redis; the others will after node-timeout");
                }
                return Ok(true);
            }
            // `apply` takes a hand-over before it gets here.
            Op::HandOver(reply) => {
                let _ = reply.send(None);
                return Ok(true);
            }
        }
        Ok(false)
    }
}
