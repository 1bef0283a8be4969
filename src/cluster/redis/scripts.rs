//! The Redis side of presence, as Lua scripts so each change is atomic and exactly one
//! node learns that it was the first or the last.
//!
//! Keys, under the configured prefix `P` (on a Redis Cluster `{P}`, one hash tag, so each
//! script touches one slot):
//! - `P:sub:{node}`: set of `channel \0 member` this node holds;
//! - `P:ch:{channel}`: hash member → how many nodes hold it in the channel;
//! - `P:channels`: set of channels with members;
//! - `P:ms:{member}`: set of channels the member is in, cluster-wide (a new tab on
//!   another node joins them);
//! - `P:nm:{node}`: set of members with sessions on this node;
//! - `P:members`: hash member → how many nodes it has sessions on;
//! - `P:nodes`: sorted set node → last heartbeat (Redis clock, ms);
//! - `P:reaping`: set of dead nodes whose holdings are being undone;
//! - `P:gone:{epoch}:{channel \0 member}`: which node announces a member nobody wrote
//!   back after Redis lost its data (`vanished.rs`);
//! - `P:ctlog`: the control messages (an identity joined or left a channel), a stream
//!   for the nodes that were away when they went out (`control.rs`);
//! - `P:log`: the message log, a stream of every broadcast (see `log.rs`);
//! - `P:h:{channel}`: the channel's history, a stream with the log's ids (`history.rs`),
//!   and `P:hg:{channel}` the last id that left it;
//! - `P:pids:{node}`: hash pid → member key of this node's sessions, for their
//!   resumption on another node; it expires when the node stops beating.

use std::sync::LazyLock;

use redis::Script;

// Each script's SHA1 is computed once; Redis runs it by that hash (EVALSHA).
pub(super) static JOIN: LazyLock<Script> = LazyLock::new(|| Script::new(JOIN_LUA));
pub(super) static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(LEAVE_LUA));
pub(super) static DROP: LazyLock<Script> = LazyLock::new(|| Script::new(DROP_LUA));
pub(super) static ONLINE: LazyLock<Script> = LazyLock::new(|| Script::new(ONLINE_LUA));
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(TOUCH_LUA));
pub(super) static REAP: LazyLock<Script> = LazyLock::new(|| Script::new(REAP_LUA));
pub(super) static FIND: LazyLock<Script> = LazyLock::new(|| Script::new(FIND_LUA));
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));
/// The publish script for a Redis Cluster: sharded pub/sub (see `publish_lua`).
static SPUBLISH: LazyLock<(String, Script)> = LazyLock::new(|| {
    let lua = PUBLISH_LUA.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'");
    let script = Script::new(&lua);
    (lua, script)
});
pub(super) static HISTORY: LazyLock<Script> = LazyLock::new(|| Script::new(HISTORY_LUA));

/// Appends a broadcast to the log and publishes it with its stream id, in one step: the
/// order of the log is the order every node hears. Run by its hash in pipelines.
/// With a history size, the broadcast is kept in its channel's history too, with the same
/// id; what that pushes out is remembered as gone.
/// KEYS: log, topic, h:{channel}, hg:{channel}. ARGV: bus message, recovery window in ms,
/// most entries kept, history size (0: none), history ttl in ms.
pub(super) const PUBLISH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'p', ARGV[1])
redis.call('XTRIM', KEYS[1], 'MINID', '~', now - tonumber(ARGV[2]))
local size = tonumber(ARGV[4])
if size > 0 then
  -- A history the log is behind (the log was lost, not the history) must not stop a
  -- publish: the broadcast is then not kept.
  redis.pcall('XADD', KEYS[3], id, 'p', ARGV[1])
  local over = redis.call('XLEN', KEYS[3]) - size
  if over > 0 then
    local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', over)
    redis.call('XTRIM', KEYS[3], 'MAXLEN', size)
    redis.call('SET', KEYS[4], old[#old][1], 'PX', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('PUBLISH', KEYS[2], id .. '\n' .. ARGV[1])
return id
";

/// The publish script; `sharded` on a Redis Cluster, where it publishes with `SPUBLISH` so
/// a broadcast reaches the shard of its slot only.
pub(super) fn publish_lua(sharded: bool) -> &'static str {
    if sharded { &SPUBLISH.0 } else { PUBLISH_LUA }
}

pub(super) fn publish(sharded: bool) -> &'static Script {
    if sharded { &SPUBLISH.1 } else { &PUBLISH }
}

