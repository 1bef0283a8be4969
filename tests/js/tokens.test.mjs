// Identity tokens with the stock socket.io-client (and the Realtime client): what a page
// sees when its token is refused, and what a token's channels claim allows.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { BINARY, ack, connected, once, useServer } from "./lib/server.mjs";
import { useClients } from "./lib/realtime.mjs";

const SECRET = "node-token-secret";
const CONFIG = `[Identity]\nsecret = ${SECRET}\n`;
const srv = useServer({ config: CONFIG });
const clients = useClients(srv);

// `realtime token` reads the secret from a config file: the same one the server runs with.
const dir = mkdtempSync(join(tmpdir(), "realtime-token-"));
const conf = join(dir, "realtime.conf");
writeFileSync(conf, CONFIG);
after(() => rmSync(dir, { recursive: true, force: true }));

function cliToken(identity, ...args) {
  return execFileSync(BINARY, ["--config", conf, "token", identity, ...args], { encoding: "utf8" }).trim();
}

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** A JWT with this header and these claims, HS256-signed with `secret`. */
function jwt(claims, { secret = SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const signing = `${b64(header)}.${b64(claims)}`;
  return `${signing}.${createHmac("sha256", secret).update(signing).digest("base64url")}`;
}

const now = () => Math.floor(Date.now() / 1000);

const client = (auth, transports = ["websocket"]) => srv.connect("", { transports, auth });

/** The message the client's connect_error carries. */
async function refusal(auth, transports) {
  const socket = client(auth, transports);
  const err = await once(socket, "connect_error");
  assert.equal(socket.connected, false);
  return err.message;
}

srv.test("a valid token connects on both transports; bad ones get a reason the page can show", async () => {
  for (const transports of [["websocket"], ["polling"]]) {
    const socket = client({ identity: "alice", token: cliToken("alice") }, transports);
    await connected(socket);
    socket.disconnect();

    const cases = [
      [{ identity: "alice" }, "identity requires a token (auth.token)"],
      [{ identity: "alice", token: jwt({ sub: "alice", exp: now() - 60 }) }, "token expired"],
      [{ identity: "alice", token: jwt({ sub: "alice", exp: now() + 60 }, { secret: "not-it" }) }, "token signature is not valid"],
      [{ identity: "alice", token: `${b64({ alg: "none" })}.${b64({ sub: "alice", exp: now() + 60 })}.` },
        'token algorithm "none" not allowed (HS256 only)'],
      [{ identity: "alice", token: cliToken("mallory") }, "token is for another identity"],
      [{ identity: "alice", token: "garbage" }, "malformed token"],
    ];
    for (const [auth, message] of cases) {
      assert.equal(await refusal(auth, transports), message, JSON.stringify(auth));
    }
  }
});

srv.test("the channels claim limits subscribe and publish, with a clear ack error", async () => {
  const token = cliToken("bob", "--channels", "chat,room-*", "--ttl", "10m");
  const socket = client({ identity: "bob", token });
  await connected(socket);
  assert.deepEqual(await ack(socket, "subscribe", "chat"), { ok: true, channel: "chat", count: 1 });
  assert.deepEqual(await ack(socket, "subscribe", "room-42"), { ok: true, channel: "room-42", count: 1 });
  assert.deepEqual(await ack(socket, "subscribe", "admin"),
    { ok: false, error: 'channel "admin" not allowed by the token' });
  assert.deepEqual(await ack(socket, "publish", "admin", { x: 1 }),
    { ok: false, error: 'channel "admin" not allowed by the token' });
  assert.deepEqual(await ack(socket, "publish", "room-42", { x: 1 }), { ok: true });
});

srv.test("the Realtime client reports a refused token", async () => {
  const rt = clients.connect({ identity: "carol", token: jwt({ sub: "carol", exp: now() - 60 }) });
  const errors = [];
  rt.on("error", (err) => errors.push(err));
  await assert.rejects(rt.ready(), (err) => {
    assert.match(err.message, /token expired/);
    assert.equal(err.code, "connect_error");
    return true;
  });
  assert.deepEqual(errors.map((e) => [e.code, e.fatal, e.cause && e.cause.message]),
    [["connect_error", true, "token expired"]]);
  const ok = clients.connect({ identity: "carol", token: cliToken("carol") });
  await ok.ready();
  assert.deepEqual(await ok.subscribe("anything"), { ok: true, channel: "anything", count: 1 });
});
