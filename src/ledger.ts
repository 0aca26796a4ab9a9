/**
 * D1 reads and writes: the source of truth for keys, leases, promises and run outcomes.
 * Schema and its reasons: migrations/0001_init.sql and 0003_engine_v2.sql.
 *
 * Rows come back decoded and typed (model_ids parsed once, here). Writes return the rows they
 * wrote (RETURNING), so the engine never edits a copy of D1 by hand.
 *
 * Every write that decides what is served (pending, promote, retire, extend, the cache record)
 * is fenced by the lease: it only applies while `sets.lease_holder` is still this run's holder
 * id, so a run that outlived its lease cannot overwrite what the next run did.
 */

export type KeyState = "pending" | "current" | "previous" | "revoked" | "abandoned";

export interface KeyRow {
  model_set: string;
  generation: number;
  state: KeyState;
  name: string;
  model_ids: string[];
  overlap_ms: number;
  prefix: string | null;
  created_at: number;
  refresh_at: number | null;
  expires_at: number | null;
  replaced_at: number | null;
  /** An explicit revocation (revoke_previous, admin revoke): revoke once this has passed. */
  revoke_at: number | null;
  revoke_reason: string | null;
  /** When the engine saw KV hold a newer generation than this key. */
  kv_replaced_at: number | null;
}

export interface CurrentRow extends KeyRow {
  ciphertext: string;
  refresh_at: number;
  expires_at: number;
}

/** What the engine knows about a set's KV entry: the generation it last wrote there (0: dropped), and when. */
export interface SetRow {
  model_set: string;
  cached_generation: number | null;
  cached_at: number | null;
  /** When a new key of the set last failed verification (DESIGN §4.8): scheduled mints back off from then. */
  verify_failed_at?: number | null;
}

/** Everything the policy needs about one set, read under its lease in one round trip. */
export interface Snapshot {
  set: string;
  /** pending, current and previous rows, oldest first */
  rows: KeyRow[];
  cache: SetRow | null;
  /** The highest generation ever recorded for the set (0: none): generations are 1..max. */
  maxGeneration: number;
  /** When the set's recent on-demand mints (webhook, admin) happened, newest first (at most 10). */
  onDemandMints: number[];
}

const ROW_COLUMNS =
  "model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at, revoke_at, revoke_reason, kv_replaced_at";
const LEASE_HELD = "EXISTS (SELECT 1 FROM sets WHERE model_set = ?1 AND lease_holder = ?2)";

type RawRow = Omit<KeyRow, "model_ids"> & { model_ids: string };

export function decode<T extends KeyRow>(raw: unknown): T {
  const r = raw as RawRow;
  let ids: unknown;
  try {
    ids = JSON.parse(r.model_ids);
  } catch {
    ids = [];
  }
  return { ...r, model_ids: Array.isArray(ids) ? (ids as string[]) : [] } as unknown as T;
}
const decodeAll = <T extends KeyRow>(results: unknown[]): T[] => results.map((r) => decode<T>(r));

export type Acquired = { leased: false; leaseExpiresAt: number } | { leased: true; snapshot: Snapshot; pending: KeyRow | null };

/** A pending row recorded with the lease, when the caller expects to mint (it saves a round trip). */
export interface PendingRequest {
  /** Random suffix of the Baseten name: `bkr-<set>-<generation>-<suffix>`. */
  suffix: string;
  modelIds: string[];
  overlapMs: number;
}

const INSERT_PENDING = `INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, created_at)
       SELECT ?1, g, 'pending', 'bkr-' || ?1 || '-' || g || '-' || ?3, ?4, ?5, ?6
       FROM (SELECT COALESCE(MAX(generation), 0) + 1 AS g FROM keys WHERE model_set = ?1)
       WHERE ${LEASE_HELD}
       RETURNING ${ROW_COLUMNS}`;

/** On-demand rotations (webhook, admin) count against the per-set limit over this window. */
export const ON_DEMAND_WINDOW_MS = 10 * 60_000;
export const ON_DEMAND_LIMIT = 10;

/**
 * One round trip: take the set's lease (compare-and-set with an expiry), record a pending row
 * if the caller expects to mint (the policy decides under the lease; an unused one is deleted
 * when the run finishes), and read the set as it stands under the lease: its live rows, its
 * cache record, its highest generation and (on demand) its recent on-demand mints.
 */
