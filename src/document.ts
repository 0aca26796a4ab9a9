/**
 * The key document and the promise rule (DESIGN §3), in one place.
 *
 * Every document served says "this key stays live until expires_at". The read path
 * builds documents with `keyDocument`; the rotation engine bounds what any served
 * document can have promised with `replacedExpiry`. The two must agree, so both live here.
 */

/** What the cache and the ledger hold about a current key (the key itself decrypted). */
export interface CurrentKey {
  model_set: string;
  model_ids: string[];
  generation: number;
  api_key: string;
  created_at: number;
  refresh_at: number;
  expires_at: number;
  overlap_ms: number;
}

export interface KeyDocument {
  model_set: string;
  model_ids: string[];
  api_key: string;
  generation: number;
  created_at: string;
  refresh_at: string;
  expires_at: string;
}

/** Crons fire on whole minutes: while a rotation is overdue the next attempt is the next minute. */
export const TICK_MS = 60_000;

/**
 * How long after a change a location can still serve the old document: KV's edge
 * cache (60 s, the `cacheTtl` of the read path) plus the isolate's memory cache.
 */
export const KV_STALENESS_MS = 60_000;
export const MEMORY_TTL_MS = 5_000;
export const MAX_STALENESS_MS = KV_STALENESS_MS + MEMORY_TTL_MS;

/** The next cron attempt after `now`: never in the past, at most one tick ahead. */
export function nextAttempt(now: number): number {
  return (Math.floor(now / TICK_MS) + 1) * TICK_MS;
}

/**
 * The document served at `now`. On schedule it is the stored one. Once `refresh_at` has
 * passed (the rotation is overdue: upstream failing, set disabled, cron late) the
 * document points at the next attempt and extends the promise to cover it.
 */
export function keyDocument(key: CurrentKey, now: number): KeyDocument {
  let refreshAt = key.refresh_at;
  let expiresAt = key.expires_at;
  if (now >= refreshAt) {
    refreshAt = nextAttempt(now);
    expiresAt = Math.max(expiresAt, refreshAt + key.overlap_ms);
  }
  return {
    model_set: key.model_set,
    model_ids: key.model_ids,
    api_key: key.api_key,
    generation: key.generation,
    created_at: new Date(key.created_at).toISOString(),
    refresh_at: new Date(refreshAt).toISOString(),
    expires_at: new Date(expiresAt).toISOString(),
  };
}

/**
 * The latest `expires_at` any location can have served for a key replaced at `replacedAt`,
 * and so the earliest moment it may be revoked (without an explicit revoke_previous).
 *
 * Documents of the old key are served until `replacedAt + MAX_STALENESS_MS` at the latest.
 * If that reaches past its `refresh_at`, those late documents were "overdue" ones promising
 * up to `nextAttempt(t) + overlap`. And the key always gets at least `overlap` after it
 * was replaced, so consumers have time to refetch.
 */
export function replacedExpiry(key: { refresh_at: number; expires_at: number; overlap_ms: number }, replacedAt: number): number {
  const lastServed = replacedAt + MAX_STALENESS_MS;
  const overdueBound = lastServed >= key.refresh_at ? nextAttempt(lastServed) + key.overlap_ms : 0;
  return Math.max(key.expires_at, replacedAt + key.overlap_ms, overdueBound);
}

/**
 * A key found still served from a stale cache at `now` (a cache write failed) may have been
 * promised anything up to this, so it must stay live at least that long.
 */
export function staleServedExpiry(key: { refresh_at: number; expires_at: number; overlap_ms: number }, now: number): number {
  return replacedExpiry(key, now);
}
