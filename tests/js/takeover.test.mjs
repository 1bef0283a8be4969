// A silent drop: the client's connection is reset while the server's side stays open and
// silent (a NAT timeout, a Wi-Fi switch). The stock socket.io-client reconnects with its
// pid and offset while the server still holds its session: it takes that session over and
// gets every message published meanwhile, once, in order, with `socket.recovered`.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { collect, connected, once, sleep, uniqueChannel, useServer } from "./lib/server.mjs";
import { startProxy } from "./lib/proxy.mjs";

// Default heartbeat (25 s + 20 s): the server cannot notice the drop during a test.
const srv = useServer();

async function publish(channel, from, to) {
  const batch = [];
  for (let n = from; n <= to; n++) batch.push({ channel, data: { n } });
  const res = await fetch(`${srv.url}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(batch),
  });
  assert.deepEqual(await res.json(), { ok: true, published: batch.length });
}

for (const transports of [["websocket"], ["polling"]]) {
  srv.test(`a silent drop (${transports}) is taken over: recovered, every message once, in order`, async (t) => {
    const channel = uniqueChannel("silent");
    const proxy = await startProxy(new URL(srv.url).port);
    t.after(() => proxy.close());
    const client = io(proxy.url, {
      forceNew: true,
      transports,
      auth: { identity: "nat" },
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
    });
    t.after(() => client.close());
    await connected(client);
    const inbox = collect(client);
    await client.timeout(5000).emitWithAck("subscribe", channel);
    await publish(channel, 1, 5);
    await inbox.waitCount(5);
    assert.equal(client.recovered, false);

    const reconnected = once(client, "connect", 10_000);
    // Down until the messages below are published, so they surely fall in the drop.
    proxy.hold();
    proxy.dropSilently();
    await publish(channel, 6, 20);
    proxy.release();
    await reconnected;
    assert.equal(client.recovered, true, "socket.recovered after the reconnect");
    // Queued for it at the reconnect: a bounded wait, not a measure of speed.
    await inbox.waitCount(20, 3000);
    await publish(channel, 21, 25);
    await inbox.waitCount(25, 5000);
    await sleep(200); // no duplicate follows: only a fixed wait shows that
    assert.deepEqual(inbox.items.map((e) => e.data.n), Array.from({ length: 25 }, (_, i) => i + 1));
  });
}
