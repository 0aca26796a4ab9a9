/**
 * The rotation state machine (DESIGN §4), one set at a time. Read top to bottom:
 *
 *   runSet
 *     1. acquire   take the set's lease in D1; record a `pending` row (name and generation)
 *                  BEFORE Baseten is called, so a lost answer can always be found again
 *     2. recover   pendings left by a run that died mid-mint: find by name, delete, abandon
 *     3. retire    a set removed from MODEL_SETS: its current key runs out its promise
 *     4. mint      call Baseten, then promote in ONE D1 batch (pending -> current,
 *                  old current -> previous with the expiry the promise rule gives it)
 *     5. cache     write the KV entry (a failure is repaired by a later run)
 *     6. revoke    previous keys whose promise has ended, once the cache can no longer serve them
 *     7. release   free the lease and record the outcome
 *
 * Keys move pending -> current -> previous -> revoked, or pending -> abandoned.
 * Time comes from `engine.clock`, never from Date.now(): tests and benchmarks move it.
 */
import { BasetenClient, type BasetenOptions, UpstreamError } from "./baseten.ts";
import { type CachedEntry, cachedGeneration, dropCache, entryFromRow, writeCache } from "./cache.ts";
import type { Config, ModelSetConfig } from "./config.ts";
import { randomId } from "./crypto.ts";
import { seal } from "./keyring.ts";
import { replacedExpiry, staleServedExpiry } from "./document.ts";
import * as ledger from "./ledger.ts";
import type { KeyRow } from "./ledger.ts";
import { log, redactSecrets } from "./log.ts";
import { scheduledRefreshAt } from "./schedule.ts";
import { verifyKey } from "./verify.ts";
import { isRefusal, refusedManagementKeyFailure, watchManagementKey } from "./management-key.ts";

/** Current and previous rows always carry their times (only pendings lack them). */
type Promised = KeyRow & { refresh_at: number; expires_at: number };

/** A run holds its set for at most this long; a run that dies frees the set by itself. */
export const LEASE_MS = 90_000;
/** Upstream work stops being started after this, so a run always ends inside its lease. */
export const RUN_BUDGET_MS = 75_000;

export type Trigger = "cron" | "queue" | "webhook" | "admin";

export interface Engine {
  db: D1Database;
  kv: KVNamespace;
  baseten: BasetenClient;
  config: Config;
  clock: () => number;
}

/** `client` overrides the Baseten client's transport and timing (tests, benchmarks). */
export function createEngine(
  config: Config,
  bindings: { DB: D1Database; KEYS: KVNamespace },
  clock: () => number = Date.now,
  client: Pick<BasetenOptions, "fetch" | "sleep" | "random" | "onAttempt"> = {},
): Engine {
  const baseten = new BasetenClient({
    apiBase: config.apiBase,
    teamId: config.teamId,
    apiKey: config.basetenApiKey,
    timeoutMs: config.timeoutMs,
    maxAttempts: config.maxAttempts,
    concurrency: config.concurrency,
    now: clock,
    ...client,
    fetch: watchManagementKey(bindings.DB, clock, client.fetch),
  });
  return { db: bindings.DB, kv: bindings.KEYS, baseten, config, clock };
}

export interface RunOptions {
  trigger: Trigger;
  /** "due": mint only if no current key or refresh_at reached (cron); "now": mint regardless (webhook, admin); "never": maintenance only. */
  mint: "due" | "now" | "never";
  /** The leak response: revoke the key being replaced at once instead of after its overlap. */
  revokePrevious?: boolean;
  reason?: string | null;
  /** Compare the KV entry with D1 and repair it even if nothing is due for revocation. */
  checkCache?: boolean;
}

export interface RotationEvent {
  type: "key.rotated" | "key.revoked" | "rotation.failed";
  model_set: string;
  generation: number | null;
  at: number;
  trigger: Trigger;
  data: Record<string, unknown>;
}

export interface Failure {
  /** Machine code: `upstream_<kind>` or `ledger_failed` / `lease_lost` / `internal`. */
  code: string;
  message: string;
  status: number | null;
}

