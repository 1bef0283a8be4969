// The Realtime client (js-client/src/realtime.js) against the real server: the API of
// docs/js-client.md, dispatch of envelopes to channel handlers, reconnects, and
// errors.
import assert from "node:assert/strict";
import { sleep, uniqueChannel, useServer, TIMESTAMP_RE } from "./lib/server.mjs";
import { assertRejects, inbox, Realtime, record, useClients, waitFor } from "./lib/realtime.mjs";

const srv = useServer();
const clients = useClients(srv);

function assertMessage(env, { channel, identity, data }) {
  assert.deepEqual(Object.keys(env).sort(), ["channel", "data", "identity", "timestamp", "type"]);
  assert.equal(env.type, "message");
  assert.equal(env.channel, channel);
  assert.equal(env.identity, identity);
  assert.match(env.timestamp, TIMESTAMP_RE);
  assert.deepEqual(env.data, data);
}

srv.test("the five-line example: connect, createChannel, subscribe, publish, close", async () => {
  const channel = uniqueChannel("five");
  const got = inbox();
  const rt = clients.connect({ identity: "alice" });
  const connects = record(rt, "connect");
  rt.createChannel(channel, { onReceive: got.push });
  assert.deepEqual(await rt.subscribe(channel), { ok: true, channel, count: 1 });
  await connects.next();
  assert.equal(rt.state, "connected");
  assert.equal(rt.connected, true);
  assert.equal(rt.channels[channel].count, 1);
  assert.equal(rt.channels[channel].subscribed, true);
  assert.equal(await rt.publish(channel, { msg: "hi" }), undefined);
  assertMessage(await got.next(), { channel, identity: "alice", data: { msg: "hi" } });
  const ack = await rt.unsubscribe(channel);
  assert.deepEqual(ack, { ok: true, channel, count: 0 });
  assert.equal(rt.channels[channel].subscribed, false);
  assert.equal(rt.channels[channel].count, 0);
  const disconnects = record(rt, "disconnect");
  rt.close();
  assert.equal(rt.state, "disconnected");
  assert.equal(await disconnects.next(), "io client disconnect");
});

srv.test("the subscription option subscribes on connect; handlers get `this` = the channel", async () => {
  const channel = uniqueChannel("opt");
  const got = inbox();
  const rt = clients.connect({ identity: "opt", subscription: [channel] });
  let self = null;
  rt.createChannel(channel, { onReceive(env) { self = this; got.push(env); } });
  await rt.ready();
  await waitFor(() => rt.channels[channel].count === 1, { what: "the subscription ack" });
  await rt.publish(channel, "x");
  assertMessage(await got.next(), { channel, identity: "opt", data: "x" });
  assert.equal(self, rt.channels[channel]);
});

srv.test("two clients: both receive each other's messages, in publish order", async () => {
  const channel = uniqueChannel("pair");
  const a = clients.connect({ identity: "alice" });
  const b = clients.connect({ identity: "bob" });
  const aGot = inbox();
  const bGot = inbox();
  a.createChannel(channel, { onReceive: aGot.push });
  b.createChannel(channel, { onReceive: bGot.push });
  assert.equal((await a.subscribe(channel)).count, 1);
  assert.equal((await b.subscribe(channel)).count, 2);
  assert.equal(b.channels[channel].count, 2);

  const N = 50;
  await Promise.all(Array.from({ length: N }, (_, i) => a.publish(channel, { seq: i })));
  await b.publish(channel, "hi alice");
  for (const got of [aGot, bGot]) {
    for (let i = 0; i < N; i++) assertMessage(await got.next(), { channel, identity: "alice", data: { seq: i } });
    assertMessage(await got.next(), { channel, identity: "bob", data: "hi alice" });
  }
});

srv.test("binary data goes through publish and onReceive", async () => {
  const channel = uniqueChannel("bin");
  const rt = clients.connect({ identity: "bin" });
  const got = inbox();
  rt.createChannel(channel, { onReceive: got.push });
  await rt.subscribe(channel);
  const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
  await rt.publish(channel, { name: "f.bin", bytes });
  const env = await got.next();
  assert.ok(Buffer.isBuffer(env.data.bytes) && env.data.bytes.equals(bytes));
});

