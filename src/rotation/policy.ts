/**
 * The rotation policy: what a set needs, decided from D1's rows alone. Pure: no I/O, no clock
 * (`now` is an argument). Every path that touches a set (the cron's planner, the queue
 * consumer, the webhook, the admin routes) goes through `runSet`, which asks `plan` and applies
 * its steps in order (src/rotation/engine.ts). Unit tests: test/policy.test.ts.
 *
 * The steps, in the order a plan lists them:
 *
 *   reject    the request cannot be served (rate limited, unknown or current generation, a mint
 *             of a recent run may still be landing); nothing else happens
 *   recover   pendings older than a lease: their run died mid-mint; find by name, delete, abandon
 *   retire    a set removed from MODEL_SETS: current -> previous, its recorded promise kept
 *   mark      an explicit revocation (admin revoke) is recorded (revoke_at) before Baseten is asked
 *   mint      a new key is due: none yet, `refresh_at - runAhead` reached, model_ids changed, or
 *             on demand; then promote in one D1 batch (the replaced key keeps its recorded promise:
 *             nothing a document did not carry is added, see `mint` below)
 *   extend    the set is (nearly) overdue and gets no new key (mint failed, set disabled): its
 *             promise is extended in D1 *before* any cache can serve the extension
 *   cache     KV gets D1's current key (after a mint, an extension, or when KV is behind D1), or
 *             the set's entry is dropped (retired)
 *   revoke    previous keys whose explicit revoke_at has passed, or whose recorded expires_at has
 *             passed and whose replacement KV has served for longer than any cache can lag
 *
 * The promise rule (DESIGN §3) in terms of these steps: every expires_at a document can carry
 * was recorded in D1 by promote or extend before the cache step wrote it, and revoke reads
 * only recorded promises. Nothing is reconstructed from cache staleness arithmetic except
 * "KV has held something newer for MAX_STALENESS_MS" (kv_replaced_at), which is recorded too.
 */
import type { ModelSetConfig } from "../config.ts";
import type { KeyRow, Snapshot } from "../ledger.ts";
import { ON_DEMAND_LIMIT, ON_DEMAND_WINDOW_MS } from "../ledger.ts";
import { MAX_STALENESS_MS, MEMORY_TTL_MS, KV_STALENESS_MS, TICK_MS, nextAttempt } from "../document.ts";
import { nextScheduleTime, scheduledRefreshAt } from "../schedule.ts";

/** A run holds its set for at most this long; a run that dies frees the set by itself. */
export const LEASE_MS = 90_000;
/** Every await of a run ends by this long after its start, so a run always ends inside its lease. */
export const RUN_BUDGET_MS = 75_000;

/** What a run may take from its start until its KV write lands, on a normal day. */
export const RUN_ALLOWANCE_MS = 25_000;
/**
 * How far ahead of refresh_at a scheduled rotation runs: the cron may fire up to one tick after
 * the set becomes due, the run takes a few seconds, and KV's edge copies (60 s) and isolate
 * memories (5 s) then still serve the old key. Started this early, every location serves the
 * next key by refresh_at. Capped at half the rotation period for short periods. "One tick" is
 * the cron's period (60 s), or the gap the cron last left between two ticks when longer (a late
 * or sparser cron), up to MAX_TICK_GAP_MS.
 */
export const RUN_AHEAD_MS = TICK_MS + RUN_ALLOWANCE_MS + KV_STALENESS_MS + MEMORY_TTL_MS;
/** The longest tick gap the margins adapt to. */
export const MAX_TICK_GAP_MS = 10 * 60_000;

/**
 * An overdue set's promise must cover every document any location serves until the next
 * extension reaches every cache: the next tick (one tick), the tick after if that one is late
 * (a second), its run, and the caches' lag. Below this much ahead of the next attempt, the tick
 * extends the promise, by one more tick, so that a tick with nothing to do is not every tick.
 */
export const OVERDUE_COVER_MS = 2 * TICK_MS + RUN_ALLOWANCE_MS + MAX_STALENESS_MS;

/** Set config as the engine reads it (src/config.ts: `teamId`, `schedule`, `verify` included). */
export type SetConfig = ModelSetConfig;

