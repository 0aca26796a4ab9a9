/**
 * The key document (DESIGN §3) and the time constants the promise rule is built from.
 *
 * A document carries only promises that are already recorded in D1: `expires_at` is always the
 * recorded one (the engine extends it in D1 before any cache can serve the extension). The one
 * thing computed at read time is `refresh_at` while a rotation is overdue: the next attempt
 * (never in the past, at most one tick ahead).
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

/** ISO 8601 (UTC, milliseconds): the one formatter for times in answers, logs and events. */
export const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * The document served at `now`. On schedule it is the stored one. Once `refresh_at` has passed
 * (the rotation is overdue) `refresh_at` points at the next attempt; `expires_at` stays the
 * recorded promise, which the engine extends in D1 on every tick that finds the set overdue.
 */
export function keyDocument(key: CurrentKey, now: number): KeyDocument {
  return {
    model_set: key.model_set,
    model_ids: key.model_ids,
    api_key: key.api_key,
    generation: key.generation,
    created_at: iso(key.created_at),
    refresh_at: iso(now >= key.refresh_at ? nextAttempt(now) : key.refresh_at),
    expires_at: iso(key.expires_at),
  };
}

/**
 * Whether a cached copy of `key` can still make a document that keeps the overdue rule
 * (`expires_at >= refresh_at + overlap`) at `now`. A KV entry that cannot is older than the
 * engine's last extension (a failed KV write): the read path then asks D1 instead.
 */
export function coversOverdue(key: CurrentKey, now: number): boolean {
  return now < key.refresh_at || key.expires_at >= nextAttempt(now) + key.overlap_ms;
}
