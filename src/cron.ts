/**
 * The cron tick: find every set with work to do (a rotation due, a promise ended, a
 * stale pending, a retired set, a cache behind D1) and run it through the state machine.
 * Reads cost one D1 statement and one KV list per tick, whatever the number of sets.
 */
import { cachedGenerations } from "./cache.ts";
import type { Config } from "./config.ts";
import type { KeyRow } from "./ledger.ts";
import { liveRows } from "./ledger.ts";
import { log } from "./log.ts";
import { resealBatch } from "./reseal.ts";
import { type Engine, LEASE_MS, RUN_BUDGET_MS, type RunResult, type Trigger, errorText, runSet, sweep } from "./rotation.ts";

/** KV's list may lag a fresh write by up to a minute; younger mismatches are not repairs yet. */
const CACHE_SETTLE_MS = 120_000;

export interface PlannedRun {
  model_set: string;
  checkCache: boolean;
}

/** Which sets have work at `now`, from the tick's single read of D1 and KV. */
export function planTick(config: Config, rows: KeyRow[], cached: Map<string, number> | null, now: number): PlannedRun[] {
  const bySet = new Map<string, KeyRow[]>();
  for (const r of rows) {
    let list = bySet.get(r.model_set);
    if (!list) bySet.set(r.model_set, (list = []));
    list.push(r);
  }
  const ids = new Set([...config.sets.keys(), ...bySet.keys()]);
  const plan: PlannedRun[] = [];
  for (const id of [...ids].sort()) {
    const cfg = config.sets.get(id);
    const setRows = bySet.get(id) ?? [];
    const current = setRows.find((r) => r.state === "current");
    const cacheBehind =
      cached !== null && current !== undefined && cached.get(id) !== current.generation && current.created_at <= now - CACHE_SETTLE_MS;
    const needsWork =
      (cfg?.enabled === true && (!current || now >= (current.refresh_at ?? 0))) ||
      setRows.some((r) => r.state === "previous" && (r.expires_at ?? Infinity) <= now) ||
      setRows.some((r) => r.state === "pending" && r.created_at <= now - LEASE_MS) ||
      (!cfg && current !== undefined) ||
      cacheBehind;
    if (needsWork) plan.push({ model_set: id, checkCache: cacheBehind });
  }
  return plan;
}

export interface TickSummary {
  planned: number;
  inline: number;
  queued: number;
  results: RunResult[];
}

/**
 * Sets run at once in one invocation. Baseten calls stay bounded by the client's semaphore
 * (`config.concurrency`); twice as many runs keep every call slot busy while other runs do their
 * D1 and KV work (measured in bench/: README, Performance).
 */
export const runsInFlight = (config: Config) => config.concurrency * 2;

/** Runs `items` through `fn` with at most `limit` in flight. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(workers);
  return out;
}

export async function tick(engine: Engine, queue?: Queue<{ model_set: string; tick_at: number }>, trigger: Trigger = "cron"): Promise<TickSummary> {
  const now = engine.clock();
  const rows = await liveRows(engine.db);
  const cached = await cachedGenerations(engine.kv).catch((err) => {
    log("warn", "cache.list_failed", { error: errorText(err) });
    return null;
  });
  // Leftovers first: keys at Baseten under names D1 has written off.
  await sweep(engine, now + RUN_BUDGET_MS, rows).catch((err) => log("warn", "sweep.failed", { error: errorText(err) }));
  // Re-seal a bounded batch of stored keys sealed under another ENCRYPTION_KEY (src/reseal.ts), on every tick, fan-out or not.
  await resealBatch(engine.db, engine.kv, engine.config.keyring, undefined, now).catch((err) => log("warn", "reseal.failed", { error: errorText(err) }));

  const plan = planTick(engine.config, rows, cached, now);
  if (queue && plan.length > engine.config.inlineBudget) {
    // Too many for one invocation's limits: one message per set, the queue consumer runs each.
    for (let i = 0; i < plan.length; i += 100) {
      await queue.sendBatch(plan.slice(i, i + 100).map((p) => ({ body: { model_set: p.model_set, tick_at: now } })));
    }
    log("info", "tick", { planned: plan.length, inline: 0, queued: plan.length });
    return { planned: plan.length, inline: 0, queued: plan.length, results: [] };
  }
  const results = await pool(plan, runsInFlight(engine.config), (p) => runSet(engine, p.model_set, { trigger, mint: "due", checkCache: p.checkCache }));
  for (const r of results) if (r.outcome === "busy") log("info", "run.skipped", { model_set: r.model_set, reason: "another run holds the lease" });
  log("info", "tick", { planned: plan.length, inline: plan.length, queued: 0, rotated: results.filter((r) => r.outcome === "rotated").length, failed: results.filter((r) => r.outcome === "failed").length });
  return { planned: plan.length, inline: plan.length, queued: 0, results };
}
