/**
 * Client for Baseten's management API: mint (team endpoint), list, revoke by prefix.
 *
 * Every call has a timeout; 429, 5xx, timeouts and network errors are retried a bounded
 * number of times with exponential backoff and full jitter (429 waits at least what
 * `retry_after` / `Retry-After` asks); any other 4xx fails at once. No call ever waits
 * past the caller's deadline, so a rotation always finishes inside its lease.
 * Errors carry Baseten's status and error text, never a key.
 */
import { redactUpstreamText } from "./log.ts";
import { DeadlineError, withDeadline } from "./rotation/deadline.ts";

export interface ListedKey {
  prefix: string;
  name: string | null;
  type: string;
  model_ids: string[] | null;
}

export interface MintedKey {
  apiKey: string;
  prefix: string;
}

export type UpstreamErrorKind = "rate_limited" | "server" | "timeout" | "network" | "client" | "malformed";

export class UpstreamError extends Error {
  override name = "UpstreamError";
  constructor(
    readonly op: "mint" | "list" | "revoke",
    readonly kind: UpstreamErrorKind,
    readonly status: number | null,
    message: string,
    /** The operation may have happened at Baseten even though we got no usable answer. */
    readonly maybeApplied: boolean,
  ) {
    super(message);
  }
}

export interface BasetenOptions {
  apiBase: string;
  teamId: string;
  apiKey: string;
  timeoutMs: number;
  maxAttempts: number;
  /** Calls in flight at once toward Baseten (Workers allow 6 open connections). */
  concurrency: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
  /** Called once per HTTP attempt (benchmarks count subrequests with it). */
  onAttempt?: (op: string) => void;
}

const BASE_DELAY_MS = 200;
const MAX_DELAY_MS = 5_000;
const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A counting semaphore: at most `limit` holders at once, FIFO. A caller with a deadline stops
 * waiting for a slot when it passes (DeadlineError), and leaves the queue.
 */
