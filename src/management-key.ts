/**
 * Whether Baseten last accepted the management key (BASETEN_API_KEY), for `/v1/admin/status`
 * `management_key: {ok, checked_at, error}` (DESIGN §4.10), and the clear `rotation.failed`
 * reason when it is refused.
 *
 * Recording wraps the Baseten client's `fetch` (no change to the client itself): every answer is
 * noted; 401/403 mean "refused", any other answer below 500 (429 aside) means "accepted"; 5xx,
 * 429 and network errors say nothing about the key. D1 is written when the verdict changes, or at
 * most once a minute per isolate otherwise, and that write is bounded (2 s) and never fails a call.
 */
import { sha256HexSync } from "./crypto.ts";

export interface ManagementKeyStatus {
  /** null: no call with the management key answered yet. */
  ok: boolean | null;
  checked_at: string | null;
  /** Why it was refused (status and call, never the key); null when accepted. */
  error: string | null;
}

const STATE_NAME = "management_key";
const REWRITE_MS = 60_000;
const WRITE_TIMEOUT_MS = 2_000;

/** Per D1 binding: what this isolate last wrote, and for which management key (a changed one is recorded at once). */
const written = new WeakMap<D1Database, { credential: string; ok: boolean; at: number }>();

export const isRefusal = (status: number) => status === 401 || status === 403;

function verdict(status: number): boolean | null {
  if (isRefusal(status)) return false;
  if (status >= 500 || status === 429) return null;
  return true;
}

function describeCall(method: string, url: string): string {
  let path = url;
  try {
    path = new URL(url).pathname;
  } catch {
    /* keep as is */
  }
  if (/\/v1\/teams\/[^/]+\/api_keys\/?$/.test(path)) return "mint";
  if (/\/v1\/api_keys\/?$/.test(path)) return "list";
  if (/\/v1\/api_keys\/[^/]+\/?$/.test(path)) return "revoke";
  return `${method} ${path}`;
}

/** Whether an answer changes what D1 should hold (a new verdict or key, or the last write is a minute old). */
function worthRecording(db: D1Database, ok: boolean | null, now: number, credential: string): ok is boolean {
  if (ok === null) return false;
  const last = written.get(db);
  return !(last && last.credential === credential && last.ok === ok && now - last.at < REWRITE_MS);
}

/** Records one answer from Baseten to a call made with the management key. Never throws. */
export async function recordManagementKeyAnswer(db: D1Database, status: number, call: string, now: number, credential = ""): Promise<void> {
  const ok = verdict(status);
  if (!worthRecording(db, ok, now, credential)) return;
  written.set(db, { credential, ok, at: now });
  const value: ManagementKeyStatus = {
    ok,
    checked_at: new Date(now).toISOString(),
    error: ok
      ? null
      : `Baseten answered ${status} to ${call}: BASETEN_API_KEY was refused (revoked, mistyped, or not a WORKSPACE_MANAGE_ALL key)`,
  };
  const write = db
    .prepare(
      `INSERT INTO secrets_state (name, value, at) VALUES (?1, ?2, ?3)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value, at = excluded.at WHERE excluded.at >= secrets_state.at`,
    )
    .bind(STATE_NAME, JSON.stringify(value), now)
    .run();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([write, new Promise((r) => (timer = setTimeout(r, WRITE_TIMEOUT_MS)))])
    .catch(() => written.delete(db))
    .finally(() => clearTimeout(timer));
}

/** The last header hashed, and its hash: every call of an isolate sends the same one (SHA-256 in JS is not free). */
let lastCredential: { header: string; hash: string } | null = null;
function credentialHash(header: string): string {
  if (lastCredential?.header !== header) lastCredential = { header, hash: sha256HexSync(header) };
  return lastCredential.hash;
}

/**
 * A fetch for the Baseten client that records each answer (wire it in createEngine:
 * `fetch: watchManagementKey(bindings.DB, clock, client.fetch)`).
 */
export function watchManagementKey(db: D1Database, clock: () => number = Date.now, inner?: typeof fetch): typeof fetch {
  const doFetch = inner ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const answered = await doFetch(input, init);
    // Only a hash of the credential is kept, to tell a changed BASETEN_API_KEY apart.
    const credential = credentialHash(new Headers(init?.headers).get("authorization") ?? "");
    // Nearly every answer changes nothing to record: handed back as it came, untouched. (Buffering
    // every body here held each Baseten call slot for an extra turn of a busy event loop: 1,000
    // rotations took 21 s instead of 18 s, bench "rotation".)
    if (!worthRecording(db, verdict(answered.status), clock(), credential)) return answered;
    // Read the body now, inside the caller's timeout, so the bounded D1 write below can never
    // make the caller's read of it time out; the caller gets the same answer, buffered.
    const body = answered.status === 204 || answered.status === 304 ? null : await answered.arrayBuffer();
    const res = new Response(body, { status: answered.status, statusText: answered.statusText, headers: answered.headers });
    const url = typeof input === "string" ? input : input instanceof URL ? input.toString() : input.url;
    await recordManagementKeyAnswer(db, res.status, describeCall(init?.method ?? "GET", url), clock(), credential);
    return res;
  }) as typeof fetch;
}

export async function managementKeyStatus(db: D1Database): Promise<ManagementKeyStatus> {
  const row = await db.prepare("SELECT value FROM secrets_state WHERE name = ?1").bind(STATE_NAME).first<{ value: string }>();
  if (!row) return { ok: null, checked_at: null, error: null };
  try {
    return JSON.parse(row.value) as ManagementKeyStatus;
  } catch {
    return { ok: null, checked_at: null, error: null };
  }
}

/**
 * The run failure for a call Baseten refused with 401/403: a reason an operator can act on
 * (engine: return this from upstreamFailure when `err.status` is 401 or 403). The code stays
 * `upstream_client` (a non-retryable 4xx, as before); webhook and admin answer 502.
 */
export function refusedManagementKeyFailure(op: string, status: number): { code: string; message: string; status: number } {
  return {
    code: "upstream_client",
    message: `${op}: Baseten refused the management key (HTTP ${status}): check BASETEN_API_KEY (README "Changing BASETEN_API_KEY")`,
    status,
  };
}
