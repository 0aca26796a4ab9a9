/**
 * The read path: GET /v1/keys/{set} and GET /v1/keys (and KeyService over RPC, src/rpc.ts).
 * Memory, then KV, then D1 on a miss; the document follows the promise rule (document.ts) and
 * is serialized once per cached key while it is on schedule. GET /v1/keys/{set} is the route
 * table's hot path (app.ts): getKeyFromMemory first, getKey when it returns null.
 *
 * Fresh reads (DESIGN §3): `Cache-Control: no-cache` (RPC: `{fresh: true}`) answers D1's
 * current key, bypassing memory and KV, at most once per consumer and set every 5 s per
 * location: within that the last fresh answer is reused, so no token can turn it into D1 load.
 * The fresh answer also refreshes this location's memory. Every served key is noted for the
 * consumer tracking (identity/tracking.ts): a Map lookup here, a D1 write through waitUntil.
 */
import { decryptEntry, entryFromRow, memoryKey, readCachedKey, remember } from "../cache.ts";
import type { Config } from "../config.ts";
import { type CurrentKey, keyDocument, nextAttempt } from "../document.ts";
import type { Env } from "../env.ts";
import { NO_STORE, type RequestContext, fail, json } from "../http.ts";
import { type Identity, authenticate, rememberedIdentity } from "../identity/index.ts";
import { noteServed } from "../identity/tracking.ts";
import { currentRow } from "../ledger.ts";
import { errorText, log } from "../log.ts";
import { undecryptable } from "../reseal.ts";

/** A fresh read's answer is reused for this long per consumer and set (per location). */
export const FRESH_REUSE_MS = 5_000;

type Ctx = Pick<ExecutionContext, "waitUntil"> | undefined;

/** The current row of a set from D1, decrypted (the one place the read path opens a D1 row). */
async function keyFromD1(env: Env, config: Config, set: string): Promise<CurrentKey | null> {
  const row = await currentRow(env.DB, set);
  if (!row) return null;
  return decryptEntry(config.keyring, entryFromRow(row)).catch((err) => undecryptable(set, err));
}

async function currentKey(env: Env, config: Config, set: string, now: number): Promise<CurrentKey | null> {
  try {
    const cached = await readCachedKey(env.KEYS, config.keyring, set, now);
    if (cached) return cached;
  } catch (err) {
    // KV down or an unreadable entry: D1 is the source of truth, serve from it.
    log("warn", "cache.read_failed", { model_set: set, error: errorText(err) });
  }
  // No write-back to KV here: only the rotation engine writes the cache, under the set's
  // lease, so a slow reader can never put an older generation back over a newer one.
  const key = await keyFromD1(env, config, set);
  if (key) remember(env.KEYS, key, now);
  return key;
}

// Per config (per isolate in production): consumer name -> set -> the last fresh read.
const freshReads = new WeakMap<Config, Map<string, { at: number; key: Promise<CurrentKey | null> }>>();
const FRESH_MAX_ENTRIES = 10_000;

/** D1 reads made for fresh reads at this location (tests and the drill read it). */
export let freshD1Reads = 0;

function freshKey(env: Env, config: Config, identity: Identity, set: string, now: number): Promise<CurrentKey | null> {
  let m = freshReads.get(config);
  if (!m) freshReads.set(config, (m = new Map()));
  const slot = `${identity.name}\u0000${set}`;
  const last = m.get(slot);
  if (last && now - last.at < FRESH_REUSE_MS && now >= last.at) return last.key;
  if (m.size >= FRESH_MAX_ENTRIES) m.clear();
  freshD1Reads++;
  const key = keyFromD1(env, config, set).then((k) => {
    // This location serves the newer key from now on (remember() never goes below its floor).
    if (k) remember(env.KEYS, k, now);
    return k;
  });
  const entry = { at: now, key };
  m.set(slot, entry);
  // A failed read is not reused: the next fresh request reads again.
  key.catch(() => {
    if (m!.get(slot) === entry) m!.delete(slot);
  });
  return key;
}

export interface ResolveOptions {
  fresh?: boolean;
  ctx?: Ctx;
}

/**
 * The key a consumer may have for `set`, or a thrown contract error (404 unknown set, 403 not
 * granted, 503 no key yet). Shared by the HTTP routes and the RPC entrypoint.
 */
