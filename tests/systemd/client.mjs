// Clients for tests/systemd/container.sh, run in the container's network namespace.
//   node client.mjs connect URL      a stock socket.io-client connects and subscribes
//   node client.mjs loop PORT FLAG   polling handshakes, each on a new connection, until
//                                    the file FLAG exists; prints the counts as JSON
import { existsSync } from "node:fs";
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
} else {
  console.error("usage: client.mjs connect URL | loop PORT FLAGFILE");
  process.exit(64);
}
