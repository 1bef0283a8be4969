//! Identities that vanished with Redis's data: a node that died while Redis restarted
//! empty never writes its members back, so nobody reaps them. The survivors remember
//! whom the others held and, once a dead node would have been reaped, announce the
//! ones nobody wrote back, each once cluster-wide.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tracing::info;

use super::{BATCH, Worker, membership, quiet};
use crate::cluster::{ClusterError, Inbound, Membership, member_key};

/// KEYS: none (the keys are built from the prefix). ARGV: prefix, data set epoch, how
/// long a claim is kept in ms, then channel, member for each.
/// Returns, flat, for each: 0 if the member is in the channel, 1 if it is not and this
/// call claimed its announcement, 2 if another node claimed it, 3 if the node that reaped
/// it announced it but could not tell the others (this node's members hear it here); the
/// members after.
const VANISHED_LUA: &str = r"
local P = ARGV[1]
local out = {}
for i = 4, #ARGV - 1, 2 do
  local ch, m = ARGV[i], ARGV[i + 1]
  local key = P .. ':ch:' .. ch
  local state = 0
  if redis.call('HEXISTS', key, m) == 0 then
    state = 2
    local claim = P .. ':gone:' .. ARGV[2] .. ':' .. ch .. '\0' .. m
    if redis.call('SET', claim, '1', 'NX', 'PX', ARGV[3]) then
      state = 1
    elseif redis.call('GET', claim) == 'told' then
      state = 3
    end
  end
  table.insert(out, state)
  table.insert(out, redis.call('HLEN', key))
end
return out
";

static VANISHED: LazyLock<Script> = LazyLock::new(|| Script::new(VANISHED_LUA));

impl Worker {
    /// After Redis lost its data: what other nodes held, checked once every live node
    /// has had the time to write its presence back.
    pub(super) fn suspect_vanished(&mut self) {
        if !self.elsewhere.is_empty() {
            let due = Instant::now() + self.timeout + self.window;
            self.suspects = Some((due, self.elsewhere.iter().cloned().collect()));
        }
    }

    /// Announces what nobody wrote back, when due.
    pub(super) async fn settle_vanished(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), ClusterError> {
        if self
            .suspects
            .as_ref()
            .is_none_or(|(due, _)| Instant::now() < *due)
        {
            return Ok(());
        }
        let Some((_, mut entries)) = self.suspects.take() else {
            return Ok(());
        };
        // What was heard leaving meanwhile is settled.
        entries.retain(|e| self.elsewhere.contains(e));
        let epoch = self.epoch.clone().unwrap_or_default();
        let keep = (self.timeout + self.window).saturating_mul(2);
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let mut gone = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let pairs: Vec<(&str, &str)> =
                chunk.iter().filter_map(|e| e.split_once('\0')).collect();
            let mut call = VANISHED.arg(&self.keys.prefix);
            call.arg(&epoch).arg(keep_ms);
            for (channel, member) in &pairs {
                call.arg(*channel).arg(*member);
            }
            let flat: Vec<usize> = call.invoke_async(conn).await.map_err(ClusterError::redis(
                "checking what vanished with Redis's data",
            ))?;
            for ((channel, member), state) in pairs.iter().zip(flat.chunks_exact(2)) {
                if state[0] == 0 {
                    continue;
                }
                self.elsewhere.remove(&super::entry(channel, member));
                // The node that claimed it announces it; the others hear it on the bus.
                let env = membership(&quiet(channel, member), Membership::Unsubscribe, state[1]);
                match state[0] {
                    1 => {
                        hub.announce(Membership::Unsubscribe, &env, None, true);
                        gone.push(env);
                    }
                    // Its reaper told the monitor already: only this node's members.
                    3 => hub.announce(Membership::Unsubscribe, &env, None, false),
                    _ => {}
                }
            }
        }
        if !gone.is_empty() {
            info!(node = %self.node, changes = gone.len(), "removed the members nobody wrote back after Redis lost its data");
        }
        self.send_many(conn, &gone).await
    }

    /// Leaves this node announced while reaping whose publish failed with Redis. When
    /// Redis lost its data, the other nodes find them by the lost-data check, so they are
    /// marked there as announced (each node's members hear them, the monitor not again);
    /// otherwise they are published at the next heartbeat.
    pub(super) async fn tell_unsent(
        &mut self,
        conn: &mut MultiplexedConnection,
        lost_epoch: Option<&str>,
    ) -> Result<(), ClusterError> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let Some(epoch) = lost_epoch else {
            let unsent = std::mem::take(&mut self.unsent);
            for (i, chunk) in unsent.chunks(BATCH).enumerate() {
                if let Err(e) = self.send_many(conn, chunk).await {
                    self.unsent.extend(unsent.into_iter().skip(i * BATCH));
                    return Err(e);
                }
            }
            return Ok(());
        };
        let keep = (self.timeout + self.window).saturating_mul(2);
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for env in &self.unsent {
            let (Some(channel), Some(identity)) = (env.channel.as_deref(), env.identity.as_deref())
            else {
                continue;
            };
            let key = super::entry(channel, &member_key(Some(identity), ""));
            pipe.cmd("SET")
                .arg(format!("{}:gone:{epoch}:{key}", self.keys.prefix))
                .arg("told")
                .arg("PX")
                .arg(keep_ms)
                .ignore();
        }
        let _: () = pipe.query_async(conn).await.map_err(ClusterError::redis(
            "marking leaves announced before Redis lost its data",
        ))?;
        self.unsent.clear();
        Ok(())
    }
}
