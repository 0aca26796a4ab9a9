/**
 * baseten-key-rotator/client — fetch and cache the current Baseten inference key
 * from a running baseten-key-rotator worker.
 *
 * Dependency-free and runtime-neutral: it uses only `fetch`, `URL`, `Headers`,
 * `Request`, `Response`, `AbortSignal` and the JavaScript core, so the same file
 * runs in Node 20+, in Cloudflare Workers and anywhere else that has `fetch`.
 * The caching logic never uses timers; time comes from the `clock` option.
 *
 * Caching rules (see README.md, "For consumers" for the consumer-facing summary):
 *
 * 1. Fresh key. A fetched key document is served from memory while
 *    `now < refreshDeadline`, where
 *        lifetime        = max(0, refresh_at - fetchedAt)        (fetchedAt = clock() when it arrived)
 *        window          = min(earlyRefresh * lifetime, 5 minutes)
 *        jitter          = floor(random() * window)              (drawn once per document, random() in [0, 1))
 *        refreshDeadline = max(min(refresh_at, expires_at) - jitter, fetchedAt + 1 s)
 *    so a fleet spreads its refreshes over the last `window` before `refresh_at`
 *    (never after it), and a document is reused for at least 1 s even if its
 *    `refresh_at` is already past (for example a stale edge-cached document).
 * 2. Single flight. Past the deadline, one request to the rotator is made; every
 *    `getKey()` call that arrives meanwhile awaits that same request.
 * 3. Rotator outage. A network error, a timeout, HTTP 408/429/5xx, any other
 *    unexpected status, or a malformed document is a *soft* failure: while the held
 *    key is still promised (`now < expires_at`) it is returned instead, and the next
 *    attempt is made no sooner than 1 s, 2 s, 4 s, ... (at most 30 s, and never
 *    later than the held key's `expires_at`) after the failure. With no usable held
 *    key the failure is thrown (`unavailable`, `no_key_yet` or `bad_response`) and
 *    the next attempt is made no sooner than 1 s later; calls in between get the
 *    same error without contacting the rotator.
 * 4. Hard failures. 401/403 (`unauthorized`) and 404 (`unknown_set`) from the
 *    rotator are thrown at once even if a key is held: they mean the client is
 *    misconfigured, not that the rotator is down. The held key is kept, and the
 *    next attempt is made no sooner than 1 s later.
 * 5. `invalidate()` marks the held key as rejected: the next `getKey()` refetches
 *    (at once, or 1 s after the last failed attempt if that was less than 1 s ago),
 *    and the rejected key is never used as an outage fallback: a rotator outage
 *    right after a rejection fails with `unavailable` instead of handing out a key
 *    Baseten has just refused. A later successful fetch clears the mark, even if it
 *    returns the same key.
 * 6. `fetchWithKey()` invalidates on a Baseten 401 only if the rejected key is still
 *    the held one and was fetched at least 1 s ago, so a burst of 401s (or a rotator
 *    whose edge cache still serves the revoked key) costs at most one rotator request
 *    per second.
 * 7. Fresh reads. The first request after `invalidate()` (so the refetch after a Baseten
 *    401) asks for a fresh read: `Cache-Control: no-cache` over HTTP, `{ fresh: true }`
 *    over a binding. The rotator then answers D1's current key, bypassing its edge
 *    caches, so a key revoked by a leak response is replaced on the next call at every
 *    location (the rotator allows one such read per consumer and set per 5 s).
 * 8. Identity. `token` is a string, or a function returning one (sync or async) that is
 *    called for each request to the rotator: a Kubernetes projected service-account token
 *    file or a GitHub Actions OIDC token is read afresh each time. A token function that
 *    throws is a soft failure (`unavailable`). With `binding` (a Workers service binding to
 *    the rotator's `KeyService`) there is no token: the binding's props name the consumer.
 *
 * Error messages never contain the token or a key.
 */

/** The key document served by `GET /v1/keys/{set}` (DESIGN.md §3). */
export interface KeyDocument {
  readonly model_set: string;
  readonly model_ids: readonly string[];
  /** The Baseten inference key: send it as `Authorization: Api-Key <api_key>`. */
  readonly api_key: string;
  readonly generation: number;
  readonly created_at: string;
  /** When the next rotation is due: the client refetches at (or a little before) this time. */
  readonly refresh_at: string;
  /** The key is promised to stay live at Baseten until this time. */
  readonly expires_at: string;
}

