// The demo page at `/` in headless Chromium (Debian's `chromium`, driven by playwright-core):
// two people with different identities join one channel, chat both ways, and see the member
// count go 1 → 2 → 1 when one closes the page; one who joins later sees the last messages
// (channel history). Screenshots go to target/test-artifacts/.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join as joinPath, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { chromium } from "playwright-core";
import { startServer, useServer, waitFor } from "./lib/server.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = joinPath(ROOT, "target/test-artifacts");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// A short grace period, so a member whose page is gone leaves the channel quickly; history on.
const srv = useServer({ config: "[Server]\nreconnect-timeout = 1\n[Messaging]\nhistory-size = 20\n" });

let context;
let userDataDir;
before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (tests/run does, as root) or set CHROMIUM`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  userDataDir = mkdtempSync(joinPath(tmpdir(), "realtime-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
    viewport: { width: 900, height: 720 },
    timeout: 30_000,
  });
});
after(async () => {
  if (context) await context.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/** Opens the demo as `identity`, joins `channel`, and returns the page. */
async function openDemo(identity, channel, problems) {
  const page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`${identity}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${identity}: console: ${msg.text()}`);
  });
  await page.goto(`${srv.url}/`);
  await page.locator("#identity").fill(identity);
  await page.locator("#channel").fill(channel);
  await page.locator("#join").click();
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: 10_000 });
  return page;
}

const count = (page) => page.locator("#count");
const messages = (page, from) => page.locator(`#messages .msg[data-identity="${from}"] .text`);

async function send(page, text) {
  await page.locator("#text").fill(text);
  await page.locator("#send").click();
}

srv.test("two people chat on the demo page; the member count follows them", { timeout: 60_000 }, async () => {
  const channel = "lobby";
  const problems = [];
  const alice = await openDemo("alice", channel, problems);
  await assertText(count(alice), "1");

  const bob = await openDemo("bob", channel, problems);
  await assertText(count(bob), "2");
  await assertText(count(alice), "2", "alice sees bob join (onSubscribe)");

  await send(alice, "Hi Bob! Did the deploy go out?");
  await assertText(messages(bob, "alice").last(), "Hi Bob! Did the deploy go out?");
  await assertText(messages(alice, "alice").last(), "Hi Bob! Did the deploy go out?");
  await send(bob, "Yes, 10 minutes ago. All green ✓");
  await assertText(messages(alice, "bob").last(), "Yes, 10 minutes ago. All green ✓");
  await send(alice, "Great, thanks. <b>not bold</b>");
  await assertText(messages(bob, "alice").last(), "Great, thanks. <b>not bold</b>");
  assert.equal(await bob.locator("#messages b").count(), 0, "message text is not HTML");
  // messages show who and when
  const meta = await alice.locator("#messages .msg .meta").first().innerText();
  assert.match(meta, /^alice\s*\d{1,2}:\d{2}/);
  await bob.screenshot({ path: joinPath(ARTIFACTS, "demo-bob.png") });

  await bob.close({ runBeforeUnload: true });
  await assertText(count(alice), "1", "alice sees bob leave (onUnsubscribe)", 15_000);
  await alice.screenshot({ path: joinPath(ARTIFACTS, "demo.png") });

  // a narrow screen: the layout still fits
  await alice.setViewportSize({ width: 380, height: 720 });
  const overflow = await alice.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `page overflows a narrow screen by ${overflow}px`);
  await alice.screenshot({ path: joinPath(ARTIFACTS, "demo-narrow.png") });
  await alice.close();
  assert.deepEqual(problems, [], "no page errors");
});

srv.test("joining shows the channel's last messages once, above the join note", { timeout: 60_000 }, async () => {
  const channel = "standup";
  const said = ["Morning all", "Deploy is at 10", "Coffee first"];
  for (const text of said) {
    const res = await fetch(`${srv.url}/api/publish`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ channel, identity: "erin", data: { text } }),
    });
    assert.equal(res.status, 200);
  }
  const problems = [];
  const page = await openDemo("frank", channel, problems);
  const earlier = page.locator("#messages .msg.earlier .text");
  await waitFor(async () => (await earlier.count()) === said.length, { timeout: 10_000, what: "earlier messages" });
  assert.deepEqual(await earlier.allInnerTexts(), said);
  const notes = await page.locator("#messages .note").allInnerTexts();
  assert.deepEqual(notes.slice(0, 2), [`earlier in #${channel}`, `you joined #${channel} as frank`]);
  // Live messages still come, once each.
  await send(page, "Hi, I'm late");
  await assertText(messages(page, "frank").last(), "Hi, I'm late");
  assert.equal(await messages(page, "frank").count(), 1);
  await page.screenshot({ path: joinPath(ARTIFACTS, "demo-history.png") });
  await page.close();
  assert.deepEqual(problems, []);
});

srv.test("the demo shows the connection state through a server restart, and rejoins", { timeout: 60_000 }, async () => {
  const port = await freePort();
  let server = await startServer({ port });
  const problems = [];
  const page = await context.newPage();
  try {
    page.on("pageerror", (err) => problems.push(err.message));
    await page.goto(`${server.url}/`);
    await assertText(page.locator("#state"), "not connected");
    assert.equal(await page.locator("#text").isDisabled(), true, "no composer before joining");
    await page.locator("#identity").fill("carol");
    await page.locator("#channel").fill("ops");
    await page.locator("#join").click();
    await assertText(page.locator("#state"), "connected");
    await assertText(count(page), "1");

    await server.stop();
    await assertText(page.locator("#state"), "reconnecting…");
    server = await startServer({ port });
    await assertText(page.locator("#state"), "connected", "back after the restart", 15_000);
    await assertText(page.locator("#messages .note").last(), "reconnected, joined again");
    await assertText(count(page), "1", "subscribed again: the count comes from the new server");
    await send(page, "still here");
    await assertText(messages(page, "carol").last(), "still here");

    await page.locator("#leave").click();
    await assertText(page.locator("#state"), "disconnected");
    assert.equal(await page.locator("#text").isDisabled(), true);
  } finally {
    await page.close();
    await server.stop();
  }
  assert.deepEqual(problems, []);
});

/** A TCP port with nothing listening on it. */
async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Waits until the locator's text is `want` (bounded), then asserts it. */
async function assertText(locator, want, what = "", ms = 10_000) {
  let text;
  await waitFor(async () => {
    text = (await locator.innerText().catch(() => null))?.trim();
    return text === want;
  }, { timeout: ms, interval: 50 }).catch(() => {});
  assert.equal(text, want, what);
}
