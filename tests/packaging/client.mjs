// Clients for the package tests (tests/packaging/*.sh), run where the server's port is.
//   node client.mjs roundtrip URL        two stock socket.io-clients: one subscribes, the
//                                        other publishes, the first receives; prints JSON
//   node client.mjs publish PORT FLAG    POST /api/publish, each on a new connection, until
//                                        the file FLAG exists; prints the counts as JSON
import { existsSync } from "node:fs";
import http from "node:http";
import { io } from "socket.io-client";

const [mode, target, flag] = process.argv.slice(2);
const deadline = setTimeout(() => {
  console.error(`${mode}: timed out`);
  process.exit(2);
}, 60_000);

function connect(url, identity) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { identity }, reconnection: false, timeout: 10_000 });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (e) => reject(new Error(`${identity}: connect_error: ${e.message}`)));
  });
}

if (mode === "roundtrip") {
  try {
    const bob = await connect(target, "bob");
    const alice = await connect(target, "alice");
    const received = new Promise((resolve) =>
      bob.on("message", (env) => {
        if (env.type === "message" && env.channel === "packaged") resolve(env);
      }),
    );
    const sub = await bob.timeout(10_000).emitWithAck("subscribe", "packaged");
    const pub = await alice.timeout(10_000).emitWithAck("publish", "packaged", { n: 1 });
    const env = await received;
    const ok = sub.ok && pub.ok && env.identity === "alice" && env.data.n === 1;
    console.log(JSON.stringify({ ok, transport: bob.io.engine.transport.name, count: sub.count, env }));
    alice.close();
    bob.close();
    clearTimeout(deadline);
    process.exitCode = ok ? 0 : 1;
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
} else if (mode === "publish") {
  const counts = { ok: 0, refused: 0, failed: 0, errors: [] };
  const body = JSON.stringify({ channel: "upgrade", data: { during: "upgrade" } });
  // One request on a fresh connection (no keep-alive agent): a refusal shows as ECONNREFUSED.
  const once = () =>
    new Promise((resolve) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: Number(target),
          path: "/api/publish",
          method: "POST",
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          agent: false,
          timeout: 10_000,
        },
        (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve(res.statusCode === 200 && text.includes('"ok":true') ? "ok" : `status ${res.statusCode}`));
          res.on("error", (e) => resolve(e.code || e.message));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (e) => resolve(e.code || e.message));
      req.end(body);
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
  console.error("usage: client.mjs roundtrip URL | publish PORT FLAGFILE");
  process.exit(64);
}
