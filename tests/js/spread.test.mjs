// The bus spread over the shards of a Redis Cluster (`[Cluster] bus-shards`,
// docs/deploying.md) with the stock socket.io-client: two nodes, three primaries. Every
// broadcast crosses once, each channel's in order; a short drop is recovered on the node
// that held the session, and a client sent to the other node gets a new session.
import assert from "node:assert/strict";
import { ack, collect, connected, uniqueChannel, useCluster, waitFor } from "./lib/server.mjs";
import { startProxy } from "./lib/proxy.mjs";

const cluster = useCluster({
  nodes: 2,
  redisCluster: true,
  config: "bus-shards = 3\n[Server]\nreconnect-timeout = 5s\n",
});

const portOf = (url) => Number(new URL(url).port);

for (const transport of ["websocket", "polling"]) {
  cluster.test(`broadcasts cross both ways once, each channel in order (node 1 on ${transport})`, async () => {
    const channels = Array.from({ length: 6 }, () => uniqueChannel(`spread-${transport}`));
    const a = cluster.connect(0);
    const b = cluster.connect(1, { transports: [transport] });
    await Promise.all([connected(a), connected(b)]);
    const aGot = collect(a);
    const bGot = collect(b);
    for (const c of channels) {
      await ack(a, "subscribe", c);
      await ack(b, "subscribe", c);
    }
    const publish = async (socket, from, n) => {
      for (let i = 0; i < n; i++) {
        const r = await ack(socket, "publish", channels[i % channels.length], { from, i });
        assert.equal(r.ok, true, JSON.stringify(r));
      }
    };
    await publish(a, "a", 60);
    await publish(b, "b", 60);
    for (const [name, got] of [["a", aGot], ["b", bGot]]) {
      await got.waitCount(120, 10_000);
      for (const c of channels) {
        for (const from of ["a", "b"]) {
          const seen = got.items.filter((e) => e.channel === c && e.data.from === from).map((e) => e.data.i);
          const want = Array.from({ length: 60 }, (_, i) => i).filter((i) => channels[i % channels.length] === c);
          assert.deepEqual(seen, want, `${name}: ${from}'s messages in ${c}`);
        }
      }
      assert.equal(got.items.length, 120, `${name}: nothing twice`);
    }
  });
}

cluster.test("a short drop is recovered on the node that held the session, not on another", async () => {
  const channel = uniqueChannel("spread-recover");
  const lb = await startProxy(portOf(cluster.url(0)));
  try {
    const rita = cluster.connectTo(lb.url, {
      reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, randomizationFactor: 0,
      auth: { identity: "rita" },
    });
    const connections = [];
    rita.on("connect", () => connections.push({ recovered: rita.recovered, got: [] }));
    rita.on("message", (env) => {
      if (env.type === "message") connections.at(-1).got.push(env.data.n);
    });
    await connected(rita);
    await ack(rita, "subscribe", channel);
    const publisher = cluster.connect(1);
    await connected(publisher);
    await ack(publisher, "publish", channel, { n: 1 });
    await waitFor(() => connections[0].got.length === 1, { what: "the first message" });

    // Dropped and back on node 0: the session is recovered with what it missed.
    lb.hold();
    lb.cutAll();
    await waitFor(() => !rita.connected, { what: "the drop" });
    await ack(publisher, "publish", channel, { n: 2 });
    lb.release();
    await waitFor(() => connections.length === 2 && connections[1].got.includes(2), {
      timeout: 10_000, what: () => `the recovered session (connections: ${JSON.stringify(connections)})`,
    });
    assert.equal(connections[1].recovered, true);

    // Dropped and sent to node 1: a new session there, told nothing it cannot vouch for.
    lb.hold();
    lb.cutAll();
    await waitFor(() => !rita.connected, { what: "the second drop" });
    await ack(publisher, "publish", channel, { n: 3 });
    lb.to(portOf(cluster.url(1)));
    lb.release();
    await waitFor(() => connections.length === 3 && rita.connected, {
      timeout: 10_000, what: () => `a session on node 1 (connections: ${JSON.stringify(connections)})`,
    });
    assert.equal(connections[2].recovered, false);
    await ack(rita, "subscribe", channel);
    await ack(publisher, "publish", channel, { n: 4 });
    await waitFor(() => connections[2].got.includes(4), { what: "a message to the new session" });
    assert.deepEqual(connections[2].got, [4]);
  } finally {
    await lb.close();
  }
});
