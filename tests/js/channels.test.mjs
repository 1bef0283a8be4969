// Channels: several members, ordering, binary data, acks, bad requests.
import assert from "node:assert/strict";
import { ack, collect, connected, sleep, uniqueChannel, useServer, withTimeout } from "./lib/server.mjs";
import {
  assertEnvelope, assertErrorAck, assertPublishAck, assertSubscribeAck,
} from "./lib/envelope.mjs";

const srv = useServer();

srv.test("two identities: counts 1 then 2, a publish reaches both", async () => {
  const channel = uniqueChannel("pair");
  const alice = srv.connect("", { transports: ["websocket"], auth: { identity: "alice" } });
  const bob = srv.connect("", { transports: ["websocket"], auth: { identity: "bob" } });
  await Promise.all([connected(alice), connected(bob)]);
  const aliceInbox = collect(alice);
  const bobInbox = collect(bob);

  assertSubscribeAck(await ack(alice, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(bob, "subscribe", channel), channel, 2);

  const data = { msg: "hello bob" };
  assertPublishAck(await ack(alice, "publish", channel, data));
  const [a, b] = await Promise.all([aliceInbox.next(), bobInbox.next()]);
  assertEnvelope(a, { channel, identity: "alice", data });
  assertEnvelope(b, { channel, identity: "alice", data });
  assert.equal(a.timestamp, b.timestamp, "both subscribers get the same envelope");

  // bob publishes back: identity is bob's
  assertPublishAck(await ack(bob, "publish", channel, "hi alice"));
  const [a2, b2] = await Promise.all([aliceInbox.next(), bobInbox.next()]);
  assertEnvelope(a2, { channel, identity: "bob", data: "hi alice" });
  assertEnvelope(b2, { channel, identity: "bob", data: "hi alice" });
});

srv.test("a non-subscriber does not receive, and channels are separate", async () => {
  const c1 = uniqueChannel("sep");
  const c2 = uniqueChannel("sep");
  const x = srv.connect("", { transports: ["websocket"] });
  const y = srv.connect("", { transports: ["websocket"] });
  const z = srv.connect("", { transports: ["websocket"] });
  await Promise.all([connected(x), connected(y), connected(z)]);
  const yInbox = collect(y);
  const zInbox = collect(z);
  assertSubscribeAck(await ack(y, "subscribe", c1), c1, 1);
  assertSubscribeAck(await ack(z, "subscribe", c2), c2, 1);
  // x publishes to c1 without being subscribed
  assertPublishAck(await ack(x, "publish", c1, { to: "c1" }));
  assertEnvelope(await yInbox.next(), { channel: c1, identity: null, data: { to: "c1" } });
  assertPublishAck(await ack(x, "publish", c2, { to: "c2" }));
  assertEnvelope(await zInbox.next(), { channel: c2, identity: null, data: { to: "c2" } });
  await sleep(200); // nothing more arrives: only a fixed wait shows that
  assert.equal(yInbox.items.length, 1, `y got ${JSON.stringify(yInbox.items)}`);
  assert.equal(zInbox.items.length, 1, `z got ${JSON.stringify(zInbox.items)}`);
});

srv.test("1000 messages in a burst arrive in order at a websocket and a polling subscriber", async () => {
  const N = 1000;
  const channel = uniqueChannel("burst");
  const wsSub = srv.connect("", { transports: ["websocket"] });
  const pollSub = srv.connect("", { transports: ["polling"] });
  const pub = srv.connect("", { transports: ["websocket"], auth: { identity: "burster" } });
  await Promise.all([connected(wsSub), connected(pollSub), connected(pub)]);
  const wsInbox = collect(wsSub);
  const pollInbox = collect(pollSub);
  assertSubscribeAck(await ack(wsSub, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(pollSub, "subscribe", channel), channel, 2);

  let acked = 0;
  const bad = [];
  const allAcked = new Promise((res) => {
    for (let i = 0; i < N; i++) {
      pub.emit("publish", channel, { seq: i }, (res2) => {
        if (!res2 || res2.ok !== true) bad.push(res2);
        acked += 1;
        if (acked === N) res();
      });
    }
  });
  await withTimeout(allAcked, 20_000, () => `${N} publish acks (got ${acked})`);
  assert.deepEqual(bad, [], "every publish is acked with ok");

  const expected = Array.from({ length: N }, (_, i) => i);
  for (const [name, inbox] of [["websocket", wsInbox], ["polling", pollInbox]]) {
    const items = await inbox.waitCount(N, 20_000);
    const seqs = items.map((e) => e.data && e.data.seq);
    assert.deepEqual(seqs, expected, `${name} subscriber got messages out of order or missing`);
    for (const env of items) assert.equal(env.identity, "burster");
  }
  await sleep(200); // no duplicate follows: only a fixed wait shows that
  assert.equal(wsInbox.items.length, N, "no duplicates (websocket)");
  assert.equal(pollInbox.items.length, N, "no duplicates (polling)");
});

for (const transport of ["websocket", "polling"]) {
  srv.test(`binary data round-trips byte-identical (${transport})`, async () => {
    const channel = uniqueChannel("bin");
    const socket = srv.connect("", { transports: [transport], auth: { identity: "bin" } });
    await connected(socket);
    const inbox = collect(socket);
    assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);

    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assertPublishAck(await ack(socket, "publish", channel, bytes));
    const env1 = await inbox.next();
    assertEnvelope(env1, { channel, identity: "bin" });
    assert.ok(Buffer.isBuffer(env1.data), `data is not a Buffer: ${Object.prototype.toString.call(env1.data)}`);
    assert.ok(env1.data.equals(bytes), "Buffer bytes differ");

    const small = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const obj = { name: "file.bin", blob: bytes, parts: [small, { inner: Buffer.alloc(0) }], n: 3 };
    assertPublishAck(await ack(socket, "publish", channel, obj));
    const env2 = await inbox.next();
    assertEnvelope(env2, { channel, identity: "bin" });
    const d = env2.data;
    assert.deepEqual(Object.keys(d).sort(), ["blob", "n", "name", "parts"]);
    assert.equal(d.name, "file.bin");
    assert.equal(d.n, 3);
    assert.ok(Buffer.isBuffer(d.blob) && d.blob.equals(bytes), "nested blob differs");
    assert.ok(Buffer.isBuffer(d.parts[0]) && d.parts[0].equals(small), "blob in array differs");
    assert.ok(Buffer.isBuffer(d.parts[1].inner) && d.parts[1].inner.length === 0, "empty blob differs");
  });
}

srv.test("JSON values of every kind round-trip", async () => {
  const channel = uniqueChannel("json");
  const socket = srv.connect("", { transports: ["websocket"] });
  await connected(socket);
  const inbox = collect(socket);
  assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);
  const values = [
    "plain string", "", 0, -1.5, 1e21, true, false, null, [], {}, [1, [2, [3]]],
    { deep: { deeper: { deepest: ["x"] } } }, "emoji 😀 and \u0000 nul and \"quotes\"\n",
  ];
  for (const v of values) assertPublishAck(await ack(socket, "publish", channel, v));
  const items = await inbox.waitCount(values.length);
  items.forEach((env, i) => assertEnvelope(env, { channel, identity: null, data: values[i] }));
});

