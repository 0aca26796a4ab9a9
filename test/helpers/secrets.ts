/**
 * A world restarted with other vars or secrets (same D1, KV and fake Baseten tenant): what an
 * operator does with `wrangler secret put` followed by a deploy. Used by test/secrets-*.test.ts.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { createApp } from "../../src/app.ts";
import { forgetInMemory } from "../../src/cache.ts";
import { loadConfig } from "../../src/config.ts";
import { tick } from "../../src/cron.ts";
import type { Env } from "../../src/env.ts";
import { createEngine } from "../../src/rotation.ts";
import type { World } from "./world.ts";

export type Deployment = ReturnType<typeof redeploy>;

export function redeploy(w: World, vars: Partial<Record<keyof Env, unknown>>) {
  const env = { ...w.env, ...vars } as Env;
  for (const [k, v] of Object.entries(vars)) if (v === undefined) delete (env as unknown as Record<string, unknown>)[k];
  // A new deployment starts with fresh isolates: nothing decrypted is left in memory.
  forgetInMemory(env.KEYS);
  const app = createApp({ clock: w.clock.now });
  const d = {
    env,
    async request(path: string, init: RequestInit = {}): Promise<Response> {
      const ctx = createExecutionContext();
      const res = await app.fetch(new Request(`https://rotator.test${path}`, init), env, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    },
    getKey(set: string, consumer = Object.keys(w.tokens)[0]!) {
      return d.request(`/v1/keys/${set}`, { headers: { authorization: `Bearer ${w.tokens[consumer]}` } });
    },
    async status(token = String(env.ADMIN_TOKEN).split(" ")[0]!) {
      const res = await d.request("/v1/admin/status", { headers: { authorization: `Bearer ${token}` } });
      if (res.status !== 200) throw new Error(`status answered ${res.status}: ${await res.text()}`);
      return (await res.json()) as AdminStatus;
    },
    async tick() {
      const result = loadConfig(env);
      if (!result.ok) throw new Error(`config invalid: ${result.problems.join("; ")}`);
      return tick(createEngine(result.config, env, w.clock.now));
    },
  };
  return d;
}

export interface AdminStatus {
  sets: { model_set: string; generation: number | null; last_run: { outcome: string; error: string | null } | null }[];
  encryption: {
    primary: string;
    configured: string[];
    sealed_by: Record<string, number>;
    unattributed: number;
    undecryptable: { count: number; model_sets: string[] };
  } | null;
  management_key: { ok: boolean | null; checked_at: string | null; error: string | null };
}