/**
 * After a new key failed verification, the set's next due mint (cron, queue) waits this long
 * (on-demand rotations are not held back: they are rate limited): a verify endpoint that keeps
 * failing does not make every tick mint and delete a key. The current key's promise keeps being
 * extended meanwhile, like any overdue set's.
 */
export const VERIFY_BACKOFF_MS = 5 * 60_000;

export type Step =
  | {
      kind: "reject";
      code: "rate_limited" | "rotation_in_progress" | "unknown_model_set" | "set_disabled" | "is_current" | "unknown_generation";
      message: string;
      retryAfterS: number | null;
    }
  | { kind: "recover"; generations: number[] }
  | { kind: "retire"; generation: number }
  | { kind: "mark"; generations: number[]; reason: string }
  | {
      kind: "mint";
      why: "first" | "schedule" | "scope" | "on_demand";
      modelIds: string[];
      overlapMs: number;
      /** The current key being replaced: it keeps its recorded promise (expires_at), no more, no less. */
      replaced: { generation: number } | null;
      /** The anchor of the new key's refresh_at (a scheduled rotation keeps the cadence). */
      previousRefreshAt: number | null;
      /** The leak response: revoke every key of the set other than the new one. */
      revokeOthers: boolean;
    }
  | { kind: "extend"; generation: number; expiresAt: number; onlyIfMintFailed: boolean }
  | { kind: "cache"; drop: boolean; reason: "behind" | "suspect" | "changed" | "retired" }
  | { kind: "revoke"; generations: { generation: number; reason: string }[] };

export interface PlanOptions {
  /** "due": only if the schedule says so (cron, queue); "now": regardless (webhook, admin); false: no mint. */
  mint: "due" | "now" | false;
  revokePrevious?: boolean;
  /** An explicit revocation of non-current keys (POST /v1/admin/revoke/{set}). */
  revoke?: { generations: number[] } | { allPrevious: true };
  reason?: string | null;
  /** The cron saw KV's list disagree with D1 long after the last write: rewrite KV even if D1's record agrees. */
  recache?: boolean;
  /** The gap between the cron's last two ticks (default: one minute, the configured cron). */
  tickMs?: number;
}

/** How far ahead of refresh_at the set's scheduled rotation runs. */
export function runAheadMs(cfg: Pick<ModelSetConfig, "rotateEveryMs">, tickMs = TICK_MS): number {
  return Math.min(tickGap(tickMs) - TICK_MS + RUN_AHEAD_MS, Math.floor(cfg.rotateEveryMs / 2));
}

const tickGap = (tickMs: number) => Math.min(MAX_TICK_GAP_MS, Math.max(TICK_MS, tickMs));

/**
 * A new key's refresh_at. A scheduled rotation keeps the cadence (the previous refresh_at plus
 * rotate_every, or the next schedule time after it); on demand, a first key, or a rotation far
 * behind its schedule starts afresh from `mintedAt`.
 */
export function refreshAtFor(cfg: SetConfig, mintedAt: number, previousRefreshAt: number | null): number {
  if (cfg.schedule) {
    // The next schedule time that leaves at least the overlap and the run-ahead margin (DESIGN §2,
    // issue #11), and never the schedule time this rotation ran ahead of (or an earlier one).
    const at = scheduledRefreshAt(cfg.schedule, mintedAt, cfg.overlapMs, RUN_AHEAD_MS);
    return previousRefreshAt !== null && at <= previousRefreshAt ? nextScheduleTime(cfg.schedule, previousRefreshAt) : at;
  }
  const anchored = previousRefreshAt !== null ? previousRefreshAt + cfg.rotateEveryMs : mintedAt + cfg.rotateEveryMs;
  return anchored < mintedAt + cfg.rotateEveryMs / 2 ? mintedAt + cfg.rotateEveryMs : anchored;
}

const sameIds = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

/** The promise an overdue current key needs now, or null if it has enough. */
function overdueExtension(current: KeyRow, cfg: SetConfig, now: number, tickMs = TICK_MS): number | null {
  const overlap = Math.max(cfg.overlapMs, current.overlap_ms);
  const gap = tickGap(tickMs);
  const need = nextAttempt(now) + OVERDUE_COVER_MS + 2 * (gap - TICK_MS) + overlap;
  return (current.expires_at ?? 0) >= need ? null : need + gap;
}

