// Assertions on what the server sends back.
import assert from "node:assert/strict";
import { TIMESTAMP_RE } from "./server.mjs";

/** Check a `message` envelope: exact key set, type, channel, identity, timestamp, data. */
export function assertEnvelope(env, { channel, identity = null, data }) {
  assert.equal(typeof env, "object", `envelope is not an object: ${JSON.stringify(env)}`);
  assert.notEqual(env, null);
  assert.deepEqual(Object.keys(env).sort(), ["channel", "data", "identity", "timestamp", "type"],
    `envelope keys: ${JSON.stringify(env)}`);
  assert.equal(env.type, "message");
  assert.equal(env.channel, channel);
  assert.equal(env.identity, identity);
  assert.equal(typeof env.timestamp, "string");
  assert.match(env.timestamp, TIMESTAMP_RE);
  const ts = Date.parse(env.timestamp);
  assert.ok(Number.isFinite(ts), `unparseable timestamp ${env.timestamp}`);
  assert.ok(Math.abs(ts - Date.now()) < 60_000, `timestamp ${env.timestamp} is not close to now (${new Date().toISOString()})`);
  if (data !== undefined) assert.deepEqual(normalizeBinary(env.data), normalizeBinary(data));
}

/** A subscribe ack: exactly {ok: true, channel, count}. */
export function assertSubscribeAck(res, channel, count) {
  assert.deepEqual(res, { ok: true, channel, count }, `subscribe ack: ${JSON.stringify(res)}`);
}

/** A publish ack: exactly {ok: true}. */
export function assertPublishAck(res) {
  assert.deepEqual(res, { ok: true }, `publish ack: ${JSON.stringify(res)}`);
}

/** An error ack: {ok: false, error: non-empty string}. */
export function assertErrorAck(res, what) {
  assert.equal(typeof res, "object", `${what}: ack is ${JSON.stringify(res)}`);
  assert.notEqual(res, null, `${what}: ack is null`);
  assert.equal(res.ok, false, `${what}: ack ${JSON.stringify(res)}`);
  assert.equal(typeof res.error, "string", `${what}: ack ${JSON.stringify(res)}`);
  assert.ok(res.error.length > 0, `${what}: empty error in ${JSON.stringify(res)}`);
}

/** Turn ArrayBuffers / typed arrays into Buffers, recursively, so deepEqual compares bytes. */
export function normalizeBinary(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(normalizeBinary);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalizeBinary(x)]));
  }
  return v;
}
