/**
 * HTTP plumbing shared by the routes: the one error type (`HttpError`, thrown by `fail` and
 * formatted once by `errorResponse`), JSON responses, the request context every handler gets,
 * bearer-token parsing.
 */
import type { Config, ConfigResult } from "./config.ts";
import type { Env } from "./env.ts";

export interface ErrorBody {
  error: string;
  message: string;
}

/** An answer other than 2xx, as the contract shapes it: `{"error": code, "message": text}` plus headers. */
export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Extra fields of the error body (e.g. what a partly failed revoke did). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Throws the contract's error shape `{"error": code, "message": text}` with optional headers. */
export function fail(status: number, code: string, message: string, headers?: Record<string, string>): never {
  throw new HttpError(status, code, message, headers);
}

export function json(body: unknown, status = 200, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

/** Responses carrying key material must never be stored by a cache on the way. */
export const NO_STORE = { "cache-control": "no-store" } as const;

/** The one place errors become responses; anything unexpected is a 500 without details. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError)
    return json({ error: err.code, message: err.message, ...err.extra } satisfies ErrorBody, err.status, err.headers);
  console.error(JSON.stringify({ level: "error", event: "http.unhandled", error: err instanceof Error ? err.name : "unknown" }));
  return json({ error: "internal", message: "internal error" } satisfies ErrorBody, 500);
}

/**
 * What every route handler gets besides the request (app.ts builds it once per request).
 * `config` is the valid configuration: reading it while the configuration is invalid throws
 * 503 `config_invalid` (every route fails closed); the few routes that answer on an invalid
 * configuration too (/healthz, status, metrics, the page) read `loaded` instead.
 */
export interface RequestContext {
  env: Env;
  readonly config: Config;
  loaded: ConfigResult;
  /** The request's time (ms since the epoch), read once from `clock`. */
  now: number;
  clock: () => number;
  ctx: ExecutionContext;
  /** Path parameters of the route (`/v1/keys/:set` -> `set`), as written in the URL. */
  params: Record<string, string>;
}

export const configInvalid = (problems: number): never =>
  fail(503, "config_invalid", `the configuration is invalid: ${problems} problem(s); see /healthz`);

/** The token of a single `Authorization: Bearer <token>` header, or null (the scheme is case-insensitive, RFC 9110 §11.1). */
export function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  if (!header) return null;
  const m = /^Bearer +([A-Za-z0-9._~+/=-]{1,512})$/i.exec(header);
  return m ? m[1]! : null;
}
