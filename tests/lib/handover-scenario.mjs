// The hand-over scenario of the restart and upgrade tests: many stock socket.io-clients
// in a server while it is restarted or upgraded, counting everything a restart could
// break. Run where the server's port is (tests/packaging/*.sh):
//
//   node tests/lib/handover-scenario.mjs --url http://127.0.0.1:8001 --webhook-port 9100 \
//     --ready FILE --stop FILE [--websocket 1000] [--polling 100] [--api-rate 200] [--client-rate 50]
//
// The server's [Monitor] url must be http://127.0.0.1:WEBHOOK-PORT/ with the events
// subscribe, unsubscribe, connect, disconnect: the script is that endpoint. It connects
// the clients (20 identities with two tabs each, a WebSocket one and, for odd identities, a
// polling one; the rest anonymous; 20 channels), waits until the joins have settled, then
// creates the file READY and publishes: RATE-API messages/s through POST /api/publish and
// RATE-CLIENT/s through a client of its own, each with a sequence number per channel and
// publisher and the time it was sent. Once the file STOP exists it stops publishing, waits
// (bounded) for what is still on its way and prints one JSON report on stdout:
// disconnects, lost, duplicated, reordered, churn (membership notices and webhooks), the
// largest delivery delay, published and delivered counts; `pass` is true when every count
// that must be 0 is, and `failed` names each one that is not, with its value.
// Progress goes to stderr. Exits 2 if it cannot set up or the run passes --max-seconds.
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";
import { io } from "socket.io-client";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8001" },
    "webhook-port": { type: "string", default: "9100" },
    ready: { type: "string" },
    stop: { type: "string" },
    websocket: { type: "string", default: "1000" },
    polling: { type: "string", default: "100" },
    "api-rate": { type: "string", default: "200" },
    "client-rate": { type: "string", default: "50" },
    "max-seconds": { type: "string", default: "1200" },
  },
});
const CHANNELS = 20;
const IDENTITIES = 20;
if (!opt.ready || !opt.stop || Number(opt.websocket) < 2 * IDENTITIES + CHANNELS) {
  console.error("usage: handover-scenario.mjs --url URL --webhook-port PORT --ready FILE --stop FILE [--websocket N>=60]");
  process.exit(64);
}
const URL_ = opt.url;
const WS = Number(opt.websocket);
const POLLING = Number(opt.polling);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (msg) => console.error(`scenario: ${msg}`);
const fail = (msg) => {
  say(msg);
  process.exit(2);
};
setTimeout(() => fail(`still running after --max-seconds ${opt["max-seconds"]}`), Number(opt["max-seconds"]) * 1000).unref();

// Retries COND every 50 ms for at most MS; false when it never held.
async function within(ms, cond) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(50);
  }
  return true;
}

// ---------------------------------------------------------------- the webhook endpoint
const hooks = {};
const hookServer = http.createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    try {
      const env = JSON.parse(body);
      const command = env?.data?.command ?? "other";
      // Only this scenario's members count: other clients of the test may come and go.
      const ours = /^on(Un)?[Ss]ubscribe$/.test(command)
        ? /^chan\d+$/.test(env.channel ?? "")
        : env?.identity == null || /^user\d+$/.test(env.identity);
      if (ours) hooks[command] = (hooks[command] ?? 0) + 1;
    } catch {
      hooks.unreadable = (hooks.unreadable ?? 0) + 1;
    }
    res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
});
await new Promise((res, rej) => hookServer.listen(Number(opt["webhook-port"]), "127.0.0.1", res).on("error", rej));

// ---------------------------------------------------------------- the clients
// Per client and publisher: how often each sequence number arrived, by which attempt of
// the publisher first, the highest seen. A duplicate of the same attempt is the server
// delivering one publish twice (redelivered); of another attempt, a publish that the server
// took but whose answer was lost, so that the publisher sent it again (republished).
const newTrack = () => ({
  count: new Uint16Array(1024), attempt: new Uint8Array(1024), max: 0, delivered: 0,
  redelivered: 0, republished: 0, reordered: 0,
});
let measuring = false;
let maxDelay = 0;
const clients = [];

function record(c, data) {
  const tr = c.track[data.src];
  const { n } = data;
  if (!tr || !Number.isInteger(n) || n < 1) return;
  if (n >= tr.count.length) {
    const size = Math.max(n + 1, tr.count.length * 2);
    const count = new Uint16Array(size);
    const attempt = new Uint8Array(size);
    count.set(tr.count);
    attempt.set(tr.attempt);
    Object.assign(tr, { count, attempt });
  }
  if (tr.count[n] > 0) {
    if (tr.attempt[n] === data.a) tr.redelivered++;
    else tr.republished++;
  } else {
    if (n < tr.max) tr.reordered++;
    tr.attempt[n] = data.a;
  }
  tr.count[n]++;
  tr.max = Math.max(tr.max, n);
  tr.delivered++;
  if (measuring) maxDelay = Math.max(maxDelay, Date.now() - data.t);
}

