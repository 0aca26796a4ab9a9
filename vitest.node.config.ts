/**
 * The Node-side tests (`npm run test:node`, the second half of `npm test`): the command line runs
 * in Node, not workerd, so test/cli-*.test.ts run here, in plain Node processes, against the
 * built CLI (dist/cli/, built once by the global setup) and small stub servers.
 */
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/cli-*.test.ts"],
    globalSetup: ["test/cli-global-setup.ts"],
    environment: "node",
    maxWorkers: 2,
    // `check` loads wrangler (2-3 s of CPU each run, far more on a loaded machine).
    testTimeout: 180_000,
    hookTimeout: 120_000,
    silent: "passed-only",
  },
});
