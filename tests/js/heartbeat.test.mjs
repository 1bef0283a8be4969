// Heartbeats and reconnection, with a server that pings every 300 ms and waits 200 ms.
import assert from "node:assert/strict";
import {
  ack, collect, connected, once, sleep, uniqueChannel, useServer, waitFor, withTimeout,
} from "./lib/server.mjs";
import { assertEnvelope, assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";

const srv = useServer({ config: "[Server]\nping-interval = 300ms\nping-timeout = 200ms\n" });

const DROP_REASONS = ["transport close", "ping timeout"];

/**
 * Make the client stop answering the server's pings: engine.io-client answers a
 * "ping" packet in Socket#_onPacket with this._sendPacket("pong"); we swallow it.
 * Returns a counter of swallowed pongs.
 */
function stopAnsweringPings(socket) {
  const engine = socket.io.engine;
  assert.equal(typeof engine._sendPacket, "function",
    "engine.io-client has no _sendPacket: the installed client version changed, update this hook");
  const original = engine._sendPacket;
  const stats = { dropped: 0 };
  engine._sendPacket = function (type, ...rest) {
    if (type === "pong") {
      stats.dropped += 1;
      return undefined;
    }
    return original.call(this, type, ...rest);
  };
  return stats;
}

async function roundTrip(socket, identity = null) {
  const channel = uniqueChannel("hb");
  const inbox = collect(socket);
  assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);
  assertPublishAck(await ack(socket, "publish", channel, { alive: true }));
  assertEnvelope(await inbox.next(), { channel, identity, data: { alive: true } });
}

srv.test("handshake carries the configured ping interval and timeout", async () => {
  const socket = srv.connect("", { transports: ["websocket"] });
  const handshake = once(socket.io.engine, "handshake", 5000);
  await connected(socket);
  const hs = await handshake;
  assert.equal(hs.pingInterval, 300);
  assert.equal(hs.pingTimeout, 200);
  assert.equal(typeof hs.sid, "string");
  assert.ok(Number.isInteger(hs.maxPayload) && hs.maxPayload > 0, `maxPayload ${hs.maxPayload}`);
});

srv.test("a client that answers pings stays connected", async () => {
  for (const transports of [["websocket"], ["polling"]]) {
    const socket = srv.connect("", { transports });
    await connected(socket);
    let disconnectReason = null;
    socket.on("disconnect", (r) => { disconnectReason = r; });
    let pings = 0;
    socket.io.engine.on("ping", () => { pings += 1; });
    await waitFor(() => pings >= 3 || disconnectReason !== null, {
      timeout: 5000, what: () => `${transports}: 3 pings (got ${pings})`,
    });
    assert.equal(disconnectReason, null, `${transports}: disconnected (${disconnectReason})`);
    assert.ok(pings >= 3, `${transports}: only ${pings} pings with ping-interval 300ms`);
    await roundTrip(socket);
  }
});

srv.test("a client that stops answering pings is dropped; the server is unharmed", async (t) => {
  const control = srv.connect("", { transports: ["websocket"] });
  const mute = srv.connect("", { transports: ["websocket"], auth: { identity: "mute" } });
  await Promise.all([connected(control), connected(mute)]);
  let controlDropped = null;
  control.on("disconnect", (r) => { controlDropped = r; });

  const stats = stopAnsweringPings(mute);
  const t0 = Date.now();
  const reason = await once(mute, "disconnect", 3000);
  const elapsed = Date.now() - t0;
  assert.ok(DROP_REASONS.includes(reason), `disconnect reason "${reason}"`);
  assert.ok(stats.dropped >= 1, "the server sent no ping before the drop");
  assert.ok(elapsed < 3000, `dropped after ${elapsed} ms`);
  t.diagnostic(`dropped with reason "${reason}" after ${elapsed} ms, ${stats.dropped} pong(s) withheld`);

  // The client's own timer alone would also end in "ping timeout" if the server never
  // pinged; the control client shows that the server does ping and keeps live clients.
  await sleep(600); // the control client lives through more ping periods: time is the point
  assert.equal(controlDropped, null, `control client was dropped too (${controlDropped})`);
  assert.equal(control.connected, true);
  await roundTrip(control);

  const fresh = srv.connect("", { transports: ["websocket"], auth: { identity: "fresh" } });
  await connected(fresh);
  await roundTrip(fresh, "fresh");
});

srv.test("after a server-side drop the client reconnects by itself and works", async () => {
  const socket = srv.connect("", {
    transports: ["websocket"], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500,
    auth: { identity: "phoenix" },
  });
  await connected(socket);
  const firstEngine = socket.io.engine;
  const disconnected = once(socket, "disconnect", 3000);
  stopAnsweringPings(socket);
  const reason = await disconnected;
  assert.ok(DROP_REASONS.includes(reason), `disconnect reason "${reason}"`);
  await withTimeout(new Promise((res) => socket.once("connect", res)), 5000, "reconnect");
  assert.notEqual(socket.io.engine, firstEngine, "a new engine after reconnect");
  await roundTrip(socket, "phoenix");
  // the new engine answers pings: still connected after several ping periods
  await sleep(1000); // several ping periods pass: time is the point
  assert.equal(socket.connected, true, "reconnected client stays connected");
});

srv.test("after engine.close() the client reconnects by itself and works", async () => {
  for (const transports of [["websocket"], ["polling"]]) {
    const socket = srv.connect("", {
      transports, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500,
      auth: { identity: "closer" },
    });
    await connected(socket);
    await roundTrip(socket, "closer");
    const disconnected = once(socket, "disconnect", 3000);
    socket.io.engine.close();
    const reason = await disconnected;
    assert.equal(socket.connected, false);
    assert.ok(typeof reason === "string" && reason.length > 0);
    await withTimeout(new Promise((res) => socket.once("connect", res)), 5000, `${transports} reconnect`);
    await roundTrip(socket, "closer");
  }
});