export async function acquire(
  db: D1Database,
  set: string,
  holder: string,
  now: number,
  leaseMs: number,
  onDemand: boolean,
  pending: PendingRequest | null = null,
): Promise<Acquired> {
  const statements = [
    db
      .prepare(
        `INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (model_set) DO UPDATE SET lease_holder = excluded.lease_holder, lease_expires_at = excluded.lease_expires_at
         WHERE sets.lease_holder IS NULL OR sets.lease_expires_at <= ?4`,
      )
      .bind(set, holder, now + leaseMs, now),
    // The set's highest generation rides along (one statement less per run: bench, D1 statements).
    db
      .prepare(
        `SELECT model_set, lease_holder, lease_expires_at, cached_generation, cached_at, verify_failed_at,
           (SELECT COALESCE(MAX(generation), 0) FROM keys WHERE model_set = ?1) AS max_generation
         FROM sets WHERE model_set = ?1`,
      )
      .bind(set),
    pending
      ? db.prepare(INSERT_PENDING).bind(set, holder, pending.suffix, JSON.stringify(pending.modelIds), pending.overlapMs, now)
      : db.prepare("SELECT 1 WHERE 0"),
    db
      .prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE model_set = ?1 AND state IN ('pending', 'current', 'previous') ORDER BY generation`)
      .bind(set),
  ];
  if (onDemand) {
    statements.push(
      db
        .prepare(
          "SELECT at FROM audit WHERE model_set = ?1 AND action = 'minted' AND trigger IN ('webhook', 'admin') AND at > ?2 ORDER BY at DESC LIMIT ?3",
        )
        .bind(set, now - ON_DEMAND_WINDOW_MS, ON_DEMAND_LIMIT),
    );
  }
  const results = await db.batch(statements);
  const lease = results[1]!.results[0] as
    (SetRow & { lease_holder: string | null; lease_expires_at: number; max_generation: number }) | undefined;
  if (!lease || lease.lease_holder !== holder) return { leased: false, leaseExpiresAt: lease?.lease_expires_at ?? now };
  const own = results[2]!.results[0] ? decode<KeyRow>(results[2]!.results[0]) : null;
  const rows = decodeAll<KeyRow>(results[3]!.results).filter((r) => r.generation !== own?.generation);
  return {
    leased: true,
    pending: own,
    snapshot: {
      set,
      // This run's own pending is not part of the set's state the policy looks at: it is the mint's.
      rows,
      cache: {
        model_set: set,
        cached_generation: lease.cached_generation,
        cached_at: lease.cached_at,
        verify_failed_at: lease.verify_failed_at ?? null,
      },
      // Read before this batch's INSERT of the pending row (statement order), so it excludes it.
      maxGeneration: lease.max_generation,
      onDemandMints: onDemand ? (results[4]!.results as { at: number }[]).map((r) => r.at) : [],
    },
  };
}

/** Records the next generation as pending, with its Baseten name, before Baseten is called. Null: the lease is gone. */
export async function recordPending(db: D1Database, set: string, holder: string, now: number, p: PendingRequest): Promise<KeyRow | null> {
  const row = await db.prepare(INSERT_PENDING).bind(set, holder, p.suffix, JSON.stringify(p.modelIds), p.overlapMs, now).first();
  return row ? decode<KeyRow>(row) : null;
}

export interface Promotion {
  set: string;
  holder: string;
  generation: number;
  prefix: string;
  ciphertext: string;
  createdAt: number;
  refreshAt: number;
  expiresAt: number;
  /** The replaced current key: it keeps its recorded promise (expires_at is not touched). */
  replaced: { generation: number } | null;
  /** The leak response: every other non-revoked key of the set gets revoke_at = createdAt. */
  revokeOthers: boolean;
  trigger: string;
  reason: string | null;
  /** A webhook delivery's claim: the promote applies only while it is still this delivery's, and turns it into `body`. */
  receipt: { webhookId: string; claimedAt: number; body: string } | null;
}

/**
 * One atomic batch: pending -> current, old current -> previous (its promise kept), audit row,
 * the leak response's revocation intent, the webhook receipt. Applies only while the lease is
 * held and the pending row is still pending (a recovery may have abandoned it). Returns the
 * rows it wrote, or null if it did not apply.
 */
export async function promote(
  db: D1Database,
  p: Promotion,
): Promise<{ current: KeyRow; replaced: KeyRow | null; marked: KeyRow[] } | null> {
  // ?1 set, ?2 holder, ?3 generation, ?4 createdAt, ?10 webhook id (or null), ?11 claimed at
  const guard = `${LEASE_HELD} AND (?10 IS NULL OR EXISTS (SELECT 1 FROM webhook_receipts WHERE webhook_id = ?10 AND status = 0 AND received_at = ?11))`;
  const stillPending = "EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND generation = ?3 AND state = 'pending')";
  const common = [p.set, p.holder, p.generation, p.createdAt] as const;
  const receipt = [p.receipt?.webhookId ?? null, p.receipt?.claimedAt ?? 0] as const;
  const statements = [
    db
      .prepare(
        `UPDATE keys SET state = 'previous', replaced_at = ?4
         WHERE model_set = ?1 AND state = 'current' AND generation = ?6 AND ${stillPending} AND ${guard}
         RETURNING ${ROW_COLUMNS}`,
      )
      .bind(...common, null, p.replaced?.generation ?? -1, null, null, null, ...receipt),
    db
      .prepare(
        `UPDATE keys SET state = 'current', prefix = ?5, ciphertext = ?6, created_at = ?4, refresh_at = ?7, expires_at = ?8
         WHERE model_set = ?1 AND generation = ?3 AND state = 'pending' AND ${guard}
         RETURNING ${ROW_COLUMNS}`,
      )
      .bind(...common, p.prefix, p.ciphertext, p.refreshAt, p.expiresAt, null, ...receipt),
    db
      .prepare(
        `INSERT INTO audit (model_set, generation, action, trigger, reason, at)
         SELECT ?1, ?3, 'minted', ?5, ?6, ?4 WHERE changes() > 0`,
      )
      .bind(...common, p.trigger, p.reason),
  ];
  const isCurrent = "EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND generation = ?3 AND state = 'current' AND created_at = ?4)";
  if (p.revokeOthers) {
    statements.push(
      db
        .prepare(
          `UPDATE keys SET revoke_at = ?4, revoke_reason = 'revoke_previous'
           WHERE model_set = ?1 AND state = 'previous' AND generation <> ?3 AND revoke_at IS NULL AND ${isCurrent}
           RETURNING ${ROW_COLUMNS}`,
        )
        .bind(...common),
    );
  }
  if (p.receipt) {
    statements.push(
      db
        .prepare(
          `UPDATE webhook_receipts SET status = 200, body = ?5 WHERE webhook_id = ?6 AND status = 0 AND received_at = ?7 AND ${isCurrent}`,
        )
        .bind(...common, p.receipt.body, p.receipt.webhookId, p.receipt.claimedAt),
    );
  }
  const results = await db.batch(statements);
  const current = results[1]!.results[0];
  if (!current) return null;
  const replaced = results[0]!.results[0];
  return {
    current: decode<KeyRow>(current),
    replaced: replaced ? decode<KeyRow>(replaced) : null,
    marked: p.revokeOthers ? decodeAll<KeyRow>(results[3]!.results) : [],
  };
}

/** Moves the current key's promised expiry later (never earlier), under the lease. Returns the row, or null. */
export async function extendPromise(
  db: D1Database,
  set: string,
  holder: string,
  generation: number,
  expiresAt: number,
): Promise<KeyRow | null> {
  const row = await db
    .prepare(
      `UPDATE keys SET expires_at = MAX(COALESCE(expires_at, 0), ?4)
       WHERE model_set = ?1 AND generation = ?3 AND state = 'current' AND ${LEASE_HELD}
       RETURNING ${ROW_COLUMNS}`,
    )
    .bind(set, holder, generation, expiresAt)
    .first();
  return row ? decode<KeyRow>(row) : null;
}

/** A set removed from MODEL_SETS: its current key becomes previous and runs out its recorded promise. */
export async function retireCurrent(db: D1Database, set: string, holder: string, generation: number, now: number): Promise<KeyRow | null> {
  const row = await db
    .prepare(
      `UPDATE keys SET state = 'previous', replaced_at = ?4 WHERE model_set = ?1 AND generation = ?3 AND state = 'current' AND ${LEASE_HELD} RETURNING ${ROW_COLUMNS}`,
    )
    .bind(set, holder, generation, now)
    .first();
  return row ? decode<KeyRow>(row) : null;
}

/** An explicit revocation is recorded (revoke_at, reason) before the keys are deleted at Baseten. */
export async function recordRevokeIntent(
  db: D1Database,
  set: string,
  holder: string,
  generations: number[],
  now: number,
  reason: string,
): Promise<KeyRow[]> {
  if (generations.length === 0) return [];
  const { results } = await db
    .prepare(
      `UPDATE keys SET revoke_at = MIN(COALESCE(revoke_at, ?3), ?3), revoke_reason = COALESCE(revoke_reason, ?4)
       WHERE model_set = ?1 AND state = 'previous' AND generation IN (SELECT value FROM json_each(?5)) AND ${LEASE_HELD}
       RETURNING ${ROW_COLUMNS}`,
    )
    .bind(set, holder, now, reason, JSON.stringify(generations))
    .all();
  return decodeAll<KeyRow>(results);
}

/** A pending whose key is known not to exist at Baseten (never minted, or found and deleted). */
function abandonStatements(
  db: D1Database,
  set: string,
  generation: number,
  now: number,
  trigger: string,
  reason: string | null,
): D1PreparedStatement[] {
  return [
    db
      .prepare("UPDATE keys SET state = 'abandoned', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'pending'")
      .bind(set, generation, now),
    db
      .prepare(
        "INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'abandoned', ?4, ?5, ?3 WHERE changes() > 0",
      )
      .bind(set, generation, now, trigger, reason),
  ];
}

export async function markAbandoned(
  db: D1Database,
  set: string,
  generation: number,
  now: number,
  trigger: string,
  reason: string | null,
): Promise<void> {
  await db.batch(abandonStatements(db, set, generation, now, trigger, reason));
}

export interface Finish {
  set: string;
  holder: string;
  /** Keys deleted at Baseten by this run. */
  revoked: { generation: number; at: number; reason: string }[];
  /** This run's KV write (or drop): the generation KV now serves nothing older than, and when. */
  cached: { generation: number; at: number; dropped: boolean } | null;
  /** KV may have regressed before this write (the cron saw its list disagree): every older key counts as replaced from now. */
  overwriteReplaced?: boolean;
  /** The generation of a pending recorded with the lease and not used (deleted). */
  unusedPending: number | null;
  /** Read D1's current row again at the end (after a KV put): the fencing re-check. */
  recheck: boolean;
  /** How the run ended; null leaves the last recorded run as it was (a rejected request). */
  run: RunRecord | null;
  trigger: string;
  /** This run's new key failed verification at this time (the scheduled mints' back-off); null keeps what is recorded. */
  verifyFailedAt?: number | null;
}

export interface RunRecord {
  trigger: string;
  outcome: string;
  error: string | null;
  at: number;
}

/**
 * The run's last round trip: the revocations' bookkeeping, the cache record (fenced), the
 * release of the lease with the run's outcome, and, after a KV write, D1's current row again
 * (so a run that lost the race can repair the cache). Returns that row (null if none or not asked).
 */
export async function finish(db: D1Database, f: Finish): Promise<{ current: CurrentRow | null }> {
  const statements: D1PreparedStatement[] = [];
  // A pending recorded with the lease that the plan did not mint with: it never reached Baseten.
  if (f.unusedPending !== null)
    statements.push(
      db.prepare("DELETE FROM keys WHERE model_set = ?1 AND generation = ?2 AND state = 'pending'").bind(f.set, f.unusedPending),
    );
  for (const r of f.revoked) {
    statements.push(
      db
        .prepare("UPDATE keys SET state = 'revoked', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'previous'")
        .bind(f.set, r.generation, r.at),
      db
        .prepare(
          "INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'revoked', ?4, ?5, ?3 WHERE changes() > 0",
        )
        .bind(f.set, r.generation, r.at, f.trigger, r.reason),
    );
  }
  if (f.cached) {
    statements.push(
      db
        .prepare(
          `UPDATE keys SET kv_replaced_at = ?4 WHERE model_set = ?1 AND generation < ?3 AND state = 'previous' AND (?5 = 1 OR kv_replaced_at IS NULL) AND ${LEASE_HELD}`,
        )
        .bind(f.set, f.holder, f.cached.generation, f.cached.at, f.overwriteReplaced ? 1 : 0),
    );
  }
  // A failed run leaves an audit row (the operator page marks it; /metrics counts it): only while
  // this run still holds the lease, so a fenced-off run records nothing.
  if (f.run?.outcome === "failed") statements.push(failedAudit(db, f.set, f.holder, f.run));
  statements.push(
    db
      .prepare(
        `UPDATE sets SET lease_holder = NULL, lease_expires_at = 0,
           last_trigger = CASE WHEN ?6 IS NULL THEN last_trigger ELSE ?3 END, last_outcome = CASE WHEN ?6 IS NULL THEN last_outcome ELSE ?4 END,
           last_error = CASE WHEN ?6 IS NULL THEN last_error ELSE ?5 END, last_run_at = COALESCE(?6, last_run_at),
           cached_generation = CASE WHEN ?7 IS NULL THEN cached_generation ELSE ?7 END, cached_at = CASE WHEN ?7 IS NULL THEN cached_at ELSE ?8 END,
           verify_failed_at = COALESCE(?9, verify_failed_at)
         WHERE model_set = ?1 AND lease_holder = ?2`,
      )
      // A dropped entry is recorded as generation 0 (KV holds none): a current key then counts as behind.
      .bind(
        f.set,
        f.holder,
        f.run?.trigger ?? null,
        f.run?.outcome ?? null,
        f.run?.error ?? null,
        f.run?.at ?? null,
        f.cached ? (f.cached.dropped ? 0 : f.cached.generation) : null,
        f.cached?.at ?? null,
        f.verifyFailedAt ?? null,
      ),
  );
  if (f.recheck)
    statements.push(db.prepare(`SELECT ${ROW_COLUMNS}, ciphertext FROM keys WHERE model_set = ?1 AND state = 'current'`).bind(f.set));
  const results = await db.batch(statements);
  const row = f.recheck ? results[results.length - 1]!.results[0] : undefined;
  return { current: row ? decode<CurrentRow>(row) : null };
}

/** The `failed` audit row of a run, written only while the run still holds the set's lease. */
function failedAudit(db: D1Database, set: string, holder: string, run: RunRecord): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, NULL, 'failed', ?3, ?4, ?5 WHERE ${LEASE_HELD}`,
    )
    .bind(set, holder, run.trigger, run.error, run.at);
}