/** A `fetch`-compatible function. */
export type FetchFunction = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** Anything with a `fetch` method, such as a Workers service binding (`env.ROTATOR`). */
export interface FetcherLike {
  fetch(input: Request | string | URL, init?: RequestInit): Promise<Response>;
}

/**
 * A service binding to the rotator's `KeyService` entrypoint (DESIGN §5). What it returns is
 * checked like an HTTP answer, so a typed `Service<KeyService>` stub fits as well.
 */
export interface KeyServiceBinding {
  getKey(modelSet: string, options?: { fresh?: boolean }): Promise<unknown>;
}

/** A bearer token, or a function giving one (called for every request to the rotator). */
export type TokenSource = string | (() => string | Promise<string>);

export interface KeyClientOptions {
  /** Base URL of the rotator, e.g. `https://keys.example.com`. With a service binding any host will do, e.g. `https://rotator`. Not with `binding`. */
  url?: string;
  /**
   * The consumer's bearer token: a static token, or an OIDC JWT. A function is called for
   * each request to the rotator (read a projected token file, ask the CI for a fresh JWT).
   * Not with `binding`.
   */
  token?: TokenSource;
  /**
   * Inside a Worker: the service binding to the rotator's `KeyService` entrypoint
   * (`env.KEY_ROTATOR`), instead of `url` and `token`.
   */
  binding?: KeyServiceBinding;
  /** The model set whose key to fetch, e.g. `"chat"`. */
  modelSet: string;
  /**
   * How to reach the rotator. Default: the global `fetch`. Pass a service binding
   * (`env.ROTATOR`) or a function such as `(input, init) => env.ROTATOR.fetch(input, init)`.
   */
  fetch?: FetchFunction | FetcherLike;
  /** How `fetchWithKey()` reaches Baseten. Default: the global `fetch` (never `options.fetch`). */
  basetenFetch?: FetchFunction | FetcherLike;
  /** Current time in milliseconds since the epoch. Default: `Date.now`. */
  clock?: () => number;
  /** Source of randomness in [0, 1) for the early-refresh jitter. Default: `Math.random`. */
  random?: () => number;
  /**
   * Fraction of a key's lifetime (`refresh_at - fetchedAt`) within which the refresh
   * is moved earlier by a random amount, capped at 5 minutes. 0 disables jitter.
   * Must be within [0, 1]. Default: 0.1.
   */
  earlyRefresh?: number;
  /** Abort a request to the rotator after this many milliseconds (0 = never). Default: 5000. */
  timeoutMs?: number;
}

export interface KeyClient {
  /**
   * The current key document. Served from memory until its refresh deadline, then
   * refetched (one request at a time). Rejects with a `KeyClientError`.
   */
  getKey(): Promise<KeyDocument>;
  /** Mark the held key as rejected: the next `getKey()` refetches, and the key is no outage fallback. */
  invalidate(): void;
  /**
   * `fetch(input, init)` with `Authorization: Api-Key <api_key>` set (replacing any
   * given). On a 401 it refetches the key once and, if the key changed, retries once
   * with the new key; it returns the last response (a 401 is returned as is when no
   * newer key is available). A stream body is buffered first so it can be replayed.
   * Rejects with a `KeyClientError` when no key can be had, or with the fetch error.
   */
  fetchWithKey(input: Request | string | URL, init?: RequestInit): Promise<Response>;
}

export type KeyClientErrorCode =
  /** 401/403 from the rotator: the token is wrong or not granted this set. */
  | "unauthorized"
  /** 404 from the rotator: the model set is unknown (or the url is wrong). */
  | "unknown_set"
  /** The rotator is unreachable or failing and no unexpired key is held. */
  | "unavailable"
  /** The rotator answered 503: the set has no key yet (see `retryAfter`). */
  | "no_key_yet"
  /** The rotator answered with something that is not a valid key document. */
  | "bad_response";

export class KeyClientError extends Error {
  override readonly name = "KeyClientError";
  readonly code: KeyClientErrorCode;
  /** HTTP status of the rotator's answer, when there was one. */
  readonly status: number | undefined;
  /** Seconds the rotator asked us to wait (`Retry-After`), when given. */
  readonly retryAfter: number | undefined;