srv.test("acks: emitWithAck and callbacks; publish without ack still delivers", async () => {
  const channel = uniqueChannel("acks");
  const socket = srv.connect("", { transports: ["websocket"] });
  await connected(socket);
  const inbox = collect(socket);

  // emitWithAck (socket.io-client >= 4.6), no timeout wrapper
  const sub = await withTimeout(socket.emitWithAck("subscribe", channel), 5000, "subscribe ack");
  assertSubscribeAck(sub, channel, 1);
  const pub = await withTimeout(socket.emitWithAck("publish", channel, { via: "emitWithAck" }), 5000, "publish ack");
  assertPublishAck(pub);
  assertEnvelope(await inbox.next(), { channel, data: { via: "emitWithAck" } });

  // classic callback acks, exactly one argument each
  const cbArgs = await withTimeout(new Promise((res) => {
    socket.emit("publish", channel, { via: "callback" }, (...args) => res(args));
  }), 5000, "publish callback");
  assert.equal(cbArgs.length, 1, `ack has ${cbArgs.length} arguments: ${JSON.stringify(cbArgs)}`);
  assertPublishAck(cbArgs[0]);
  assertEnvelope(await inbox.next(), { channel, data: { via: "callback" } });

  // subscribing again is fine and still one member
  const again = await withTimeout(new Promise((res) => {
    socket.emit("subscribe", channel, (...args) => res(args));
  }), 5000, "subscribe callback");
  assert.equal(again.length, 1);
  assertSubscribeAck(again[0], channel, 1);

  // no ack requested: still delivered
  socket.emit("publish", channel, { via: "no ack" });
  assertEnvelope(await inbox.next(), { channel, data: { via: "no ack" } });
});