function connect({ transport, identity, channel }) {
  const socket = io(URL_, {
    forceNew: true,
    transports: [transport],
    upgrade: false,
    auth: identity ? { identity } : {},
    reconnectionDelay: 50,
    reconnectionDelayMax: 500,
    timeout: 60_000,
  });
  const c = {
    socket, transport, identity, channel,
    track: { api: newTrack(), client: newTrack() },
    disconnects: 0, unrecovered: 0, notices: 0, lastCount: 0,
  };
  socket.on("message", (env) => {
    if (env?.type === "message" && env.data?.src) record(c, env.data);
    else if (env?.type === "command" && /^on(Un)?[Ss]ubscribe$/.test(env.data?.command ?? "")) {
      c.notices++;
      c.lastCount = env.data.count;
    }
  });
  socket.on("disconnect", () => c.disconnects++);
  socket.on("connect", () => {
    if (c.connected && !socket.recovered) c.unrecovered++;
    c.connected = true;
  });
  return new Promise((res, rej) => {
    socket.once("connect", () => res(c));
    socket.once("connect_error", (e) => rej(new Error(`${transport} client: connect_error: ${e.message}`)));
  });
}

// Identity k has a WebSocket tab and a second tab (polling for odd k), both in channel k;
// the other clients are anonymous members, spread over the channels.
const specs = [];
for (let k = 0; k < IDENTITIES; k++) {
  specs.push({ transport: "websocket", identity: `user${k}`, channel: k });
  specs.push({ transport: k % 2 ? "polling" : "websocket", identity: `user${k}`, channel: k });
}
const identifiedPolling = specs.filter((s) => s.transport === "polling").length;
const anonymousWs = WS - (specs.length - identifiedPolling);
for (let i = 0; i < anonymousWs; i++) specs.push({ transport: "websocket", channel: i % CHANNELS });
for (let i = 0; i < POLLING - identifiedPolling; i++) specs.push({ transport: "polling", channel: i % CHANNELS });
// Members per channel: each anonymous client is one, each identity one.
const members = Array.from({ length: CHANNELS }, () => 0);
for (const s of specs) if (!s.identity) members[s.channel]++;
for (let k = 0; k < IDENTITIES; k++) members[k % CHANNELS]++;

try {
  // The identities' tabs first, so that each of them hears later joins to its channel.
  for (let i = 0, size = 2 * IDENTITIES; i < specs.length; i += size, size = 100) {
    const batch = await Promise.all(specs.slice(i, i + size).map(async (s) => {
      const c = await connect(s);
      const ack = await c.socket.timeout(60_000).emitWithAck("subscribe", `chan${s.channel}`);
      if (!ack?.ok) throw new Error(`subscribe refused: ${JSON.stringify(ack)}`);
      return c;
    }));
    clients.push(...batch);
  }
} catch (e) {
  fail(`setup: ${e.message}`);
}
const publisher = await connect({ transport: "websocket" }).catch((e) => fail(`publisher: ${e.message}`));
say(`${clients.length} clients in (${clients.filter((c) => c.transport === "polling").length} polling)`);

// The joins settle: every client heard its channel's final member count, and the monitor
// posted one subscribe and one connect per member. Then the counts start.
const totalMembers = members.reduce((a, b) => a + b, 0);
const progress = setInterval(() => {
  const behind = clients.filter((c) => c.lastCount !== members[c.channel]).length;
  say(`settling: ${behind} clients without their channel's count, webhooks ${JSON.stringify(hooks)} of ${totalMembers} members`);
}, 5000);
const settled = await within(120_000, () =>
  clients.every((c) => c.lastCount === members[c.channel]) &&
  (hooks.onSubscribe ?? 0) >= totalMembers &&
  (hooks.onConnect ?? 0) >= totalMembers + 1); // one per member, the publisher too
if (!settled) {
  const behind = clients.filter((c) => c.lastCount !== members[c.channel]).length;
  fail(`the joins did not settle in 120 s: ${behind} clients without their channel's count, webhooks ${JSON.stringify(hooks)}`);
}
clearInterval(progress);
await sleep(1000); // nothing still on its way
const hooksBefore = { ...hooks };
for (const c of [...clients, publisher]) {
  c.disconnects = 0;
  c.unrecovered = 0;
  c.notices = 0;
}
measuring = true;

