// Helpers for tests of the Realtime client (js-client/): clients closed after each test,
// event collectors with bounded waits, and a guard against unhandled promise rejections.
import assert from "node:assert/strict";
import { after, afterEach } from "node:test";
import { withTimeout } from "./server.mjs";

export { waitFor } from "./server.mjs";

export { Realtime, RealtimeError, Channel } from "../../../js-client/src/realtime.js";
import { Realtime } from "../../../js-client/src/realtime.js";

/** Rejections nobody handled, from any test of this file; checked after each test. */
const unhandled = [];
process.on("unhandledRejection", (reason) => unhandled.push(reason));

/** Fails the current test if a promise was rejected without a handler. */
export async function assertNoUnhandledRejections() {
  // rejections are reported after the microtask queue drains: give them a turn
  await new Promise((res) => setTimeout(res, 20));
  const seen = unhandled.splice(0);
  assert.deepEqual(seen.map(String), [], "unhandled promise rejections");
}

/**
 * Per test file: `clients.connect(options)` opens a Realtime client (quick reconnection
 * delays, short request timeout), closed after each test. Every test is also checked for
 * unhandled rejections.
 */
export function useClients(srv) {
  const open = new Set();
  afterEach(async () => {
    for (const rt of open) rt.close();
    open.clear();
    await assertNoUnhandledRejections();
  });
  after(() => { for (const rt of open) rt.close(); });
  return {
    connect(options = {}) {
      const rt = Realtime.connect({
        url: srv.url,
        requestTimeout: 5000,
        ...options,
        socketOptions: { reconnectionDelay: 100, reconnectionDelayMax: 500, ...options.socketOptions },
      });
      open.add(rt);
      return rt;
    },
    track(rt) { open.add(rt); return rt; },
  };
}

/**
 * Collects what `on(event)` delivers: `.items`, `.next(pred, ms)` for the next matching one.
 */
export function record(rt, event) {
  const items = [];
  const waiters = new Set();
  rt.on(event, (...args) => {
    items.push(args.length > 1 ? args : args[0]);
    for (const w of waiters) w();
  });
  let cursor = 0;
  return {
    items,
    next(pred = () => true, ms = 5000) {
      let w;
      const p = new Promise((res) => {
        w = () => {
          while (cursor < items.length) {
            const item = items[cursor++];
            if (pred(item)) { res(item); return; }
          }
        };
        waiters.add(w);
        w();
      });
      return withTimeout(p, ms, () => `"${event}" (got ${JSON.stringify(items.map(String))})`)
        .finally(() => waiters.delete(w));
    },
  };
}

/** An inbox of envelopes: handlers that push into it, and a bounded `next()`. */
export function inbox() {
  const items = [];
  const waiters = new Set();
  let cursor = 0;
  const push = (env) => {
    items.push(env);
    for (const w of waiters) w();
  };
  return {
    items,
    push,
    next(pred = () => true, ms = 5000) {
      let w;
      const p = new Promise((res) => {
        w = () => {
          while (cursor < items.length) {
            const env = items[cursor++];
            if (pred(env)) { res(env); return; }
          }
        };
        waiters.add(w);
        w();
      });
      return withTimeout(p, ms, () => `an envelope (got ${JSON.stringify(items)})`).finally(() => waiters.delete(w));
    },
  };
}

/** Asserts that `promise` rejects with a RealtimeError of `code` whose message matches `re`. */
export async function assertRejects(promise, code, re) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, "RealtimeError", `not a RealtimeError: ${err}`);
    assert.equal(err.code, code, `code of "${err.message}"`);
    if (re) assert.match(err.message, re);
    return true;
  });
}