srv.test("after unsubscribe, messages stop; subscribing again brings them back", async () => {
  const channel = uniqueChannel("unsub");
  const a = clients.connect({ identity: "a" });
  const b = clients.connect({ identity: "b" });
  const aGot = inbox();
  const bGot = inbox();
  a.createChannel(channel, { onReceive: aGot.push });
  b.createChannel(channel, { onReceive: bGot.push });
  await a.subscribe(channel);
  await b.subscribe(channel);
  assert.deepEqual(await b.unsubscribe(channel), { ok: true, channel, count: 1 });
  await a.publish(channel, 1);
  await aGot.next();
  await sleep(150); // nothing more arrives: only a fixed wait shows that
  assert.equal(bGot.items.length, 0, "b still got a message after unsubscribing");
  await b.channels[channel].subscribe();
  await a.channels[channel].publish(2);
  assert.equal((await bGot.next()).data, 2);
});

srv.test("requests made before the connection is up wait for it, in order", async () => {
  const channel = uniqueChannel("early");
  const rt = clients.connect({ identity: "early" });
  const got = inbox();
  rt.createChannel(channel, { onReceive: got.push });
  assert.equal(rt.state, "connecting");
  // all three are issued before the CONNECT reply: subscribe first, so our own publishes come back
  const results = await Promise.all([rt.subscribe(channel), rt.publish(channel, "one"), rt.publish(channel, "two")]);
  assert.deepEqual(results, [{ ok: true, channel, count: 1 }, undefined, undefined]);
  assert.equal((await got.next()).data, "one");
  assert.equal((await got.next()).data, "two");
});

srv.test("a refused request rejects with the server's reason", async () => {
  const rt = clients.connect({ identity: "refused" });
  const tooLong = "x".repeat(300);
  await assertRejects(rt.subscribe(tooLong), "refused", /^channel name longer than 256 bytes$/);
  assert.equal(rt.channels[tooLong].subscribed, false, "a refused subscribe is not restored on reconnect");
  await assertRejects(rt.publish("bad\u0001name", 1), "refused", /control characters/);
  await assertRejects(rt.unsubscribe(uniqueChannel("never")), "refused", /not subscribed/);
  // the error carries the server's whole answer
  const err = await rt.publish("bad\u0002", 1).catch((e) => e);
  assert.deepEqual(err.data, { ok: false, error: err.message });
  assert.equal(err.channel, "bad\u0002");
  // still usable
  const channel = uniqueChannel("after");
  assert.equal((await rt.subscribe(channel)).count, 1);
});

srv.test("bad arguments reject at once, without asking the server", async () => {
  const rt = clients.connect({});
  await assertRejects(rt.subscribe(""), "invalid", /non-empty string/);
  await assertRejects(rt.subscribe(42), "invalid", /non-empty string/);
  await assertRejects(rt.publish(undefined, "x"), "invalid", /non-empty string/);
  await assertRejects(rt.unsubscribe(null), "invalid", /non-empty string/);
  const ch = rt.createChannel(uniqueChannel("cmd"), {});
  await assertRejects(ch.trigger(""), "invalid", /command name/);
  for (const reserved of ["init", "subscribe", "unsubscribe", "onSubscribe", "onUnsubscribe"]) {
    await assertRejects(ch.trigger(reserved), "invalid", /reserved/);
  }
  assert.throws(() => rt.createChannel(""), { name: "RealtimeError", code: "invalid" });
  assert.throws(() => Realtime.connect({ identity: "no url" }), { code: "invalid", message: /a url is needed/ });
});

srv.test("a message for a channel without an onReceive handler is an error event, not a throw", async () => {
  const channel = uniqueChannel("nohandler");
  const rt = clients.connect({ identity: "nh" });
  const errors = record(rt, "error");
  await rt.subscribe(channel); // no createChannel: the channel has no handlers
  await rt.publish(channel, "lost");
  const err = await errors.next();
  assert.equal(err.code, "no_handler");
  assert.equal(err.channel, channel);
  assert.match(err.message, /no onReceive handler/);
  assert.equal(err.envelope.data, "lost");
  // handlers added later take over
  const got = inbox();
  rt.createChannel(channel, { onReceive: got.push });
  await rt.publish(channel, "found");
  assert.equal((await got.next()).data, "found");
});

srv.test("a handler that throws or rejects becomes an error event; delivery goes on", async () => {
  const channel = uniqueChannel("throws");
  const rt = clients.connect({ identity: "t" });
  const errors = record(rt, "error");
  const got = inbox();
  rt.createChannel(channel, {
    onReceive(env) {
      got.push(env);
      if (env.data === "throw") throw new Error("boom");
      if (env.data === "reject") return Promise.reject(new Error("async boom"));
      return undefined;
    },
  });
  await rt.subscribe(channel);
  await rt.publish(channel, "throw");
  await rt.publish(channel, "reject");
  await rt.publish(channel, "fine");
  const e1 = await errors.next();
  const e2 = await errors.next();
  assert.equal(e1.code, "handler");
  assert.match(e1.message, /failed: boom/);
  assert.equal(e1.cause.message, "boom");
  assert.equal(e2.code, "handler");
  assert.match(e2.message, /async boom/);
  assert.deepEqual(got.items.map((e) => e.data), ["throw", "reject", "fine"].slice(0, got.items.length));
  assert.equal((await got.next((e) => e.data === "fine")).data, "fine");
});

