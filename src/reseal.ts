/**
 * Re-sealing (DESIGN §4.9): after ENCRYPTION_KEY changes (the old key listed in
 * ENCRYPTION_KEY_PREVIOUS), every tick re-seals a bounded number of stored keys that are
 * sealed under another key, or in the format without a key id: D1 rows of every state that has
 * a ciphertext (current, previous, revoked: of enabled, disabled and removed sets alike) and the
 * KV entries. When `encryption.sealed_by` holds only the primary, the old key can go.
 *
 * D1 rows are rewritten by compare-and-set on the old ciphertext (the plaintext of a row never
 * changes, so no lease is needed and nothing is lost to a concurrent write). A KV entry decides
 * what is served, so it is rewritten only under the set's lease, from D1's current row.
 *
 * A stored key that no configured key opens is recorded (table undecryptable_keys) and named by
 * /healthz (503 `undecryptable_keys`); the read path answers 503 `undecryptable_keys` for it.
 */
import { type CacheMetadata, decryptEntry, dropCache, entryFromRow, kvKey, writeCache } from "./cache.ts";
import { randomId } from "./crypto.ts";
import { fail } from "./http.ts";
import {
  type Keyring,
  UndecryptableError,
  isSealedByPrimary,
  keyringFingerprint,
  openWithId,
  primaryPrefix,
  seal,
  sealedBy,
} from "./keyring.ts";
import { currentRow } from "./ledger.ts";
import { DeadlineError, withDeadline } from "./rotation/deadline.ts";
import { log } from "./log.ts";

/** Stored keys re-sealed per cron tick: one D1 read and one D1 batch for D1 rows, whatever the number. */
export const RESEAL_PER_TICK = 100;
/** KV entries rewritten per tick (each takes the set's lease: two D1 writes, one KV read and put). */
export const KV_RESEAL_PER_TICK = 20;
/** The lease a KV re-seal takes: far shorter than a rotation's, and only if the set is free. */
const RESEAL_LEASE_MS = 20_000;
const KV_PREFIX = "key:";
/** secrets_state row: the primary key id under which a pass last found nothing left to re-seal. */
const KV_MARKER = "resealed_under";

export interface ResealSummary {
  /** D1 rows re-sealed under the primary. */
  resealed: number;
  /** KV entries rewritten (re-sealed) under the primary. */
  kvResealed: number;
  /** Stored keys found that no configured key opens. */
  undecryptable: number;
  /** Whether anything may be left for the next tick. */
  more: boolean;
}

interface SealedRow {
  model_set: string;
  generation: number;
  state: string;
  ciphertext: string;
}

/**
 * Rows not sealed by the primary (?1 = "k1:<primary id>:"), as two range searches of the index
 * keys_sealed_by (SQLite scans the whole index for an OR or a <>): the cost is what it finds.
 */
const notPrimary = (columns: string) =>
  `SELECT ${columns} FROM keys WHERE ciphertext IS NOT NULL AND substr(ciphertext, 1, 12) < ?1
   UNION ALL SELECT ${columns} FROM keys WHERE ciphertext IS NOT NULL AND substr(ciphertext, 1, 12) > ?1`;

