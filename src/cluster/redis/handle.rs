//! What the hub calls: [`RedisCluster`] as its [`Bus`] and [`Presence`]. Each call only
//! queues an op for the worker (or a bus shard, when spread); the HTTP API's questions
//! are asked of Redis directly.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Op, RedisCluster, history, queries};
use crate::cluster::{Bus, ChannelInfo, Envelope, History, Presence, Query, Replay, Settle, wire};

impl Bus for RedisCluster {
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        if let Some(s) = &self.spread {
            return s.publish(envelope, attachments, to);
        }
        let topic = match (to, envelope.channel.as_deref()) {
            (Some(_), _) => self.keys.direct(),
            (None, Some(channel)) => self.keys.topic(channel),
            (None, None) => return,
        };
        let payload = wire::encode(&self.node, envelope, attachments, to, None);
        // A history answer is JSON: a broadcast with binary attachments is not kept.
        let channel = match (to, attachments.is_empty()) {
            (None, true) if self.history.size > 0 => envelope.channel.clone(),
            _ => None,
        };
        let _ = self.ops.send(Op::Publish {
            topic,
            payload,
            channel,
        });
    }

    fn watch(&self, channel: &str, on: bool) {
        // Membership events stay with presence, in its slot; spread broadcasts on theirs.
        let _ = self.ops.send(Op::Watch(channel.to_owned(), on));
        if let Some(s) = &self.spread {
            s.watch(channel, on);
        }
    }

    fn sequenced(&self) -> bool {
        self.spread.is_none()
    }

    fn session(&self, pid: &str, member: &str, on: bool) {
        let (pid, member) = (pid.to_owned(), member.to_owned());
        let _ = self.ops.send(Op::Session { pid, member, on });
    }

    fn replayable(&self, offset: u64) -> bool {
        self.spread.is_none() && offset >= self.floor.load(Ordering::Acquire)
    }

    fn resume(&self, pid: &str, member: &str, offset: u64) -> Option<Replay> {
        if self.spread.is_some() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        let (pid, member) = (pid.to_owned(), member.to_owned());
        let _ = self.ops.send(Op::Resume {
            pid,
            member,
            offset,
            reply,
        });
        Some(rx)
    }
}

impl Presence for RedisCluster {
    fn join(&self, channel: &str, member: &str, options: &Value) -> Settle {
        let (change, settle) = self.change(channel, member, options, false);
        let _ = self.ops.send(Op::Join(change));
        match (&self.spread, settle) {
            // The ack waits for the channel's shard to listen too: a broadcast published
            // anywhere after it reaches the member.
            (Some(s), Settle::Later(count)) => s.once_listening(channel, count),
            (_, settle) => settle,
        }
    }

    fn leave(&self, channel: &str, member: &str, options: &Value, explicit: bool) -> Settle {
        let (change, settle) = self.change(channel, member, options, explicit);
        let _ = self.ops.send(Op::Leave(change));
        settle
    }

    fn online(&self, member: &str, on: bool) -> bool {
        let _ = self.ops.send(Op::Online(member.to_owned(), on));
        false
    }

    fn channels(&self) -> Query<Vec<(String, usize)>> {
        let (conn, keys) = (self.connection(), self.keys.clone());
        Some(Box::pin(async move {
            queries::channels(&mut conn?, &keys).await
        }))
    }

    fn history(&self, channel: &str, since: Option<u64>, limit: usize) -> Query<History> {
        if self.history.size == 0 {
            return None;
        }
        let conn = self.connection();
        let (keys, keeping, channel) = (self.keys.clone(), self.history, channel.to_owned());
        Some(Box::pin(async move {
            history::read(&mut conn?, &keys, keeping, &channel, since, limit).await
        }))
    }

    fn channel(&self, name: &str) -> Query<ChannelInfo> {
        let (conn, keys, name) = (self.connection(), self.keys.clone(), name.to_owned());
        Some(Box::pin(async move {
            queries::channel(&mut conn?, &keys, &name).await
        }))
    }
}
