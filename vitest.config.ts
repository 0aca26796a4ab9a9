import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** The worker under test runs as this Worker in the pool (@cloudflare/vitest-plugin's runner name). */
const RUNNER = "vitest-plugin-runner-";

/**
 * The env the KeyService entrypoint sees (it reads the pool's own env, not a test world's):
 * test/identity-rpc.test.ts builds its world from the same values. Tests that build their own
 * worlds override every one of these.
 */
const RPC_TEST_VARS = {
  BASETEN_TEAM_ID: "team-test",
  BASETEN_API_KEY: "fake-mgmt-rpc-tests",
  ENCRYPTION_KEY: "cnBjLXRlc3QtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=",
  ADMIN_TOKEN: "adm_rpc_test_token_0123456789abcdefghijkl",
  WEBHOOK_SECRET: "whsec_cnBjLXRlc3Qtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM=",
  MODEL_SETS: JSON.stringify({
    demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
    other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
  }),
  CONSUMERS: JSON.stringify({
    "edge-svc": { binding: true, model_sets: ["demo"] },
    "static-svc": { token_sha256: "0".repeat(64), model_sets: ["demo"] },
  }),
};

/** A consumer Worker: GET /{binding}/{method}?args=<JSON array> calls env[binding][method](...args). */
const EDGE_CONSUMER_SCRIPT = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, binding, method] = url.pathname.split("/");
    const args = JSON.parse(url.searchParams.get("args") ?? "[]");
    try {
      const result = await env[binding][method](...args);
      return Response.json({ ok: true, result });
    } catch (err) {
      return Response.json({ ok: false, name: err && err.name, message: String(err && err.message) });
    }
  },
};`;

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
          bindings: { TEST_MIGRATIONS: migrations, BASETEN_API_BASE: inject("basetenUrl"), ...RPC_TEST_VARS },
          // KeyService over real service bindings with props (test/identity-rpc.test.ts): a consumer
          // Worker next to the one under test, and a binding from the test worker itself (client tests).
          serviceBindings: { EDGE_CONSUMER: "edge-consumer", KEY_ROTATOR: { name: RUNNER, entrypoint: "KeyService", props: { consumer: "edge-svc" } } },
          workers: [
            {
              name: "edge-consumer",
              modules: true,
              compatibilityDate: "2026-11-01",
              script: EDGE_CONSUMER_SCRIPT,
              serviceBindings: {
                KEY_ROTATOR: { name: RUNNER, entrypoint: "KeyService", props: { consumer: "edge-svc" } },
                NO_PROPS: { name: RUNNER, entrypoint: "KeyService" },
                NOT_A_BINDING: { name: RUNNER, entrypoint: "KeyService", props: { consumer: "static-svc" } },
                UNKNOWN: { name: RUNNER, entrypoint: "KeyService", props: { consumer: "nobody" } },
              },
            },
          ],
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