/** Frees the lease (if still ours) and records how the run ended: the fallback when `finish` failed. */
export async function release(db: D1Database, set: string, holder: string, run: RunRecord | null): Promise<void> {
  const update = db
    .prepare(
      `UPDATE sets SET lease_holder = NULL, lease_expires_at = 0, last_trigger = COALESCE(?3, last_trigger), last_outcome = COALESCE(?4, last_outcome),
         last_error = CASE WHEN ?6 IS NULL THEN last_error ELSE ?5 END, last_run_at = COALESCE(?6, last_run_at)
       WHERE model_set = ?1 AND lease_holder = ?2`,
    )
    .bind(set, holder, run?.trigger ?? null, run?.outcome ?? null, run?.error ?? null, run?.at ?? null);
  if (run?.outcome === "failed") await db.batch([failedAudit(db, set, holder, run), update]);
  else await update.run();
}

/**
 * A run that lost the race wrote generation `written` over a newer `current` (its put landed
 * late). Not fenced (it no longer holds the lease), and only ever more cautious: the keys KV may
 * serve again are no longer counted as replaced in KV, and the set's cache counts as behind.
 */
export async function recordCacheRegressed(db: D1Database, set: string, written: number, current: number): Promise<void> {
  await db.batch([
    db
      .prepare("UPDATE keys SET kv_replaced_at = NULL WHERE model_set = ?1 AND generation >= ?2 AND generation < ?3")
      .bind(set, written, current),
    db.prepare("UPDATE sets SET cached_generation = ?2 WHERE model_set = ?1").bind(set, written),
  ]);
}

