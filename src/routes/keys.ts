/**
 * The read path: GET /v1/keys/{set} and GET /v1/keys. Memory, then KV, then D1 on a miss;
 * the document follows the promise rule (document.ts) and is serialized once per cached key
 * while it is on schedule. GET /v1/keys/{set} reaches getKey around the router (app.ts).
 */
import { authenticateConsumer, rememberedConsumer } from "../auth.ts";
import { decryptEntry, entryFromRow, memoryKey, readCachedKey, remember } from "../cache.ts";
import type { Config } from "../config.ts";
import { type CurrentKey, keyDocument, nextAttempt } from "../document.ts";
import type { Env } from "../env.ts";
import { NO_STORE, fail, json } from "../http.ts";
import { currentRow } from "../ledger.ts";
import { errorText, log } from "../log.ts";
import { undecryptable } from "../reseal.ts";

async function currentKey(env: Env, config: Config, set: string, now: number): Promise<CurrentKey | null> {
  try {
    const cached = await readCachedKey(env.KEYS, config.keyring, set, now);
    if (cached) return cached;
  } catch (err) {
    // KV down or an unreadable entry: D1 is the source of truth, serve from it.
    log("warn", "cache.read_failed", { model_set: set, error: errorText(err) });
  }
  const row = await currentRow(env.DB, set);
  if (!row) return null;
  // No write-back to KV here: only the rotation engine writes the cache, under the set's
  // lease, so a slow reader can never put an older generation back over a newer one.
  const key = await decryptEntry(config.keyring, entryFromRow(row)).catch((err) => undecryptable(set, err));
  remember(env.KEYS, key, now);
  return key;
}

export async function getKey(request: Request, env: Env, config: Config, now: number, set: string): Promise<Response> {
  const consumer = await authenticateConsumer(request, config);
  if (!config.sets.has(set)) fail(404, "unknown_model_set", "no such model set");
  if (!consumer.modelSets.includes(set)) fail(403, "forbidden", "this token is not granted that model set");
  const key = await currentKey(env, config, set, now);
  if (!key) {
    const retryAfter = Math.max(1, Math.ceil((nextAttempt(now) - now) / 1000));
    fail(503, "no_key_yet", "no key has been minted for this set yet", { "retry-after": String(retryAfter) });
  }
  return new Response(documentBody(key, now), { status: 200, headers: KEY_HEADERS });
}

/**
 * GET /v1/keys/{set} when all it needs is in isolate memory (a token that matched before, a key
 * read in the last few seconds): the answer without a promise or any I/O. Null otherwise, and
 * the full path (getKey) answers, errors included.
 */
export function getKeyFromMemory(request: Request, env: Env, config: Config, now: number, set: string): Response | null {
  const consumer = rememberedConsumer(request, config);
  if (!consumer || !consumer.modelSets.includes(set) || !config.sets.has(set)) return null;
  const key = memoryKey(env.KEYS, set, now);
  return key ? new Response(documentBody(key, now), { status: 200, headers: KEY_HEADERS }) : null;
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

export async function listKeys(request: Request, env: Env, config: Config, now: number): Promise<Response> {
  const consumer = await authenticateConsumer(request, config);
  const keys = await Promise.all(consumer.modelSets.map((set) => currentKey(env, config, set, now)));
  return json({ keys: keys.filter((k): k is CurrentKey => k !== null).map((k) => keyDocument(k, now)) }, 200, NO_STORE);
}
