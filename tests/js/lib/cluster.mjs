// Test helpers for cluster mode (SPEC §11): a throwaway redis-server on a free port, and
// several realtime nodes joined through it, each started like useServer's one.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, test as nodeTest } from "node:test";
import { io } from "socket.io-client";
import { sleep, startServer } from "./server.mjs";

const REDIS_STARTUP_MS = 10_000;
const READY_TIMEOUT_MS = 10_000;

/** A TCP port nobody listens on right now (on 127.0.0.1). */
function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/**
 * Start `redis-server` on a free port, no persistence, in a temp dir. Resolves to
 * {port, url, log(), stop()}; retries on another port if the one picked was taken.
 */
export async function startRedis() {
  let lastError;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "realtime-redis-"));
    const proc = spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir,
    ], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    proc.stdout.on("data", (c) => { log += c; });
    proc.stderr.on("data", (c) => { log += c; });
    let exited = null;
    const exitPromise = new Promise((res) => proc.on("exit", (code, signal) => {
      exited = { code, signal };
      res(exited);
    }));
    proc.on("error", (err) => { lastError = err; });
    const stop = async () => {
      if (!exited) proc.kill("SIGKILL");
      await exitPromise;
      rmSync(dir, { recursive: true, force: true });
    };
    process.once("exit", () => { if (!exited) proc.kill("SIGKILL"); });
    const deadline = Date.now() + REDIS_STARTUP_MS;
    while (!exited && Date.now() < deadline && !/Ready to accept connections/.test(log)) {
      await sleep(50);
    }
    if (!exited && /Ready to accept connections/.test(log)) {
      return { port, url: `redis://127.0.0.1:${port}/0`, log: () => log, stop };
    }
    lastError = lastError || new Error(`redis-server did not start on port ${port}:\n${log}`);
    await stop();
  }
  throw lastError;
}

/** Resolve once `GET url/readyz` answers 200 (the node has joined the cluster). */
export async function ready(url, ms = READY_TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/readyz`);
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return;
    } catch (err) {
      last = err.message;
    }
    await sleep(50);
  }
  throw new Error(`${url}/readyz not 200 within ${ms} ms (last: ${last})`);
}

/**
 * Per test file: one redis-server and `nodes` realtime nodes joined through it, started
 * before the tests and stopped after them. `config` is appended to every node's file.
 * Returns {nodes: [{url, log()}], redis, url(i), connect(i, opts), test(name, fn), log()}:
 * `test` prints every node's output when the test fails and closes the clients it opened.
 */
export function useCluster({ nodes = 2, config = "" } = {}) {
  const handle = { redis: null, servers: [], nodes: [] };
  const clients = new Set();

  before(async () => {
    handle.redis = await startRedis();
    for (let i = 0; i < nodes; i++) {
      const server = await startServer({
        config: `[Cluster]\nredis = ${handle.redis.url}\nnode-id = node-${i}\n` +
          `heartbeat = 1s\nnode-timeout = 3s\n${config}`,
      });
      handle.servers.push(server);
      handle.nodes.push({ url: server.url, log: server.log });
    }
    await Promise.all(handle.servers.map((s) => ready(s.url)));
  });
  afterEach(() => closeAll(clients));
  after(async () => {
    closeAll(clients);
    for (const s of handle.servers) await s.stop();
    if (handle.redis) await handle.redis.stop();
  });

  handle.url = (i) => handle.nodes[i].url;
  handle.log = () => handle.servers
    .map((s, i) => `--- node-${i} ---\n${s.log().slice(-10_000)}`)
    .join("\n");

  handle.connect = (i, opts = {}) => {
    const socket = io(handle.url(i), {
      forceNew: true,
      reconnection: false,
      timeout: 5000,
      transports: ["websocket"],
      ...opts,
    });
    clients.add(socket);
    return socket;
  };

  handle.test = (name, opts, fn) => {
    if (typeof opts === "function") { fn = opts; opts = {}; }
    nodeTest(name, { timeout: 30_000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        console.error(`--- realtime output (test "${name}" failed) ---\n${handle.log()}\n--- end ---`);
        throw err;
      }
    });
  };
  return handle;
}

function closeAll(clients) {
  for (const s of clients) {
    try { s.io.opts.reconnection = false; s.io.reconnection(false); } catch { /* ignore */ }
    try { s.disconnect(); } catch { /* ignore */ }
  }
  clients.clear();
}
