// Channel history with the stock socket.io-client and the Realtime client: the `history`
// event's answer (the envelopes subscribers got live, with their offsets), what `since`
// and `limit` do, and its refusals (a token's channels, bad input).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { ack, collect, connected, uniqueChannel, useServer } from "./lib/server.mjs";
import { useClients } from "./lib/realtime.mjs";

const SECRET = "node-history-secret";
const srv = useServer({ config: `[Messaging]\nhistory-size = 3\n[Identity]\nsecret = ${SECRET}\n` });
const clients = useClients(srv);

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** An HS256 JWT for `sub` with these extra claims. */
function jwt(sub, claims = {}) {
  const body = { sub, exp: Math.floor(Date.now() / 1000) + 600, ...claims };
  const signing = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(body)}`;
  return `${signing}.${createHmac("sha256", SECRET).update(signing).digest("base64url")}`;
}

const stock = (identity, claims) =>
  connected(srv.connect("", { transports: ["websocket"], auth: { identity, token: jwt(identity, claims) } }));

srv.test("history answers with the last messages as subscribers got them, with their offsets", async () => {
  const channel = uniqueChannel("hist");
  const reader = await stock("reader");
  const inbox = collect(reader);
  assert.equal((await ack(reader, "subscribe", channel)).ok, true);
  const writer = await stock("writer");
  for (let n = 1; n <= 5; n++) assert.equal((await ack(writer, "publish", channel, { n })).ok, true);
  const live = await inbox.waitCount(5);

  const all = await ack(writer, "history", { channel });
  assert.equal(all.ok, true);
  assert.equal(all.channel, channel);
  // Three kept (history-size), two gone: not complete.
  assert.deepEqual(all.messages.map((m) => m.data), [{ n: 3 }, { n: 4 }, { n: 5 }]);
  assert.equal(all.complete, false);
  assert.equal(all.more, false);
  for (const [i, m] of all.messages.entries()) {
    const { offset, ...envelope } = m;
    assert.deepEqual(envelope, live[i + 2], "the envelope subscribers got");
    assert.equal(offset, inbox.offsets[i + 2], "with the offset they got");
  }
  assert.equal(all.offset, inbox.offsets[4]);

  const after = await ack(writer, "history", { channel, since: inbox.offsets[2], limit: 1 });
  assert.deepEqual(after.messages.map((m) => m.data), [{ n: 4 }]);
  assert.equal(after.complete, true);
  assert.equal(after.more, true);
  const none = await ack(writer, "history", { channel, since: all.offset });
  assert.deepEqual([none.messages, none.complete], [[], true]);
  const gone = await ack(writer, "history", { channel, since: inbox.offsets[0] });
  assert.deepEqual([gone.messages.length, gone.complete], [3, false]);
});

srv.test("history is refused with a reason: a channel the token does not allow, bad input", async () => {
  const socket = await stock("limited", { channels: ["chat"] });
  const refused = async (query) => {
    const answer = await ack(socket, "history", query);
    assert.equal(answer.ok, false, JSON.stringify(query));
    return answer.error;
  };
  assert.equal(await refused({ channel: "news" }), 'channel "news" not allowed by the token');
  assert.match(await refused({ channel: "chat", since: "yesterday" }), /^since must be an offset/);
  assert.equal(await refused({ channel: "chat", limit: 1e9 }), "limit must be a whole number from 1 to 1000");
  assert.equal(await refused({ channel: "" }), "channel must be a non-empty string");
  assert.equal(await refused("chat"), "history takes one object: {channel, since?, limit?}");
  const fine = await ack(socket, "history", { channel: "chat" });
  assert.deepEqual([fine.ok, fine.messages], [true, []]);
});

srv.test("the Realtime client's history() resolves to the answer and rejects a refusal", async () => {
  const channel = uniqueChannel("rt-hist");
  const rt = clients.connect({ identity: "rt", token: jwt("rt") });
  await rt.publish(channel, "one");
  await rt.publish(channel, "two");
  const h = await rt.history(channel);
  assert.deepEqual(h.messages.map((m) => m.data), ["one", "two"]);
  const next = await rt.createChannel(channel).history({ since: h.messages[0].offset });
  assert.deepEqual(next.messages.map((m) => m.data), ["two"]);
  await assert.rejects(rt.history(channel, { limit: 0 }),
    (err) => err.code === "refused" && /^limit must be/.test(err.message));
});
