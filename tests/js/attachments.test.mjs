// Binary attachments: a packet whose placeholders do not match its attachments is refused
// at the sender, so the stock client's members never see it and stay connected.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { ack, collect, connected, once, uniqueChannel, useServer, waitFor } from "./lib/server.mjs";
import { assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";

const srv = useServer();

/** A raw Socket.IO connection on the main namespace, for packets no client library sends. */
async function rawSocket() {
  const ws = new WebSocket(`${srv.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
  const texts = [];
  ws.on("message", (data, isBinary) => { if (!isBinary) texts.push(data.toString()); });
  const closed = once(ws, "close", 10_000);
  await waitFor(() => texts.some((t) => t.startsWith("0{")), { what: "the Engine.IO open packet" });
  ws.send("40");
  await waitFor(() => texts.some((t) => t.startsWith("40{")), { what: "the CONNECT reply" });
  return { ws, closed };
}

srv.test("hostile placeholders are refused; 100 legitimate messages all arrive", async () => {
  const channel = uniqueChannel("attach");
  const victims = ["websocket", "polling"].map((t) => srv.connect("", { transports: [t] }));
  const publisher = srv.connect("", { transports: ["websocket"] });
  await Promise.all([...victims, publisher].map((s) => connected(s)));
  const disconnects = [];
  for (const v of victims) v.on("disconnect", (why) => disconnects.push(why));
  const inboxes = victims.map((v) => collect(v));
  for (const [i, v] of victims.entries()) {
    assertSubscribeAck(await ack(v, "subscribe", channel), channel, i + 1);
  }

  const hostile = [
    `451-["publish","${channel}",{"_placeholder":true,"num":5}]`,
    `452-["publish","${channel}",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]`,
    `451-["publish","${channel}",{"_placeholder":true,"num":"0"}]`,
    `451-["publish","${channel}","nothing refers to the attachment"]`,
  ];
  let sent = 0;
  for (let i = 0; i < 120; i++) {
    if (i % 6 === 5) {
      // Each hostile packet ends its own connection, as any malformed packet does.
      const { ws, closed } = await rawSocket();
      const packet = hostile[(i / 6) % hostile.length | 0];
      const attachments = Number(packet.match(/^45(\d+)-/)[1]);
      ws.send(packet);
      for (let a = 0; a < attachments; a++) ws.send(Buffer.from([1, 2, 3]));
      const code = await closed;
      // 1002 (parse error), or 1006 when the attachments still being sent meet the close.
      assert.ok([1002, 1006].includes(code), `hostile packet ${packet}: close code ${code}`);
    } else {
      // Some legitimate ones carry binary: those must still go through.
      const data = sent % 10 === 0 ? { n: sent, blob: Buffer.from([sent & 255]) } : { n: sent };
      assertPublishAck(await ack(publisher, "publish", channel, data));
      sent++;
    }
  }
  assert.equal(sent, 100);

  for (const inbox of inboxes) {
    await waitFor(() => inbox.items.length >= 100, {
      what: () => `100 messages (got ${inbox.items.length})`,
    });
    assert.deepEqual(inbox.items.map((e) => e.data.n), Array.from({ length: 100 }, (_, n) => n));
    for (const e of inbox.items.filter((e) => e.data.n % 10 === 0)) {
      assert.ok(Buffer.isBuffer(e.data.blob) && e.data.blob[0] === (e.data.n & 255));
    }
  }
  assert.deepEqual(disconnects, [], "a member was disconnected");
  assert.ok(victims.every((v) => v.connected));
});
