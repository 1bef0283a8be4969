// Builds the browser bundle: `npm run build` writes www/realtime.js, a minified IIFE that
// sets `window.Realtime`, with socket.io-client inside. `www/` is what the server serves
// (the demo and this bundle, built into the binary; `[Server] www` may point at a copy).
// The output depends only on the sources and the locked package versions (esbuild is
// deterministic), so the committed copy can be checked against a fresh build:
//   npm run build -- --outfile /tmp/realtime.js
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { outfile: { type: "string" } } });
const outfile = values.outfile ?? join(root, "www/realtime.js");

await build({
  absWorkingDir: root,
  entryPoints: ["src/browser.js"],
  outfile,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["es2018"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  banner: { js: "/*! Realtime client (js-client/) with socket.io-client inside; rebuild with `npm run build` */" },
  logLevel: "warning",
});
console.log(`built ${outfile}`);
