// How long an in-place restart (SIGUSR1) takes with N sessions, and the largest delivery
// delay it causes. Stock socket.io-client clients over WebSocket, 20 identities and 20
// channels, a publisher through /api/publish at a fixed rate; one SIGUSR1 once all are in.
//
//   node tests/bench/handover.mjs [--bin target/release/realtime] [--sessions 1000] [--rate 200]
//
// Prints one JSON line: the hand-over time (the server's log, from the signal to the new
// process serving; taken_over_ms: to the sessions taken in, just before), the clients' `disconnect` events (0 when their connections pass to the
// new process alive) and, if any, the time until every one of them recovered, the largest
// and the 99th percentile delivery delay of the messages published around the hand-over,
// and the exactly-once check (lost, duplicated, reordered: all must be 0).
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { io } from "socket.io-client";

const { values: opt } = parseArgs({
  options: {
    bin: { type: "string", default: "target/release/realtime" },
    sessions: { type: "string", default: "1000" },
    rate: { type: "string", default: "200" },
  },
});
const N = Number(opt.sessions);
const RATE = Number(opt.rate);
const CHANNELS = 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), "realtime-handover-bench-"));
writeFileSync(join(dir, "realtime.conf"), `[Server]\nreconnect-timeout = 60s\nmax-connections = ${N + 1000}\n`);
const server = spawn(resolve(opt.bin), ["--port", "0", "--config", join(dir, "realtime.conf")], {
  cwd: dir,
  env: { ...process.env, NO_COLOR: "1" },
  stdio: ["ignore", "pipe", "pipe"],
});
let log = "";
server.stdout.on("data", (d) => (log += d));
server.stderr.on("data", (d) => (log += d));
const until = async (cond, ms, what) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${log.slice(-2000)}`);
    await sleep(20);
  }
};
await until(() => /listening on \S*:(\d+)/.test(log), 10_000, "the server");
const url = `http://127.0.0.1:${log.match(/listening on \S*:(\d+)/)[1]}`;

// Clients, in batches so the handshakes do not time out on a busy machine.
const clients = [];
for (let i = 0; i < N; i += 200) {
  await Promise.all(Array.from({ length: Math.min(200, N - i) }, async (_, k) => {
    const id = i + k;
    const socket = io(url, {
      forceNew: true, transports: ["websocket"], auth: { identity: `user${id % 20}` },
      reconnectionDelay: 50, reconnectionDelayMax: 500, timeout: 60_000,
    });
    const c = { socket, channel: `chan${id % CHANNELS}`, got: [], delays: [], recoveredAt: 0, unrecovered: 0, disconnects: 0 };
    socket.on("message", (env) => {
      if (env && env.data && typeof env.data.n === "number") {
        c.got.push(env.data.n);
        c.delays.push([env.data.t, Date.now() - env.data.t]);
      }
    });
    let first = true;
    socket.on("disconnect", () => c.disconnects++);
    socket.on("connect", () => {
      if (first) { first = false; return; }
      if (socket.recovered) c.recoveredAt = Date.now(); else c.unrecovered++;
    });
    await new Promise((res, rej) => { socket.once("connect", res); socket.once("connect_error", rej); });
    await socket.timeout(60_000).emitWithAck("subscribe", c.channel);
    clients.push(c);
  }));
}

const socketBack = (c) => c.disconnects === 0 || c.recoveredAt || c.unrecovered;

// The publisher: one message at a time per tick, round robin over the channels.
const sent = Array.from({ length: CHANNELS }, () => 0);
let stop = false;
let retried = 0;
const publisher = (async () => {
  const gap = 1000 / RATE;
  let next = Date.now();
  for (let k = 0; !stop; k++) {
    const ch = k % CHANNELS;
    const n = sent[ch] + 1;
    for (;;) {
      try {
        const res = await fetch(`${url}/api/publish`, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: `chan${ch}`, data: { n, t: Date.now() } }),
        });
        if ((await res.json()).ok) break;
      } catch { /* cut by the hand-over before it was served: sent again */ }
      retried++;
      await sleep(5);
    }
    sent[ch] = n;
    next += gap;
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
  }
})();

await sleep(2000);
const signalAt = Date.now();
process.kill(server.pid, "SIGUSR1");
await until(() => /took over the sessions/.test(log), 60_000, "the new process");
// A client whose connection went on alive never reconnects: only those that dropped.
await until(() => clients.every((c) => socketBack(c)), 120_000, "every client back");
await sleep(2000);
stop = true;
await publisher;
await until(() => clients.every((c) => c.got.length >= sent[Number(c.channel.slice(4))]), 30_000, "every delivery");

const ts = (re) => Date.parse(log.split("\n").find((l) => re.test(l)).split(/\s+/)[0]);
const handover = ts(/handing the sessions over/);
const takenOver = ts(/took over the sessions/);
// The new process logs "listening on" once it accepts again (after the take-over).
const lines = log.split("\n");
const after = lines.slice(lines.findIndex((l) => /took over the sessions/.test(l)));
const serving = Date.parse(after.find((l) => /listening on/.test(l)).split(/\s+/)[0]);
let lost = 0, dup = 0, reordered = 0;
const around = [];
for (const c of clients) {
  const want = sent[Number(c.channel.slice(4))];
  const seen = new Set(c.got);
  lost += want - seen.size;
  dup += c.got.length - seen.size;
  reordered += c.got.some((n, i) => i > 0 && n < c.got[i - 1]) ? 1 : 0;
  for (const [t, d] of c.delays) if (t >= signalAt - 1000) around.push(d);
}
around.sort((a, b) => a - b);
console.log(JSON.stringify({
  sessions: N,
  rate: RATE,
  handover_ms: serving - handover,
  taken_over_ms: takenOver - handover,
  disconnects: clients.reduce((k, c) => k + c.disconnects, 0),
  all_recovered_ms: clients.some((c) => c.recoveredAt) ? Math.max(...clients.map((c) => c.recoveredAt)) - signalAt : 0,
  unrecovered: clients.reduce((k, c) => k + c.unrecovered, 0),
  max_delay_ms: around.at(-1),
  p99_delay_ms: around[Math.floor(around.length * 0.99)],
  published: sent.reduce((a, b) => a + b, 0),
  retried,
  lost, dup, reordered,
  state_bytes: Number((log.match(/executing the new binary.*bytes=(\d+)/) || [])[1]),
}));
for (const c of clients) c.socket.close();
server.kill("SIGTERM");
