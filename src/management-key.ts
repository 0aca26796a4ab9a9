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

/** Records one answer from Baseten to a call made with the management key. Never throws. */
export async function recordManagementKeyAnswer(db: D1Database, status: number, call: string, now: number, credential = ""): Promise<void> {
  const ok = verdict(status);
  if (ok === null) return;
  const last = written.get(db);
  if (last && last.credential === credential && last.ok === ok && now - last.at < REWRITE_MS) return;
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

/**
 * A fetch for the Baseten client that records each answer (wire it in createEngine:
 * `fetch: watchManagementKey(bindings.DB, clock, client.fetch)`).
 */
export function watchManagementKey(db: D1Database, clock: () => number = Date.now, inner?: typeof fetch): typeof fetch {
  const doFetch = inner ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const answered = await doFetch(input, init);
    // Read the body now, inside the caller's timeout, so the bounded D1 write below can never
    // make the caller's read of it time out; the caller gets the same answer, buffered.
    const body = answered.status === 204 || answered.status === 304 ? null : await answered.arrayBuffer();
    const res = new Response(body, { status: answered.status, statusText: answered.statusText, headers: answered.headers });
    const url = typeof input === "string" ? input : input instanceof URL ? input.toString() : input.url;
    // Only a hash of the credential is kept, to tell a changed BASETEN_API_KEY apart.
    const credential = sha256HexSync(new Headers(init?.headers).get("authorization") ?? "");
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
