import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    plugins: [
      cloudflareTest(({ inject }) => ({
        // The pool runs workerd in verbose mode by default, which logs every subrequest whose
        // connection drops as an "uncaught exception" even when the worker caught it (the fake's
        // refuse / lost_after_commit / short stall faults do this on purpose). Plain workerd,
        // wrangler dev and production do not; real uncaught exceptions still print.
        verbose: false,
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          // Test-only bindings: the migrations for the setup file and the fake Baseten's URL.
          bindings: { TEST_MIGRATIONS: migrations, BASETEN_API_BASE: inject("basetenUrl") },
        },
      })),
    ],
    test: {
      globalSetup: ["test/global-setup.ts"],
      // The default output, then the reliability figures (soak lines, faults, bad inputs, 500s).
      reporters: ["default", "./test/reporters/figures.ts"],
      setupFiles: ["test/setup.ts"],
      include: ["test/**/*.test.ts"],
      // The command line's tests run in Node (vitest.node.config.ts, `npm run test:node`).
      exclude: ["test/cli-*.test.ts", "**/node_modules/**"],
      // Two test files at a time (vitest's default is cores - 1: one file at a time on the 2-core
      // CI machines). Most of a test's time is waiting on workerd's D1/KV and the fake Baseten,
      // so two overlap well: the two soak seeds (test/soak*.test.ts) run side by side.
      maxWorkers: 2,
      testTimeout: 30_000,
      // Logs of passing tests are noise; a failing test still shows its own.
      silent: "passed-only",
      hookTimeout: 30_000,
    },
  };
});
