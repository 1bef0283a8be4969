// Cluster mode (docs/design.md#cluster) with the stock socket.io-client: two nodes joined through a
// real redis-server, one client on each node of the same channel.
import assert from "node:assert/strict";
import {
  ack, collect, connected, metric, sleep, uniqueChannel, useCluster, waitFor, withTimeout,
} from "./lib/server.mjs";
import { assertEnvelope, assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";

// A short grace window, so the reload test can see it end.
const cluster = useCluster({ nodes: 2, config: "[Server]\nreconnect-timeout = 2s\n" });

const range = (n) => Array.from({ length: n }, (_, i) => i);

/** Publish `{seq: 0..n-1}` to `channel` without waiting between them; resolves once all are acked. */
function burst(socket, channel, n) {
  let acked = 0;
  const bad = [];
  const done = new Promise((res) => {
    for (let seq = 0; seq < n; seq++) {
      socket.emit("publish", channel, { seq }, (r) => {
        if (!r || r.ok !== true) bad.push(r);
        if (++acked === n) res();
      });
    }
  });
  return withTimeout(done, 15_000, () => `${n} publish acks (got ${acked})`)
    .then(() => assert.deepEqual(bad, [], "every publish is acked with ok"));
}

async function api(node, method, path, body) {
  const res = await fetch(cluster.url(node) + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${method} ${path} on node ${node}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const onSubscribeOf = (identity) => (e) => e.data?.command === "onSubscribe" && e.identity === identity;

for (const transport of ["websocket", "polling"]) {
  cluster.test(`publishes on either node reach the other exactly once, in order (node 1 on ${transport})`, async () => {
    const channel = uniqueChannel("cross");
    const alice = cluster.connect(0, { auth: { identity: "alice" } });
    const bob = cluster.connect(1, { transports: [transport], auth: { identity: "bob" } });
    await Promise.all([connected(alice), connected(bob)]);
    const inbox = { alice: collect(alice), bob: collect(bob) };
    const aliceEvents = collect(alice, "message", { types: ["command"] });

    // Counts are the cluster's: bob is the second member though alone on his node.
    assertSubscribeAck(await ack(alice, "subscribe", channel), channel, 1);
    assertSubscribeAck(await ack(bob, "subscribe", channel), channel, 2);
    const joined = await aliceEvents.next(onSubscribeOf("bob"));
    assert.equal(joined.channel, channel);
    assert.equal(joined.data.count, 2, `alice heard ${JSON.stringify(joined)}`);

    // One message each way, the whole envelope checked.
    assertPublishAck(await ack(alice, "publish", channel, { from: "node 0" }));
    assertEnvelope(await inbox.bob.next(), { channel, identity: "alice", data: { from: "node 0" } });
    assertPublishAck(await ack(bob, "publish", channel, { from: "node 1" }));
    assertEnvelope(await inbox.alice.next((e) => e.identity === "bob"), {
      channel, identity: "bob", data: { from: "node 1" },
    });

    // Both publish a burst at once: each publisher's messages arrive in order, once, on
    // both nodes (the sender hears its own too).
    const N = 200;
    await Promise.all([burst(alice, channel, N), burst(bob, channel, N)]);
    for (const [name, box] of Object.entries(inbox)) {
      const items = await box.waitCount(2 + 2 * N, 15_000);
      for (const who of ["alice", "bob"]) {
        const seqs = items.filter((e) => e.identity === who && e.data && "seq" in e.data).map((e) => e.data.seq);
        assert.deepEqual(seqs, range(N), `${name} got ${who}'s burst out of order, short or doubled`);
      }
      assert.ok(items.every((e) => e.channel === channel));
    }
    await sleep(300); // no duplicate follows: only a fixed wait shows that
    assert.equal(inbox.alice.items.length, 2 + 2 * N, "no duplicates at alice (node 0)");
    assert.equal(inbox.bob.items.length, 2 + 2 * N, "no duplicates at bob (node 1)");
  });
}

cluster.test("a publish through the HTTP API of one node reaches members on both", async () => {
  const channel = uniqueChannel("http");
  const a = cluster.connect(0);
  const b = cluster.connect(1);
  await Promise.all([connected(a), connected(b)]);
  const inA = collect(a);
  const inB = collect(b);
  assertSubscribeAck(await ack(a, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(b, "subscribe", channel), channel, 2);
  const batch = range(20).map((seq) => ({ channel, identity: "backend", data: { seq } }));
  assert.deepEqual(await api(1, "POST", "/api/publish", batch), { ok: true, published: 20 });
  for (const inbox of [inA, inB]) {
    const items = await inbox.waitCount(20);
    assert.deepEqual(items.map((e) => e.data.seq), range(20));
    assertEnvelope(items[0], { channel, identity: "backend", data: { seq: 0 } });
  }
  await sleep(200); // no duplicate follows: only a fixed wait shows that
  assert.equal(inA.items.length, 20);
  assert.equal(inB.items.length, 20);
});

cluster.test("direct messages reach the identity's connections on every node", async () => {
  const bob0 = cluster.connect(0, { auth: { identity: "dm-bob" } });
  const bob1 = cluster.connect(1, { transports: ["polling"], auth: { identity: "dm-bob" } });
  const carol = cluster.connect(0, { auth: { identity: "dm-carol" } });
  await Promise.all([connected(bob0), connected(bob1), connected(carol)]);
  const direct = (e) => e.channel === null;
  const inBob0 = collect(bob0);
  const inBob1 = collect(bob1);
  const inCarol = collect(carol);

  // From node 0's API to bob, who has a tab on each node: each tab gets it once.
  assert.deepEqual(await api(0, "POST", "/api/publish", { to: "dm-bob", data: { n: 1 } }),
    { ok: true, published: 1 });
  for (const inbox of [inBob0, inBob1]) {
    const env = await inbox.next(direct);
    assertEnvelope(env, { channel: null, identity: null, data: { n: 1 } });
  }

  // From node 1's API to carol, who is only on node 0: in order.
  const batch = range(10).map((seq) => ({ to: "dm-carol", identity: "ops", data: { seq } }));
  assert.deepEqual(await api(1, "POST", "/api/publish", batch), { ok: true, published: 10 });
  const got = await inCarol.waitCount(10);
  assert.deepEqual(got.map((e) => e.data.seq), range(10));
  assertEnvelope(got[0], { channel: null, identity: "ops", data: { seq: 0 } });

  await sleep(300); // no duplicate follows: only a fixed wait shows that
  assert.equal(inBob0.items.length, 1, `bob's node-0 tab: ${JSON.stringify(inBob0.items)}`);
  assert.equal(inBob1.items.length, 1, `bob's node-1 tab: ${JSON.stringify(inBob1.items)}`);
  assert.equal(inCarol.items.length, 10, "carol got only hers");
});

cluster.test("GET /api/channels/{name} on either node counts the members of both", async () => {
  const channel = uniqueChannel("count");
  const path = `/api/channels/${encodeURIComponent(channel)}`;
  const alice = cluster.connect(0, { auth: { identity: "count-alice" } });
  const bob = cluster.connect(1, { auth: { identity: "count-bob" } });
  const anon = cluster.connect(1);
  await Promise.all([connected(alice), connected(bob), connected(anon)]);
  const aliceEvents = collect(alice, "message", { types: ["command"] });

  assertSubscribeAck(await ack(alice, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(bob, "subscribe", channel), channel, 2);
  assertSubscribeAck(await ack(anon, "subscribe", channel), channel, 3);

  const expect = async (count, identities, anonymous, what) => {
    for (const node of [0, 1]) {
      const info = await api(node, "GET", path);
      info.identities = [...info.identities].sort();
      assert.deepEqual(info, { ok: true, channel, count, identities, anonymous }, `${what}, node ${node}`);
      const list = await api(node, "GET", "/api/channels");
      assert.equal(list.ok, true);
      assert.deepEqual(list.channels.filter((c) => c.name === channel), [{ name: channel, count }],
        `${what}: /api/channels on node ${node}`);
    }
  };
  await expect(3, ["count-alice", "count-bob"], 1, "three members on two nodes");

  // alice's second tab, on the other node, is not a new member.
  const alice1 = cluster.connect(1, { auth: { identity: "count-alice" } });
  await connected(alice1);
  assertSubscribeAck(await ack(alice1, "subscribe", channel), channel, 3);
  await expect(3, ["count-alice", "count-bob"], 1, "alice on both nodes is one member");

  // bob leaves: both nodes count it at once, and alice hears it.
  const left = await ack(bob, "unsubscribe", channel);
  assert.deepEqual(left, { ok: true, channel, count: 2 });
  const heard = await aliceEvents.next((e) => e.data?.command === "onUnsubscribe" && e.identity === "count-bob");
  assert.equal(heard.data.count, 2);
  await expect(2, ["count-alice"], 1, "after bob left");
  const joins = aliceEvents.items.filter((e) => e.data?.command === "onSubscribe" && e.identity === "count-alice");
  assert.equal(joins.length, 1, `onSubscribe for alice fired once: ${JSON.stringify(joins)}`);
});

cluster.test("a reload that lands on the other node: a new session there, the same member", async () => {
  const channel = uniqueChannel("reload");
  const path = `/api/channels/${encodeURIComponent(channel)}`;
  const tab0 = cluster.connect(0, { auth: { identity: "reload-alice" } });
  const bob = cluster.connect(1, { auth: { identity: "reload-bob" } });
  await Promise.all([connected(tab0), connected(bob)]);
  const bobEvents = collect(bob, "message", { types: ["command"] });
  const bobMessages = collect(bob);
  assertSubscribeAck(await ack(tab0, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(bob, "subscribe", channel), channel, 2);

  // The page goes without a goodbye (node 0 keeps alice for the grace window), a message
  // is published meanwhile, and the reloaded page reaches node 1.
  tab0.io.engine.close();
  // Node 0 saw the page go (tab0 was this test's only connection there).
  await waitFor(async () => (await metric(cluster.url(0), 'realtime_connections{transport="websocket"}')) === 0,
    { what: "node 0 to see the page go" });
  assertPublishAck(await ack(bob, "publish", channel, { missed: true }));
  // The ack leaves before the message comes back from Redis to node 1: until bob has his
  // copy, a tab that joined node 1 meanwhile would be a member there when it arrives.
  await bobMessages.next((e) => e.data?.missed === true);
  const tab1 = cluster.connect(1, { auth: { identity: "reload-alice" } });
  const inbox = collect(tab1);
  await connected(tab1);
  await sleep(300); // nothing is replayed: only a fixed wait shows that
  assert.deepEqual(inbox.items, [], "what node 0 kept for alice is not replayed on node 1");

  // Without subscribing again, the new tab is in the channel: subscriptions belong to the
  // identity, cluster-wide.
  assertPublishAck(await ack(bob, "publish", channel, { after: true }));
  assertEnvelope(await inbox.next(), { channel, identity: "reload-bob", data: { after: true } });

  // One member throughout, also once node 0's grace window (2 s) is over.
  for (const when of ["during the grace window", "after it"]) {
    for (const node of [0, 1]) {
      const info = await api(node, "GET", path);
      assert.equal(info.count, 2, `${when}, node ${node}: ${JSON.stringify(info)}`);
      assert.deepEqual([...info.identities].sort(), ["reload-alice", "reload-bob"]);
    }
    // Waits out the grace window, a timer the node must honour.
    if (when === "during the grace window") await sleep(2_500);
  }
  const churn = bobEvents.items.filter((e) => e.identity === "reload-alice");
  assert.deepEqual(churn, [], "nobody saw alice leave or join again");
});