srv.test("incoming envelopes are routed by type and command; unknown ones are error events", async () => {
  // Feeds envelopes through the socket's own `message` listener: the path a server event takes.
  const rt = clients.connect({ socketOptions: { autoConnect: false } });
  const deliver = (env) => rt.socket.listeners("message").forEach((fn) => fn(env));
  const errors = record(rt, "error");
  const calls = [];
  rt.createChannel("room", {
    onReceive(env) { calls.push(["onReceive", env.data]); },
    onSubscribe(env) { calls.push(["onSubscribe", env.data.count]); },
    customMethod(env) { calls.push(["customMethod", env.data.options]); },
  });
  const base = { channel: "room", identity: "bob", timestamp: "2026-11-26T01:02:03.456Z" };
  deliver({ ...base, type: "message", data: { msg: "hi" } });
  deliver({ ...base, type: "command", data: { command: "onSubscribe", options: null, count: 2 } });
  deliver({ ...base, type: "command", data: { command: "customMethod", options: { x: 1 } } });
  assert.deepEqual(calls, [["onReceive", { msg: "hi" }], ["onSubscribe", 2], ["customMethod", { x: 1 }]]);
  assert.equal(rt.channels.room.count, 2);

  // onUnsubscribe without a handler: fine, the count is kept anyway
  deliver({ ...base, type: "command", data: { command: "onUnsubscribe", options: null, count: 1 } });
  assert.equal(rt.channels.room.count, 1);
  assert.equal(errors.items.length, 0, `unexpected errors: ${errors.items}`);

  // an unknown command, a channel never created, an error envelope, garbage
  deliver({ ...base, type: "command", data: { command: "dance", options: null } });
  let err = await errors.next();
  assert.equal(err.code, "no_handler");
  assert.match(err.message, /channel "room" has no dance handler/);
  deliver({ ...base, channel: "elsewhere", type: "message", data: 1 });
  err = await errors.next();
  assert.equal(err.code, "no_handler");
  assert.match(err.message, /channel "elsewhere" was not created/);
  deliver({ type: "error", channel: "room", success: false, error: "too many channels (at most 100)" });
  err = await errors.next();
  assert.equal(err.code, "server");
  assert.equal(err.message, "too many channels (at most 100)");
  assert.equal(err.channel, "room");
  for (const junk of [null, 42, "text", { type: "weird", channel: "room" }, { type: "command", channel: "room" }]) {
    deliver(junk);
    err = await errors.next();
    assert.equal(err.code, "no_handler", `for ${JSON.stringify(junk)}`);
  }
  // a handler named like an Object.prototype method is not found by accident
  deliver({ ...base, type: "command", data: { command: "toString", options: null } });
  assert.equal((await errors.next()).code, "no_handler");
});

srv.test("an error event with no listener does not throw", async () => {
  const rt = clients.connect({ socketOptions: { autoConnect: false } });
  const warn = console.warn;
  const warned = [];
  console.warn = (...args) => warned.push(args);
  try {
    rt.socket.listeners("message").forEach((fn) => fn({ type: "message", channel: "none", data: 1 }));
  } finally {
    console.warn = warn;
  }
  assert.equal(warned.length, 1);
  assert.equal(warned[0][1].code, "no_handler");
});

srv.test("a server that refuses the connection: a fatal error event, waiting requests reject", async () => {
  // identity must be a string: the server answers CONNECT_ERROR
  const rt = clients.connect({ identity: 42 });
  const errors = record(rt, "error");
  const early = rt.publish("chat", "too early");
  const ready = rt.ready();
  const err = await errors.next();
  assert.equal(err.code, "connect_error");
  assert.equal(err.fatal, true);
  assert.match(err.message, /connection refused by http:\/\/127\.0\.0\.1:\d+: identity must be a string/);
  await assertRejects(early, "closed", /identity must be a string/);
  await assertRejects(ready, "connect_error", /identity must be a string/);
  assert.equal(rt.state, "disconnected");
  await assertRejects(rt.subscribe("chat"), "closed", /identity must be a string/);
  await sleep(300); // no retry comes: only a fixed wait shows that
  assert.equal(errors.items.length, 1, "no retry after a refusal");
});