export async function resolveKey(
  env: Env,
  config: Config,
  identity: Identity,
  set: string,
  now: number,
  opts: ResolveOptions = {},
): Promise<CurrentKey> {
  if (!config.sets.has(set)) fail(404, "unknown_model_set", "no such model set");
  if (!identity.modelSets.includes(set)) fail(403, "forbidden", "this consumer is not granted that model set");
  const key = opts.fresh ? await freshKey(env, config, identity, set, now) : await currentKey(env, config, set, now);
  if (!key) {
    const retryAfter = Math.max(1, Math.ceil((nextAttempt(now) - now) / 1000));
    fail(503, "no_key_yet", "no key has been minted for this set yet", { "retry-after": String(retryAfter) });
  }
  noteServed(env.DB, config, identity, set, key!.generation, now, waitUntilOf(opts.ctx));
  return key!;
}

const waitUntilOf = (ctx: Ctx) => (typeof ctx?.waitUntil === "function" ? (p: Promise<unknown>) => ctx.waitUntil(p) : undefined);

/** `Cache-Control: no-cache`: the consumer asks for D1's current key. */
export function wantsFresh(request: Request): boolean {
  const cc = request.headers.get("cache-control");
  return cc !== null && /(^|[\s,])no-cache($|[\s,=])/i.test(cc);
}

export async function getKey(request: Request, c: RequestContext): Promise<Response> {
  const { env, config, now, ctx } = c;
  const set = c.params.set!;
  const identity = await authenticate(request, config, { db: env.DB, now, waitUntil: waitUntilOf(ctx) });
  const key = await resolveKey(env, config, identity, set, now, { fresh: wantsFresh(request), ctx });
  return new Response(documentBody(key, now), { status: 200, headers: KEY_HEADERS });
}

/**
 * GET /v1/keys/{set} when all it needs is in isolate memory (a token that matched before, a key
 * read in the last few seconds, no fresh read asked): the answer without a promise or any I/O.
 * Null otherwise, and the full path (getKey) answers, errors included.
 */
export function getKeyFromMemory(request: Request, c: RequestContext): Response | null {
  const { env, config, now, ctx } = c;
  const set = c.params.set!;
  const identity = rememberedIdentity(request, config, now);
  if (!identity || !identity.modelSets.includes(set) || !config.sets.has(set)) return null;
  if (request.headers.has("cache-control")) return null;
  const key = memoryKey(env.KEYS, set, now);
  if (!key) return null;
  noteServed(env.DB, config, identity, set, key.generation, now, waitUntilOf(ctx));
  return new Response(documentBody(key, now), { status: 200, headers: KEY_HEADERS });
}

const KEY_HEADERS: Record<string, string> = { "content-type": "application/json; charset=utf-8", ...NO_STORE };

/**
 * The serialized document. While a key is on schedule (now < refresh_at) its document does not
 * depend on `now`, so it is serialized once per cached key object (memory cache: a few seconds)
 * instead of per request. An overdue key's document moves with `now` and is built every time.
 */
const bodies = new WeakMap<CurrentKey, string>();
export function documentBody(key: CurrentKey, now: number): string {
  if (now >= key.refresh_at) return JSON.stringify(keyDocument(key, now));
  let body = bodies.get(key);
  if (body === undefined) bodies.set(key, (body = JSON.stringify(keyDocument(key, now))));
  return body;
}

/** Every granted set that has a key (no 503 for a set without one). */
export async function resolveKeys(
  env: Env,
  config: Config,
  identity: Identity,
  now: number,
  opts: ResolveOptions = {},
): Promise<CurrentKey[]> {
  const sets = identity.modelSets.filter((s) => config.sets.has(s));
  const keys = await Promise.all(
    sets.map(async (set) => {
      const key = opts.fresh ? await freshKey(env, config, identity, set, now) : await currentKey(env, config, set, now);
      if (key) noteServed(env.DB, config, identity, set, key.generation, now, waitUntilOf(opts.ctx));
      return key;
    }),
  );
  return keys.filter((k): k is CurrentKey => k !== null);
}

export async function listKeys(request: Request, c: RequestContext): Promise<Response> {
  const { env, config, now, ctx } = c;
  const identity = await authenticate(request, config, { db: env.DB, now, waitUntil: waitUntilOf(ctx) });
  const keys = await resolveKeys(env, config, identity, now, { fresh: wantsFresh(request), ctx });
  return json({ keys: keys.map((k) => keyDocument(k, now)) }, 200, NO_STORE);
}
