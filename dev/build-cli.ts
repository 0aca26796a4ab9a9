/**
 * `npm run build:cli` (run by `prepack`, and by the `check` / `token` / `webhook` scripts first):
 * bundles the command line (src/cli/main.ts, with the worker's own src/config.ts it validates
 * with) into one ES module for Node 20+, dist/cli/baseten-key-rotator.mjs, the package's `bin`.
 * esbuild is the one wrangler itself bundles with (a dependency of wrangler).
 */
/// <reference types="node" />
import { chmodSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const ROOT = path.resolve(import.meta.dirname, "..");
const outfile = path.join(ROOT, "dist", "cli", "baseten-key-rotator.mjs");
await build({
  entryPoints: [path.join(ROOT, "src", "cli", "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  banner: { js: "#!/usr/bin/env node" },
  legalComments: "none",
  logLevel: "warning",
});
chmodSync(outfile, 0o755);
if (!process.argv.includes("--quiet")) console.log(`built ${path.relative(process.cwd(), outfile)}`);
