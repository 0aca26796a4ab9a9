/**
 * The read path's caches: KV (shared, eventually consistent) and a few seconds of isolate
 * memory. D1 stays the source of truth; a miss falls back to it. Only the rotation engine
 * writes KV, under the set's lease (src/rotation/engine.ts).
 *
 * KV schema — key `key:<set>`:
 *   value    AES-256-GCM over the whole entry's JSON (every field, the api_key included), with
 *            the KV key itself as associated data: an entry copied to another set, or edited,
 *            fails to open and is a miss (the read goes to D1), never served
 *   metadata { g: generation } so the cron can compare every set's cache with D1 in one list call
 */
import { type Keyring, open, seal, sealedBy } from "./keyring.ts";
import { type CurrentKey, KV_STALENESS_MS, MEMORY_TTL_MS, coversOverdue } from "./document.ts";
import type { CurrentRow } from "./ledger.ts";
import { currentRow } from "./ledger.ts";

/** What a KV entry holds once opened. */
export interface CachedEntry extends CurrentKey {
  v: 2;
}

export interface CacheMetadata {
  g: number;
  /** Key id that sealed the entry (src/keyring.ts): re-sealing and /v1/admin/status read it from KV's list. */
  s?: string;
}

const KV_PREFIX = "key:";
export const kvKey = (set: string) => `${KV_PREFIX}${set}`;

// --- sealing: the one place KV entries and D1 ciphertexts are sealed and opened -----------

/** The D1 ciphertext of a key: AAD "<set>:<generation>" (a row copied elsewhere fails to open). */
export const sealKey = (keyring: Keyring, set: string, generation: number, apiKey: string) => seal(keyring, apiKey, `${set}:${generation}`);

async function sealEntry(keyring: Keyring, key: CurrentKey): Promise<string> {
  const entry: CachedEntry = { v: 2, ...key };
  return seal(keyring, JSON.stringify(entry), kvKey(key.model_set));
}

/** Opens a KV value for `set`; null when it is not a whole, valid entry of that set. Throws if it does not decrypt. */
async function openEntry(keyring: Keyring, set: string, sealed: string): Promise<CurrentKey | null> {
  const e = JSON.parse(await open(keyring, sealed, kvKey(set))) as Partial<CachedEntry>;
  if (e.v !== 2 || e.model_set !== set || typeof e.api_key !== "string" || typeof e.generation !== "number") return null;
  if (
    typeof e.refresh_at !== "number" ||
    typeof e.expires_at !== "number" ||
    typeof e.created_at !== "number" ||
    !Array.isArray(e.model_ids)
  )
    return null;
  const { v: _v, ...key } = e as CachedEntry;
  return { ...key, overlap_ms: typeof key.overlap_ms === "number" ? key.overlap_ms : 0 };
}

// --- D1 rows ----------------------------------------------------------------------------

/** A current D1 row and its ciphertext, not yet opened. */
export type RowEntry = Omit<CurrentKey, "api_key"> & { ct: string };

export function entryFromRow(row: CurrentRow): RowEntry {
  return {
    model_set: row.model_set,
    model_ids: row.model_ids,
    generation: row.generation,
    created_at: row.created_at,
    refresh_at: row.refresh_at,
    expires_at: row.expires_at,
    overlap_ms: row.overlap_ms,
    ct: row.ciphertext,
  };
}

export async function decryptEntry(keyring: Keyring, entry: RowEntry): Promise<CurrentKey> {
  const { ct, ...rest } = entry;
  return { ...rest, api_key: await open(keyring, ct, `${entry.model_set}:${entry.generation}`) };
}

/** D1's current key of a set, bypassing every cache (the read path's fallback and fresh reads). */
export async function readCurrentFresh(db: D1Database, keyring: Keyring, set: string): Promise<CurrentKey | null> {
  const row = await currentRow(db, set);
  return row ? decryptEntry(keyring, entryFromRow(row)) : null;
}

// --- KV writes (the engine only) ----------------------------------------------------------