srv.test("a namespace the server does not serve is refused the same way", async () => {
  const rt = clients.connect({ url: `${srv.url}/elsewhere`, subscription: ["chat"] });
  const errors = record(rt, "error");
  const err = await errors.next();
  assert.equal(err.code, "connect_error");
  assert.equal(err.fatal, true);
  assert.match(err.message, /connection refused .*: Invalid namespace/i);
  await sleep(200); // nothing more arrives: only a fixed wait shows that
  assert.equal(errors.items.length, 1, `one error, not one per subscription: ${errors.items}`);
});

srv.test("a dead URL: error events, a rejected ready(), requests time out, close() stops it", async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const rt = clients.connect({ url, requestTimeout: 800 });
  const errors = record(rt, "error");
  const started = Date.now();
  await assertRejects(rt.ready(), "connect_error", new RegExp(`cannot connect to ${url.replace(/\./g, "\\.")}`));
  const pending = rt.publish("chat", "nobody");
  await assertRejects(pending, "timeout", /no answer within 800 ms \(not connected to http/);
  assert.ok(Date.now() - started < 5000, "bounded time");
  const err = await errors.next();
  assert.equal(err.code, "connect_error");
  assert.equal(err.fatal, false, "the client keeps trying");
  assert.equal(rt.state, "connecting");
  // a request waiting when close() is called rejects at once
  const waiting = rt.subscribe("chat");
  rt.close();
  await assertRejects(waiting, "closed", /the client was closed/);
  await assertRejects(rt.publish("chat", 1), "closed");
  const n = errors.items.length;
  await sleep(700); // no attempt comes: only a fixed wait shows that
  assert.equal(errors.items.length, n, "no more attempts after close()");
});

srv.test("a dead URL without reconnection: one fatal error, waiting requests reject at once", async () => {
  const port = await freePort();
  const rt = clients.connect({ url: `http://127.0.0.1:${port}`, requestTimeout: 60_000, socketOptions: { reconnection: false } });
  const errors = record(rt, "error");
  const pending = rt.publish("chat", "nobody");
  const err = await errors.next();
  assert.equal(err.code, "connect_error");
  assert.equal(err.fatal, true);
  await assertRejects(pending, "closed", /cannot connect/);
  assert.equal(rt.state, "disconnected");
});

srv.test("after a dropped connection the client reconnects and its channels work again", async () => {
  const channel = uniqueChannel("drop");
  const a = clients.connect({ identity: "dropper" });
  const b = clients.connect({ identity: "other" });
  const aGot = inbox();
  a.createChannel(channel, { onReceive: aGot.push });
  await a.subscribe(channel);
  await b.ready();
  const reconnects = record(a, "reconnect");
  const states = record(a, "state");
  a.socket.io.engine.close(); // the transport goes away under the client
  assert.equal(await states.next(), "reconnecting");
  // a publish made while down waits, and goes out after the channel is back
  const during = a.publish(channel, "while down");
  const info = await reconnects.next();
  assert.equal(typeof info.recovered, "boolean");
  assert.deepEqual(info.resubscribed, info.recovered ? [] : [channel]);
  await during;
  assert.equal((await aGot.next()).data, "while down");
  await b.publish(channel, "after");
  assert.equal((await aGot.next()).data, "after");
  assert.equal(a.channels[channel].count, 1);
});

srv.test("after a server restart (nothing to recover) the client subscribes again by itself", async () => {
  const { startServer } = await import("./lib/server.mjs");
  const port = await freePort();
  let server = await startServer({ port });
  const channel = uniqueChannel("restart");
  const other = uniqueChannel("left");
  try {
    const a = clients.connect({ url: server.url, identity: "survivor" });
    const aGot = inbox();
    a.createChannel(channel, { onReceive: aGot.push });
    a.createChannel(other, { onReceive: aGot.push });
    await a.subscribe(channel);
    await a.subscribe(other);
    await a.unsubscribe(other); // left on purpose: must not come back
    const reconnects = record(a, "reconnect");
    const disconnects = record(a, "disconnect");
    await server.stop();
    await disconnects.next();
    server = await startServer({ port });
    const info = await reconnects.next(() => true, 10_000);
    assert.deepEqual(info, { recovered: false, resubscribed: [channel] });
    assert.equal(a.channels[channel].count, 1);
    const b = clients.connect({ url: server.url, identity: "newcomer" });
    b.createChannel(channel, { onReceive() {} });
    assert.equal((await b.subscribe(channel)).count, 2, "the survivor is a member again");
    await b.publish(channel, "welcome back");
    assert.equal((await aGot.next()).data, "welcome back");
    assert.equal(a.channels[other].subscribed, false);
  } finally {
    await server.stop();
  }
});