  constructor(code: KeyClientErrorCode, message: string, options: { status?: number; retryAfter?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.retryAfter = options.retryAfter;
  }
}

const MAX_EARLY_MS = 5 * 60_000;
/** Minimum time between two requests to the rotator (except right after invalidate()). */
const MIN_INTERVAL_MS = 1_000;
/** Longest back-off between attempts while an unexpired key is held. */
const MAX_BACKOFF_MS = 30_000;
/** Something that looks like a Baseten API key: `<prefix>.<secret>`. */
const KEY_SHAPE = /[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{12,}/g;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

interface Held {
  doc: KeyDocument;
  fetchedAt: number;
  deadline: number;
  expiresAt: number;
  rejected: boolean;
}

interface Failure {
  error: KeyClientError;
  /** clock() when the failed attempt ended. */
  at: number;
  retryAt: number;
}

/** Create a client for one model set. Throws a TypeError naming the first bad option. */
export function createKeyClient(options: KeyClientOptions): KeyClient {
  if (options === null || typeof options !== "object") {
    throw new TypeError("createKeyClient: options must be an object");
  }
  const { url, token, modelSet, binding } = options;
  if (binding !== undefined) {
    if (
      binding === null ||
      (typeof binding !== "object" && typeof binding !== "function") ||
      typeof (binding as KeyServiceBinding).getKey !== "function"
    ) {
      throw new TypeError("createKeyClient: options.binding must be a service binding to KeyService (with a getKey method)");
    }
    if (url !== undefined || token !== undefined) {
      throw new TypeError("createKeyClient: options.binding replaces options.url and options.token: give one or the other");
    }
  } else {
    if (typeof url !== "string" || url === "") {
      throw new TypeError("createKeyClient: options.url must be a non-empty string");
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError("createKeyClient: options.url is not a valid absolute URL");
    }
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
      throw new TypeError("createKeyClient: options.url must be an http: or https: URL");
    }
    if (parsed.search !== "" || parsed.hash !== "") {
      throw new TypeError("createKeyClient: options.url must not have a query or fragment");
    }
    if (typeof token === "function") {
      // called per request
    } else if (typeof token !== "string" || token.trim() === "" || /[\s]/.test(token)) {
      throw new TypeError("createKeyClient: options.token must be a non-empty string without whitespace, or a function returning one");
    }
  }
  if (typeof modelSet !== "string" || modelSet === "") {
    throw new TypeError("createKeyClient: options.modelSet must be a non-empty string");
  }
  const rotatorFetch = toFetch(options.fetch, "fetch");
  const basetenFetch = toFetch(options.basetenFetch, "basetenFetch");
  const clock = optionalFunction(options.clock, "clock") ?? (() => Date.now());
  const random = optionalFunction(options.random, "random") ?? (() => Math.random());
  const earlyRefresh = options.earlyRefresh ?? 0.1;
  if (typeof earlyRefresh !== "number" || !(earlyRefresh >= 0 && earlyRefresh <= 1)) {
    throw new TypeError("createKeyClient: options.earlyRefresh must be a number within [0, 1]");
  }
  const timeoutMs = options.timeoutMs ?? 5_000;
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new TypeError("createKeyClient: options.timeoutMs must be a finite number >= 0");
  }
  const keyUrl = binding ? "" : `${url!.replace(/\/+$/, "")}/v1/keys/${encodeURIComponent(modelSet)}`;

  let held: Held | null = null;
  let inflight: Promise<KeyDocument> | null = null;
  let failure: Failure | null = null;
  let softFailures = 0;
  /** The next request asks for a fresh read (set by invalidate(): the refetch after a 401). */
  let freshNext = false;
  /** The token last sent (for redaction when it comes from a function). */
  let lastToken = typeof token === "string" ? token : "";

  /**
   * Belt and braces for error messages (which quote the rotator's error message and
   * network error texts): drop the token, the held key, and anything shaped like a
   * Baseten key (`<prefix>.<secret>`).
   */
  const redact = (text: string): string => {
    let out = lastToken === "" ? text : text.split(lastToken).join("[redacted]");
    if (held) out = out.split(held.doc.api_key).join("[redacted]");
    return out.replace(KEY_SHAPE, "[redacted]");
  };
  const fail = (code: KeyClientErrorCode, message: string, extra: { status?: number; retryAfter?: number } = {}) =>
    new KeyClientError(code, redact(`baseten-key-rotator client (set "${modelSet}"): ${message}`), extra);