/** After a repair write of `generation` (not fenced, see recordCacheRegressed): only raises times. */
export async function recordCacheRepaired(db: D1Database, set: string, generation: number, at: number): Promise<void> {
  await db.batch([
    db
      .prepare(
        "UPDATE keys SET kv_replaced_at = MAX(COALESCE(kv_replaced_at, 0), ?3) WHERE model_set = ?1 AND generation < ?2 AND state = 'previous'",
      )
      .bind(set, generation, at),
    db
      .prepare(
        "UPDATE sets SET cached_generation = ?2, cached_at = ?3 WHERE model_set = ?1 AND (cached_generation IS NULL OR cached_generation <= ?2)",
      )
      .bind(set, generation, at),
  ]);
}

/** The current row of a set with its ciphertext (read-path fallback and cache repair). */
export async function currentRow(db: D1Database, set: string): Promise<CurrentRow | null> {
  const row = await db.prepare(`SELECT ${ROW_COLUMNS}, ciphertext FROM keys WHERE model_set = ?1 AND state = 'current'`).bind(set).first();
  return row ? decode<CurrentRow>(row) : null;
}

/** Every live row (pending, current, previous) of every set, without ciphertext. */
export async function liveRows(db: D1Database): Promise<KeyRow[]> {
  const { results } = await db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE state IN ('pending', 'current', 'previous')`).all();
  return decodeAll<KeyRow>(results);
}

/**
 * The cron's one round trip: record that a tick ran (engine status), and read every live row and
 * every set's cache record.
 */
export async function tickSnapshot(
  db: D1Database,
  now: number,
): Promise<{ rows: KeyRow[]; sets: SetRow[]; previousTickAt: number | null }> {
  const [previous, , rows, sets] = await db.batch([
    db.prepare("SELECT value FROM meta WHERE name = 'last_tick_at'"),
    db
      .prepare(
        "INSERT INTO meta (name, value) VALUES ('last_tick_at', ?1) ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
      )
      .bind(now),
    db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE state IN ('pending', 'current', 'previous')`),
    db.prepare("SELECT model_set, cached_generation, cached_at, verify_failed_at FROM sets"),
  ]);
  return {
    rows: decodeAll<KeyRow>(rows!.results),
    sets: sets!.results as unknown as SetRow[],
    previousTickAt: (previous!.results[0] as { value: number } | undefined)?.value ?? null,
  };
}