export interface RunReport {
  outcome: "rotated" | "noop" | "failed";
  model_set: string;
  minted: { generation: number; created_at: number; refresh_at: number; expires_at: number } | null;
  replaced: { generation: number; expires_at: number } | null;
  revoked: number[];
  failure: Failure | null;
  events: RotationEvent[];
}

export type RunResult = { outcome: "busy"; model_set: string; retryAfterS: number } | RunReport;

/** Runs one set through the state machine. Never throws: failures are in the result. */
export async function runSet(engine: Engine, set: string, opts: RunOptions): Promise<RunResult> {
  const { db, config, clock } = engine;
  const startedAt = clock();
  const deadline = startedAt + RUN_BUDGET_MS;
  const holder = randomId(16);
  const setConfig = config.sets.get(set);
  const canMint = opts.mint !== "never" && setConfig !== undefined && setConfig.enabled;

  // 1. acquire
  let acquired: ledger.Acquired;
  try {
    acquired = await ledger.acquire(db, set, holder, startedAt, LEASE_MS, canMint ? { suffix: randomId(8), modelIds: setConfig.modelIds, overlapMs: setConfig.overlapMs, onlyIfDue: opts.mint === "due" } : null);
  } catch (err) {
    log("error", "lease.failed", { model_set: set, trigger: opts.trigger, error: errorText(err) });
    const failure = { code: "ledger_failed", message: "could not take the set's lease in D1", status: null };
    return { outcome: "failed", model_set: set, minted: null, replaced: null, revoked: [], failure, events: [failedEvent(set, opts, failure, startedAt)] };
  }
  if (!acquired.leased) {
    return { outcome: "busy", model_set: set, retryAfterS: Math.min(90, Math.max(1, Math.ceil((acquired.leaseExpiresAt - startedAt) / 1000))) };
  }

  const result: RunReport = {
    outcome: "noop",
    model_set: set,
    minted: null,
    replaced: null,
    revoked: [],
    failure: null,
    events: [],
  };
  const rows = acquired.rows;
  let current = rows.find((r) => r.state === "current");
  const pending = acquired.pending;
  try {
    // 2. recover: pendings whose run died mid-mint (older than a lease: that run is gone or fenced off)
    const stale = rows.filter((r) => r.state === "pending" && r.generation !== pending?.generation && r.created_at <= startedAt - LEASE_MS);
    if (stale.length > 0) await recoverPendings(engine, stale, opts.trigger, deadline).catch((err) => log("warn", "recover.failed", { model_set: set, error: errorText(err) }));

    // 3. retire: a set no longer configured is served to nobody; its key lives out its promise
    if (!setConfig && current) {
      const expiresAt = replacedExpiry(current as Promised, startedAt);
      await ledger.retireCurrent(db, set, holder, current.generation, expiresAt, startedAt);
      Object.assign(current, { state: "previous", expires_at: expiresAt, replaced_at: startedAt });
      current = undefined;
      await dropCache(engine.kv, set).catch((err) => log("warn", "cache.drop_failed", { model_set: set, error: errorText(err) }));
    }

    // 4. mint + promote, 5. cache
    let cacheWritten = false;
    let revokeNow: number | null = null;
    if (pending && setConfig) {
      const minted = await mintAndPromote(engine, setConfig, holder, pending, current, rows, opts, deadline);
      if ("failure" in minted) {
        result.outcome = "failed";
        result.failure = minted.failure;
        result.events.push(failedEvent(set, opts, minted.failure, clock()));
      } else {
        result.outcome = "rotated";
        result.minted = minted.minted;
        result.replaced = minted.replaced;
        cacheWritten = minted.cacheWritten;
        if (current && minted.replaced) {
          Object.assign(current, { state: "previous", expires_at: minted.replaced.expires_at, replaced_at: minted.minted.created_at });
          if (opts.revokePrevious) revokeNow = current.generation;
        }
        current = undefined; // the new current is not in `rows`; nothing below needs it
        result.events.push({
          type: "key.rotated",
          model_set: set,
          generation: minted.minted.generation,
          at: minted.minted.created_at,
          trigger: opts.trigger,
          data: { ...isoTimes(minted.minted), replaced: minted.replaced && { generation: minted.replaced.generation, expires_at: iso(minted.replaced.expires_at) }, reason: opts.reason ?? null },
        });
      }
    }

    // 6. revoke
    const now = clock();
    const due = rows.filter((r) => r.state === "previous" && (r.generation === revokeNow || (r.expires_at ?? Infinity) <= now));
    let cacheSafe = cacheWritten;
    if (!cacheSafe && (opts.checkCache || due.some((r) => r.generation !== revokeNow))) {
      cacheSafe = await ensureCacheMatches(engine, set, rows);
    }
    for (const row of due) {
      if (row.generation !== revokeNow && !cacheSafe) continue; // kept live: a stale cache may still serve it
      if (row.generation !== revokeNow && (row.expires_at ?? Infinity) > now) continue; // the cache check just extended its promise
      if (clock() >= deadline) break; // the next run finishes the job
      try {
        await engine.baseten.revoke(row.prefix!, deadline);
        const at = clock();
        await ledger.markRevoked(db, set, row.generation, at, opts.trigger, row.generation === revokeNow ? "revoke_previous" : "promise ended");
        row.state = "revoked";
        result.revoked.push(row.generation);
        result.events.push({ type: "key.revoked", model_set: set, generation: row.generation, at, trigger: opts.trigger, data: { revoked_at: iso(at), emergency: row.generation === revokeNow } });
      } catch (err) {
        // The key stays previous and live; the next run tries again.
        log("warn", "revoke.failed", { model_set: set, generation: row.generation, error: errorText(err) });
      }
    }
  } catch (err) {
    // Unexpected (a D1 write failed mid-way): everything written so far is consistent on its own.
    log("error", "run.failed", { model_set: set, trigger: opts.trigger, error: errorText(err) });
    result.outcome = "failed";
    result.failure ??= { code: "internal", message: "the run stopped on an internal error; the next run converges", status: null };
  } finally {
    // 7. release
    const record = { trigger: opts.trigger, outcome: result.outcome, error: result.failure?.message ?? null, at: clock() };
    await ledger.release(db, set, holder, record).catch((err) => log("warn", "lease.release_failed", { model_set: set, error: errorText(err) }));
  }
  log(result.outcome === "failed" ? "warn" : "info", "run", {
    model_set: set,
    trigger: opts.trigger,
    outcome: result.outcome,
    generation: result.minted?.generation,
    revoked: result.revoked,
    error: result.failure?.message,
  });
  return result;
}