  const usable = (h: Held | null, now: number): h is Held => h !== null && !h.rejected && now < h.expiresAt;

  /** Give the held key for a soft failure if it is still promised, otherwise throw. */
  const fallback = (error: KeyClientError, now: number): KeyDocument => {
    if (error.code !== "unauthorized" && error.code !== "unknown_set" && usable(held, now)) return held.doc;
    if (error.code === "unavailable" && held !== null && !held.rejected) {
      // Say why the held key cannot be used any more.
      throw new KeyClientError(error.code, `${error.message}; the held key expired at ${held.doc.expires_at}`, {
        ...(error.status === undefined ? {} : { status: error.status }),
        ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
      });
    }
    throw error;
  };

  async function attempt(): Promise<KeyDocument> {
    const outcome = await request();
    const now = clock();
    if (outcome instanceof KeyClientError) {
      const soft = outcome.code !== "unauthorized" && outcome.code !== "unknown_set";
      let retryAt = now + MIN_INTERVAL_MS;
      if (soft && usable(held, now)) {
        softFailures += 1;
        const backoff = Math.min(MIN_INTERVAL_MS * 2 ** (softFailures - 1), MAX_BACKOFF_MS);
        retryAt = Math.min(now + backoff, held.expiresAt);
      }
      failure = { error: outcome, at: now, retryAt };
      return fallback(outcome, now);
    }
    failure = null;
    softFailures = 0;
    const refreshAt = Date.parse(outcome.refresh_at);
    const expiresAt = Date.parse(outcome.expires_at);
    const lifetime = Math.max(0, refreshAt - now);
    const window = Math.min(earlyRefresh * lifetime, MAX_EARLY_MS);
    let r = Number(random());
    if (!(r >= 0)) r = 0;
    if (r >= 1) r = 0.999999;
    const jitter = Math.floor(r * window);
    const deadline = Math.max(Math.min(refreshAt, expiresAt) - jitter, now + MIN_INTERVAL_MS);
    held = { doc: outcome, fetchedAt: now, deadline, expiresAt, rejected: false };
    return outcome;
  }

  /** One call over the service binding: the document, or the error its coded message names. */
  async function requestBinding(fresh: boolean): Promise<KeyDocument | KeyClientError> {
    let body: unknown;
    try {
      body = await binding!.getKey(modelSet, fresh ? { fresh: true } : {});
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const code = /^([a-z_]+): /.exec(message)?.[1];
      const detail = message.slice(0, 200);
      if (code === "unauthorized" || code === "forbidden")
        return fail(
          "unauthorized",
          `the rotator refused this Worker: ${detail} (check the binding's props and that the consumer has "binding": true and this set)`,
        );
      if (code === "unknown_model_set") return fail("unknown_set", `the rotator does not know this set: ${detail}`);
      if (code === "no_key_yet") return fail("no_key_yet", `the rotator has no key for this set yet: ${detail}`);
      return fail("unavailable", `the rotator's binding failed: ${detail}`);
    }
    // RPC hands back a plain object: check it like an HTTP body.
    const problem = validate(body, modelSet);
    if (problem !== null) return fail("bad_response", `rotator sent an invalid key document: ${problem}`);
    return freeze({ ...(body as KeyDocument) });
  }

  /** One request to the rotator: a valid document or the error describing what went wrong. */
  async function request(): Promise<KeyDocument | KeyClientError> {
    const fresh = freshNext;
    const outcome = binding ? await requestBinding(fresh) : await requestHttp(fresh);
    // A fresh read is asked until one succeeds.
    if (!(outcome instanceof KeyClientError)) freshNext = false;
    return outcome;
  }

