/**
 * A test world: the worker's env pointed at a fresh fake-Baseten tenant, a movable clock,
 * consumer tokens, and helpers to fire the cron and call routes. Storage is wiped per world.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { tick } from "../../src/cron.ts";
import { forgetInMemory } from "../../src/cache.ts";
import type { Env } from "../../src/env.ts";
import { createEngine, type Engine } from "../../src/rotation.ts";
import { type FakeTenant, fakeTenant } from "./fake.ts";

export const T0 = Date.parse("2026-11-27T15:00:00.000Z");
export const MIN = 60_000;
export const HOUR = 3_600_000;

export class Clock {
  constructor(public t = T0) {}
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
  set(ms: number) {
    this.t = ms;
  }
}

export async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function randomB64(bytes: number): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(bytes))));
}

export interface WorldOptions {
  sets?: Record<string, unknown>;
  /** consumer name -> granted sets; tokens are generated */
  consumers?: Record<string, string[]>;
  vars?: Partial<Record<keyof Env, unknown>>;
}

export const DEFAULT_SETS = {
  demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
  other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
};

/** Deletes every row and cache entry so each world starts empty. */
export async function wipeStorage(): Promise<void> {
  await env.DB.batch(
    [
      "keys",
      "sets",
      "audit",
      "webhook_receipts",
      "event_deliveries",
      "meta",
      "managed_consumers",
      "consumer_seen",
      "audit_counts",
      "overdue_notices",
      "undecryptable_keys",
      "secrets_state",
    ].map((t) => env.DB.prepare(`DELETE FROM ${t}`)),
  );
  const listed = await env.KEYS.list();
  await Promise.all(listed.keys.map((k) => env.KEYS.delete(k.name)));
  forgetInMemory(env.KEYS);
}

export async function makeWorld(options: WorldOptions = {}) {
  await wipeStorage();
  const fake: FakeTenant = fakeTenant(env.BASETEN_API_BASE);
  const clock = new Clock();
  const consumers = options.consumers ?? { "demo-svc": ["demo"], "other-svc": ["other"] };
  const tokens: Record<string, string> = {};
  const consumerConfig: Record<string, unknown> = {};
  for (const [name, sets] of Object.entries(consumers)) {
    tokens[name] = `tok_${crypto.randomUUID().replaceAll("-", "")}`;
    consumerConfig[name] = { token_sha256: await sha256Hex(tokens[name]!), model_sets: sets };
  }
  const testEnv = {
    ...env,
    BASETEN_TEAM_ID: "team-test",
    BASETEN_API_KEY: fake.key,
    ENCRYPTION_KEY: randomB64(32),
    WEBHOOK_SECRET: `whsec_${randomB64(24)}`,
    ADMIN_TOKEN: `adm_${crypto.randomUUID()}`,
    MODEL_SETS: JSON.stringify(options.sets ?? DEFAULT_SETS),
    CONSUMERS: JSON.stringify(consumerConfig),
    BASETEN_TIMEOUT_MS: "1000",
    ...options.vars,
  } as Env;
  const app = createApp({ clock: clock.now });

  const engine = (): Engine => {
    const result = loadConfig(testEnv);
    if (!result.ok) throw new Error(`config invalid: ${result.problems.join("; ")}`);
    return createEngine(result.config, testEnv, clock.now);
  };

  return {
    env: testEnv,
    fake,
    clock,
    tokens,
    engine,
    /** One cron tick at the clock's time. */
    tick: () => tick(engine()),
    /** A request through the worker's fetch handler at the clock's time. */
    async request(path: string, init: RequestInit = {}): Promise<Response> {
      const ctx = createExecutionContext();
      const res = await app.fetch(new Request(`https://rotator.test${path}`, init), testEnv, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    },
    /** GET /v1/keys/{set} as a consumer. */
    async getKey(set: string, consumer = Object.keys(tokens)[0]!): Promise<Response> {
      return this.request(`/v1/keys/${set}`, { headers: { authorization: `Bearer ${tokens[consumer]}` } });
    },
    async liveKeyPrefixes(): Promise<string[]> {
      return (await fake.liveKeys()).map((k) => k.prefix);
    },
  };
}

export type World = Awaited<ReturnType<typeof makeWorld>>;

export const prefixOf = (apiKey: string) => apiKey.slice(0, apiKey.indexOf("."));