type MintOutcome =
  | { failure: Failure }
  | { minted: { generation: number; created_at: number; refresh_at: number; expires_at: number }; replaced: { generation: number; expires_at: number } | null; cacheWritten: boolean };

async function mintAndPromote(
  engine: Engine,
  setConfig: ModelSetConfig,
  holder: string,
  pending: { generation: number; name: string },
  current: KeyRow | undefined,
  rows: KeyRow[],
  opts: RunOptions,
  deadline: number,
): Promise<MintOutcome> {
  const { db, kv, config, clock } = engine;
  const set = setConfig.id;
  let minted;
  try {
    minted = await engine.baseten.mint(pending.name, setConfig.modelIds, deadline, setConfig.teamId);
  } catch (err) {
    const failure = upstreamFailure(err);
    const row = { model_set: set, generation: pending.generation, name: pending.name } as KeyRow;
    if (err instanceof UpstreamError && !err.maybeApplied) {
      await ledger.markAbandoned(db, set, pending.generation, clock(), opts.trigger, "mint refused").catch(() => {});
    } else {
      // The answer was lost, malformed or empty: the key may exist. Treat it like a run that
      // died mid-mint, right away; if that fails too, the pending row stays for a later run.
      await recoverPendings(engine, [row], opts.trigger, deadline).catch((e) => log("warn", "recover.failed", { model_set: set, error: errorText(e) }));
    }
    return { failure };
  }

  // Verify before promote (DESIGN §4.8): a key that does not work is deleted and never served.
  // TODO(lead): engine v2 runs this step between mint and promote (src/verify.ts).
  if (setConfig.verify) {
    const verified = await verifyKey(setConfig.verify, minted.apiKey, { deadline, clock });
    if (!verified.ok) {
      const deleted = await engine.baseten.revoke(minted.prefix, deadline).then(() => true, (e) => (log("warn", "revoke.failed", { model_set: set, generation: pending.generation, error: errorText(e) }), false));
      // Not deleted: the row stays pending and a later run finds the key by name and deletes it.
      if (deleted) await ledger.markAbandoned(db, set, pending.generation, clock(), opts.trigger, `verify_failed: ${verified.message}`).catch(() => {});
      return { failure: { code: verified.code, message: verified.message, status: null } };
    }
  }

  const createdAt = clock();
  // TODO(lead): engine v2's refreshAtFor(setConfig, mintedAt, previousRefreshAt) does this, with its run-ahead margin.
  const refreshAt = setConfig.schedule ? scheduledRefreshAt(setConfig.schedule, createdAt, setConfig.overlapMs) : createdAt + setConfig.rotateEveryMs;
  const expiresAt = refreshAt + setConfig.overlapMs;
  const ciphertext = await seal(config.keyring, minted.apiKey, `${set}:${pending.generation}`);
  const replaced = current ? { generation: current.generation, expires_at: opts.revokePrevious ? createdAt : replacedExpiry(current as Promised, createdAt) } : null;

  let applied: boolean;
  try {
    applied = await ledger.promote(db, {
      set,
      holder,
      generation: pending.generation,
      prefix: minted.prefix,
      ciphertext,
      createdAt,
      refreshAt,
      expiresAt,
      replaced: replaced && { generation: replaced.generation, expiresAt: replaced.expires_at },
      trigger: opts.trigger,
      reason: opts.reason ?? null,
    });
  } catch (err) {
    // The batch may or may not have committed. Either way is safe: committed, the key is current
    // (a later run repairs the cache); not committed, the row is still pending and a later run
    // finds the key by name and deletes it.
    log("error", "promote.failed", { model_set: set, generation: pending.generation, error: errorText(err) });
    // If it committed, the leaked key is replaced: this location must stop serving it now.
    if (opts.revokePrevious) await dropCache(kv, set, pending.generation).catch(() => {});
    return { failure: { code: "ledger_failed", message: "the key was minted but recording it in D1 failed; a later run cleans it up", status: null } };
  }
  if (!applied) {
    // Fenced off: our lease ran out and another run took over (and may have abandoned this pending).
    await engine.baseten.revoke(minted.prefix, deadline).catch((e) => log("warn", "revoke.failed", { model_set: set, generation: pending.generation, error: errorText(e) }));
    return { failure: { code: "lease_lost", message: "the run outlived its lease; the minted key was deleted", status: null } };
  }

  let cacheWritten = false;
  const entry: CachedEntry = { v: 1, model_set: set, model_ids: setConfig.modelIds, generation: pending.generation, created_at: createdAt, refresh_at: refreshAt, expires_at: expiresAt, overlap_ms: setConfig.overlapMs, ct: ciphertext };
  try {
    // A cache left behind by a failed write may still be serving an older key, promising ever
    // later (overdue documents). Overwriting it ends that: first cover what it may have served.
    const cached = await cachedGeneration(kv, set).catch(() => undefined);
    if (cached !== null && cached !== current?.generation) await coverStaleServing(engine, set, rows, cached);
    await writeCache(kv, entry);
    cacheWritten = true;
  } catch (err) {
    log("warn", "cache.write_failed", { model_set: set, generation: pending.generation, error: errorText(err) });
    // A leaked key must not stay in this location's cache: without a new entry, drop the old one.
    if (opts.revokePrevious) await dropCache(kv, set, pending.generation).catch(() => {});
  }
  return { minted: { generation: pending.generation, created_at: createdAt, refresh_at: refreshAt, expires_at: expiresAt }, replaced, cacheWritten };
}

