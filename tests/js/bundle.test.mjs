// The files the server serves: `/realtime.js` is exactly a fresh `npm run build` of
// js-client/, `/` is the demo page, and `[Server] www` overrides both.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import vm from "node:vm";
import { after, before } from "node:test";
import { startServer, useServer } from "./lib/server.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const JS_CLIENT = join(ROOT, "js-client");
const srv = useServer();

let fresh; // bytes of a fresh build
let scratch;
before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "realtime-bundle-"));
  const outfile = join(scratch, "realtime.js");
  await promisify(execFile)("npm", ["run", "--silent", "build", "--", "--outfile", outfile], { cwd: JS_CLIENT });
  fresh = readFileSync(outfile);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

srv.test("GET /realtime.js is byte-identical to a fresh `npm run build` of js-client", async () => {
  const res = await fetch(`${srv.url}/realtime.js`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/javascript; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.match(res.headers.get("etag"), /^"[0-9a-f]+-[0-9a-f]+"$/);
  const served = Buffer.from(await res.arrayBuffer());
  const committed = readFileSync(join(ROOT, "js-client/www/realtime.js"));
  assert.ok(committed.equals(fresh),
    "js-client/www/realtime.js is not what js-client builds: run `npm run build` in js-client/ and commit js-client/www/realtime.js");
  assert.ok(served.equals(fresh),
    `the served bundle (${served.length} bytes) differs from a fresh build (${fresh.length} bytes): rebuild the server`);
});

srv.test("the bundle defines window.Realtime with socket.io-client inside", () => {
  const window = {};
  window.window = window;
  vm.runInNewContext(fresh.toString("utf8"), window);
  assert.equal(typeof window.Realtime, "function");
  assert.equal(typeof window.Realtime.connect, "function");
  assert.equal(typeof window.Realtime.io, "function", "socket.io-client is bundled");
  assert.equal(typeof window.Realtime.RealtimeError, "function");
  assert.ok(fresh.length < 120_000, `bundle is ${fresh.length} bytes: is it minified?`);
});

srv.test("conditional GET answers 304; HEAD has the headers; other methods get 405", async () => {
  const first = await fetch(`${srv.url}/realtime.js`);
  const etag = first.headers.get("etag");
  await first.arrayBuffer();
  const again = await fetch(`${srv.url}/realtime.js`, { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
  assert.equal(again.headers.get("etag"), etag);
  const head = await fetch(`${srv.url}/realtime.js`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "application/javascript; charset=utf-8");
  const post = await fetch(`${srv.url}/realtime.js`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.deepEqual(await post.json(), { ok: false, error: "method not allowed" });
  assert.equal((await fetch(`${srv.url}/realtime.js.map`)).status, 404);
});

srv.test("GET / is the demo page, loading /realtime.js", async () => {
  const res = await fetch(`${srv.url}/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await res.text();
  assert.ok(html.startsWith("<!doctype html>"));
  assert.match(html, /<script src="\/realtime\.js"><\/script>/);
  assert.equal(html, readFileSync(join(ROOT, "js-client/www/index.html"), "utf8"));
});

srv.test("[Server] www serves its own files, and the built-in ones where it has none", async () => {
  const www = mkdtempSync(join(tmpdir(), "realtime-www-"));
  writeFileSync(join(www, "index.html"), "<!doctype html><title>mine</title>");
  const server = await startServer({ config: `[Server]\nwww = ${www}\n` });
  try {
    assert.equal(await (await fetch(`${server.url}/`)).text(), "<!doctype html><title>mine</title>");
    let bundle = Buffer.from(await (await fetch(`${server.url}/realtime.js`)).arrayBuffer());
    assert.ok(bundle.equals(fresh), "without js-client/www/realtime.js the built-in bundle is served");
    writeFileSync(join(www, "realtime.js"), "window.Realtime = 'custom';");
    bundle = await (await fetch(`${server.url}/realtime.js`)).text();
    assert.equal(bundle, "window.Realtime = 'custom';", "edits show without a restart");
  } finally {
    await server.stop();
    rmSync(www, { recursive: true, force: true });
  }
});
