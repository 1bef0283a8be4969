// Connect over each transport, subscribe, publish, and receive one's own message.
import assert from "node:assert/strict";
import { ack, collect, connected, once, uniqueChannel, useServer } from "./lib/server.mjs";
import { assertEnvelope, assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";

const srv = useServer();

async function roundTrip(socket, { identity = null } = {}) {
  const channel = uniqueChannel("transport");
  const inbox = collect(socket);
  assertSubscribeAck(await ack(socket, "subscribe", channel), channel, 1);
  const data = { msg: "hi", n: 1, list: [1, "two", null, true], nested: { "ü": "ünïcödé ✓" } };
  assertPublishAck(await ack(socket, "publish", channel, data));
  const env = await inbox.next();
  assertEnvelope(env, { channel, identity, data });
}

srv.test("websocket only: subscribe, publish, receive own envelope", async () => {
  const socket = srv.connect("", { transports: ["websocket"], auth: { identity: "alice" } });
  await connected(socket);
  assert.equal(socket.io.engine.transport.name, "websocket");
  await roundTrip(socket, { identity: "alice" });
});

srv.test("polling only: subscribe, publish, receive own envelope", async () => {
  const socket = srv.connect("", { transports: ["polling"] });
  await connected(socket);
  assert.equal(socket.io.engine.transport.name, "polling");
  await roundTrip(socket, { identity: null });
  assert.equal(socket.io.engine.transport.name, "polling");
});

srv.test("polling then upgrade to websocket, then publish and receive", async () => {
  const socket = srv.connect("", { auth: { identity: "upgrader" } });
  // io() opens the engine synchronously, so the listener is in place before any probe.
  const engine = socket.io.engine;
  assert.equal(engine.transport.name, "polling");
  const upgraded = engine.transport.name === "websocket"
    ? Promise.resolve()
    : once(engine, "upgrade", 5000);
  await connected(socket);
  await upgraded;
  assert.equal(socket.io.engine.transport.name, "websocket");
  await roundTrip(socket, { identity: "upgrader" });
  assert.equal(socket.io.engine.transport.name, "websocket");
});

srv.test("namespace that does not exist gets connect_error \"Invalid namespace\"", async () => {
  for (const transports of [["websocket"], ["polling"]]) {
    const socket = srv.connect("/nope", { transports });
    const err = await once(socket, "connect_error", 5000);
    assert.equal(err.message, "Invalid namespace", `${transports}: ${err.message}`);
    assert.equal(socket.connected, false);
  }
});