/**
 * Before a previous key is revoked, the cache must not be able to serve it. If KV still holds an
 * older generation (a cache write failed), rewrite it from D1 and push the previous keys' promises
 * out by the staleness it may have caused. Returns whether revocations may go ahead now.
 */
async function ensureCacheMatches(engine: Engine, set: string, rows: KeyRow[]): Promise<boolean> {
  const { db, kv, config, clock } = engine;
  try {
    const cached = await cachedGeneration(kv, set);
    const current = await ledger.currentRow(db, set);
    if (cached === (current?.generation ?? null)) return true;
    if (current) {
      await writeCache(kv, entryFromRow(current));
    } else {
      await dropCache(kv, set);
    }
    if (cached === null) return true; // a miss served D1's answer: nothing stale went out
    await coverStaleServing(engine, set, rows, cached);
    log("warn", "cache.repaired", { model_set: set, cached_generation: cached, current_generation: current?.generation ?? null });
    return true;
  } catch (err) {
    log("warn", "cache.check_failed", { model_set: set, error: errorText(err), ...(config ? {} : {}) });
    return false;
  }
}

/**
 * A previous key a stale cache may have served until now (`generation`; undefined: any of
 * them, when the cache could not be read) must stay live as long as anything it served promised.
 */
async function coverStaleServing(engine: Engine, set: string, rows: KeyRow[], generation: number | undefined): Promise<void> {
  const now = engine.clock();
  for (const row of rows) {
    if (row.state !== "previous" || (generation !== undefined && row.generation !== generation)) continue;
    // Replaced with revoke_previous (expiry = replacement time): its promises were withdrawn.
    if (row.replaced_at !== null && row.expires_at !== null && row.expires_at <= row.replaced_at) continue;
    const expiresAt = staleServedExpiry(row as Promised, now);
    if (expiresAt <= (row.expires_at ?? 0)) continue;
    await ledger.extendExpiry(engine.db, set, row.generation, expiresAt);
    row.expires_at = expiresAt;
  }
}

