/**
 * Verify before promote (DESIGN §4.8, the AWS `testSecret` step for Baseten): a newly minted
 * key is tried against the set's `verify` endpoint with `Authorization: Api-Key <new key>`
 * before anyone is handed it.
 *
 * - 401 or 403: the key does not work; fail at once.
 * - a status in `expect` (or any 2xx without `expect`): pass.
 * - any other status, 5xx, a timeout or a network error: retried (a fresh key can take seconds
 *   to work) for up to 30 s, never past the run's deadline; then fail.
 *
 * Failure messages name the endpoint (origin and path, never the query, which may carry a
 * credential) and the status, never the key or the response body.
 */
import type { VerifyConfig } from "./config.ts";

export const VERIFY_WINDOW_MS = 30_000;
/** One attempt waits at most this long for an answer. */
const ATTEMPT_TIMEOUT_MS = 10_000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5_000;

export type VerifyResult = { ok: true } | { ok: false; code: "verify_failed"; message: string };

export interface VerifyOptions {
  /** The run's deadline (ms since the epoch): no attempt or wait goes past it. */
  deadline: number;
  clock: () => number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "the verify url";
  }
}

/** The request init for one attempt (exported for tests). */
export function verifyRequest(verify: VerifyConfig, apiKey: string): RequestInit {
  const headers = new Headers(verify.headers);
  let body: string | undefined;
  if (verify.body !== undefined && verify.body !== null) {
    if (typeof verify.body === "string") body = verify.body;
    else {
      body = JSON.stringify(verify.body);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
  }
  headers.set("authorization", `Api-Key ${apiKey}`);
  return { method: verify.method || "POST", headers, body };
}

const passes = (verify: VerifyConfig, status: number) => (verify.expect ? verify.expect.includes(status) : status >= 200 && status < 300);

export async function verifyKey(verify: VerifyConfig, apiKey: string, opts: VerifyOptions): Promise<VerifyResult> {
  const doFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const sleep = opts.sleep ?? defaultSleep;
  const start = opts.clock();
  const until = Math.min(start + VERIFY_WINDOW_MS, opts.deadline);
  const target = where(verify.url);
  const expected = verify.expect ? verify.expect.join(", ") : "a 2xx";
  let last = "no attempt fit before the run's deadline";
  let delay = FIRST_DELAY_MS;
  for (;;) {
    const remaining = until - opts.clock();
    if (remaining <= 0) break;
    try {
      const res = await doFetch(verify.url, {
        ...verifyRequest(verify, apiKey),
        signal: AbortSignal.timeout(Math.min(ATTEMPT_TIMEOUT_MS, remaining)),
      });
      await res.body?.cancel().catch(() => {});
      if (res.status === 401 || res.status === 403) {
        return {
          ok: false,
          code: "verify_failed",
          message: `verify: ${target} answered ${res.status}: the new key does not work there; it was not promoted`,
        };
      }
      if (passes(verify, res.status)) return { ok: true };
      last = `answered ${res.status} (expected ${expected})`;
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      last = timedOut ? "gave no answer in time" : "could not be reached (network error)";
    }
    if (opts.clock() + delay >= until) break;
    await sleep(delay);
    delay = Math.min(MAX_DELAY_MS, delay * 2);
  }
  const waited = Math.max(0, Math.round((opts.clock() - start) / 1000));
  return {
    ok: false,
    code: "verify_failed",
    message: `verify: ${target} ${last}; gave up after ${waited} s; the new key was not promoted`,
  };
}