export async function resealBatch(
  db: D1Database,
  kv: KVNamespace,
  keyring: Keyring,
  limit = RESEAL_PER_TICK,
  now = Date.now(),
  clock?: () => number,
): Promise<ResealSummary> {
  const realStart = Date.now();
  const tickClock = clock ?? (() => now + (Date.now() - realStart));
  const fingerprint = keyringFingerprint(keyring);
  const summary: ResealSummary = { resealed: 0, kvResealed: 0, undecryptable: 0, more: false };

  // 1. D1 rows, current ones first (they are the ones served); known-undecryptable ones skipped
  // until the keyring changes, so they never starve the rest.
  const [candidates, marker] = await db.batch([
    db
      .prepare(
        `SELECT * FROM (${notPrimary("model_set, generation, state, ciphertext")}) AS k
         WHERE NOT EXISTS (SELECT 1 FROM undecryptable_keys u WHERE u.model_set = k.model_set AND u.location = 'd1:' || k.generation AND u.keyring = ?2)
         ORDER BY (state = 'current') DESC, model_set, generation LIMIT ?3`,
      )
      .bind(primaryPrefix(keyring), fingerprint, limit),
    db.prepare("SELECT value FROM secrets_state WHERE name = ?1").bind(KV_MARKER),
  ]);
  const results = candidates!.results as unknown as SealedRow[];
  // Once a pass found every KV entry sealed by this primary, later ticks skip KV's list (billed
  // per call) until D1 has something to re-seal again or the primary changes.
  const kvClean = results.length === 0 && (marker!.results[0] as { value?: string } | undefined)?.value === keyring.primaryId;
  summary.more = results.length >= limit;
  const statements: D1PreparedStatement[] = [];
  for (const row of results) {
    const aad = `${row.model_set}:${row.generation}`;
    const location = `d1:${row.generation}`;
    try {
      const { plaintext, keyId } = await openWithId(keyring, row.ciphertext, aad);
      const fresh = await seal(keyring, plaintext, aad);
      statements.push(
        db
          .prepare("UPDATE keys SET ciphertext = ?3 WHERE model_set = ?1 AND generation = ?2 AND ciphertext = ?4")
          .bind(row.model_set, row.generation, fresh, row.ciphertext),
        db
          .prepare(
            "INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'resealed', 'cron', ?3, ?4 WHERE changes() > 0",
          )
          .bind(
            row.model_set,
            row.generation,
            `re-sealed from key ${sealedBy(row.ciphertext) === null ? `${keyId} (format without key id)` : keyId} to key ${keyring.primaryId}`,
            now,
          ),
        db.prepare("DELETE FROM undecryptable_keys WHERE model_set = ?1 AND location = ?2").bind(row.model_set, location),
      );
      summary.resealed++;
    } catch (err) {
      if (!(err instanceof UndecryptableError)) throw err;
      summary.undecryptable++;
      statements.push(recordUndecryptable(db, row.model_set, location, row.generation, err.sealedBy, fingerprint, now));
      log("error", "reseal.undecryptable", {
        model_set: row.model_set,
        generation: row.generation,
        state: row.state,
        sealed_by: err.sealedBy,
        configured: keyring.ids,
      });
    }
  }
  if (statements.length > 0) await db.batch(statements);

  // 2. KV entries whose metadata does not name the primary (or names nothing: written before key ids).
  if (kvClean) return summary;
  const stale: { set: string; sealer: string | null }[] = [];
  let cursor: string | undefined;
  do {
    const page: KVNamespaceListResult<CacheMetadata> = await kv.list<CacheMetadata>({ prefix: KV_PREFIX, cursor });
    for (const k of page.keys)
      if (k.metadata?.s !== keyring.primaryId) stale.push({ set: k.name.slice(KV_PREFIX.length), sealer: k.metadata?.s ?? null });
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor && stale.length <= KV_RESEAL_PER_TICK);
  if (stale.length > KV_RESEAL_PER_TICK) summary.more = true;
  for (const { set } of stale.slice(0, KV_RESEAL_PER_TICK)) {
    try {
      if (await resealKvEntry(db, kv, keyring, set, now, tickClock)) summary.kvResealed++;
    } catch (err) {
      log("warn", "reseal.kv_failed", { model_set: set, error: err instanceof Error ? err.name : "unknown" });
    }
  }
  if (stale.length === 0 && results.length === 0) {
    await db
      .prepare(
        "INSERT INTO secrets_state (name, value, at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, at = excluded.at",
      )
      .bind(KV_MARKER, keyring.primaryId, now)
      .run();
  }
  if (summary.resealed + summary.undecryptable > 0) healthMemo.delete(db);
  if (summary.resealed + summary.kvResealed + summary.undecryptable > 0) log("info", "reseal", { ...summary, primary: keyring.primaryId });
  return summary;
}

