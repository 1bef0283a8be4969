// The one launcher of the tests: the realtime binary (one server per test file, or
// several nodes joined through a throwaway redis-server), clients connected to them, and
// bounded waits for things (on an event, or on a condition polled until it holds).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, test as nodeTest } from "node:test";
import { io } from "socket.io-client";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const BINARY = process.env.REALTIME_BIN || join(REPO_ROOT, "target/debug/realtime");

const STARTUP_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 3_000;
const REDIS_STARTUP_MS = 10_000;
const READY_TIMEOUT_MS = 10_000;
const MAX_LOG_CHARS = 200_000;
const LISTEN_RE = /listening on \S*:(\d+)/;
const ANSI_RE = /\x1b\[[0-9;]*[A-Za-z]/g;

const running = new Set();
process.on("exit", () => {
  for (const child of running) signalGroup(child, "SIGKILL");
});
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    for (const child of running) signalGroup(child, "SIGKILL");
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

function signalGroup(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    try { child.kill(sig); } catch { /* already gone */ }
  }
}

/**
 * Start `realtime --port PORT [--config FILE]` and wait for its "listening on" line.
 * `config` is the INI text of a config file (written to a temp dir), or undefined;
 * `port` defaults to 0 (any free port). Resolves to {url, port, proc, log(), stop()}.
 */
export async function startServer({ config, args = [], port: wantPort = 0 } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`realtime binary not found at ${BINARY} (build it with \`cargo build\`, or set REALTIME_BIN)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "realtime-test-"));
  const argv = ["--port", String(wantPort), ...args];
  if (config !== undefined) {
    const file = join(dir, "realtime.conf");
    writeFileSync(file, config);
    argv.push("--config", file);
  }
  // cwd is an empty temp dir so that no ./etc/realtime.conf of the checkout is picked up.
  const proc = spawn(BINARY, argv, {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", RUST_BACKTRACE: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group: stop() signals the group, grandchildren included
  });
  running.add(proc);
  let log = "";
  const append = (chunk) => {
    log += chunk.toString();
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS);
  };
  proc.stdout.on("data", append);
  proc.stderr.on("data", append);
  let exited = null;
  const exitPromise = new Promise((res) => {
    proc.on("exit", (code, signal) => {
      exited = { code, signal };
      // a grandchild could hold the pipes open and keep this test process alive
      setTimeout(() => { proc.stdout.destroy(); proc.stderr.destroy(); }, 200).unref();
      running.delete(proc);
      res(exited);
    });
  });

  const stop = async () => {
    if (exited) return exited;
    signalGroup(proc, "SIGTERM");
    let timer;
    const killed = new Promise((res) => {
      timer = setTimeout(() => {
        if (!exited) signalGroup(proc, "SIGKILL");
        res();
      }, KILL_GRACE_MS);
    });
    await Promise.race([exitPromise, killed]);
    clearTimeout(timer);
    const result = await exitPromise;
    rmSync(dir, { recursive: true, force: true });
    return result;
  };

  try {
    const port = await new Promise((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`server did not print "listening on ...:PORT" within ${STARTUP_TIMEOUT_MS} ms`)),
        STARTUP_TIMEOUT_MS,
      );
      const check = () => {
        const m = log.replace(ANSI_RE, "").match(LISTEN_RE);
        if (m) {
          clearTimeout(timer);
          proc.stdout.off("data", check);
          proc.stderr.off("data", check);
          res(Number(m[1]));
        }
      };
      proc.stdout.on("data", check);
      proc.stderr.on("data", check);
      proc.on("error", (err) => { clearTimeout(timer); rej(err); });
      exitPromise.then(({ code, signal }) => {
        clearTimeout(timer);
        rej(new Error(`server exited during startup (code ${code}, signal ${signal})`));
      });
      check();
    });
    return { url: `http://127.0.0.1:${port}`, port, proc, log: () => log, stop, exited: () => exited };
  } catch (err) {
    await stop();
    err.message += `\n--- server output ---\n${log}`;
    throw err;
  }
}

/** Clients a test opens, closed after it (and after the file). */
function trackClients() {
  const clients = new Set();
  afterEach(() => closeAll(clients));
  return clients;
}

function closeAll(clients) {
  for (const s of clients) {
    try { s.io.opts.reconnection = false; s.io.reconnection(false); } catch { /* ignore */ }
    try { s.disconnect(); } catch { /* ignore */ }
    try { s.io.engine?.close(); } catch { /* ignore */ }
  }
  clients.clear();
}

