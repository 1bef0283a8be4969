// Members, membership events, commands, the legacy envelope, the grace window and
// connection state recovery, with the stock socket.io-client.
import assert from "node:assert/strict";
import {
  ack, collect, connected, metric, once, sleep, uniqueChannel, useServer, waitFor, withTimeout,
} from "./lib/server.mjs";
import { assertEnvelope, assertErrorAck, assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";
import { startProxy } from "./lib/proxy.mjs";
import { io } from "socket.io-client";

// A short grace window keeps the "past the window" cases quick.
// A short heartbeat: a poll answered in the instant the network is cut is lost in flight,
// and then only the ping timeout tells the server the client is gone (see the cut tests).
const srv = useServer({ config: "[Server]\nreconnect-timeout = 1500ms\nping-interval = 1s\nping-timeout = 1s\n" });
const WS_CONNECTIONS = 'realtime_connections{transport="websocket"}';

const ws = (identity, extra = {}) =>
  srv.connect("", { transports: ["websocket"], auth: identity ? { identity } : {}, ...extra });

/** Cuts a client's transport the way a lost network or a page reload does: no goodbye. */
function cut(socket) {
  const t = socket.io.engine.transport;
  if (t.ws) {
    t.ws.terminate();
  } else if (t.pollXhr) {
    // engine.io-client's own network-error path: the pending poll is aborted and the
    // client sees "xhr poll error", as when the network goes away.
    t.pollXhr._onError(0);
  } else {
    throw new Error("no transport to cut");
  }
}

const commandsOf = (inbox) => inbox.items.filter((e) => e.type === "command").map((e) => [e.data.command, e.data.count, e.identity]);

srv.test("two tabs of one identity are one member; a second identity makes two", async () => {
  const channel = uniqueChannel("tabs");
  const a1 = ws("alice");
  const a2 = ws("alice");
  const b = ws("bob");
  await Promise.all([connected(a1), connected(a2), connected(b)]);
  const [i1, i2, ib] = [a1, a2, b].map((s) => collect(s, "message", { types: null }));

  assertSubscribeAck(await ack(a1, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(a2, "subscribe", channel), channel, 1);
  await i1.next((e) => e.data.command === "onSubscribe");
  await i2.next((e) => e.data.command === "onSubscribe");
  assertSubscribeAck(await ack(b, "subscribe", channel), channel, 2);
  for (const inbox of [i1, i2, ib]) {
    const ev = await inbox.next((e) => e.data.command === "onSubscribe" && e.identity === "bob");
    assert.deepEqual(ev.data, { command: "onSubscribe", options: null, count: 2 });
    assert.deepEqual(Object.keys(ev).sort(), ["channel", "data", "identity", "timestamp", "type"]);
  }
  await sleep(100); // no other event follows: only a fixed wait shows that
  assert.deepEqual(commandsOf(i1), [["onSubscribe", 1, "alice"], ["onSubscribe", 2, "bob"]],
    "alice's second tab is not a new member");

  // A publish reaches every connection of every member, the sender's other tab included.
  assertPublishAck(await ack(a1, "publish", channel, { n: 1 }));
  for (const inbox of [i1, i2, ib]) {
    assertEnvelope(await inbox.next((e) => e.type === "message"), { channel, identity: "alice", data: { n: 1 } });
  }

  // bob leaves: the others hear onUnsubscribe with the new count.
  assert.deepEqual(await ack(b, "unsubscribe", channel), { ok: true, channel, count: 1 });
  for (const inbox of [i1, i2]) {
    const ev = await inbox.next((e) => e.data && e.data.command === "onUnsubscribe");
    assert.deepEqual([ev.identity, ev.data.count], ["bob", 1]);
  }
  assertErrorAck(await ack(b, "unsubscribe", channel), "unsubscribe twice");
});

srv.test("commands arrive as type command with data.command and data.options", async () => {
  const channel = uniqueChannel("cmd");
  const a = ws("alice");
  const b = ws("bob");
  await Promise.all([connected(a), connected(b)]);
  const inbox = collect(b, "message", { types: ["command"] });
  await ack(a, "subscribe", channel);
  await ack(b, "subscribe", channel);
  assert.deepEqual(await ack(a, "command", channel, "poke", { x: 1 }), { ok: true });
  const ev = await inbox.next((e) => e.data.command === "poke");
  assert.deepEqual(ev.data, { command: "poke", options: { x: 1 } });
  assert.equal(ev.identity, "alice");
  for (const name of ["init", "subscribe", "unsubscribe", "onSubscribe", "onUnsubscribe", "", 5]) {
    assertErrorAck(await ack(a, "command", channel, name, {}), `command ${name}`);
  }
  // Without an ack, a refusal comes back as an error envelope.
  const errors = collect(a, "message", { types: ["error"] });
  a.emit("command", channel, "onSubscribe");
  const err = await errors.next();
  assert.equal(err.success, false);
  assert.match(err.error, /reserved/);
});

srv.test("the legacy 2012 envelope: init, subscribe, message, custom command, unsubscribe", async () => {
  const channel = uniqueChannel("legacy");
  const old = ws(null);
  const modern = ws("dave");
  await Promise.all([connected(old), connected(modern)]);
  const oldInbox = collect(old, "message", { types: null });
  const inbox = collect(modern, "message", { types: null });
  await ack(modern, "subscribe", channel);

  // Before init, the original answered with an error.
  old.emit("message", { type: "message", channel, data: { msg: "too early" } });
  const early = await oldInbox.next((e) => e.type === "error");
  assert.match(early.error, /init/);

  old.emit("message", { type: "command", identity: "carol", data: { command: "init" } });
  old.emit("message", { type: "command", channel, data: { command: "subscribe", options: { a: 1 } } });
  const joined = await inbox.next((e) => e.data && e.data.command === "onSubscribe" && e.identity === "carol");
  assert.deepEqual(joined.data, { command: "onSubscribe", options: { a: 1 }, count: 2 });

  old.emit("message", { type: "message", channel, data: { msg: "hello from 2012" } });
  assertEnvelope(await inbox.next((e) => e.type === "message"), { channel, identity: "carol", data: { msg: "hello from 2012" } });

  old.emit("message", { type: "command", channel, data: { command: "wave", options: { hand: "left" } } });
  const wave = await inbox.next((e) => e.data && e.data.command === "wave");
  assert.deepEqual([wave.identity, wave.data.options], ["carol", { hand: "left" }]);

  old.emit("message", { type: "command", channel, data: { command: "unsubscribe" } });
  const left = await inbox.next((e) => e.data && e.data.command === "onUnsubscribe");
  assert.deepEqual([left.identity, left.data.count], ["carol", 1]);
});

srv.test("an identity's only tab reloads within the window: kept messages, same channels, no churn", async () => {
  const channel = uniqueChannel("reload");
  const watcher = ws("watcher");
  const tab = ws("erin");
  await Promise.all([connected(watcher), connected(tab)]);
  const watch = collect(watcher, "message", { types: null });
  await ack(watcher, "subscribe", channel);
  await ack(tab, "subscribe", channel);
  await watch.next((e) => e.data.command === "onSubscribe" && e.identity === "erin");

  const open = await metric(srv.url, WS_CONNECTIONS);
  cut(tab);
  await once(tab, "disconnect");
  await waitFor(async () => (await metric(srv.url, WS_CONNECTIONS)) < open,
    { what: "the server to see the connection end" });
  for (let n = 1; n <= 3; n++) await ack(watcher, "publish", channel, { n });

  const reloaded = ws("erin");
  const inbox = collect(reloaded);
  await connected(reloaded);
  const kept = await inbox.waitCount(3);
  assert.deepEqual(kept.map((e) => e.data.n), [1, 2, 3]);
  // Still subscribed: a new publish arrives without subscribing again.
  await ack(watcher, "publish", channel, { n: 4 });
  assert.equal((await inbox.next((e) => e.data.n === 4)).data.n, 4);
  await sleep(2000); // past the window of the old connection: a timer the server honours
  assert.deepEqual(commandsOf(watch).filter(([c]) => c !== "onSubscribe"), [], "nobody saw erin leave");
  assert.equal((await ack(reloaded, "subscribe", channel)).count, 2);
});

srv.test("past the window, onUnsubscribe arrives", async () => {
  const channel = uniqueChannel("gone");
  const watcher = ws("watcher2");
  const tab = ws("frank");
  await Promise.all([connected(watcher), connected(tab)]);
  const watch = collect(watcher, "message", { types: ["command"] });
  await ack(watcher, "subscribe", channel);
  await ack(tab, "subscribe", channel);
  const t0 = Date.now();
  cut(tab);
  const left = await watch.next((e) => e.data.command === "onUnsubscribe", 5000);
  assert.deepEqual([left.identity, left.data.count], ["frank", 1]);
  assert.ok(Date.now() - t0 >= 1000, `onUnsubscribe came after ${Date.now() - t0} ms, before the window`);
});

for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
  srv.test(`a cut network (${transports}) recovers: socket.recovered, every message once, in order`, async (t) => {
    const channel = uniqueChannel("recover");
    const proxy = await startProxy(new URL(srv.url).port);
    t.after(() => proxy.close());
    const publisher = ws("pub");
    const client = io(proxy.url, {
      forceNew: true,
      transports,
      auth: { identity: "gina" },
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
    });
    t.after(() => client.close());
    await Promise.all([connected(publisher), connected(client)]);
    if (transports.length === 2 && client.io.engine.transport.name !== "websocket") {
      await once(client.io.engine, "upgrade");
    }
    const inbox = collect(client);
    await ack(client, "subscribe", channel);
    for (let n = 1; n <= 5; n++) await ack(publisher, "publish", channel, { n });
    await inbox.waitCount(5);
    assert.equal(client.recovered, false);

    const sessions = `realtime_connections{transport="${client.io.engine.transport.name}"}`;
    const open = await metric(srv.url, sessions);
    const reconnected = once(client, "connect", 10_000);
    // Cut while a long-poll is parked at the server: that request is how a server notices
    // a lost network on polling (with none in flight, only the ping timeout can). One
    // unanswered for 100 ms is parked (any other is answered at once).
    if (client.io.engine.transport.name === "polling") {
      await waitFor(() => proxy.getInFlight(100), { timeout: 10_000, interval: 5, what: "a parked long-poll" });
    }
    // The network stays down until the server has seen the connection go: a client back
    // before that finds its session still attached, and recovers nothing. The server sees
    // it at once when the parked poll is aborted, or at the ping timeout (2 s here) when a
    // publish answered that poll in the instant of the cut.
    proxy.hold();
    proxy.cutAll();
    // Published while the client is away.
    for (let n = 6; n <= 40; n++) await ack(publisher, "publish", channel, { n });
    await waitFor(async () => (await metric(srv.url, sessions)) < open,
      { timeout: 10_000, what: "the server to see the connection go" });
    proxy.release();
    await reconnected;
    assert.equal(client.recovered, true, "socket.recovered after the automatic reconnect");
    for (let n = 41; n <= 45; n++) await ack(publisher, "publish", channel, { n });
    await inbox.waitCount(45, 10_000);
    await sleep(200); // no duplicate follows: only a fixed wait shows that
    assert.deepEqual(inbox.items.map((e) => e.data.n), Array.from({ length: 45 }, (_, i) => i + 1));
    // Every broadcast carried an offset (a string) as its last argument.
    assert.ok(inbox.offsets.every((o) => typeof o === "string" && o.length > 0));
  });
}

srv.test("a client that says goodbye does not recover; a stale pid gets a new session", async () => {
  const channel = uniqueChannel("bye");
  const a = ws("hank");
  await connected(a);
  await ack(a, "subscribe", channel);
  a.disconnect();
  // An explicit disconnect leaves at once (well within the 1.5 s window): the channel is empty.
  await waitFor(async () => {
    const res = await fetch(`${srv.url}/api/channels/${encodeURIComponent(channel)}`);
    return (await res.json()).count === 0;
  }, { timeout: 1000, what: "hank to leave the channel" });
  const b = ws("ivy");
  await connected(b);
  assertSubscribeAck(await ack(b, "subscribe", channel), channel, 1);
  const stale = srv.connect("", { transports: ["websocket"], auth: { pid: "not-a-session", offset: "1" } });
  await connected(stale);
  assert.equal(stale.recovered, false);
});
