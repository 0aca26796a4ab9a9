import type { Env as WorkerEnv } from "../src/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
      BASETEN_API_BASE: string;
      /** The consumer Worker of test/identity-rpc.test.ts (vitest.config.ts). */
      EDGE_CONSUMER: Fetcher;
      /** KeyService bound from the test worker itself with props { consumer: "edge-svc" }. */
      KEY_ROTATOR: Service<import("../src/rpc.ts").KeyService>;
    }
  }
}
