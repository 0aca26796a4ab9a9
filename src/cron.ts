/**
 * The cron tick: record that it ran, find every set with work (the policy's own plan, asked
 * with the tick's snapshot) and run each through the state machine, inline or through the
 * queue. Reads cost one D1 round trip and one KV list per tick, whatever the number of sets.
 */
import { cachedGenerations } from "./cache.ts";
import type { KeyRow, SetRow, Snapshot } from "./ledger.ts";
import { rowsByName, tickSnapshot } from "./ledger.ts";
import { errorText, log } from "./log.ts";
import { type Engine, type RunResult, runSet } from "./rotation/engine.ts";
import { LEASE_MS, RUN_BUDGET_MS, type SetConfig, plan } from "./rotation/policy.ts";
import type { Config } from "./config.ts";
import { TICK_MS } from "./document.ts";
import type { RotationMessage } from "./env.ts";
import { resealBatch } from "./reseal.ts";

/** KV's list may lag a write by up to a minute: a disagreement younger than this is not a regression. */
const CACHE_SETTLE_MS = 120_000;

export interface PlannedRun {
  model_set: string;
  /** KV's list disagrees with D1's record long after the last write: rewrite KV. */
  recache: boolean;
  /** The tick's plan for the set mints (the run records its pending with the lease). */
  mint: boolean;
}

/** Which sets have work at `now`, from the tick's snapshot of D1 and KV's list. */
function planTick(
  config: Config,
  rows: KeyRow[],
  sets: SetRow[],
  listed: Map<string, number> | null,
  now: number,
  tickMs: number,
): PlannedRun[] {
  const bySet = new Map<string, KeyRow[]>();
  for (const r of rows) {
    let list = bySet.get(r.model_set);
    if (!list) bySet.set(r.model_set, (list = []));
    list.push(r);
  }
  const cacheBySet = new Map(sets.map((s) => [s.model_set, s]));
  const ids = new Set([...config.sets.keys(), ...bySet.keys()]);
  const out: PlannedRun[] = [];
  for (const id of [...ids].sort()) {
    const setRows = (bySet.get(id) ?? []).sort((a, b) => a.generation - b.generation);
    const cache = cacheBySet.get(id) ?? null;
    const snap: Snapshot = {
      set: id,
      rows: setRows,
      cache,
      maxGeneration: Math.max(0, ...setRows.map((r) => r.generation)),
      onDemandMints: [],
    };
    const current = setRows.find((r) => r.state === "current");
    const recache =
      listed !== null &&
      current !== undefined &&
      cache?.cached_generation === current.generation &&
      listed.get(id) !== current.generation &&
      (cache.cached_at ?? 0) <= now - CACHE_SETTLE_MS;
    const steps = plan(snap, config.sets.get(id) as SetConfig | undefined, now, { mint: "due", recache, tickMs });
    if (steps.length > 0) out.push({ model_set: id, recache, mint: steps.some((s) => s.kind === "mint") });
    else if (setRows.some((r) => r.state === "pending" && r.created_at > now - LEASE_MS))
      log("info", "run.skipped", { model_set: id, reason: "a rotation of this set is in flight" });
  }
  return out;
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

export async function tick(engine: Engine, queue?: Queue<RotationMessage>): Promise<TickSummary> {
  const now = engine.clock();
  const { rows, sets, previousTickAt } = await tickSnapshot(engine.db, now);
  // A cron that fires late or sparsely widens the run-ahead and overdue margins (policy.ts).
  const tickMs = previousTickAt !== null && previousTickAt < now ? now - previousTickAt : TICK_MS;
  const listed = await cachedGenerations(engine.kv).catch((err) => {
    log("warn", "cache.list_failed", { error: errorText(err) });
    return null;
  });
  // Leftovers first: keys at Baseten under names D1 has written off.
  await sweep(engine, now + RUN_BUDGET_MS, rows).catch((err) => log("warn", "sweep.failed", { error: errorText(err) }));
  // Re-seal a bounded batch of stored keys sealed under another ENCRYPTION_KEY (src/reseal.ts), on every tick, fan-out or not.
  await resealBatch(engine.db, engine.kv, engine.config.keyring, undefined, now, engine.clock).catch((err) =>
    log("warn", "reseal.failed", { error: errorText(err) }),
  );

  const planned = planTick(engine.config, rows, sets, listed, now, tickMs);
  if (queue && planned.length > engine.config.inlineBudget) {
    // Too many for one invocation's limits: one message per set, the queue consumer runs each.
    for (let i = 0; i < planned.length; i += 100) {
      await queue.sendBatch(
        planned.slice(i, i + 100).map((p) => ({
          body: { model_set: p.model_set, tick_at: now, tick_ms: tickMs, mint: p.mint, ...(p.recache ? { recache: true } : {}) },
        })),
      );
    }
    log("info", "tick", { planned: planned.length, inline: 0, queued: planned.length });
    return { planned: planned.length, inline: 0, queued: planned.length, results: [] };
  }
  const results = await pool(planned, runsInFlight(engine.config), (p) =>
    runSet(engine, p.model_set, { trigger: "cron", mint: "due", recache: p.recache, expectMint: p.mint, tickMs }),
  );
  for (const r of results)
    if (r.outcome === "busy") log("info", "run.skipped", { model_set: r.model_set, reason: "another run holds the lease" });
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  log("info", "tick", { planned: planned.length, inline: planned.length, queued: 0, rotated: count("rotated"), failed: count("failed") });
  return { planned: planned.length, inline: planned.length, queued: 0, results };
}

/**
 * Keys at Baseten under our names that D1 says are gone (abandoned or revoked) are deleted.
 * This closes the last gap: a mint that lands at Baseten after its run was declared dead.
 * Keys named `bkr-` that D1 has never heard of are left alone and logged: they may belong
 * to another deployment of this worker on the same Baseten team.
 */
export async function sweep(engine: Engine, deadline: number, liveRows: KeyRow[] = []): Promise<{ deleted: number; unknown: number }> {
  const listed = (await engine.baseten.list(deadline)).filter((k) => typeof k.name === "string" && k.name.startsWith("bkr-"));
  // Keys the tick already read as live (pending/current/previous) are never swept: look up only the others.
  const live = new Set(liveRows.map((r) => r.name));
  const known = new Map(
    (
      await rowsByName(
        engine.db,
        listed.filter((k) => !live.has(k.name!)).map((k) => k.name!),
      )
    ).map((r) => [r.name, r]),
  );
  for (const r of liveRows) if (!known.has(r.name)) known.set(r.name, r);
  let deleted = 0;
  let unknown = 0;
  for (const k of listed) {
    const row = known.get(k.name!);
    if (!row) {
      unknown++;
      continue;
    }
    if (row.state === "abandoned" || row.state === "revoked") {
      await engine.baseten.revoke(k.prefix, deadline);
      deleted++;
      log("warn", "sweep.deleted", { model_set: row.model_set, generation: row.generation, state: row.state });
    }
  }
  if (unknown > 0) log("info", "sweep.unknown_keys", { count: unknown });
  return { deleted, unknown };
}
