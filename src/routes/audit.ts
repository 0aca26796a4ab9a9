/**
 * GET /v1/admin/audit?model_set=&limit=1..500&cursor= (admin token): the audit trail, newest first.
 *
 * Entries: `{"id", "model_set", "generation", "action", "trigger", "reason", "consumer", "at"}`.
 * Paging is by the audit row id (append-only, so a page never shifts under a reader). The cursor
 * is opaque to clients: `<payload>.<HMAC-SHA256>` (base64url), the payload holding the last id
 * served, the query's model_set and when the cursor was issued. A cursor that was edited or made
 * up (bad signature), that belongs to another model_set, or is older than a day is refused with
 * 400 `invalid_cursor` naming why; so is any other malformed query, with the parameter named.
 * One D1 statement per page.
 */
import { SET_ID } from "../config.ts";
import { fromBase64, toBase64 } from "../crypto.ts";
import { type RequestContext, fail, json, NO_STORE } from "../http.ts";
import { authenticateOperator } from "./admin-auth.ts";

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 500;
/** A cursor is for paging through now, not a bookmark: older ones are refused. */
export const CURSOR_TTL_MS = 24 * 3_600_000;
const PARAMS = new Set(["model_set", "limit", "cursor"]);
const MAX_CURSOR_LENGTH = 512;

export interface AuditEntry {
  id: number;
  model_set: string;
  generation: number | null;
  action: string;
  trigger: string;
  reason: string | null;
  consumer: string | null;
  at: string;
}

interface AuditRow {
  id: number;
  model_set: string;
  generation: number | null;
  action: string;
  trigger: string;
  reason: string | null;
  consumer: string | null;
  at: number;
}

interface CursorPayload {
  v: 1;
  /** The query's model_set (null: every set). */
  s: string | null;
  /** The last id served: the next page starts below it. */
  id: number;
  /** Issued at (ms). */
  t: number;
}

const badQuery = (message: string): never => fail(400, "invalid_query", message);
const badCursor = (message: string): never => fail(400, "invalid_cursor", message);

export async function auditRoute(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const query = new URL(request.url).searchParams;
  const seen = new Set<string>();
  for (const name of query.keys()) {
    if (!PARAMS.has(name)) badQuery(`unknown query parameter ${JSON.stringify(name.slice(0, 40))}; allowed: model_set, limit, cursor`);
    if (seen.has(name)) badQuery(`query parameter ${name} given more than once`);
    seen.add(name);
  }
  const set = query.get("model_set");
  if (set !== null && !SET_ID.test(set)) badQuery("model_set must be a set id (^[a-z0-9][a-z0-9-]{0,31}$)");
  const limit = parseLimit(query.get("limit"));
  // ENCRYPTION_KEY (valid: the config loaded) keys the cursor's MAC; a new key only ends old cursors.
  const key = await cursorKey(c.env.ENCRYPTION_KEY!);
  const rawCursor = query.get("cursor");
  const before = rawCursor === null ? null : await readCursor(key, rawCursor, set, c.now);

  const where = [set === null ? "" : "model_set = ?1", before === null ? "" : "id < ?2"].filter(Boolean);
  const { results } = await c.env.DB.prepare(
    `SELECT id, model_set, generation, action, trigger, reason, consumer, at FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?3`,
  )
    .bind(set, before, limit + 1)
    .all<AuditRow>();
  const page = results.slice(0, limit);
  const last = page[page.length - 1];
  const next = results.length > limit && last ? await writeCursor(key, { v: 1, s: set, id: last.id, t: c.now }) : null;
  return json({ entries: page.map(entry), next_cursor: next }, 200, NO_STORE);
}

function parseLimit(raw: string | null): number {
  if (raw === null) return DEFAULT_LIMIT;
  if (!/^\d{1,6}$/.test(raw)) fail(400, "invalid_limit", `limit must be a whole number from 1 to ${MAX_LIMIT}`);
  const n = Number(raw);
  if (n < 1 || n > MAX_LIMIT) fail(400, "invalid_limit", `limit must be from 1 to ${MAX_LIMIT}, got ${n}`);
  return n;
}

const entry = (r: AuditRow): AuditEntry => ({
  id: r.id,
  model_set: r.model_set,
  generation: r.generation,
  action: r.action,
  trigger: r.trigger,
  reason: r.reason,
  consumer: r.consumer ?? null,
  at: new Date(r.at).toISOString(),
});

// --- the cursor ---------------------------------------------------------------------------

const b64url = (bytes: Uint8Array) => toBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
function fromB64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  try {
    return fromBase64(text.replaceAll("-", "+").replaceAll("_", "/") + "=".repeat((4 - (text.length % 4)) % 4));
  } catch {
    return null;
  }
}

const keys = new Map<string, Promise<CryptoKey>>();

/**
 * The cursor MAC key, derived (HKDF-SHA256, its own `info`) from the encryption key, so it needs
 * no secret of its own. TODO(lead): derive from the keyring's primary key once the secrets branch
 * is in (cursors issued before a key change are then refused as forged: the client starts over).
 */
function cursorKey(encryptionKeyB64: string): Promise<CryptoKey> {
  let key = keys.get(encryptionKeyB64);
  if (!key) {
    key = (async () => {
      const ikm = await crypto.subtle.importKey("raw", fromBase64(encryptionKeyB64), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new TextEncoder().encode("baseten-key-rotator audit cursor v1") },
        ikm,
        { name: "HMAC", hash: "SHA-256", length: 256 },
        false,
        ["sign", "verify"],
      );
    })();
    if (keys.size > 8) keys.clear();
    keys.set(encryptionKeyB64, key);
  }
  return key;
}

async function writeCursor(key: Promise<CryptoKey> | CryptoKey, payload: CursorPayload): Promise<string> {
  const body = new TextEncoder().encode(JSON.stringify(payload));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await key, body));
  return `${b64url(body)}.${b64url(mac)}`;
}

async function readCursor(key: Promise<CryptoKey> | CryptoKey, raw: string, set: string | null, now: number): Promise<number> {
  if (raw.length === 0 || raw.length > MAX_CURSOR_LENGTH) badCursor("cursor is not one this server issued (use next_cursor as given)");
  const [bodyText, macText, ...rest] = raw.split(".");
  const body = fromB64url(bodyText ?? "");
  const mac = fromB64url(macText ?? "");
  if (rest.length > 0 || !body || !mac) return badCursor("cursor is malformed (use next_cursor as given)");
  if (!(await crypto.subtle.verify("HMAC", await key, mac, body)))
    badCursor(
      "cursor signature does not match: it was altered, made up, or issued under another encryption key; start again without a cursor",
    );
  let p: CursorPayload;
  try {
    p = JSON.parse(new TextDecoder().decode(body)) as CursorPayload;
  } catch {
    return badCursor("cursor is malformed");
  }
  if (p.v !== 1 || !Number.isSafeInteger(p.id) || p.id < 1 || typeof p.t !== "number") badCursor("cursor is malformed");
  if (p.s !== set)
    badCursor(
      `cursor belongs to another query (model_set ${p.s === null ? "not given" : JSON.stringify(p.s)}); repeat that query or start again without a cursor`,
    );
  if (p.t > now + 60_000 || now - p.t > CURSOR_TTL_MS) badCursor("cursor is stale (older than 24 h); start again without a cursor");
  return p.id;
}