/** A socket.io-client that does not reconnect, tracked in `clients`. */
function openClient(clients, url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
  clients.add(socket);
  return socket;
}

/** `test(name, [opts], fn)` that prints `log()` when the test fails. */
function testPrinting(log) {
  return (name, opts, fn) => {
    if (typeof opts === "function") { fn = opts; opts = {}; }
    nodeTest(name, { timeout: 30_000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        console.error(`--- realtime output (test "${name}" failed) ---\n${log()}\n--- end ---`);
        throw err;
      }
    });
  };
}

/**
 * Per test file: start one server before the tests and stop it after them (always).
 * Returns a handle {url, log(), test(name, [opts], fn), connect(path?, opts)} where
 * `test` prints the server's output when the test fails and closes every client
 * that the test opened with `connect`.
 */
export function useServer(options = {}) {
  const handle = { server: null, url: null };
  const clients = trackClients();

  before(async () => {
    handle.server = await startServer(options);
    handle.url = handle.server.url;
  });
  after(async () => {
    closeAll(clients);
    if (handle.server) {
      const { code, signal } = await handle.server.stop();
      if (signal === "SIGKILL") {
        console.error("realtime did not exit within 3 s of SIGTERM; it was killed");
      } else if (code !== 0 && code !== null) {
        console.error(`realtime exited with code ${code} after SIGTERM`);
      }
    }
  });

  handle.log = () => (handle.server ? handle.server.log() : "");
  handle.connect = (path = "", opts = {}) => {
    if (!handle.url) throw new Error("server is not running");
    return openClient(clients, handle.url + path, opts);
  };
  handle.test = testPrinting(() => handle.log().slice(-20_000));
  return handle;
}

/** A TCP port nobody listens on right now (on 127.0.0.1). */
export function freePort() {
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
export async function startRedis(extraArgs = []) {
  let lastError;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "realtime-redis-"));
    const proc = spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, ...extraArgs,
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
    const started = await waitFor(() => exited || /Ready to accept connections/.test(log), {
      timeout: REDIS_STARTUP_MS, what: "redis-server to start",
    }).catch(() => false);
    if (started && !exited) return { port, url: `redis://127.0.0.1:${port}/0`, log: () => log, stop };
    lastError = lastError || new Error(`redis-server did not start on port ${port}:\n${log}`);
    await stop();
  }
  throw lastError;
}

/**
 * A Redis Cluster of three primaries (no replicas) on free ports, made whole with
 * `redis-cli --cluster create`. Resolves to {url: "redis+cluster://…", stop()}.
 */