/** Writes the set's entry. From now on this location serves nothing older, whether or not the put lands. */
export async function writeCache(kv: KVNamespace, keyring: Keyring, key: CurrentKey): Promise<void> {
  memoryOf(kv).delete(key.model_set);
  forbidBelow(kv, key.model_set, key.generation);
  const value = await sealEntry(keyring, key);
  await kv.put(kvKey(key.model_set), value, { metadata: { g: key.generation, s: sealedBy(value) ?? undefined } satisfies CacheMetadata });
}

/** Drops a set's entry; with `floor`, this location also never serves a generation below it again. */
export async function dropCache(kv: KVNamespace, set: string, floor?: number): Promise<void> {
  memoryOf(kv).delete(set);
  if (floor !== undefined) forbidBelow(kv, set, floor);
  await kv.delete(kvKey(set));
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
// A few seconds of memory take KV off the hot path entirely for busy sets. The staleness this
// adds is part of MAX_STALENESS_MS (document.ts), which the engine waits out before it revokes
// a replaced key. Keyed by the KV binding so two environments in one isolate never share entries.
type Memory = Map<string, { key: CurrentKey; until: number }>;
const memories = new WeakMap<KVNamespace, Memory>();
const MEMORY_MAX_ENTRIES = 1_000;

// The lowest generation this location may still serve per set, raised when the engine here
// replaces or revokes a key. A KV entry a failed write or drop left behind, or a read that was in
// flight while the key was replaced, can then never bring a replaced (maybe leaked and revoked)
// key back here: it counts as a miss and the read falls back to D1.
const floors = new WeakMap<KVNamespace, Map<string, number>>();

function floorOf(kv: KVNamespace, set: string): number {
  return floors.get(kv)?.get(set) ?? 0;
}

/** This location never serves a generation of `set` below `generation` again (memory and KV). */
export function forbidBelow(kv: KVNamespace, set: string, generation: number): void {
  let f = floors.get(kv);
  if (!f) floors.set(kv, (f = new Map()));
  if (generation > (f.get(set) ?? 0)) f.set(set, generation);
  const hit = memories.get(kv)?.get(set);
  if (hit && hit.key.generation < generation) memories.get(kv)!.delete(set);
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

/**
 * The current key of a set if this isolate's memory holds it now: no I/O (the hot path). An entry
 * remembered just before refresh_at that cannot make a valid overdue document a few seconds later
 * is a miss too, like a KV entry (the read goes on to KV, then D1).
 */
export function memoryKey(kv: KVNamespace, set: string, now: number): CurrentKey | null {
  const hit = memories.get(kv)?.get(set);
  return hit && hit.until > now && hit.key.generation >= floorOf(kv, set) && coversOverdue(hit.key, now) ? hit.key : null;
}

/**
 * The current key of a set from memory or KV, or null on a miss (the caller reads D1). A KV
 * entry of another set, of a generation this location has seen replaced, or one older than the
 * engine's last overdue extension is a miss. Throws if KV fails or the entry does not decrypt.
 */
export async function readCachedKey(kv: KVNamespace, keyring: Keyring, set: string, now: number): Promise<CurrentKey | null> {
  const hit = memoryKey(kv, set, now);
  if (hit) return hit;
  const sealed = await kv.get(kvKey(set), { type: "text", cacheTtl: KV_STALENESS_MS / 1000 });
  if (sealed === null) return null;
  const key = await openEntry(keyring, set, sealed);
  if (!key || key.generation < floorOf(kv, set) || !coversOverdue(key, now)) return null;
  remember(kv, key, now);
  return key;
}

export function remember(kv: KVNamespace, key: CurrentKey, now: number): void {
  if (key.generation < floorOf(kv, key.model_set)) return; // replaced while this read was in flight
  const memory = memoryOf(kv);
  if (memory.size >= MEMORY_MAX_ENTRIES) memory.clear();
  memory.set(key.model_set, { key, until: now + MEMORY_TTL_MS });
}
