// The hand-written TypeScript types of js-client/ (src/realtime.d.ts) compile against a
// usage of the whole API, and refuse what the API does not allow (js-client/test/).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const JS_CLIENT = join(resolve(dirname(fileURLToPath(import.meta.url)), "../.."), "js-client");

test("js-client's types check with tsc --strict", { timeout: 60_000 }, async () => {
  const { code, output } = await new Promise((res) => {
    execFile("npm", ["run", "--silent", "check-types"], { cwd: JS_CLIENT }, (err, stdout, stderr) =>
      res({ code: err ? err.code : 0, output: stdout + stderr }));
  });
  assert.equal(code, 0, `tsc failed:\n${output}`);
});