srv.test("the path option reaches a server at /realtime/", async () => {
  const { startServer } = await import("./lib/server.mjs");
  const server = await startServer({ config: "[Server]\npath = /realtime/\n" });
  try {
    const channel = uniqueChannel("path");
    const rt = clients.connect({ url: server.url, path: "/realtime/", transports: ["websocket"] });
    assert.equal((await rt.subscribe(channel)).count, 1);
  } finally {
    await server.stop();
  }
});

// ---- needs the server side of docs/design.md#channels-and-members (identities as members,
// ---- onSubscribe/onUnsubscribe, commands, connection state recovery)

srv.test("onSubscribe and onUnsubscribe reach every member with the count", async () => {
  const channel = uniqueChannel("members");
  const a = clients.connect({ identity: "alice" });
  const aCmds = inbox();
  a.createChannel(channel, { onReceive() {}, onSubscribe: aCmds.push, onUnsubscribe: aCmds.push });
  await a.subscribe(channel);
  let env = await aCmds.next();
  assert.deepEqual([env.type, env.identity, env.data.command, env.data.count], ["command", "alice", "onSubscribe", 1]);

  const b = clients.connect({ identity: "bob" });
  const bCmds = inbox();
  b.createChannel(channel, { onSubscribe: bCmds.push, onUnsubscribe: bCmds.push });
  await b.subscribe(channel);
  for (const got of [aCmds, bCmds]) {
    env = await got.next((e) => e.identity === "bob");
    assert.deepEqual([env.type, env.channel, env.data.command, env.data.count], ["command", channel, "onSubscribe", 2]);
    assert.match(env.timestamp, TIMESTAMP_RE);
  }
  assert.equal(a.channels[channel].count, 2);

  // a second connection of bob is not a new member
  const b2 = clients.connect({ identity: "bob" });
  assert.equal((await b2.subscribe(channel)).count, 2);

  // the member leaves (subscriptions belong to the identity, so one unsubscribe does it)
  assert.equal((await b.unsubscribe(channel)).count, 1);
  env = await aCmds.next((e) => e.data.command === "onUnsubscribe");
  assert.deepEqual([env.identity, env.data.count], ["bob", 1]);
  assert.equal(a.channels[channel].count, 1);
});

srv.test("trigger sends a custom command to the channel's members", async () => {
  const channel = uniqueChannel("cmd");
  const a = clients.connect({ identity: "alice" });
  const b = clients.connect({ identity: "bob" });
  const got = inbox();
  a.createChannel(channel, { customMethod() {} });
  b.createChannel(channel, { customMethod: got.push });
  await a.subscribe(channel);
  await b.subscribe(channel);
  assert.equal(await a.channels[channel].trigger("customMethod", { x: 1 }), undefined);
  const env = await got.next();
  assert.deepEqual(Object.keys(env).sort(), ["channel", "data", "identity", "timestamp", "type"]);
  assert.equal(env.type, "command");
  assert.equal(env.channel, channel);
  assert.equal(env.identity, "alice");
  assert.deepEqual(env.data, { command: "customMethod", options: { x: 1 } });
});

srv.test("a command nobody handles is an error event at the receiver", async () => {
  const channel = uniqueChannel("nocmd");
  const a = clients.connect({ identity: "alice" });
  const b = clients.connect({ identity: "bob" });
  const errors = record(b, "error");
  b.createChannel(channel, { onReceive() {} });
  await b.subscribe(channel);
  await a.trigger(channel, "dance", { fast: true });
  const err = await errors.next();
  assert.equal(err.code, "no_handler");
  assert.match(err.message, /no dance handler/);
  assert.deepEqual(err.envelope.data, { command: "dance", options: { fast: true } });
});

srv.test("a short drop is recovered: no resubscription, missed messages delivered", async () => {
  const channel = uniqueChannel("recover");
  const a = clients.connect({ identity: "recoverer" });
  const b = clients.connect({ identity: "publisher" });
  const aGot = inbox();
  a.createChannel(channel, { onReceive: aGot.push });
  await a.subscribe(channel);
  await b.ready();
  const reconnects = record(a, "reconnect");
  a.socket.io.reconnection(false);
  a.socket.io.engine.close();
  await waitFor(() => !a.socket.connected, { timeout: 2000, what: "the drop" });
  await b.publish(channel, "missed");
  a.socket.io.reconnection(true);
  a.socket.connect();
  const info = await reconnects.next();
  assert.deepEqual(info, { recovered: true, resubscribed: [] });
  assert.equal((await aGot.next()).data, "missed");
});

/** A TCP port with nothing listening on it. */
async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}