  async function requestHttp(fresh: boolean): Promise<KeyDocument | KeyClientError> {
    let bearer: string;
    try {
      bearer = typeof token === "function" ? await token() : token!;
    } catch (err) {
      const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      return fail("unavailable", `the token function failed (${why.slice(0, 200)})`);
    }
    if (typeof bearer !== "string" || bearer === "" || /\s/.test(bearer)) {
      return fail("unavailable", "the token function did not return a non-empty string without whitespace");
    }
    lastToken = bearer;
    const headers: Record<string, string> = { Authorization: `Bearer ${bearer}`, Accept: "application/json" };
    if (fresh) headers["Cache-Control"] = "no-cache";
    const init: RequestInit = { method: "GET", headers };
    if (timeoutMs > 0 && typeof AbortSignal !== "undefined" && typeof AbortSignal.timeout === "function") {
      init.signal = AbortSignal.timeout(timeoutMs);
    }
    let res: Response;
    let text: string;
    try {
      res = await rotatorFetch(keyUrl, init);
      text = await res.text();
    } catch (err) {
      const name = err instanceof Error ? err.name : "";
      const why =
        name === "TimeoutError" || name === "AbortError"
          ? `no answer within ${timeoutMs} ms`
          : err instanceof Error
            ? `${err.name}: ${err.message}`
            : String(err);
      return fail("unavailable", `could not reach the rotator (${why.slice(0, 200)})`);
    }
    const status = res.status;
    if (status >= 200 && status < 300) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return fail("bad_response", `rotator answered HTTP ${status} with a body that is not JSON`, { status });
      }
      const problem = validate(body, modelSet);
      if (problem !== null) return fail("bad_response", `rotator sent an invalid key document: ${problem}`, { status });
      return freeze(body as KeyDocument);
    }
    const { code: errorCode, message } = errorBody(text);
    const detail = message ? `: ${message.slice(0, 200)}` : "";
    const retryAfter = parseRetryAfter(res.headers.get("Retry-After"), clock());
    const extra = retryAfter === undefined ? { status } : { status, retryAfter };
    if (status === 401 || status === 403) {
      return fail(
        "unauthorized",
        `rotator refused the token with HTTP ${status}${detail} (check the token and that it is granted this set)`,
        extra,
      );
    }
    if (status === 404) return fail("unknown_set", `rotator answered HTTP 404${detail} (unknown model set, or wrong url)`, extra);
    if (status === 503 && errorCode !== undefined && /^no_key/.test(errorCode)) {
      return fail("no_key_yet", `the rotator has no key for this set yet${detail}`, extra);
    }
    if (status === 408 || status === 429 || status >= 500) {
      return fail("unavailable", `rotator answered HTTP ${status}${detail}`, extra);
    }
    return fail("bad_response", `rotator answered unexpected HTTP ${status}${detail}`, extra);
  }

  function getKey(): Promise<KeyDocument> {
    const now = clock();
    if (held !== null && !held.rejected && now < held.deadline) return Promise.resolve(held.doc);
    if (inflight !== null) return inflight;
    if (failure !== null && now < failure.retryAt) {
      try {
        return Promise.resolve(fallback(failure.error, now));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const p = attempt();
    inflight = p;
    const clear = () => {
      if (inflight === p) inflight = null;
    };
    p.then(clear, clear);
    return p;
  }

  function invalidate(): void {
    if (held !== null) held.rejected = true;
    // The key was refused: the next request asks the rotator to bypass its caches.
    freshNext = true;
    // A rejection is news: cut any back-off short, but still ask the rotator at most
    // once per second after a failure.
    if (failure !== null) failure.retryAt = Math.min(failure.retryAt, failure.at + MIN_INTERVAL_MS);
  }

  async function fetchWithKey(input: Request | string | URL, init?: RequestInit): Promise<Response> {
    const first = await getKey();
    const send = await replayable(input, init, basetenFetch);
    const res = await send(first.api_key);
    if (res.status !== 401) return res;

    // Baseten rejected the key: it may have been revoked early (leak response).
    // Invalidate it unless it was fetched less than 1 s ago (then the rotator just
    // served it, and asking again at once would only hammer it), or unless another
    // caller already moved past it.
    const h = held;
    if (h !== null && h.doc.api_key === first.api_key && !h.rejected && clock() - h.fetchedAt >= MIN_INTERVAL_MS) {
      invalidate();
    }
    let fresh: KeyDocument;
    try {
      fresh = await getKey();
    } catch {
      return res;
    }
    if (fresh.api_key === first.api_key) return res;
    try {
      await res.body?.cancel();
    } catch {
      // ignore: the body is being discarded
    }
    return send(fresh.api_key);
  }

  return { getKey, invalidate, fetchWithKey };
}

function toFetch(value: FetchFunction | FetcherLike | undefined, name: string): FetchFunction {
  if (value === undefined) {
    if (typeof globalThis.fetch !== "function") {
      throw new TypeError(`createKeyClient: no global fetch; pass options.${name}`);
    }
    // Looked up at call time and called on globalThis (Workers throws "Illegal invocation" otherwise).
    return (input, init) => globalThis.fetch(input, init);
  }
  if (typeof value === "function") return value;
  if (value !== null && typeof value === "object" && typeof value.fetch === "function") {
    return (input, init) => value.fetch(input, init);
  }
  throw new TypeError(`createKeyClient: options.${name} must be a fetch function or an object with a fetch method`);
}

function optionalFunction<T>(value: T | undefined, name: string): T | undefined {
  if (value === undefined || typeof value === "function") return value;
  throw new TypeError(`createKeyClient: options.${name} must be a function`);
}

/** Why `body` is not a valid key document for `modelSet`, or null. Never echoes values. */
function validate(body: unknown, modelSet: string): string | null {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return "not a JSON object";
  const doc = body as Record<string, unknown>;
  if (typeof doc.api_key !== "string" || doc.api_key === "") return "api_key is missing or not a string";
  if (typeof doc.generation !== "number" || !Number.isFinite(doc.generation)) return "generation is missing or not a number";
  for (const field of ["refresh_at", "expires_at"] as const) {
    const value = doc[field];
    if (typeof value !== "string" || !ISO_DATE.test(value) || !Number.isFinite(Date.parse(value))) {
      return `${field} is missing or not an ISO date`;
    }
  }
  if (doc.model_set !== undefined && doc.model_set !== modelSet) return "model_set does not match the requested set";
  return null;
}

function freeze(doc: KeyDocument): KeyDocument {
  if (Array.isArray(doc.model_ids)) Object.freeze(doc.model_ids);
  return Object.freeze(doc);
}

function errorBody(text: string): { code?: string; message?: string } {
  try {
    const body: unknown = JSON.parse(text);
    if (body !== null && typeof body === "object") {
      const { error, message } = body as Record<string, unknown>;
      return {
        ...(typeof error === "string" ? { code: error } : {}),
        ...(typeof message === "string" ? { message } : typeof error === "string" ? { message: error } : {}),
      };
    }
  } catch {
    // not JSON
  }
  return {};
}

function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - now) / 1000)) : undefined;
}