/// A channel's history: what is older than its ttl leaves it first (remembered as gone).
/// KEYS: h:{channel}, hg:{channel}, log. ARGV: history ttl in ms.
/// Returns {last id gone ('0-0': none), the log's last id ('0-0': empty), entries}.
const HISTORY_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local edge = now - tonumber(ARGV[1])
if edge > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '(' .. edge .. '-0')
  if #old > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', edge)
    redis.call('SET', KEYS[2], old[#old][1], 'PX', ARGV[1])
  end
end
local gone = redis.call('GET', KEYS[2]) or '0-0'
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local current = '0-0'
if #last > 0 then current = last[1][1] end
return {gone, current, redis.call('XRANGE', KEYS[1], '-', '+')}
";

/// Which member holds session `pid` on any node still known (a dead node stays known
/// until it is reaped, after the recovery window). KEYS: nodes. ARGV: prefix, pid.
const FIND_LUA: &str = r"
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local m = redis.call('HGET', ARGV[1] .. ':pids:' .. node, ARGV[2])
  if m then return m end
end
return false
";

/// Subscriptions of this node, as many as given in one step (a resync writes thousands).
/// KEYS: sub:{node}, channels. ARGV: prefix, then channel, member for each.
/// Returns, flat, for each: 1 if the member is new in the channel cluster-wide, members
/// after.
const JOIN_LUA: &str = r"
local P = ARGV[1]
local out = {}
for i = 2, #ARGV - 1, 2 do
  local ch, m = ARGV[i], ARGV[i + 1]
  local key = P .. ':ch:' .. ch
  local n = 0
  if redis.call('SADD', KEYS[1], ch .. '\0' .. m) == 1 then
    n = redis.call('HINCRBY', key, m, 1)
    redis.call('SADD', KEYS[2], ch)
    redis.call('SADD', P .. ':ms:' .. m, ch)
  end
  table.insert(out, n == 1 and 1 or 0)
  table.insert(out, redis.call('HLEN', key))
end
return out
";

/// Subscriptions this node no longer holds, as many as given in one step.
/// KEYS: sub:{node}, channels. ARGV: prefix, then channel, member for each.
/// Returns, flat, for each: 1 if the member left the channel cluster-wide, members after.
const LEAVE_LUA: &str = r"
local P = ARGV[1]
local out = {}
for i = 2, #ARGV - 1, 2 do
  local ch, m = ARGV[i], ARGV[i + 1]
  local key = P .. ':ch:' .. ch
  local last = 0
  if redis.call('SREM', KEYS[1], ch .. '\0' .. m) == 1 then
    if redis.call('HINCRBY', key, m, -1) <= 0 then
      redis.call('HDEL', key, m)
      redis.call('SREM', P .. ':ms:' .. m, ch)
      last = 1
    end
  end
  local count = redis.call('HLEN', key)
  if count == 0 then redis.call('SREM', KEYS[2], ch) end
  table.insert(out, last)
  table.insert(out, count)
end
return out
";

/// An unsubscribe: the member leaves the channel on every node at once.
/// KEYS: ch:{channel}, channels, ms:{member}, nodes. ARGV: prefix, channel, member.
/// Returns {1 if the member was in the channel, members after}.
const DROP_LUA: &str = r"
local had = redis.call('HDEL', KEYS[1], ARGV[3])
for _, node in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('SREM', ARGV[1] .. ':sub:' .. node, ARGV[2] .. '\0' .. ARGV[3])
end
redis.call('SREM', KEYS[3], ARGV[2])
local count = redis.call('HLEN', KEYS[1])
if count == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return {had, count}
";

/// Members with sessions here (`on` '1': the first session here; '0': the last gone),
/// as many as given in one step. KEYS: nm:{node}, members. ARGV: on, then the members.
/// Returns for each 1 when that was the member's first (last) node.
const ONLINE_LUA: &str = r"
local out = {}
for i = 2, #ARGV do
  local m = ARGV[i]
  local flag = 0
  if ARGV[1] == '1' then
    if redis.call('SADD', KEYS[1], m) == 1 then
      if redis.call('HINCRBY', KEYS[2], m, 1) == 1 then flag = 1 end
    end
  elseif redis.call('SREM', KEYS[1], m) == 1 then
    if redis.call('HINCRBY', KEYS[2], m, -1) <= 0 then
      redis.call('HDEL', KEYS[2], m)
      flag = 1
    end
  end
  table.insert(out, flag)
end
return out
";

/// A heartbeat alone, during a long resync: the node's time in `nodes` is renewed if it
/// is there (one the others removed is written back by the next full beat).
/// KEYS: nodes. ARGV: this node.
const TOUCH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
";

/// KEYS: nodes. ARGV: prefix, this node, timeout in ms, mode, most entries undone.
/// Mode 'beat': this node is alive; every node silent longer than the timeout is dead.
/// Mode 'leave': this node is dead (it is shutting down).
/// A dead node leaves `nodes` for `reaping` at once (so exactly one node reaps it) and
/// its holdings are undone a bounded number per call, so that no call holds Redis long
/// and the caller beats between calls. Returns, flat, a header 'r', '1' if this node was
/// missing from the nodes (removed by the others), '1' if more is left to undo, '';
/// then what that ended cluster-wide: 's', channel, member, count after (a subscription)
/// or 'm', member, '', '' (a member).
const REAP_LUA: &str = r"
local P = ARGV[1]
local reaping = P .. ':reaping'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local missing = '0'
if ARGV[4] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('SADD', reaping, ARGV[2])
else
  if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
    missing = '1'
    -- Back from the dead: what is left of it is written back, not undone.
    redis.call('SREM', reaping, ARGV[2])
  end
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))) do
    redis.call('ZREM', KEYS[1], node)
    redis.call('SADD', reaping, node)
  end