/** No tick for longer than this: the cron is not running and overdue promises are not being extended. */
export const STALLED_AFTER_MS = 3 * 60_000;

/** The engine's health for /v1/admin/status: when the cron last ticked, and whether it stalled. */
export async function engineStatus(db: D1Database, now: number): Promise<{ last_tick_at: string | null; stalled: boolean }> {
  const [tick, keys] = await db.batch([
    db.prepare("SELECT value FROM meta WHERE name = 'last_tick_at'"),
    db.prepare("SELECT 1 AS any_key FROM keys LIMIT 1"),
  ]);
  const last = (tick!.results[0] as { value: number } | undefined)?.value ?? null;
  // Never ticked: stalled only once there is something to look after (keys minted on demand).
  const stalled = last === null ? keys!.results.length > 0 : now - last > STALLED_AFTER_MS;
  return { last_tick_at: last === null ? null : new Date(last).toISOString(), stalled };
}

/** Rows known by Baseten name (to tell our leftovers from other tools' keys). */
export async function rowsByName(db: D1Database, names: string[]): Promise<KeyRow[]> {
  if (names.length === 0) return [];
  const out: KeyRow[] = [];
  // D1 binds at most 100 parameters per statement.
  for (let i = 0; i < names.length; i += 90) {
    const chunk = names.slice(i, i + 90);
    const { results } = await db
      .prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE name IN (${chunk.map((_, j) => `?${j + 1}`).join(", ")})`)
      .bind(...chunk)
      .all();
    out.push(...decodeAll<KeyRow>(results));
  }
  return out;
}

export interface SetStatusRow {
  model_set: string;
  last_trigger: string | null;
  last_outcome: string | null;
  last_error: string | null;
  last_run_at: number | null;
}

export async function setStatuses(db: D1Database): Promise<SetStatusRow[]> {
  const { results } = await db
    .prepare("SELECT model_set, last_trigger, last_outcome, last_error, last_run_at FROM sets ORDER BY model_set")
    .all<SetStatusRow>();
  return results;
}

// --- inbound webhook receipts (idempotency by webhook-id) ------------------------------
// A row is first a *claim* (status 0, empty body) taken before any work, so two deliveries
// of one id can never both run; it then becomes the final answer (2xx/400/404) or is
// deleted (409/5xx: the sender's retry is processed anew). A claim left by a request that
// died frees itself after `staleMs`.

export type ReceiptClaim = { kind: "claimed" } | { kind: "stored"; status: number; body: string } | { kind: "in_progress"; since: number };

export async function claimReceipt(db: D1Database, webhookId: string, now: number, staleMs: number): Promise<ReceiptClaim> {
  const [claim, read] = await db.batch([
    db
      .prepare(
        `INSERT INTO webhook_receipts (webhook_id, status, body, received_at) VALUES (?1, 0, '', ?2)
         ON CONFLICT (webhook_id) DO UPDATE SET received_at = excluded.received_at
         WHERE webhook_receipts.status = 0 AND webhook_receipts.received_at <= ?3`,
      )
      .bind(webhookId, now, now - staleMs),
    db.prepare("SELECT status, body, received_at FROM webhook_receipts WHERE webhook_id = ?1").bind(webhookId),
  ]);
  if ((claim!.meta.changes ?? 0) > 0) return { kind: "claimed" };
  const row = read!.results[0] as { status: number; body: string; received_at: number } | undefined;
  if (row && row.status !== 0) return { kind: "stored", status: row.status, body: row.body };
  return { kind: "in_progress", since: row?.received_at ?? now };
}

/** Turns this request's claim into the final answer, and prunes a few receipts older than `pruneBefore`. */
export async function storeReceipt(
  db: D1Database,
  webhookId: string,
  claimedAt: number,
  status: number,
  body: string,
  pruneBefore: number,
): Promise<void> {
  await db.batch([
    // The claim, or the provisional answer the rotation's own promote batch already stored.
    db
      .prepare("UPDATE webhook_receipts SET status = ?2, body = ?3 WHERE webhook_id = ?1 AND received_at = ?4")
      .bind(webhookId, status, body, claimedAt),
    // Bounded work per insert, and more than one row per insert, so the table drains itself.
    db
      .prepare(
        "DELETE FROM webhook_receipts WHERE webhook_id IN (SELECT webhook_id FROM webhook_receipts WHERE received_at < ?1 ORDER BY received_at LIMIT 10)",
      )
      .bind(pruneBefore),
  ]);
}

/** Drops this request's claim: the answer was not final, a retry of the id must run again. */
export async function releaseReceipt(db: D1Database, webhookId: string, claimedAt: number): Promise<void> {
  await db
    .prepare("DELETE FROM webhook_receipts WHERE webhook_id = ?1 AND status = 0 AND received_at = ?2")
    .bind(webhookId, claimedAt)
    .run();
}

// --- outbound event deliveries (migrations/0002_event_deliveries.sql) -------------------

export interface DeliveryFailure {
  subscriber: string;
  origin: string;
  at: number;
  eventId: string;
  eventType: string;
  modelSet: string;
  generation: number | null;
  attempts: number;
  error: string;
}

export async function recordDeliveryFailure(db: D1Database, f: DeliveryFailure): Promise<void> {
  await db
    .prepare(
      `INSERT INTO event_deliveries (subscriber, origin, failed_at, failed_event_id, failed_event_type, failed_model_set, failed_generation, failed_attempts, failed_error)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
       ON CONFLICT (subscriber) DO UPDATE SET origin = excluded.origin, failed_at = excluded.failed_at, failed_event_id = excluded.failed_event_id,
         failed_event_type = excluded.failed_event_type, failed_model_set = excluded.failed_model_set, failed_generation = excluded.failed_generation,
         failed_attempts = excluded.failed_attempts, failed_error = excluded.failed_error`,
    )
    .bind(f.subscriber, f.origin, f.at, f.eventId, f.eventType, f.modelSet, f.generation, f.attempts, f.error)
    .run();
}

/** Only subscribers that failed before have a row: a healthy one costs no write per event. */
export async function recordDeliverySuccess(db: D1Database, subscriber: string, at: number): Promise<void> {
  await db
    .prepare("UPDATE event_deliveries SET last_success_at = MAX(COALESCE(last_success_at, 0), ?2) WHERE subscriber = ?1")
    .bind(subscriber, at)
    .run();
}

export interface DeliveryRow {
  subscriber: string;
  origin: string;
  last_success_at: number | null;
  failed_at: number;
  failed_event_id: string;
  failed_event_type: string;
  failed_model_set: string;
  failed_generation: number | null;
  failed_attempts: number;
  failed_error: string;
}

export async function deliveryFailures(db: D1Database): Promise<DeliveryRow[]> {
  const { results } = await db
    .prepare("SELECT * FROM event_deliveries WHERE failed_at IS NOT NULL ORDER BY failed_at DESC")
    .all<DeliveryRow>();
  return results;
}