// ---------------------------------------------------------------- the publishers
// One lane per channel and publisher, one request in flight each: the order per channel and
// publisher is the order sent. A lane that fell behind (a busy event loop) sends what is due
// at once, as one array through the API, so the rate holds. A message cut by a hand-over
// before its answer is sent again (same number): if it had been published, a duplicate shows.
const sent = { api: Array(CHANNELS).fill(0), client: Array(CHANNELS).fill(0) };
const retried = { api: 0, client: 0 };
let stopping = false;
let stoppedAt = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: CHANNELS });
const viaApi = (ch, batch) =>
  new Promise((resolve) => {
    const body = JSON.stringify(batch.map((data) => ({ channel: `chan${ch}`, data })));
    const req = http.request(`${URL_}/api/publish`, {
      method: "POST", agent, timeout: 10_000,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve(res.statusCode === 200 && text.includes('"ok":true')));
      res.on("error", () => resolve(false));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
    req.end(body);
  });
// One acknowledged publish at a time (the batch is always one message: see lane).
const viaClient = async (ch, [data]) => {
  try {
    return (await publisher.socket.timeout(10_000).emitWithAck("publish", `chan${ch}`, data))?.ok === true;
  } catch {
    return false;
  }
};
async function lane(src, ch, perSecond, send, maxBatch) {
  const gap = 1000 / perSecond;
  let next = Date.now() + Math.random() * gap;
  while (!stopping) {
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    const due = Math.max(1, Math.min(maxBatch, 1 + Math.floor((Date.now() - next) / gap)));
    next += due * gap;
    const first = sent[src][ch] + 1;
    const t = Date.now();
    for (let a = 1; ; a++) {
      const batch = Array.from({ length: due }, (_, k) => ({ src, n: first + k, t, a: Math.min(a, 255) }));
      if (await send(ch, batch)) break;
      // A server that never comes back: give up a while after the stop, unpublished.
      if (stopping && Date.now() > stoppedAt + 30_000) return;
      retried[src]++;
      await sleep(20);
    }
    sent[src][ch] = first + due - 1;
  }
}
const lanes = [];
for (let ch = 0; ch < CHANNELS; ch++) {
  lanes.push(lane("api", ch, Number(opt["api-rate"]) / CHANNELS, viaApi, 50));
  lanes.push(lane("client", ch, Number(opt["client-rate"]) / CHANNELS, viaClient, 1));
}
const startedAt = Date.now();
writeFileSync(opt.ready, "");
say("ready: publishing");

// ---------------------------------------------------------------- stop and report
await within(Number(opt["max-seconds"]) * 1000, () => existsSync(opt.stop));
stopping = true;
stoppedAt = Date.now();
await Promise.all(lanes);
const missing = (c) => ["api", "client"].some((src) => c.track[src].max < sent[src][c.channel]);
const drained = await within(30_000, () => !clients.some(missing));
say(drained ? "every message in" : "some messages never came (30 s after the stop)");
await sleep(1000); // late duplicates and webhooks

let lost = 0, duplicated = 0, reordered = 0, delivered = 0;
const duplicates = { api: { redelivered: 0, republished: 0 }, client: { redelivered: 0, republished: 0 }, websocket: 0, polling: 0 };
for (const c of clients) {
  for (const src of ["api", "client"]) {
    const tr = c.track[src];
    for (let n = 1; n <= sent[src][c.channel]; n++) if (!tr.count[n]) lost++;
    duplicated += tr.redelivered + tr.republished;
    duplicates[src].redelivered += tr.redelivered;
    duplicates[src].republished += tr.republished;
    duplicates[c.transport] += tr.redelivered + tr.republished;
    reordered += tr.reordered;
    delivered += tr.delivered;
  }
}
const all = [...clients, publisher];
const sum = (f, list = all) => list.reduce((a, c) => a + f(c), 0);
const webhookChurn = {};
for (const k of new Set([...Object.keys(hooks), ...Object.keys(hooksBefore)])) {
  const d = (hooks[k] ?? 0) - (hooksBefore[k] ?? 0);
  if (d) webhookChurn[k] = d;
}
const ws = clients.filter((c) => c.transport === "websocket");
const polling = clients.filter((c) => c.transport === "polling");
const report = {
  clients: { websocket: ws.length, polling: polling.length, identities: IDENTITIES, channels: CHANNELS },
  disconnects: sum((c) => c.disconnects),
  disconnects_websocket: sum((c) => c.disconnects, ws),
  disconnects_polling: sum((c) => c.disconnects, polling),
  disconnects_publisher: publisher.disconnects,
  unrecovered: sum((c) => c.unrecovered),
  lost, duplicated, reordered,
  duplicates,
  churn_notices: sum((c) => c.notices, clients),
  churn_webhooks: webhookChurn,
  max_delay_ms: maxDelay,
  published: { api: sent.api.reduce((a, b) => a + b, 0), client: sent.client.reduce((a, b) => a + b, 0) },
  publishing_s: Math.round((stoppedAt - startedAt) / 100) / 10,
  retried,
  delivered,
};
const failed = [];
for (const k of ["disconnects", "lost", "duplicated", "reordered", "churn_notices"]) {
  if (report[k] !== 0) failed.push(`${k}=${report[k]}`);
}
for (const [k, v] of Object.entries(webhookChurn)) failed.push(`webhook ${k}=${v}`);
if (report.published.api === 0 || report.published.client === 0) failed.push("nothing published");
report.pass = failed.length === 0;
report.failed = failed;
console.log(JSON.stringify(report));
for (const c of all) c.socket.close();
agent.destroy();
hookServer.close();
process.exit(0);
