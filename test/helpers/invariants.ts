/**
 * DESIGN §4's invariants as assertions over a world's real state: D1 (through the real binding,
 * never a faulty wrapper), KV, the fake Baseten's keys and the read route. Used by the fault
 * tests after every fault and after convergence.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { expect } from "vitest";
import { createApp } from "../../src/app.ts";
import type { KeyDocument } from "../../src/document.ts";
import type { Env } from "../../src/env.ts";
import { FaultPlan, faultyKV } from "./faulty-bindings.ts";
import { type World, prefixOf } from "./world.ts";

export interface Row {
  model_set: string;
  generation: number;
  state: string;
  name: string;
  prefix: string | null;
  created_at: number;
  refresh_at: number | null;
  expires_at: number | null;
  replaced_at: number | null;
  revoked_at: number | null;
}

export async function rows(set?: string): Promise<Row[]> {
  const sql = "SELECT model_set, generation, state, name, prefix, created_at, refresh_at, expires_at, replaced_at, revoked_at FROM keys";
  const stmt = set
    ? env.DB.prepare(`${sql} WHERE model_set = ?1 ORDER BY generation`).bind(set)
    : env.DB.prepare(`${sql} ORDER BY model_set, generation`);
  return (await stmt.all<Row>()).results;
}

export async function currentRow(set: string): Promise<Row | undefined> {
  return (await rows(set)).find((r) => r.state === "current");
}

/** The generation KV holds for a set, as the engine reads it (metadata), or null. */
export async function kvGeneration(set: string): Promise<number | null> {
  const { metadata } = await env.KEYS.getWithMetadata<{ g: number }>(`key:${set}`);
  return metadata?.g ?? null;
}

/** Every live key at the fake named `bkr-` is known to D1 by name. Returns the live bkr- keys. */
export async function expectNoUntrackedKeys(w: World) {
  const live = (await w.fake.liveKeys()).filter((k) => k.name?.startsWith("bkr-"));
  const known = new Map((await rows()).map((r) => [r.name, r]));
  for (const k of live) expect(known.get(k.name!), `live key ${k.name} is unknown to D1`).toBeDefined();
  return { live, known };
}

/**
 * The converged state of a set after faults: exactly one current key, live at Baseten and
 * served by the read route; KV holds that generation; no pending rows; every live `bkr-` key
 * of the set is current or a previous key whose promise has not ended; nothing untracked.
 */
export async function expectConverged(w: World, set: string, consumer = Object.keys(w.tokens)[0]!) {
  const setRows = await rows(set);
  const current = setRows.filter((r) => r.state === "current");
  expect(current.length, `${set}: exactly one current key`).toBe(1);
  expect(
    setRows.filter((r) => r.state === "pending"),
    `${set}: no pending rows`,
  ).toEqual([]);
  expect(await kvGeneration(set), `${set}: KV agrees with D1`).toBe(current[0]!.generation);
  const { live, known } = await expectNoUntrackedKeys(w);
  const livePrefixes = new Set(live.map((k) => k.prefix));
  expect(livePrefixes.has(current[0]!.prefix!), `${set}: current key live at Baseten`).toBe(true);
  const now = w.clock.now();
  for (const k of live) {
    const row = known.get(k.name!)!;
    if (row.model_set !== set) continue;
    const promised = row.state === "current" || (row.state === "previous" && (row.expires_at ?? 0) > now);
    expect(promised, `${set}: live key gen ${row.generation} is ${row.state} with expires_at ${row.expires_at}`).toBe(true);
  }
  const res = await w.getKey(set, consumer);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as KeyDocument;
  expect(doc.generation).toBe(current[0]!.generation);
  expect(prefixOf(doc.api_key)).toBe(current[0]!.prefix);
  return { current: current[0]!, doc };
}

/**
 * Another location of the same deployment: the same D1 and KV namespace, but its own isolate
 * memory and view of what the engine did (its own KV binding object), as a second colo has.
 * Returns a `getKey` like the world's.
 */
export function elsewhere(w: World): World["getKey"] {
  const otherEnv = { ...w.env, KEYS: faultyKV(env.KEYS, new FaultPlan()) } as Env;
  const app = createApp({ clock: w.clock.now });
  return async (set: string, consumer = Object.keys(w.tokens)[0]!) => {
    const ctx = createExecutionContext();
    const res = await app.fetch(
      new Request(`https://rotator.test/v1/keys/${set}`, { headers: { authorization: `Bearer ${w.tokens[consumer]}` } }),
      otherEnv,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return res;
  };
}

/** The document a consumer gets now (here, or through `via` another location), and that its key is live at the fake. */
export async function servedLive(
  w: World,
  set = "demo",
  consumer = Object.keys(w.tokens)[0]!,
  via: World["getKey"] = (s, c) => w.getKey(s, c),
): Promise<KeyDocument> {
  const res = await via(set, consumer);
  expect(res.status, `GET /v1/keys/${set}`).toBe(200);
  const doc = (await res.json()) as KeyDocument;
  const live = new Set((await w.fake.liveKeys()).map((k) => k.prefix));
  expect(live.has(prefixOf(doc.api_key)), `served ${set} gen ${doc.generation} is live at Baseten`).toBe(true);
  return doc;
}

/** The overdue-document rule: refresh_at is the next attempt (future, at most 60 s on), expires_at covers it plus the overlap. */
export function expectOverdueDocument(doc: KeyDocument, now: number, overlapMs: number) {
  const refresh = Date.parse(doc.refresh_at);
  const expires = Date.parse(doc.expires_at);
  expect(refresh).toBeGreaterThan(now);
  expect(refresh - now).toBeLessThanOrEqual(60_000);
  expect(expires).toBeGreaterThanOrEqual(refresh + overlapMs);
}

export async function adminStatus(w: World) {
  const res = await w.request("/v1/admin/status", { headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, body: JSON.parse(text) as { sets: SetStatus[]; config_problems: string[] } };
}

export interface SetStatus {
  model_set: string;
  generation: number | null;
  previous: { generation: number; expires_at: string | null }[];
  last_run: { trigger: string; outcome: string; error: string | null; at: string | null } | null;
}

/**
 * Promises a test has seen served: the latest expires_at per key prefix. `checkRevocations`
 * fails if a key that is no longer live at Baseten had been promised past `now`.
 */
export function promiseBook() {
  const served = new Map<string, number>();
  const exempt = new Set<string>();
  return {
    served,
    /** Reads the set through the route (here, or `via` another location), records the promise, returns the document. */
    async read(w: World, set = "demo", consumer = Object.keys(w.tokens)[0]!, via?: World["getKey"]): Promise<KeyDocument> {
      const doc = await servedLive(w, set, consumer, via);
      const p = prefixOf(doc.api_key);
      served.set(p, Math.max(served.get(p) ?? 0, Date.parse(doc.expires_at)));
      return doc;
    },
    /** A key revoke_previous asked to revoke at once. */
    exempt(prefix: string) {
      exempt.add(prefix);
    },
    async checkRevocations(w: World) {
      const live = new Set((await w.fake.liveKeys()).map((k) => k.prefix));
      const now = w.clock.now();
      for (const [prefix, until] of served) {
        if (live.has(prefix) || exempt.has(prefix)) continue;
        expect(
          until,
          `key ${prefix} was revoked by ${new Date(now).toISOString()} but promised until ${new Date(until).toISOString()}`,
        ).toBeLessThanOrEqual(now);
      }
    },
  };
}
