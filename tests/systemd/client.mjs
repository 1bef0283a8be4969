// Clients for tests/systemd/container.sh, run in the container's network namespace.
//   node client.mjs connect URL      a stock socket.io-client connects and subscribes
//   node client.mjs loop PORT FLAG   polling handshakes, each on a new connection, until
//                                    the file FLAG exists; prints the counts as JSON
//   node client.mjs keep PORT FLAG [READY]
//                                    a WebSocket and a polling client of one identity in
//                                    a channel, a publisher through /api/publish until FLAG
//                                    exists (READY created once both are in); prints what
//                                    each got and its reconnects as JSON
//   node client.mjs stop PORT READY  a WebSocket client subscribes, creates the file READY,
//                                    and prints its first disconnect (reason, close code)
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";
import { io } from "socket.io-client";

const [mode, target, flag] = process.argv.slice(2);
const deadline = setTimeout(() => {
  console.error(`${mode}: timed out`);
  process.exit(2);
}, 60_000);

if (mode === "connect") {
  const socket = io(target, { auth: { identity: "container" }, reconnection: false, timeout: 10_000 });
  socket.on("connect_error", (e) => {
    console.error(`connect_error: ${e.message}`);
    process.exit(1);
  });
  socket.on("connect", async () => {
    const ack = await socket.timeout(10_000).emitWithAck("subscribe", "container");
    console.log(JSON.stringify({ connected: true, transport: socket.io.engine.transport.name, ack }));
    socket.close();
    clearTimeout(deadline);
  });
} else if (mode === "loop") {
  const counts = { ok: 0, refused: 0, failed: 0, errors: [] };
  // One request on a fresh connection (no keep-alive agent): a refusal shows as ECONNREFUSED.
  const once = () =>
    new Promise((resolve) => {
      const req = http.get(
        { host: "127.0.0.1", port: Number(target), path: "/socket.io/?EIO=4&transport=polling", agent: false, timeout: 10_000 },
        (res) => {
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve(res.statusCode === 200 && body.startsWith("0{") ? "ok" : `status ${res.statusCode}`));
          res.on("error", (e) => resolve(e.code || e.message));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (e) => resolve(e.code || e.message));
    });
  while (!existsSync(flag)) {
    const r = await once();
    if (r === "ok") counts.ok++;
    else if (r === "ECONNREFUSED") counts.refused++;
    else {
      counts.failed++;
      if (counts.errors.length < 10) counts.errors.push(r);
    }
  }
  console.log(JSON.stringify(counts));
  clearTimeout(deadline);
} else if (mode === "keep") {
  const url = `http://127.0.0.1:${target}`;
  const tabs = await Promise.all(["websocket", "polling"].map(async (transport) => {
    const socket = io(url, { transports: [transport], auth: { identity: "kept" }, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    const tab = { transport, socket, got: [], drops: 0, connects: [], commands: 0 };
    socket.on("message", (env) => {
      if (env && env.data && typeof env.data.n === "number") tab.got.push(env.data.n);
      else if (env && env.data && env.data.command) tab.commands++;
    });
    socket.on("disconnect", () => tab.drops++);
    socket.on("connect", () => tab.connects.push(socket.recovered));
    await new Promise((res) => socket.once("connect", res));
    await socket.timeout(10_000).emitWithAck("subscribe", "kept");
    return tab;
  }));
  await new Promise((res) => setTimeout(res, 300)); // the second tab's join reaches the first
  for (const t of tabs) t.commands = 0;
  // Both tabs are in: the caller may start its restarts.
  if (process.argv[5]) writeFileSync(process.argv[5], "");
  let sent = 0;
  let failed = 0;
  while (!existsSync(flag)) {
    const n = sent + 1;
    try {
      const res = await fetch(`${url}/api/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close" },
        body: JSON.stringify({ channel: "kept", data: { n } }),
      });
      if ((await res.json()).ok) sent = n;
    } catch {
      // Cut by the hand-over before it was served: sent again.
      failed++;
    }
    await new Promise((res) => setTimeout(res, 10));
  }
  const until = Date.now() + 10_000;
  while (Date.now() < until && tabs.some((t) => t.got.length < sent)) await new Promise((res) => setTimeout(res, 50));
  const inOrder = (got) => got.length === sent && got.every((n, i) => n === i + 1);
  console.log(JSON.stringify({
    sent,
    retried: failed,
    inOrder: sent > 0 && tabs.every((t) => inOrder(t.got)),
    churn: tabs.reduce((k, t) => k + t.commands, 0),
    unrecovered: tabs.reduce((k, t) => k + t.connects.slice(1).filter((r) => !r).length, 0),
    wsDisconnects: tabs.filter((t) => t.transport === "websocket").reduce((k, t) => k + t.drops, 0),
    pollingDisconnects: tabs.filter((t) => t.transport === "polling").reduce((k, t) => k + t.drops, 0),
    tabs: tabs.map((t) => ({ transport: t.transport, got: t.got.length, inOrder: inOrder(t.got), drops: t.drops, connects: t.connects, commands: t.commands })),
  }));
  for (const t of tabs) t.socket.close();
  clearTimeout(deadline);
} else if (mode === "stop") {
  const socket = io(`http://127.0.0.1:${target}`, { transports: ["websocket"], auth: { identity: "stopped" }, reconnection: false });
  socket.on("connect_error", (e) => {
    console.error(`connect_error: ${e.message}`);
    process.exit(1);
  });
  await new Promise((res) => socket.once("connect", res));
  await socket.timeout(10_000).emitWithAck("subscribe", "stopped");
  // The WebSocket's close code tells a drain (1001, "going away") from a dropped connection.
  const closed = new Promise((res) => socket.once("disconnect", (reason, details) => res({ reason, code: details?.context?.code })));
  writeFileSync(flag, "");
  console.log(JSON.stringify(await closed));
  clearTimeout(deadline);
} else {
  console.error("usage: client.mjs connect URL | loop PORT FLAGFILE | keep PORT FLAGFILE | stop PORT READYFILE");
  process.exit(64);
}
