// A hand-over in cluster mode (SIGUSR1): node A re-executes itself and stays the same
// node. Two nodes on one redis-server; stock socket.io-client clients on A (WebSocket and
// polling, an identity with two tabs, anonymous) and one on B, all in one channel; a
// publisher through B's API and one through A's. Every message reaches every client
// once, in order, with the offset it has on every node; WebSocket clients on A see no
// disconnect; no membership event or webhook on either node; B never sees A depart; A's
// sessions stay findable in Redis under its id.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { test } from "node:test";
import { io } from "socket.io-client";
import { connected, ready, sleep, startRedis, startServer, uniqueChannel, waitFor } from "./lib/server.mjs";

const TOTAL = 60;

/** Publishes `{[key]: n}` through `url`'s API, retrying a request the hand-over cut (it was not served). */
async function publish(url, channel, key, n) {
  for (let attempt = 0; ; attempt++) {
    let body;
    try {
      const res = await fetch(`${url}/api/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close" },
        body: JSON.stringify({ channel, data: { [key]: n } }),
      });
      body = await res.json();
    } catch (err) {
      if (attempt >= 100) throw err;
      await sleep(20);
      continue;
    }
    assert.deepEqual(body, { ok: true, published: 1 });
    return;
  }
}

/** A stock client that reconnects at once, with every message and its offset, and its drops. */
async function client(url, transports, auth) {
  const socket = io(url, { forceNew: true, transports, auth, reconnectionDelay: 50, reconnectionDelayMax: 100 });
  const seen = [];
  const drops = [];
  const recoveries = [];
  socket.on("message", (envelope, offset) => seen.push({ envelope, offset }));
  socket.on("disconnect", (reason) => drops.push(reason));
  socket.on("connect", () => recoveries.push(socket.recovered));
  await connected(socket);
  return { socket, seen, drops, recoveries, transports, auth };
}

const numbers = (c, key) => c.seen.filter(({ envelope: e }) => e.data && key in e.data).map(({ envelope: e }) => e.data[key]);
const commands = (c) => c.seen.filter(({ envelope: e }) => e.data?.command).map(({ envelope: e }) => `${e.data.command}:${e.identity}`);
/** Each message (`n3`, `m7`) with the offset the client got it with. */
const offsets = (c) => new Map(c.seen.filter(({ envelope: e }) => e.data && !e.data.command)
  .map(({ envelope: e, offset }) => [Object.entries(e.data).flat().join(""), offset]));

/** A webhook endpoint that keeps what is posted to it. */
async function hooks(t) {
  const events = [];
  const http = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      events.push(body);
      res.end();
    });
  });
  await new Promise((res) => http.listen(0, "127.0.0.1", res));
  t.after(() => http.close());
  return { events, url: `http://127.0.0.1:${http.address().port}/hook` };
}

const redisCli = (redis, ...args) =>
  execFileSync("redis-cli", ["-p", String(redis.port), "--raw", ...args], { encoding: "utf8" })
    .split("\n").filter(Boolean).sort();

test("SIGUSR1 in cluster mode: the node stays the node, every message once and in order, no churn anywhere", { timeout: 90_000 }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const hook = await hooks(t);
  const common = `heartbeat = 1s\nnode-timeout = 3s\n[Server]\nreconnect-timeout = 10s\n` +
    `[Monitor]\nurl = ${hook.url}\nevents = subscribe, unsubscribe, connect, disconnect\n`;
  // A has no configured node id: the generated one (host, pid, a random part) must cross.
  // Its new process reaches Redis a second late: what B publishes meanwhile can only
  // reach A's sessions through the message log.
  Object.assign(process.env, { REALTIME_TEST_HOOKS: "1", REALTIME_TEST_CATCH_UP_DELAY_MS: "1000" });
  const a = await startServer({ config: `[Cluster]\nredis = ${redis.url}\n${common}` });
  delete process.env.REALTIME_TEST_HOOKS;
  delete process.env.REALTIME_TEST_CATCH_UP_DELAY_MS;
  t.after(() => a.stop());
  const b = await startServer({ config: `[Cluster]\nredis = ${redis.url}\nnode-id = node-b\n${common}` });
  t.after(() => b.stop());
  await Promise.all([ready(a.url), ready(b.url)]);
  const nodeA = a.log().match(/joining the cluster through Redis node=(\S+)/)?.[1];
  assert.ok(nodeA, "A names its node id");

  const channel = uniqueChannel("cluster-handover");
  const clients = [];
  t.after(() => clients.forEach((c) => c.socket.close()));
  for (const [url, transports, auth] of [
    [a.url, ["websocket"], { identity: "alice" }],
    [a.url, ["polling"], { identity: "alice" }],
    [a.url, ["websocket"], { identity: "bob" }],
    [a.url, ["polling"], {}],
    [a.url, ["polling", "websocket"], { identity: "carol" }],
    [b.url, ["websocket"], { identity: "dave" }],
  ]) {
    const c = await client(url, transports, auth);
    clients.push(c);
    await c.socket.timeout(5000).emitWithAck("subscribe", channel);
  }
  const onA = clients.slice(0, 5);
  const dave = clients[5];
  // Five members (alice in two tabs): a connect and a subscribe each, from one node each.
  await waitFor(() => hook.events.length >= 10, { what: () => `the webhooks of the joins (${hook.events.length})` });
  await waitFor(() => commands(clients[0]).includes("onSubscribe:dave"), { what: "A hears dave join on B" });
  await sleep(300); // the joins still in flight arrive before the counts are taken
  const before = clients.map((c) => commands(c).length);
  const hooksBefore = hook.events.length;
  const pidsBefore = redisCli(redis, "HKEYS", `realtime:pids:${nodeA}`);
  assert.equal(pidsBefore.length, 5, `A's sessions recorded: ${pidsBefore}`);

  const pid = a.proc.pid;
  await Promise.all([
    (async () => {
      for (let n = 1; n <= TOTAL; n++) {
        await publish(b.url, channel, "n", n);
        await sleep(20);
      }
    })(),
    (async () => {
      for (let m = 1; m <= TOTAL; m++) {
        if (m === 20) process.kill(pid, "SIGUSR1");
        await publish(a.url, channel, "m", m);
      }
    })(),
  ]);
  try {
    await waitFor(() => /took over the sessions of the previous process/.test(a.log()), { timeout: 10_000, what: "the new process" });
    for (const c of clients) {
      await waitFor(() => numbers(c, "n").length >= TOTAL && numbers(c, "m").length >= TOTAL, {
        timeout: 15_000,
        what: () => `${JSON.stringify(c.auth)} ${c.transports}: ${numbers(c, "n").length} + ${numbers(c, "m").length} of ${TOTAL} each`,
      });
    }
    await sleep(500); // no duplicate and no late event follows: only a fixed wait shows that
    assert.equal(a.exited(), null, "A never exited");
    assert.equal(a.proc.pid, pid);
    const joined = a.log().match(/joining the cluster through Redis node=(\S+)/g);
    assert.deepEqual(joined, [`joining the cluster through Redis node=${nodeA}`, `joining the cluster through Redis node=${nodeA}`],
      "the new process joined as the same node");
    const all = Array.from({ length: TOTAL }, (_, i) => i + 1);
    const reference = offsets(dave);
    for (const c of clients) {
      const what = `${JSON.stringify(c.auth)} over ${c.transports}`;
      assert.deepEqual(numbers(c, "n"), all, `${what}: B's messages once, in order`);
      assert.deepEqual(numbers(c, "m"), all, `${what}: A's messages once, in order`);
      assert.deepEqual(commands(c).slice(before[clients.indexOf(c)]), [], `${what}: no membership event`);
      // Each message has the offset it has on B: one log, one numbering.
      for (const [message, offset] of offsets(c)) {
        assert.ok(offset, `${what}: ${message} has an offset`);
        assert.equal(offset, reference.get(message), `${what}: ${message} has the offset it has on B`);
      }
    }
    for (const c of onA) {
      const what = `${JSON.stringify(c.auth)} over ${c.transports}`;
      if (c.socket.io.engine?.transport?.name === "websocket") {
        // The connection itself crosses to the new process: no close, no reconnect.
        assert.deepEqual(c.drops, [], `${what}: no drop`);
        assert.deepEqual(c.recoveries, [false], `${what}: connected once`);
      } else {
        assert.ok(c.drops.length <= 1, `${what}: at most one drop (${c.drops})`);
        assert.ok(c.recoveries.slice(1).every((r) => r === true), `${what}: recovered (${c.recoveries})`);
      }
    }
    assert.deepEqual(dave.drops, [], "dave on B never dropped");
    assert.deepEqual(hook.events.slice(hooksBefore), [], "no webhook from either node");
    assert.doesNotMatch(b.log(), /removed the members of nodes that stopped beating|writing its presence back/,
      "B never saw A go");
    assert.doesNotMatch(a.log(), /left the cluster|writing its presence back|presence resynchronised/,
      "A neither left nor wrote its presence again");
    const members = await (await fetch(`${b.url}/api/channels/${encodeURIComponent(channel)}`)).json();
    assert.equal(members.count, 5, `B counts A's members: ${JSON.stringify(members)}`);
    assert.deepEqual(redisCli(redis, "HKEYS", `realtime:pids:${nodeA}`), pidsBefore,
      "A's sessions are still recorded under its id, for another node to resume");
  } catch (err) {
    console.error(`--- A ---\n${a.log().slice(-15_000)}\n--- B ---\n${b.log().slice(-5_000)}`);
    throw err;
  }
});