export async function startRedisCluster() {
  const servers = [];
  const stop = async () => { for (const s of servers) await s.stop(); };
  try {
    for (let i = 0; i < 3; i++) servers.push(await startRedis(["--cluster-enabled", "yes"]));
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    execFileSync("redis-cli", ["--cluster", "create", ...addrs, "--cluster-replicas", "0", "--cluster-yes"],
      { stdio: "pipe", timeout: 20_000 });
    await waitFor(() => servers.every((s) =>
      execFileSync("redis-cli", ["-p", String(s.port), "CLUSTER", "INFO"]).toString().includes("cluster_state:ok")),
    { timeout: 20_000, interval: 200, what: "the Redis Cluster whole" });
    return { url: `redis+cluster://${addrs.join(",")}`, servers, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolve once `GET url/readyz` answers 200 (the node has joined the cluster). */
export async function ready(url, ms = READY_TIMEOUT_MS) {
  let last = "no answer";
  await waitFor(async () => {
    try {
      const res = await fetch(`${url}/readyz`);
      last = `${res.status} ${await res.text()}`;
      return res.status === 200;
    } catch (err) {
      last = err.message;
      return false;
    }
  }, { timeout: ms, what: () => `${url}/readyz to answer 200 (last: ${last})` });
}

/**
 * Per test file: one redis-server (a Redis Cluster of three with `redisCluster`) and `nodes`
 * realtime nodes joined through it, started before the tests and stopped after them. `config` is appended to every node's file.
 * Returns {nodes: [{url, log()}], redis, url(i), connect(i, opts), connectTo(url, opts),
 * test(name, fn), log()}:
 * `test` prints every node's output when the test fails and closes the clients it opened.
 * Clients connect over WebSocket unless `opts.transports` says otherwise.
 */
export function useCluster({ nodes = 2, config = "", redisCluster = false } = {}) {
  const handle = { redis: null, servers: [], nodes: [] };
  const clients = trackClients();

  before(async () => {
    handle.redis = redisCluster ? await startRedisCluster() : await startRedis();
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
  after(async () => {
    closeAll(clients);
    for (const s of handle.servers) await s.stop();
    if (handle.redis) await handle.redis.stop();
  });

  handle.url = (i) => handle.nodes[i].url;
  handle.log = () => handle.servers
    .map((s, i) => `--- node-${i} ---\n${s.log().slice(-10_000)}`)
    .join("\n");
  handle.connect = (i, opts = {}) => handle.connectTo(handle.url(i), opts);
  /** A client of `url` (a proxy in front of a node, say), closed after the test. */
  handle.connectTo = (url, opts = {}) =>
    openClient(clients, url, { transports: ["websocket"], ...opts });
  handle.test = testPrinting(handle.log);
  return handle;
}

/**
 * The value of `sample` (`name` or `name{labels}`, as written) in the server's
 * `/metrics`, or undefined.
 */
export async function metric(url, sample) {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const line of text.split("\n")) {
    const at = line.lastIndexOf(" ");
    if (!line.startsWith("#") && line.slice(0, at) === sample) return Number(line.slice(at + 1));
  }
  return undefined;
}

/** Reject after `ms` with a message naming what we were waiting for. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => {
      const desc = typeof what === "function" ? what() : what;
      rej(new Error(`timed out after ${ms} ms waiting for ${desc}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Wait for one `event` on an emitter; resolves to the first argument (or all with `all`). */
export function once(emitter, event, ms = 5000, { all = false } = {}) {
  let handler;
  const p = new Promise((res) => {
    handler = (...args) => res(all ? args : args[0]);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, `"${event}"`).finally(() => emitter.off(event, handler));
}

/** Resolve when the socket is connected (or reject on connect_error / timeout). */
export function connected(socket, ms = 5000) {
  if (socket.connected) return Promise.resolve(socket);
  let onConnect, onError;
  const p = new Promise((res, rej) => {
    onConnect = () => res(socket);
    onError = (err) => rej(new Error(`connect_error: ${err && err.message}`));
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return withTimeout(p, ms, "connect").finally(() => {
    socket.off("connect", onConnect);
    socket.off("connect_error", onError);
  });
}

/** Emit with an ack, bounded. */
export function ack(socket, ...args) {
  return socket.timeout(5000).emitWithAck(...args);
}

/**
 * Collect `message` envelopes. `inbox.next(pred?, ms)` waits for the next envelope
 * (matching pred); `inbox.waitCount(n, ms)` waits until n envelopes are there.
 * By default only channel messages (`type: "message"`) are collected; `{ types: null }`
 * collects every envelope (commands such as onSubscribe, errors), `{ types: [...] }` those.
 * `inbox.offsets` holds the extra last argument (the recovery offset) of each one.
 */
export function collect(socket, event = "message", { types = ["message"] } = {}) {
  const items = [];
  const offsets = [];
  const waiters = new Set();
  socket.on(event, (env, offset) => {
    if (types && !(env && types.includes(env.type))) return;
    items.push(env);
    offsets.push(offset);
    for (const w of waiters) w();
  });
  const waitUntil = (cond, ms, what) => {
    let w;
    const p = new Promise((res) => {
      w = () => { const r = cond(); if (r !== undefined) res(r); };
      waiters.add(w);
      w();
    });
    return withTimeout(p, ms, what).finally(() => waiters.delete(w));
  };
  let cursor = 0;
  return {
    items,
    offsets,
    next(pred = () => true, ms = 5000) {
      return waitUntil(() => {
        while (cursor < items.length) {
          const env = items[cursor++];
          if (pred(env)) return env;
        }
        return undefined;
      }, ms, `a "${event}" event`);
    },
    waitCount(n, ms = 5000) {
      return waitUntil(() => (items.length >= n ? items : undefined), ms,
        () => `${n} "${event}" events (got ${items.length})`);
    },
  };
}

/**
 * A fixed pause. Only for what a condition cannot show: that nothing (more) arrives
 * within a while, or a timer the server must honour; say which at the call.
 */
export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/**
 * Resolves with the first truthy value of `cond()` (sync or async), checked every
 * `interval` ms; rejects after `timeout` ms naming `what` (a string or a function).
 */
export async function waitFor(cond, { timeout = 5000, interval = 20, what = "a condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() >= deadline) {
      const desc = typeof what === "function" ? what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${desc}`);
    }
    await sleep(interval);
  }
}

let counter = 0;
/** A channel name unique to this process. */
export function uniqueChannel(prefix = "chan") {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Date.now().toString(36)}`;
}

export const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
