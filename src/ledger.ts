/**
 * D1 reads and writes: the source of truth for keys, leases and run outcomes.
 * Schema and its reasons: migrations/0001_init.sql.
 *
 * Every write that matters to correctness is fenced by the lease: it only applies while
 * `sets.lease_holder` is still this run's holder id, so a run that outlived its lease
 * cannot promote or overwrite what the next run did.
 */

export type KeyState = "pending" | "current" | "previous" | "revoked" | "abandoned";

export interface KeyRow {
  model_set: string;
  generation: number;
  state: KeyState;
  name: string;
  model_ids: string;
  overlap_ms: number;
  prefix: string | null;
  created_at: number;
  refresh_at: number | null;
  expires_at: number | null;
  replaced_at: number | null;
}

export interface CurrentRow extends KeyRow {
  ciphertext: string;
  refresh_at: number;
  expires_at: number;
}

const ROW_COLUMNS = "model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at";
const LEASE_HELD = "EXISTS (SELECT 1 FROM sets WHERE model_set = ?1 AND lease_holder = ?2)";

export interface PendingRequest {
  /** Random suffix of the Baseten name: `bkr-<set>-<generation>-<suffix>`. */
  suffix: string;
  modelIds: string[];
  overlapMs: number;
  /** Only record the pending if the set is due (no current key, or its refresh_at reached). */
  onlyIfDue: boolean;
}

export type Acquired =
  | { leased: false; leaseExpiresAt: number }
  | { leased: true; pending: { generation: number; name: string } | null; rows: KeyRow[] };

/**
 * One round trip: take the set's lease (compare-and-set with an expiry), record a pending
 * row when asked (and, for the cron, only if still due: decided under the lease), and read
 * the set's live rows as they stand under the lease.
 */
export async function acquire(db: D1Database, set: string, holder: string, now: number, leaseMs: number, mint: PendingRequest | null): Promise<Acquired> {
  const statements = [
    db
      .prepare(
        `INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (model_set) DO UPDATE SET lease_holder = excluded.lease_holder, lease_expires_at = excluded.lease_expires_at
         WHERE sets.lease_holder IS NULL OR sets.lease_expires_at <= ?4`,
      )
      .bind(set, holder, now + leaseMs, now),
    db.prepare("SELECT lease_holder, lease_expires_at FROM sets WHERE model_set = ?1").bind(set),
  ];
  if (mint) {
    statements.push(
      db
        .prepare(
          `INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, created_at)
           SELECT ?1, g, 'pending', 'bkr-' || ?1 || '-' || g || '-' || ?3, ?4, ?5, ?6
           FROM (SELECT COALESCE(MAX(generation), 0) + 1 AS g FROM keys WHERE model_set = ?1)
           WHERE ${LEASE_HELD}
             AND NOT EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND state = 'pending' AND created_at > ?6 - ?8)
             AND (?7 = 0 OR NOT EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND state = 'current' AND refresh_at > ?6))
           RETURNING generation, name`,
        )
        .bind(set, holder, mint.suffix, JSON.stringify(mint.modelIds), mint.overlapMs, now, mint.onlyIfDue ? 1 : 0, leaseMs),
    );
  }
  statements.push(db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE model_set = ?1 AND state IN ('pending', 'current', 'previous') ORDER BY generation`).bind(set));
  const results = await db.batch(statements);
  const lease = results[1]!.results[0] as { lease_holder: string | null; lease_expires_at: number } | undefined;
  if (!lease || lease.lease_holder !== holder) return { leased: false, leaseExpiresAt: lease?.lease_expires_at ?? now };
  const pending = mint ? ((results[2]!.results[0] as { generation: number; name: string } | undefined) ?? null) : null;
  return { leased: true, pending, rows: results[results.length - 1]!.results as unknown as KeyRow[] };
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
  /** The replaced current key (if any) and the expiry the promise rule gives it. */
  replaced: { generation: number; expiresAt: number } | null;
  trigger: string;
  reason: string | null;
}

/**
 * One atomic batch: pending -> current, old current -> previous with its promised expiry,
 * audit row. Applies only while the lease is held and the pending row is still pending
 * (a recovery may have abandoned it). Returns whether it applied.
 */
export async function promote(db: D1Database, p: Promotion): Promise<boolean> {
  const stillPending = `EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND generation = ?3 AND state = 'pending')`;
  const results = await db.batch([
    db
      .prepare(
        `UPDATE keys SET state = 'previous', replaced_at = ?4, expires_at = ?5
         WHERE model_set = ?1 AND state = 'current' AND generation = ?6 AND ${LEASE_HELD} AND ${stillPending}`,
      )
      .bind(p.set, p.holder, p.generation, p.createdAt, p.replaced?.expiresAt ?? 0, p.replaced?.generation ?? -1),
    db
      .prepare(
        `UPDATE keys SET state = 'current', prefix = ?3, ciphertext = ?4, created_at = ?5, refresh_at = ?6, expires_at = ?7
         WHERE model_set = ?1 AND generation = ?8 AND state = 'pending' AND ${LEASE_HELD}`,
      )
      .bind(p.set, p.holder, p.prefix, p.ciphertext, p.createdAt, p.refreshAt, p.expiresAt, p.generation),
    db
      .prepare(
        `INSERT INTO audit (model_set, generation, action, trigger, reason, at)
         SELECT ?1, ?3, 'minted', ?4, ?5, ?6 WHERE changes() > 0`,
      )
      .bind(p.set, p.holder, p.generation, p.trigger, p.reason, p.createdAt),
  ]);
  return (results[1]!.meta.changes ?? 0) > 0;
}

/** The current row of a set with its ciphertext (read-path fallback and cache repair). */
export async function currentRow(db: D1Database, set: string): Promise<CurrentRow | null> {
  return db.prepare(`SELECT ${ROW_COLUMNS}, ciphertext FROM keys WHERE model_set = ?1 AND state = 'current'`).bind(set).first<CurrentRow>();
}

/** Every live row (pending, current, previous) of every set, without ciphertext: one statement per tick. */
export async function liveRows(db: D1Database): Promise<KeyRow[]> {
  const { results } = await db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE state IN ('pending', 'current', 'previous')`).all<KeyRow>();
  return results;
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
      .all<KeyRow>();
    out.push(...results);
  }
  return out;
}