srv.test("bad requests get {ok:false, error} and the connection stays usable", async () => {
  const socket = srv.connect("", { transports: ["websocket"] });
  await connected(socket);
  assertErrorAck(await ack(socket, "subscribe", ""), 'subscribe("")');
  assertErrorAck(await ack(socket, "subscribe", 42), "subscribe(42)");
  assertErrorAck(await ack(socket, "subscribe"), "subscribe()");
  assertErrorAck(await ack(socket, "subscribe", { channel: "x" }), "subscribe({channel})");
  assertErrorAck(await ack(socket, "publish", "", "data"), 'publish("", data)');
  assertErrorAck(await ack(socket, "publish", 42, "data"), "publish(42, data)");
  assert.equal(socket.connected, true, "still connected after bad requests");

  const channel = uniqueChannel("after-bad");
  const inbox = collect(socket);
  assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);
  assertPublishAck(await ack(socket, "publish", channel, "still works"));
  assertEnvelope(await inbox.next(), { channel, data: "still works" });
});

srv.test("30 subscribers on mixed transports: counts 1..30, one publish reaches all", async () => {
  const N = 30;
  const channel = uniqueChannel("many");
  const subs = Array.from({ length: N }, (_, i) =>
    srv.connect("", { transports: i % 2 ? ["polling"] : ["websocket"], auth: { identity: `member-${i}` } }));
  await Promise.all(subs.map((s) => connected(s)));
  const inboxes = subs.map((s) => collect(s));
  for (let i = 0; i < N; i++) {
    assertSubscribeAck(await ack(subs[i], "subscribe", channel), channel, i + 1);
  }
  assertPublishAck(await ack(subs[7], "publish", channel, { hello: "all" }));
  const envs = await Promise.all(inboxes.map((inbox) => inbox.next()));
  for (const env of envs) assertEnvelope(env, { channel, identity: "member-7", data: { hello: "all" } });
});

for (const transport of ["websocket", "polling"]) {
  srv.test(`large payloads (200 KB text and binary) round-trip (${transport})`, async () => {
    const channel = uniqueChannel("large");
    const socket = srv.connect("", { transports: [transport] });
    await connected(socket);
    const inbox = collect(socket);
    assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);
    const text = "xyzé".repeat(50_000);
    const blob = Buffer.alloc(200_000, 0xab);
    assertPublishAck(await ack(socket, "publish", channel, { text }));
    assertPublishAck(await ack(socket, "publish", channel, blob));
    const env1 = await inbox.next();
    assertEnvelope(env1, { channel });
    assert.equal(env1.data.text, text);
    const env2 = await inbox.next();
    assertEnvelope(env2, { channel });
    assert.ok(Buffer.isBuffer(env2.data) && env2.data.equals(blob), "200 KB Buffer differs");
  });
}