/**
 * Until when the current key's documents keep the overdue rule with its recorded promise: before
 * refresh_at always; after it while expires_at >= the next attempt + overlap (document.ts).
 */
function documentsValidUntil(current: KeyRow, cfg: SetConfig): number {
  const overlap = Math.max(cfg.overlapMs, current.overlap_ms);
  return Math.max(current.refresh_at ?? 0, Math.floor(((current.expires_at ?? 0) - overlap) / TICK_MS) * TICK_MS);
}

/** Whether a previous key may be deleted at Baseten now, and why. */
export function revocable(row: KeyRow, configured: boolean, now: number): string | null {
  if (row.state !== "previous") return null;
  if (row.revoke_at !== null && row.revoke_at <= now) return row.revoke_reason ?? "revoked";
  if (row.expires_at === null || row.expires_at > now) return null;
  // A set removed from MODEL_SETS is served to nobody: no cache can hand its keys out.
  if (!configured) return "promise ended";
  // Otherwise a cache that lags could still serve it: wait until KV has held a newer key long enough.
  return row.kv_replaced_at !== null && row.kv_replaced_at + MAX_STALENESS_MS <= now ? "promise ended" : null;
}

/** The steps a set needs at `now`, in the order they are applied. Empty: nothing to do. */
export function plan(snap: Snapshot, cfg: SetConfig | undefined, now: number, opts: PlanOptions): Step[] {
  const rows = snap.rows;
  const current = rows.find((r) => r.state === "current");
  const previous = rows.filter((r) => r.state === "previous");
  const stale = rows.filter((r) => r.state === "pending" && r.created_at <= now - LEASE_MS);
  const inFlight = rows.some((r) => r.state === "pending" && r.created_at > now - LEASE_MS);

  // reject: requests this run cannot serve; nothing else happens.
  const reject = (code: Extract<Step, { kind: "reject" }>["code"], message: string, retryAfterS: number | null = null): Step[] => [
    { kind: "reject", code, message, retryAfterS },
  ];
  if (opts.mint === "now") {
    if (!cfg) return reject("unknown_model_set", "no such model set");
    if (!cfg.enabled) return reject("set_disabled", "the model set is disabled (enabled: false)", 60);
    if (inFlight) return reject("rotation_in_progress", "a previous rotation of this set was interrupted; retry in a minute", 60);
    if (snap.onDemandMints.length >= ON_DEMAND_LIMIT) {
      const oldest = snap.onDemandMints[ON_DEMAND_LIMIT - 1]!;
      const retryAfterS = Math.max(1, Math.ceil((oldest + ON_DEMAND_WINDOW_MS - now) / 1000));
      return reject(
        "rate_limited",
        `at most ${ON_DEMAND_LIMIT} on-demand rotations per set in any ${ON_DEMAND_WINDOW_MS / 60_000} minutes`,
        retryAfterS,
      );
    }
  }
  let explicit: number[] = [];
  if (opts.revoke) {
    if ("allPrevious" in opts.revoke) explicit = previous.map((r) => r.generation);
    else {
      for (const g of opts.revoke.generations) {
        if (current && g === current.generation)
          return reject("is_current", `generation ${g} is the current key: rotate with revoke_previous instead`);
        if (!Number.isSafeInteger(g) || g < 1 || g > snap.maxGeneration)
          return reject("unknown_generation", `generation ${g} was never minted for this set`);
      }
      // Already revoked or abandoned generations are skipped.
      explicit = opts.revoke.generations.filter((g, i, all) => all.indexOf(g) === i && previous.some((r) => r.generation === g));
    }
  }

  const steps: Step[] = [];
  // recover
  if (stale.length > 0) steps.push({ kind: "recover", generations: stale.map((r) => r.generation) });
  // retire
  if (!cfg && current) steps.push({ kind: "retire", generation: current.generation });
  // mark
  if (explicit.length > 0) steps.push({ kind: "mark", generations: explicit, reason: opts.reason ?? "admin revoke" });

  // mint
  const scheduleDue =
    cfg !== undefined && current !== undefined && current.refresh_at !== null && now >= current.refresh_at - runAheadMs(cfg, opts.tickMs);
  let why: Extract<Step, { kind: "mint" }>["why"] | null = null;
  if (cfg?.enabled && opts.mint !== false && !inFlight) {
    if (opts.mint === "now") why = "on_demand";
    else if (!current) why = "first";
    else if (!sameIds(current.model_ids, cfg.modelIds)) why = "scope";
    else if (scheduleDue) why = "schedule";
    // A due mint (not on demand) waits after a failed verification; the set is extended meanwhile.
    const failedAt = snap.cache?.verify_failed_at ?? null;
    if (why !== null && why !== "on_demand" && cfg.verify && failedAt !== null && now < failedAt + VERIFY_BACKOFF_MS) why = null;
  }
  // extend: a set at or past its rotation time that may not get a new key now. Normally recorded
  // only if the mint fails (a replaced key then keeps just the promise it was served with). But
  // when its documents are still valid and stop being so before the next tick (on time) can
  // record an extension, this run is the last chance: it records the extension before the mint,
  // so a mint that takes the run's whole budget, or a run that dies, leaves no overdue document
  // without its promise (DESIGN §3). "The next tick" is one observed gap away; after a gap longer
  // than MAX_TICK_GAP_MS the cron was down (an outage says nothing about its period): one minute.
  const extension = cfg && current && scheduleDue ? overdueExtension(current, cfg, now, opts.tickMs) : null;
  const validUntil = cfg && current ? documentsValidUntil(current, cfg) : 0;
  const nextTickIn = (opts.tickMs ?? TICK_MS) > MAX_TICK_GAP_MS ? TICK_MS : tickGap(opts.tickMs ?? TICK_MS);
  // Not for a set whose run-ahead is capped at half its period (rotate_every under about 2 x (a
  // tick + 25 s)): every scheduled rotation of it runs that close to refresh_at, so the
  // extension would be recorded on every one, even when nothing fails, and would keep each
  // replaced key minutes past the expires_at it was served with (the outside client's check,
  // issue #9). There, a run that dies mid-mint leaves the overdue documents with the recorded
  // promise until the next tick extends it (README, "How far ahead").
  const capped = cfg !== undefined && runAheadMs(cfg, opts.tickMs) < tickGap(opts.tickMs ?? TICK_MS) - TICK_MS + RUN_AHEAD_MS;
  const lastChance = why !== null && !capped && extension !== null && now < validUntil && validUntil <= now + nextTickIn + RUN_ALLOWANCE_MS;
  if (current && extension !== null && lastChance)
    steps.push({ kind: "extend", generation: current.generation, expiresAt: extension, onlyIfMintFailed: false });

  if (why && cfg) {
    steps.push({
      kind: "mint",
      why,
      modelIds: [...cfg.modelIds],
      overlapMs: cfg.overlapMs,
      // The replaced key keeps exactly the promise D1 recorded for it, which every document served
      // for it carried. Not "at least overlap from now": for a rotation later than its run-ahead
      // window (the cron skipped ticks, as when fired by hand) that would move the revocation past
      // the first tick after the served expires_at (issue #9). Where a late rotation follows
      // failing ticks, those ticks already recorded `overdueExtension` (>= next attempt + overlap),
      // so the replaced key has at least overlap after its replacement anyway.
      replaced: current ? { generation: current.generation } : null,
      previousRefreshAt: why === "schedule" ? current!.refresh_at : null,
      revokeOthers: opts.revokePrevious === true,
    });
  }

  if (current && extension !== null && !lastChance)
    steps.push({ kind: "extend", generation: current.generation, expiresAt: extension, onlyIfMintFailed: why !== null });

  // cache
  const cached = snap.cache?.cached_generation ?? null;
  if (!cfg && (current || (cached !== null && cached !== 0))) steps.push({ kind: "cache", drop: true, reason: "retired" });
  else if (why || extension !== null) steps.push({ kind: "cache", drop: false, reason: "changed" });
  else if (current && cached !== current.generation) steps.push({ kind: "cache", drop: false, reason: "behind" });
  else if (current && opts.recache) steps.push({ kind: "cache", drop: false, reason: "suspect" });

  // revoke
  const due: { generation: number; reason: string }[] = [];
  for (const r of previous) {
    const reason = explicit.includes(r.generation) ? (opts.reason ?? "admin revoke") : revocable(r, cfg !== undefined, now);
    if (reason !== null) due.push({ generation: r.generation, reason });
  }
  if (due.length > 0 || opts.revokePrevious) steps.push({ kind: "revoke", generations: due });
  return steps;
}
