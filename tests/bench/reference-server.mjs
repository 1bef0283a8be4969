// The reference peer of the benchmarks: the stock socket.io server (version pinned in
// package.json) with the events of docs/design.md#client-events on rooms, and socket.io's defaults
// otherwise, so every figure of BENCHMARKS.md can be a ratio to it measured in the same run.
//
//   node tests/bench/reference-server.mjs [--port N]     (0 = any free port; default 8002)
//   node tests/bench/reference-server.mjs --port 0 --redis redis://127.0.0.1:6379
//
// With --redis, several of these are one cluster through the stock @socket.io/redis-adapter
// (pub/sub; versions pinned in package.json): the reference of the cross-node runs.
// Prints `listening on [::]:PORT` once it accepts connections, like the Rust server.
import { createServer } from "node:http";
import { Server } from "socket.io";

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const port = Number(option("--port") ?? 8002);
const redisUrl = option("--redis");

let adapter;
if (redisUrl) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  for (const c of [pubClient, subClient]) c.on("error", (e) => console.error(`redis: ${e.message}`));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  adapter = createAdapter(pubClient, subClient);
}

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false, ...(adapter ? { adapter } : {}) });

const validChannel = (ch) => typeof ch === "string" && ch.length > 0 && ch.length <= 256;
const reply = (ack, value) => {
  if (typeof ack === "function") ack(value);
};
// This node's members only, with --redis too (the load generator does not read counts).
const members = (ch) => io.sockets.adapter.rooms.get(ch)?.size ?? 0;

io.on("connection", (socket) => {
  socket.on("subscribe", (ch, ack) => {
    if (!validChannel(ch)) return reply(ack, { ok: false, error: "channel must be a non-empty string" });
    socket.join(ch);
    reply(ack, { ok: true, channel: ch, count: members(ch) });
  });
  socket.on("unsubscribe", (ch, ack) => {
    if (!validChannel(ch)) return reply(ack, { ok: false, error: "channel must be a non-empty string" });
    socket.leave(ch);
    reply(ack, { ok: true, channel: ch, count: members(ch) });
  });
  socket.on("publish", (ch, data, ack) => {
    if (!validChannel(ch)) return reply(ack, { ok: false, error: "channel must be a non-empty string" });
    io.to(ch).emit("message", {
      type: "message",
      channel: ch,
      identity: null,
      timestamp: new Date().toISOString(),
      data,
    });
    reply(ack, { ok: true });
  });
});

httpServer.listen(port, () => {
  console.log(`listening on [::]:${httpServer.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
