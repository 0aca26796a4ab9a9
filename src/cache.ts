/**
 * The read path's caches: KV (shared, eventually consistent) and a few seconds of
 * isolate memory. D1 stays the source of truth; a miss falls back to it.
 *
 * KV schema — key `key:<set>`:
 *   value    JSON CachedEntry: the current key's times and ids, the key itself only as
 *            the same AES-GCM ciphertext D1 holds (AAD "<set>:<generation>")
 *   metadata { g: generation } so the cron can compare every set's cache with D1 in one list call
 */
import { type Keyring, open, sealedBy } from "./keyring.ts";
import { type CurrentKey, KV_STALENESS_MS, MEMORY_TTL_MS } from "./document.ts";
import type { CurrentRow } from "./ledger.ts";

export interface CachedEntry {
  v: 1;
  model_set: string;
  model_ids: string[];
  generation: number;
  created_at: number;
  refresh_at: number;
  expires_at: number;
  overlap_ms: number;
  /** base64(iv || AES-256-GCM(api_key)) */
  ct: string;
}

export interface CacheMetadata {
  g: number;
  /** Key id that sealed `ct` (src/keyring.ts): re-sealing and /v1/admin/status read it from KV's list. */
  s?: string;
}

export const kvKey = (set: string) => `key:${set}`;

/** The cache entry for a current row: the same ciphertext, the same times. */
export function entryFromRow(row: CurrentRow): CachedEntry {
  return {
    v: 1,
    model_set: row.model_set,
    model_ids: JSON.parse(row.model_ids) as string[],
    generation: row.generation,
    created_at: row.created_at,
    refresh_at: row.refresh_at,
    expires_at: row.expires_at,
    overlap_ms: row.overlap_ms,
    ct: row.ciphertext,
  };
}
const KV_PREFIX = "key:";

export async function decryptEntry(keyring: Keyring, entry: CachedEntry): Promise<CurrentKey> {
  const { ct, v: _v, ...rest } = entry;
  return { ...rest, api_key: await open(keyring, ct, `${entry.model_set}:${entry.generation}`) };
}

export async function writeCache(kv: KVNamespace, entry: CachedEntry): Promise<void> {
  memoryOf(kv).delete(entry.model_set);
  // From now on this location serves nothing older, whether or not the write below lands.
  raiseFloor(kv, entry.model_set, entry.generation);
  await kv.put(kvKey(entry.model_set), JSON.stringify(entry), { metadata: { g: entry.generation, s: sealedBy(entry.ct) ?? undefined } satisfies CacheMetadata });
}

/** Drops a set's entry; with `floor`, this location also never serves a generation below it again. */
export async function dropCache(kv: KVNamespace, set: string, floor?: number): Promise<void> {
  memoryOf(kv).delete(set);
  if (floor !== undefined) raiseFloor(kv, set, floor);
  await kv.delete(kvKey(set));
}

/** The generation the cache holds for a set as this location sees it now (no edge cache). */
export async function cachedGeneration(kv: KVNamespace, set: string): Promise<number | null> {
  const { metadata } = await kv.getWithMetadata<CacheMetadata>(kvKey(set), { type: "stream" });
  return typeof metadata?.g === "number" ? metadata.g : null;
}

/** Every set's cached generation, from KV's list (one call per 1000 sets). */
export async function cachedGenerations(kv: KVNamespace): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor: string | undefined;
  do {
    const page: KVNamespaceListResult<CacheMetadata> = await kv.list<CacheMetadata>({ prefix: KV_PREFIX, cursor });
    for (const k of page.keys) if (typeof k.metadata?.g === "number") out.set(k.name.slice(KV_PREFIX.length), k.metadata.g);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return out;
}

// --- isolate memory ------------------------------------------------------------------
// A few seconds of memory take KV off the hot path entirely for busy sets. The staleness
// this adds is part of MAX_STALENESS_MS, which bounds every promise (document.ts).
// Keyed by the KV binding so two environments in one isolate (tests) never share entries.
type Memory = Map<string, { key: CurrentKey; until: number }>;
const memories = new WeakMap<KVNamespace, Memory>();
const MEMORY_MAX_ENTRIES = 1_000;

// The lowest generation this location may still serve per set, raised when the engine here
// replaces a key. A KV entry a failed write or drop left behind, or a read that was in flight
// while the key was replaced, can then never bring a replaced (maybe leaked and revoked) key
// back: it counts as a miss and the read falls back to D1. Other locations are covered by the
// promise rule and, for revoke_previous, by the client's 401 -> refetch path (DESIGN §3).
const floors = new WeakMap<KVNamespace, Map<string, number>>();

function floorOf(kv: KVNamespace, set: string): number {
  return floors.get(kv)?.get(set) ?? 0;
}

function raiseFloor(kv: KVNamespace, set: string, generation: number): void {
  let f = floors.get(kv);
  if (!f) floors.set(kv, (f = new Map()));
  if (generation > (f.get(set) ?? 0)) f.set(set, generation);
}

function memoryOf(kv: KVNamespace): Memory {
  let m = memories.get(kv);
  if (!m) memories.set(kv, (m = new Map()));
  return m;
}

export function forgetInMemory(kv: KVNamespace, set?: string): void {
  if (set === undefined) {
    memoryOf(kv).clear();
    floors.delete(kv);
  } else memoryOf(kv).delete(set);
}

/** The current key of a set if this isolate's memory holds it now: no I/O (the hot path). */
export function memoryKey(kv: KVNamespace, set: string, now: number): CurrentKey | null {
  const hit = memories.get(kv)?.get(set);
  return hit && hit.until > now && hit.key.generation >= floorOf(kv, set) ? hit.key : null;
}

/** The current key of a set from memory or KV, or null on a miss. Throws if KV fails. */
export async function readCachedKey(kv: KVNamespace, keyring: Keyring, set: string, now: number): Promise<CurrentKey | null> {
  const hit = memoryKey(kv, set, now);
  if (hit) return hit;
  const entry = await kv.get<CachedEntry>(kvKey(set), { type: "json", cacheTtl: KV_STALENESS_MS / 1000 });
  if (!entry || entry.generation < floorOf(kv, set)) return null;
  const key = await decryptEntry(keyring, entry);
  remember(kv, key, now);
  return key;
}

export function remember(kv: KVNamespace, key: CurrentKey, now: number): void {
  if (key.generation < floorOf(kv, key.model_set)) return; // replaced while this read was in flight
  const memory = memoryOf(kv);
  if (memory.size >= MEMORY_MAX_ENTRIES) memory.clear();
  memory.set(key.model_set, { key, until: now + MEMORY_TTL_MS });
}