function recordUndecryptable(
  db: D1Database,
  set: string,
  location: string,
  generation: number | null,
  sealer: string | null,
  fingerprint: string,
  now: number,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO undecryptable_keys (model_set, location, generation, sealed_by, keyring, found_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
       ON CONFLICT (model_set, location) DO UPDATE SET generation = excluded.generation, sealed_by = excluded.sealed_by, keyring = excluded.keyring, found_at = excluded.found_at`,
    )
    .bind(set, location, generation, sealer, fingerprint, now);
}

/**
 * Rewrites one set's KV entry under the set's lease, re-sealed whole under the primary (engine v2:
 * the KV value is AES-GCM over the whole entry, AAD = the KV key), from D1's current row (the
 * source every KV entry is written from), so it can never put an older generation over a newer
 * one: while the lease is held no run promotes, and the only unfenced KV write (a run's lost-race
 * repair) writes this same row. Only an entry of D1's current generation is rewritten; a stale
 * one is the engine's to repair. Every await is bounded well inside the lease; a put that did not
 * answer in time leaves the set's cache record unknown, so the next run of any path rewrites KV.
 * Returns whether it wrote. A set whose lease is held (a rotation running) is left for the next tick.
 */
async function resealKvEntry(
  db: D1Database,
  kv: KVNamespace,
  keyring: Keyring,
  set: string,
  now: number,
  clock: () => number,
): Promise<boolean> {
  const holder = `reseal-${randomId(12)}`;
  const deadline = clock() + RESEAL_LEASE_MS - 5_000;
  const took = await withDeadline(
    () =>
      db
        .prepare(
          `INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES (?1, ?2, ?3)
       ON CONFLICT (model_set) DO UPDATE SET lease_holder = excluded.lease_holder, lease_expires_at = excluded.lease_expires_at
       WHERE sets.lease_holder IS NULL OR sets.lease_expires_at <= ?4`,
        )
        .bind(set, holder, now + RESEAL_LEASE_MS, now)
        .run(),
    deadline,
    clock,
    "reseal lease",
  );
  if ((took.meta.changes ?? 0) === 0) return false;
  try {
    const [row, stored] = await withDeadline(
      () => Promise.all([currentRow(db, set), kv.getWithMetadata<CacheMetadata>(kvKey(set), { type: "text" })]),
      deadline,
      clock,
      "reseal read",
    );
    if (stored.value === null) return false;
    if (!row) {
      // Nothing is current in D1 (a removed set): the entry serves nobody; a miss reads D1.
      await withDeadline(() => dropCache(kv, set), deadline, clock, "reseal kv delete");
      return true;
    }
    if (stored.metadata?.g !== row.generation) return false; // a stale cache: the engine's repair rewrites it
    const key = await decryptEntry(keyring, entryFromRow(row));
    try {
      await withDeadline(() => writeCache(kv, keyring, key), deadline, clock, "reseal kv put");
    } catch (err) {
      if (err instanceof DeadlineError) {
        await withDeadline(
          () => db.prepare("UPDATE sets SET cached_generation = NULL WHERE model_set = ?1 AND lease_holder = ?2").bind(set, holder).run(),
          clock() + 5_000,
          clock,
          "reseal record",
        ).catch(() => {});
      }
      throw err;
    }
    return true;
  } finally {
    await db
      .prepare("UPDATE sets SET lease_holder = NULL, lease_expires_at = 0 WHERE model_set = ?1 AND lease_holder = ?2")
      .bind(set, holder)
      .run();
  }
}

// --- what is stored, per key id -----------------------------------------------------------

export interface EncryptionStatus {
  /** Key id of ENCRYPTION_KEY. */
  primary: string;
  /** Every configured key id (primary first). */
  configured: string[];
  /** Stored ciphertexts (D1 rows and KV entries) per key id that sealed them; ids with none omitted. */
  sealed_by: Record<string, number>;
  /** Ciphertexts in the format without a key id not attributed in this call (re-sealed by the next ticks). */
  unattributed: number;
  /** Stored keys no configured key opens, and their sets. */
  undecryptable: { count: number; model_sets: string[] };
}

/** Ciphertexts in the format without a key id are attributed by trying the keys, at most this many per call. */
const ATTRIBUTE_MAX = 200;

export async function encryptionStatus(db: D1Database, kv: KVNamespace, keyring: Keyring): Promise<EncryptionStatus> {
  const sealed: Record<string, number> = {};
  const add = (id: string, n = 1) => void (sealed[id] = (sealed[id] ?? 0) + n);
  let unattributed = 0;
  let budget = ATTRIBUTE_MAX;
  const badSets = new Set<string>();
  let badCount = 0;
  const attribute = async (ct: string, aad: string, set: string) => {
    const id = sealedBy(ct);
    if (id !== null) {
      add(id);
      if (!keyring.ids.includes(id)) (badCount++, badSets.add(set));
      return;
    }
    if (budget-- <= 0) return void unattributed++;
    try {
      add((await openWithId(keyring, ct, aad)).keyId);
    } catch {
      badCount++;
      badSets.add(set);
    }
  };

  const [grouped, legacy] = await db.batch([
    db.prepare(
      "SELECT substr(ciphertext, 4, 8) AS s, model_set, COUNT(*) AS n FROM keys WHERE ciphertext IS NOT NULL AND substr(ciphertext, 1, 3) = 'k1:' GROUP BY s, model_set",
    ),
    db.prepare("SELECT model_set, generation, ciphertext FROM keys WHERE ciphertext IS NOT NULL AND substr(ciphertext, 1, 3) <> 'k1:'"),
  ]);
  for (const g of grouped!.results as { s: string; model_set: string; n: number }[]) {
    add(g.s, g.n);
    if (!keyring.ids.includes(g.s)) ((badCount += g.n), badSets.add(g.model_set));
  }
  for (const r of legacy!.results as { model_set: string; generation: number; ciphertext: string }[])
    await attribute(r.ciphertext, `${r.model_set}:${r.generation}`, r.model_set);

  let cursor: string | undefined;
  do {
    const page: KVNamespaceListResult<CacheMetadata> = await kv.list<CacheMetadata>({ prefix: KV_PREFIX, cursor });
    for (const k of page.keys) {
      const set = k.name.slice(KV_PREFIX.length);
      if (k.metadata?.s) {
        add(k.metadata.s);
        if (!keyring.ids.includes(k.metadata.s)) (badCount++, badSets.add(set));
        continue;
      }
      // No key id in the metadata: the value itself (engine v2: the whole entry sealed, AAD = the KV key).
      const value = await kv.get(k.name, { type: "text" }).catch(() => null);
      if (value === null) continue;
      if (value.startsWith("{")) {
        // An entry of the version before engine v2 (JSON with D1's ciphertext): a miss the first tick rewrites.
        const old = (() => {
          try {
            return JSON.parse(value) as { ct?: unknown; model_set?: unknown; generation?: unknown };
          } catch {
            return null;
          }
        })();
        if (old && typeof old.ct === "string") await attribute(old.ct, `${String(old.model_set)}:${String(old.generation)}`, set);
        continue;
      }
      await attribute(value, k.name, set);
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);

  // Recorded by a tick (format without a key id that nothing opened, or a ciphertext that was altered).
  const recorded = await db
    .prepare("SELECT model_set FROM undecryptable_keys WHERE keyring = ?1")
    .bind(keyringFingerprint(keyring))
    .all<{ model_set: string }>();
  for (const r of recorded.results) badSets.add(r.model_set);
  const sorted = Object.fromEntries(
    Object.entries(sealed).sort(([a], [b]) => (a === keyring.primaryId ? -1 : b === keyring.primaryId ? 1 : a.localeCompare(b))),
  );
  return {
    primary: keyring.primaryId,
    configured: [...keyring.ids],
    sealed_by: sorted,
    unattributed,
    undecryptable: { count: Math.max(badCount, recorded.results.length), model_sets: [...badSets].sort() },
  };
}

// --- /healthz and the read path -------------------------------------------------------------

const healthMemo = new WeakMap<D1Database, { fingerprint: string; until: number; sets: string[] }>();
/** /healthz asks D1 at most this often per isolate. */
const HEALTH_MEMO_MS = 15_000;

/**
 * Sets with a stored key that no configured key opens: D1 rows sealed under a key id that is not
 * configured, and what a tick recorded (format without a key id, altered ciphertexts).
 * Cheap: the index finds only rows not sealed by the primary.
 */
export async function undecryptableSets(db: D1Database, keyring: Keyring, now = Date.now()): Promise<string[]> {
  const fingerprint = keyringFingerprint(keyring);
  const memo = healthMemo.get(db);
  if (memo && memo.fingerprint === fingerprint && memo.until > now) return memo.sets;
  const [unknownIds, recorded] = await db.batch([
    db
      .prepare(
        `SELECT DISTINCT model_set, head FROM (${notPrimary("model_set, substr(ciphertext, 1, 12) AS head")}) WHERE substr(head, 1, 3) = 'k1:'`,
      )
      .bind(primaryPrefix(keyring)),
    db.prepare("SELECT DISTINCT model_set FROM undecryptable_keys WHERE keyring = ?1").bind(fingerprint),
  ]);
  const sets = new Set<string>();
  for (const r of unknownIds!.results as { model_set: string; head: string }[])
    if (!keyring.ids.includes(r.head.slice(3, 11))) sets.add(r.model_set);
  for (const r of recorded!.results as { model_set: string }[]) sets.add(r.model_set);
  const out = [...sets].sort();
  healthMemo.set(db, { fingerprint, until: now + HEALTH_MEMO_MS, sets: out });
  return out;
}

/** The read path's answer for a stored key no configured key opens: 503 undecryptable_keys, never a bare 500. */
export function undecryptable(set: string, err: unknown): never {
  if (!(err instanceof UndecryptableError)) throw err;
  log("error", "read.undecryptable", { model_set: set, sealed_by: err.sealedBy });
  return fail(
    503,
    "undecryptable_keys",
    `the stored key of model set "${set}" does not open: it is ${err.message}; put the key that sealed it back in ENCRYPTION_KEY_PREVIOUS (see /healthz)`,
    { "retry-after": "60" },
  );
}