class Semaphore {
  private active = 0;
  private waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>, deadline = Infinity, clock: () => number = Date.now): Promise<T> {
    if (this.active >= this.limit) {
      let handoff!: () => void;
      const slot = new Promise<void>((resolve) => (handoff = resolve));
      this.waiting.push(handoff);
      try {
        await withDeadline(slot, deadline, clock, "waiting for a Baseten call slot");
      } catch (err) {
        const i = this.waiting.indexOf(handoff);
        if (i >= 0) this.waiting.splice(i, 1);
        else this.release(); // the slot was handed over as the deadline passed: pass it on
        throw err;
      }
    } else this.active++;
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

/** Upstream text is stripped of the management key and anything key-shaped, THEN cut short (src/log.ts). */
function redact(text: string, apiKey: string): string {
  return redactUpstreamText(text, apiKey, 300);
}

/**
 * A `Retry-After` header value (delay-seconds or an HTTP date) in ms from `now`, or null: the one
 * parser of it in the worker (the client package keeps its own copy).
 */
export function parseRetryAfter(header: string | null, now: number): number | null {
  if (!header) return null;
  const secs = Number(header);
  if (header.trim() !== "" && Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function retryAfterMs(res: Response, body: unknown, now: number): number | null {
  const fromBody = (body as { retry_after?: unknown } | null)?.retry_after;
  if (typeof fromBody === "number" && Number.isFinite(fromBody) && fromBody >= 0) return fromBody * 1000;
  return parseRetryAfter(res.headers.get("retry-after"), now);
}

export class BasetenClient {
  private readonly gate: Semaphore;
  private readonly doFetch: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly opts: BasetenOptions) {
    this.gate = new Semaphore(opts.concurrency);
    // Workers throw "Illegal invocation" on an unbound global fetch.
    this.doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
    this.sleep = opts.sleep ?? defaultSleep;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }

  /** Mints a WORKSPACE_INVOKE key named `name` for `modelIds` under `teamId` (default: BASETEN_TEAM_ID). */
  async mint(name: string, modelIds: string[], deadline?: number, teamId?: string): Promise<MintedKey> {
    const url = `${this.opts.apiBase}/v1/teams/${encodeURIComponent(teamId ?? this.opts.teamId)}/api_keys`;
    const body = JSON.stringify({ name, type: "WORKSPACE_INVOKE", model_ids: modelIds });
    const { json } = await this.call("mint", "POST", url, body, deadline);
    const apiKey = (json as { api_key?: unknown } | null)?.api_key;
    const dot = typeof apiKey === "string" ? apiKey.indexOf(".") : -1;
    if (typeof apiKey !== "string" || dot <= 0 || dot === apiKey.length - 1) {
      // A 200 without a usable key may still have created one: the caller recovers it by name.
      throw new UpstreamError("mint", "malformed", 200, "mint answered 200 without a usable api_key", true);
    }
    return { apiKey, prefix: apiKey.slice(0, dot) };
  }

  /** Every non-revoked key of the management key's user. */
  async list(deadline?: number): Promise<ListedKey[]> {
    const { json } = await this.call("list", "GET", `${this.opts.apiBase}/v1/api_keys`, undefined, deadline);
    const keys = (json as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) throw new UpstreamError("list", "malformed", 200, "list answered 200 without a keys array", false);
    return keys.filter((k): k is ListedKey => typeof k === "object" && k !== null && typeof (k as ListedKey).prefix === "string");
  }

  /** Deletes a key by prefix. "gone" when Baseten no longer knows it (404): already deleted. */
  async revoke(prefix: string, deadline?: number): Promise<"revoked" | "gone"> {
    const url = `${this.opts.apiBase}/v1/api_keys/${encodeURIComponent(prefix)}`;
    const { status } = await this.call("revoke", "DELETE", url, undefined, deadline, [404]);
    return status === 404 ? "gone" : "revoked";
  }

  private async call(
    op: "mint" | "list" | "revoke",
    method: string,
    url: string,
    body: string | undefined,
    deadline = Infinity,
    okStatuses: number[] = [],
  ): Promise<{ status: number; json: unknown }> {
    let maybeApplied = false;
    let last: UpstreamError | null = null;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      const remaining = deadline - this.now();
      if (remaining <= 0) break;
      let res: Response;
      try {
        this.opts.onAttempt?.(op);
        // The wait for a call slot counts against the deadline too, and so does the call after it.
        res = await this.gate.run(
          () => {
            const left = deadline - this.now();
            if (left <= 0) throw new DeadlineError(`${op}: the run's deadline passed while waiting for a call slot`);
            return this.doFetch(url, {
              method,
              body,
              headers: { authorization: `Api-Key ${this.opts.apiKey}`, "content-type": "application/json", accept: "application/json" },
              signal: AbortSignal.timeout(Math.min(this.opts.timeoutMs, left)),
            });
          },
          deadline,
          this.now,
        );
      } catch (err) {
        if (err instanceof DeadlineError) {
          // Never sent: this attempt cannot have applied anything.
          last = new UpstreamError(op, "timeout", null, `${op}: no call slot free before the run's deadline`, maybeApplied);
          break;
        }
        const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
        // The request may have reached Baseten before the connection broke.
        maybeApplied = maybeApplied || method !== "GET";
        last = new UpstreamError(
          op,
          timedOut ? "timeout" : "network",
          null,
          `${op}: ${timedOut ? `no answer within ${this.opts.timeoutMs} ms` : "network error"}`,
          maybeApplied,
        );
        if (!(await this.backoff(attempt, null, deadline))) break;
        continue;
      }
      const text = await res.text().catch(() => "");
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = undefined;
      }
      // An accepted non-2xx (404 on revoke: already gone) is final whatever its body says.
      if (okStatuses.includes(res.status)) return { status: res.status, json };
      if (res.ok) {
        if (json === undefined || json === null) {
          throw new UpstreamError(op, "malformed", res.status, `${op}: answered ${res.status} with a body that is not JSON`, true);
        }
        return { status: res.status, json };
      }
      const upstreamText = redact(
        typeof (json as { error?: unknown })?.error === "string" ? (json as { error: string }).error : text,
        this.opts.apiKey,
      );
      const message = `${op}: Baseten answered ${res.status}${upstreamText ? `: ${upstreamText}` : ""}`;
      if (res.status === 429) {
        last = new UpstreamError(op, "rate_limited", 429, message, maybeApplied);
        if (!(await this.backoff(attempt, retryAfterMs(res, json, Date.now()), deadline))) break;
        continue;
      }
      if (res.status >= 500) {
        maybeApplied = maybeApplied || method !== "GET";
        last = new UpstreamError(op, "server", res.status, message, maybeApplied);
        if (!(await this.backoff(attempt, retryAfterMs(res, json, Date.now()), deadline))) break;
        continue;
      }
      // Other 4xx: not retryable. A 409 on mint after an ambiguous attempt means that attempt created the key.
      throw new UpstreamError(op, "client", res.status, message, maybeApplied);
    }
    throw last ?? new UpstreamError(op, "timeout", null, `${op}: deadline reached before an attempt could be made`, maybeApplied);
  }

  /**
   * Sleeps before the next attempt. Returns false when there is none: attempts are used
   * up, or the wait (a server's retry hint included) would not fit before the deadline.
   */
  private async backoff(attempt: number, hintMs: number | null, deadline: number): Promise<boolean> {
    if (attempt >= this.opts.maxAttempts) return false;
    const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
    const jittered = Math.floor(this.random() * cap);
    const wait = hintMs === null ? jittered : Math.max(hintMs, jittered);
    if (this.now() + wait >= deadline) return false;
    await this.sleep(wait);
    return true;
  }
}
