import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    plugins: [
      cloudflareTest(({ inject }) => ({
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
      testTimeout: 30_000,
      // Logs of passing tests are noise; a failing test still shows its own.
      silent: "passed-only",
      hookTimeout: 30_000,
    },
  };
});
