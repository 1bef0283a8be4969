// Re-execution in place (SIGUSR1): the server executes its binary again, same PID, with the
// listeners kept open and every session handed over. Stock socket.io-client clients
// (WebSocket and polling, an identity with two tabs, anonymous) carry on with the new
// process while a publisher goes on through /api/publish: no disconnect, the same socket
// id and Engine.IO sid, every message once, in order, and no membership churn. A state
// the new process refuses is one log line and a fresh start.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { io } from "socket.io-client";
import { collect, connected, freePort, sleep, startServer, uniqueChannel, waitFor } from "./lib/server.mjs";

/** Publishes n, retrying a request the hand-over cut (it was not served, so not delivered). */
async function publish(url, channel, n) {
  for (let attempt = 0; ; attempt++) {
    let body;
    try {
      const res = await fetch(`${url}/api/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close" },
        body: JSON.stringify({ channel, data: { n } }),
      });
      body = await res.json();
    } catch (err) {
      if (attempt >= 50) throw err;
      await sleep(20);
      continue;
    }
    assert.deepEqual(body, { ok: true, published: 1 });
    return;
  }
}

/** A stock client that reconnects at once, with what it received and how often it dropped. */
async function client(url, transports, auth) {
  const socket = io(url, { forceNew: true, transports, auth, reconnectionDelay: 50, reconnectionDelayMax: 100 });
  const seen = collect(socket, "message", { types: null });
  const drops = [];
  const recoveries = [];
  socket.on("disconnect", (reason) => drops.push(reason));
  socket.on("connect", () => recoveries.push(socket.recovered));
  await connected(socket);
  return { socket, seen, drops, recoveries, transports, auth, ids: ids(socket) };
}

/** The Socket.IO socket id and the Engine.IO sid: a session carried over keeps both. */
const ids = (socket) => ({ socket: socket.id, engine: socket.io.engine?.id });
/** Polling all along (never upgraded): its session goes on under its Engine.IO sid. */
const pollingOnly = (c) => c.transports.length === 1 && c.transports[0] === "polling";

/** On a WebSocket (from the start, or upgraded to it): its connection crosses the hand-over. */
const wsOnly = (c) => c.socket.io.engine?.transport?.name === "websocket";
const numbers = (c) => c.seen.items.filter((e) => e.type === "message" && e.data && "n" in e.data).map((e) => e.data.n);
const commands = (c) => c.seen.items.filter((e) => e.data && e.data.command).map((e) => `${e.data.command}:${e.identity}`);

/** A webhook endpoint that keeps the events posted to it. */
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

async function scenario(t, { env = {} } = {}) {
  const hook = await hooks(t);
  Object.assign(process.env, env);
  const server = await startServer({
    config: `[Server]\nreconnect-timeout = 10s\n[Monitor]\nurl = ${hook.url}\nevents = subscribe, unsubscribe, connect, disconnect\n`,
  });
  for (const k of Object.keys(env)) delete process.env[k];
  const clients = [];
  t.after(async () => {
    for (const c of clients) c.socket.close();
    await server.stop();
  });
  const channel = uniqueChannel("handover");
  for (const [transports, auth] of [
    [["websocket"], { identity: "alice" }],
    [["polling"], { identity: "alice" }],
    [["websocket"], { identity: "bob" }],
    [["polling"], {}],
    [["polling", "websocket"], { identity: "carol" }],
  ]) {
    const c = await client(server.url, transports, auth);
    clients.push(c);
    await c.socket.timeout(5000).emitWithAck("subscribe", channel);
  }
  // Every client has heard every join, so what follows must add no membership event.
  await waitFor(() => clients.every((c) => commands(c).filter((x) => x.startsWith("onSubscribe")).length >= 1), { what: "the joins" });
  // Four members (alice in two tabs): a connect and a subscribe each.
  await waitFor(() => hook.events.length >= 8, { what: () => `the webhooks of the joins (${hook.events.length})` });
  await sleep(200); // the joins of the others still in flight arrive before the count is taken
  const before = clients.map((c) => commands(c).length);
  return { server, clients, channel, before, hook };
}

function signalAndPublish(server, channel, total, handoverAt) {
  return (async () => {
    for (let n = 1; n <= total; n++) {
      if (n === handoverAt) process.kill(server.proc.pid, "SIGUSR1");
      await publish(server.url, channel, n);
    }
  })();
}

const TOTAL = 60;

test("SIGUSR1 hands every session over: same pid, every message once and in order, no churn", { timeout: 60_000 }, async (t) => {
  const { server, clients, channel, before, hook } = await scenario(t);
  const hooksBefore = hook.events.length;
  const pid = server.proc.pid;
  await signalAndPublish(server, channel, TOTAL, 20);
  await waitFor(() => /took over the sessions of the previous process/.test(server.log()), { timeout: 10_000, what: "the new process" });
  try {
    for (const c of clients) {
      await waitFor(() => numbers(c).length >= TOTAL, { timeout: 15_000, what: () => `${JSON.stringify(c.auth)} ${c.transports}: ${numbers(c).length} of ${TOTAL}` });
    }
    await sleep(300); // no duplicate follows: only a fixed wait shows that
    assert.equal(server.exited(), null, "the process never exited");
    assert.deepEqual(hook.events.slice(hooksBefore), [], "no webhook after the joins");
    assert.equal(server.proc.pid, pid);
    for (const c of clients) {
      const what = `${JSON.stringify(c.auth)} over ${c.transports}`;
      assert.deepEqual(numbers(c), Array.from({ length: TOTAL }, (_, i) => i + 1), `${what}: every message once, in order`);
      assert.deepEqual(commands(c).slice(before[clients.indexOf(c)]), [], `${what}: no membership event`);
      if (wsOnly(c) || pollingOnly(c)) {
        // The connection itself crosses to the new process (WebSocket), or the session
        // goes on under its sid (polling): no close, no reconnect.
        assert.deepEqual(c.drops, [], `${what}: no drop`);
        assert.deepEqual(c.recoveries, [false], `${what}: connected once`);
        if (pollingOnly(c)) assert.deepEqual(ids(c.socket), c.ids, `${what}: the same socket id and sid`);
      } else {
        // A polling session gets a new Engine.IO sid: one transport error, then a recovery.
        assert.ok(c.drops.length <= 1, `${what}: at most one drop (${c.drops})`);
        assert.ok(c.recoveries.slice(1).every((r) => r === true), `${what}: recovered (${c.recoveries})`);
      }
    }
  } catch (err) {
    console.error(server.log());
    throw err;
  }
  assert.equal((server.log().match(/handing over: executing the new binary/g) || []).length, 1);
});

test("a state the new process refuses is one log line and a fresh start", { timeout: 60_000 }, async (t) => {
  const { server, clients } = await scenario(t, {
    env: { REALTIME_TEST_HOOKS: "1", REALTIME_TEST_HANDOVER: "truncate" },
  });
  process.kill(server.proc.pid, "SIGUSR1");
  await waitFor(() => /hand-over state refused/.test(server.log()), { timeout: 10_000, what: "the refusal" });
  const refusals = server.log().split("\n").filter((l) => /hand-over state refused/.test(l));
  assert.equal(refusals.length, 1);
  assert.match(refusals[0], /state truncated/);
  assert.doesNotMatch(server.log(), /took over the sessions/);
  // The clients come back as after a restart: a new session each.
  for (const c of clients) {
    await waitFor(() => c.recoveries.length >= 2, { timeout: 10_000, what: "a reconnect" });
    assert.equal(c.recoveries.at(-1), false);
  }
  assert.equal(server.exited(), null);
});

test("SIGUSR1 again while the new process starts: it survives and hands over", { timeout: 60_000 }, async (t) => {
  const { server, clients } = await scenario(t);
  const pid = server.proc.pid;
  const count = (re) => (server.log().match(re) || []).length;
  // Signals every 2 ms until the new process serves: some land while it starts, before
  // its handler exists, where SIGUSR1's default action would end it.
  process.kill(pid, "SIGUSR1");
  while (!/took over the sessions of the previous process/.test(server.log()) && !server.exited()) {
    process.kill(pid, "SIGUSR1");
    await sleep(2);
  }
  // Every hand-over the signals started is done.
  await waitFor(() => count(/took over the sessions/g) === count(/handing the sessions over/g), { timeout: 15_000, what: "the last hand-over" });
  assert.equal(server.exited(), null, "the process never exited");
  for (const c of clients) {
    // A WebSocket is carried on its own connection, and a polling session goes on under
    // its sid, unless a hand-over comes before the new process resumed it: then it falls
    // back to a recovery. Either way, nothing lost.
    const carried = wsOnly(c) || pollingOnly(c);
    const settled = () => c.socket.connected && (carried ? c.drops.length === c.recoveries.length - 1 : c.recoveries.length >= 2);
    await waitFor(settled, { timeout: 15_000, what: () => `settled (${c.drops}; ${c.recoveries})` });
    assert.ok(c.recoveries.slice(1).every((r) => r === true), `recovered (${c.recoveries})`);
  }
});

test("kill -9 is a crash as before: the next start serves fresh sessions, no hand-over", { timeout: 60_000 }, async (t) => {
  const port = await freePort();
  const first = await startServer({ port });
  const c = await client(first.url, ["websocket"], { identity: "dave" });
  t.after(() => c.socket.close());
  process.kill(first.proc.pid, "SIGKILL");
  await waitFor(() => first.exited(), { what: "the crash" });
  const second = await startServer({ port });
  t.after(() => second.stop());
  await waitFor(() => c.recoveries.length >= 2, { timeout: 10_000, what: "a reconnect" });
  assert.equal(c.recoveries.at(-1), false, "a crash keeps no session");
  assert.doesNotMatch(first.log() + second.log(), /hand(ing|ed)[- ]over|took over the sessions/);
});

for (const [transport, pick] of [
  ["WebSocket", (c) => wsOnly(c) && c.auth.identity === "bob"],
  ["polling", (c) => pollingOnly(c) && c.auth.identity === undefined],
]) test(`a client publishing through ${transport} during SIGUSR1 loses nothing it sent`, { timeout: 60_000 }, async (t) => {
  const { server, clients, channel } = await scenario(t);
  const publisher = clients.find(pick);
  const sent = 60;
  // 50 messages a second through the client, the hand-over a third of the way in.
  for (let i = 1; i <= sent; i++) {
    if (i === 20) process.kill(server.proc.pid, "SIGUSR1");
    publisher.socket.emit("publish", channel, { c: i });
    await sleep(20);
  }
  const fromClient = (c) => c.seen.items.filter((e) => e.data && "c" in e.data).map((e) => e.data.c);
  try {
    for (const c of clients) {
      await waitFor(() => fromClient(c).length >= sent, { timeout: 15_000, what: () => `${JSON.stringify(c.auth)}: ${fromClient(c).length} of ${sent}` });
    }
    await sleep(300); // no duplicate follows: only a fixed wait shows that
    for (const c of clients) {
      assert.deepEqual(fromClient(c), Array.from({ length: sent }, (_, i) => i + 1), `${JSON.stringify(c.auth)}: once, in order`);
    }
    assert.deepEqual(publisher.drops, [], "the publisher's connection was carried");
    assert.deepEqual(ids(publisher.socket), publisher.ids, "the publisher kept its socket id and sid");
    assert.match(server.log(), /took over the sessions of the previous process/);
  } catch (err) {
    console.error(server.log());
    throw err;
  }
});