/**
 * Pendings whose mint may have happened: look their names up at Baseten, delete what is
 * found, mark them abandoned. Throws (leaving them pending) if Baseten can't be asked.
 */
export async function recoverPendings(engine: Engine, pendings: Pick<KeyRow, "model_set" | "generation" | "name">[], trigger: Trigger, deadline: number): Promise<void> {
  const listed = await engine.baseten.list(deadline);
  const byName = new Map(listed.map((k) => [k.name, k]));
  for (const p of pendings) {
    const found = byName.get(p.name);
    if (found) await engine.baseten.revoke(found.prefix, deadline);
    await ledger.markAbandoned(engine.db, p.model_set, p.generation, engine.clock(), trigger, found ? "recovered: deleted at Baseten" : "recovered: never created");
  }
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
  const known = new Map((await ledger.rowsByName(engine.db, listed.filter((k) => !live.has(k.name!)).map((k) => k.name!))).map((r) => [r.name, r]));
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

function upstreamFailure(err: unknown): Failure {
  if (err instanceof UpstreamError && err.status !== null && isRefusal(err.status)) return refusedManagementKeyFailure(err.op, err.status);
  if (err instanceof UpstreamError) return { code: `upstream_${err.kind}`, message: err.message, status: err.status };
  return { code: "internal", message: errorText(err), status: null };
}

function failedEvent(set: string, opts: RunOptions, failure: Failure, at: number): RotationEvent {
  return { type: "rotation.failed", model_set: set, generation: null, at, trigger: opts.trigger, data: { error: failure.code, message: failure.message, reason: opts.reason ?? null } };
}

export function errorText(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 300);
}

const iso = (ms: number) => new Date(ms).toISOString();
function isoTimes(m: { created_at: number; refresh_at: number; expires_at: number }) {
  return { created_at: iso(m.created_at), refresh_at: iso(m.refresh_at), expires_at: iso(m.expires_at) };
}
