// What a client publishes arrives as it was sent: numbers published through POST
// /api/publish and a stock client's `publish` reach a subscriber (and the publisher's own
// echo) as the very same numbers. JavaScript holds every number as a double, so this file
// compares doubles; integers past 2^53 are checked exactly in tests/python/test_exact.py.
import assert from "node:assert/strict";
import { ack, collect, connected, uniqueChannel, useServer } from "./lib/server.mjs";
import { assertPublishAck, assertSubscribeAck } from "./lib/envelope.mjs";

const srv = useServer();

// Written as a client could write them; the first two came back one unit off before.
const TRICKY = [
  "0.9049426916855675", "0.41413233367384084", "12345678901234567890123",
  "100000000000000000000", "-0", "1.5e3", "1.5E-3", "3.141592653589793238462643383279",
  "5e-324", "1.7976931348623157e308", "2.2250738585072014e-308", "9007199254740993",
  "-9223372036854775809", "18446744073709551616", "0.1", "123456789.123456789",
];

// 300 random doubles as JavaScript prints them (the shortest form that reads back), over
// many magnitudes.
function randomDoubles(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const scale = 10 ** (Math.floor(Math.random() * 40) - 20);
    const sign = Math.random() < 0.5 ? -1 : 1;
    out.push(String(sign * Math.random() * scale));
  }
  return out;
}

/** Each received number is the double its text names (-0 included). */
function assertSameDoubles(got, texts, how) {
  assert.equal(got.length, texts.length, `${how}: ${got.length} numbers of ${texts.length}`);
  const changed = [];
  texts.forEach((text, i) => {
    const want = JSON.parse(text);
    if (!Object.is(got[i], want)) changed.push(`${text} -> ${JSON.stringify(got[i])}`);
  });
  assert.deepEqual(changed, [], `${how}: numbers changed on the way`);
}

srv.test("numbers published over HTTP and by a client arrive unchanged", async () => {
  const texts = [...TRICKY, ...randomDoubles(300)];
  const channel = uniqueChannel("exact");
  const sub = srv.connect("", { transports: ["websocket"] });
  const pub = srv.connect("", { transports: ["websocket"] });
  await Promise.all([connected(sub), connected(pub)]);
  const subInbox = collect(sub);
  const pubInbox = collect(pub);
  assertSubscribeAck(await ack(sub, "subscribe", channel), channel, 1);
  assertSubscribeAck(await ack(pub, "subscribe", channel), channel, 2);

  // The body is written by hand, so each number goes out in the form listed.
  const body = `{"channel":${JSON.stringify(channel)},"data":{"n":[${texts.join(",")}]}}`;
  const res = await fetch(`${srv.url}/api/publish`, {
    method: "POST", headers: { "content-type": "application/json" }, body,
  });
  assert.equal(res.status, 200, await res.text());
  const [fromApi] = await Promise.all([subInbox.next(), pubInbox.next()]);
  assertSameDoubles(fromApi.data.n, texts, "POST /api/publish");

  // A stock client writes its doubles itself (JSON.stringify: the shortest form, and -0
  // as 0), and waits for its own echo with those values.
  const sent = texts.map((t) => JSON.stringify(JSON.parse(t)));
  assertPublishAck(await ack(pub, "publish", channel, { n: sent.map((t) => JSON.parse(t)) }));
  const [seen, echo] = await Promise.all([subInbox.next(), pubInbox.next()]);
  assertSameDoubles(seen.data.n, sent, "publish, at the subscriber");
  assertSameDoubles(echo.data.n, sent, "publish, the publisher's echo");
});

srv.test("a client's Math.random() comes back as its own echo, every time", async () => {
  const channel = uniqueChannel("echo");
  const pub = srv.connect("", { transports: ["websocket"] });
  await connected(pub);
  const inbox = collect(pub);
  assertSubscribeAck(await ack(pub, "subscribe", channel), channel, 1);
  for (let i = 0; i < 200; i++) {
    const n = Math.random();
    assertPublishAck(await ack(pub, "publish", channel, { n }));
    const env = await inbox.next();
    assert.ok(Object.is(env.data.n, n), `sent ${n}, the echo carries ${env.data.n}`);
  }
});