/**
 * Returns `send(key)`, which can be called twice. The first call sends the request
 * as given; the second replays it. A ReadableStream or async-iterable body is
 * buffered into memory first; a Request input is cloned before the first send.
 */
async function replayable(
  input: Request | string | URL,
  init: RequestInit | undefined,
  fetchImpl: FetchFunction,
): Promise<(key: string) => Promise<Response>> {
  const withKey = (headersInit: HeadersInit | undefined, key: string): Headers => {
    const headers = new Headers(headersInit);
    headers.set("Authorization", `Api-Key ${key}`);
    return headers;
  };
  if (typeof Request !== "undefined" && input instanceof Request) {
    const base = init === undefined ? input : new Request(input, init);
    const spare = base.body === null ? null : base.clone();
    let sent = 0;
    return (key) => {
      const source = sent++ === 0 || spare === null ? base : spare;
      return fetchImpl(new Request(source, { headers: withKey(source.headers, key) }));
    };
  }
  let body: unknown = init?.body;
  if (isReadableStream(body)) {
    body = await new Response(body).arrayBuffer();
  } else if (isAsyncIterable(body)) {
    body = await collect(body);
  }
  return (key) => fetchImpl(input, { ...init, headers: withKey(init?.headers, key), body: body as RequestInit["body"] });
}

function isReadableStream(value: unknown): value is ReadableStream {
  return value !== null && typeof value === "object" && typeof (value as ReadableStream).getReader === "function";
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function"
  );
}

async function collect(chunks: AsyncIterable<unknown>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  const encoder = new TextEncoder();
  for await (const chunk of chunks) {
    const part =
      typeof chunk === "string"
        ? encoder.encode(chunk)
        : chunk instanceof ArrayBuffer
          ? new Uint8Array(chunk)
          : ArrayBuffer.isView(chunk)
            ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
            : null;
    if (part === null) throw new TypeError("fetchWithKey: unsupported chunk type in an async-iterable body");
    parts.push(part);
    length += part.byteLength;
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