export async function markRevoked(db: D1Database, set: string, generation: number, now: number, trigger: string, reason: string | null): Promise<void> {
  await db.batch([
    db.prepare("UPDATE keys SET state = 'revoked', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'previous'").bind(set, generation, now),
    db.prepare("INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'revoked', ?4, ?5, ?3 WHERE changes() > 0").bind(set, generation, now, trigger, reason),
  ]);
}

/** A pending whose key is known not to exist at Baseten (never minted, or found and deleted). */
export async function markAbandoned(db: D1Database, set: string, generation: number, now: number, trigger: string, reason: string | null): Promise<void> {
  await db.batch([
    db.prepare("UPDATE keys SET state = 'abandoned', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'pending'").bind(set, generation, now),
    db.prepare("INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'abandoned', ?4, ?5, ?3 WHERE changes() > 0").bind(set, generation, now, trigger, reason),
  ]);
}

/** Moves a key's promised expiry later (never earlier). */
export async function extendExpiry(db: D1Database, set: string, generation: number, expiresAt: number): Promise<void> {
  await db.prepare("UPDATE keys SET expires_at = MAX(COALESCE(expires_at, 0), ?3) WHERE model_set = ?1 AND generation = ?2").bind(set, generation, expiresAt).run();
}

/** A set removed from MODEL_SETS: its current key becomes previous and runs out its promise. */
export async function retireCurrent(db: D1Database, set: string, holder: string, generation: number, expiresAt: number, now: number): Promise<void> {
  await db
    .prepare(`UPDATE keys SET state = 'previous', replaced_at = ?4, expires_at = MAX(COALESCE(expires_at, 0), ?5) WHERE model_set = ?1 AND generation = ?3 AND state = 'current' AND ${LEASE_HELD}`)
    .bind(set, holder, generation, now, expiresAt)
    .run();
}

export interface RunRecord {
  trigger: string;
  outcome: string;
  error: string | null;
  at: number;
}

/** Releases the lease (if still ours) and records how the run ended, in one statement. */
export async function release(db: D1Database, set: string, holder: string, run: RunRecord): Promise<void> {
  const update = db
    .prepare(
      `UPDATE sets SET lease_holder = NULL, lease_expires_at = 0, last_trigger = ?3, last_outcome = ?4, last_error = ?5, last_run_at = ?6
       WHERE model_set = ?1 AND lease_holder = ?2`,
    )
    .bind(set, holder, run.trigger, run.outcome, run.error, run.at);
  if (run.outcome !== "failed") return void (await update.run());
  // TODO(lead): the engine branch records `failed` audit rows itself; keep one of the two.
  await db.batch([
    update,
    db.prepare("INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, NULL, 'failed', ?2, ?3, ?4 WHERE changes() > 0").bind(set, run.trigger, run.error, run.at),
  ]);
}

export interface SetStatusRow {
  model_set: string;
  last_trigger: string | null;
  last_outcome: string | null;
  last_error: string | null;
  last_run_at: number | null;
}

export async function setStatuses(db: D1Database): Promise<SetStatusRow[]> {
  const { results } = await db.prepare("SELECT model_set, last_trigger, last_outcome, last_error, last_run_at FROM sets ORDER BY model_set").all<SetStatusRow>();
  return results;
}

// --- inbound webhook receipts (idempotency by webhook-id) ------------------------------
// A row is first a *claim* (status 0, empty body) taken before any work, so two deliveries
// of one id can never both run; it then becomes the final answer (2xx/400/404) or is
// deleted (409/5xx: the sender's retry is processed anew). A claim left by a request that
// died frees itself after `staleMs`.

export type ReceiptClaim =
  | { kind: "claimed" }
  | { kind: "stored"; status: number; body: string }
  | { kind: "in_progress"; since: number };

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
export async function storeReceipt(db: D1Database, webhookId: string, claimedAt: number, status: number, body: string, pruneBefore: number): Promise<void> {
  await db.batch([
    db.prepare("UPDATE webhook_receipts SET status = ?2, body = ?3 WHERE webhook_id = ?1 AND status = 0 AND received_at = ?4").bind(webhookId, status, body, claimedAt),
    // Bounded work per insert, and more than one row per insert, so the table drains itself.
    db
      .prepare("DELETE FROM webhook_receipts WHERE webhook_id IN (SELECT webhook_id FROM webhook_receipts WHERE received_at < ?1 ORDER BY received_at LIMIT 10)")
      .bind(pruneBefore),
  ]);
}

/** Drops this request's claim: the answer was not final, a retry of the id must run again. */
export async function releaseReceipt(db: D1Database, webhookId: string, claimedAt: number): Promise<void> {
  await db.prepare("DELETE FROM webhook_receipts WHERE webhook_id = ?1 AND status = 0 AND received_at = ?2").bind(webhookId, claimedAt).run();
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
  await db.prepare("UPDATE event_deliveries SET last_success_at = MAX(COALESCE(last_success_at, 0), ?2) WHERE subscriber = ?1").bind(subscriber, at).run();
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
  const { results } = await db.prepare("SELECT * FROM event_deliveries WHERE failed_at IS NOT NULL ORDER BY failed_at DESC").all<DeliveryRow>();
  return results;
}