end
local out = {'r', missing, '0', ''}
local budget = tonumber(ARGV[5])
for _, node in ipairs(redis.call('SMEMBERS', reaping)) do
  if budget <= 0 then break end
  local subs = redis.call('SPOP', P .. ':sub:' .. node, budget)
  budget = budget - #subs
  for _, e in ipairs(subs) do
    local z = string.find(e, '\0', 1, true)
    if z then
      local ch = string.sub(e, 1, z - 1)
      local m = string.sub(e, z + 1)
      local key = P .. ':ch:' .. ch
      if redis.call('HINCRBY', key, m, -1) <= 0 then
        redis.call('HDEL', key, m)
        redis.call('SREM', P .. ':ms:' .. m, ch)
        local count = redis.call('HLEN', key)
        if count == 0 then redis.call('SREM', P .. ':channels', ch) end
        table.insert(out, 's')
        table.insert(out, ch)
        table.insert(out, m)
        table.insert(out, tostring(count))
      end
    end
  end
  if budget > 0 then
    local ms = redis.call('SPOP', P .. ':nm:' .. node, budget)
    budget = budget - #ms
    for _, m in ipairs(ms) do
      if redis.call('HINCRBY', P .. ':members', m, -1) <= 0 then
        redis.call('HDEL', P .. ':members', m)
        table.insert(out, 'm')
        table.insert(out, m)
        table.insert(out, '')
        table.insert(out, '')
      end
    end
  end
  if budget > 0 then
    redis.call('DEL', P .. ':pids:' .. node)
    redis.call('SREM', reaping, node)
  end
end
if redis.call('SCARD', reaping) > 0 then out[3] = '1' end
return out
";
