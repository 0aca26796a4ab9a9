/**
 * HTTP plumbing shared by the routes: JSON responses, errors thrown as StatusError and
 * formatted once (in the router's `catch`), bearer-token parsing.
 */
import { StatusError } from "itty-router";

export interface ErrorBody {
  error: string;
  message: string;
}

/** Throws the contract's error shape `{"error": code, "message": text}` with optional headers. */
export function fail(status: number, code: string, message: string, headers?: Record<string, string>): never {
  throw new StatusError(status, { error: code, message, headers });
}

export function json(body: unknown, status = 200, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

/** Responses carrying key material must never be stored by a cache on the way. */
export const NO_STORE = { "cache-control": "no-store" } as const;

/** The one place errors become responses; anything unexpected is a 500 without details. */
export function errorResponse(err: unknown): Response {
  if (err instanceof StatusError) {
    const e = err as StatusError & { error?: string; headers?: Record<string, string> };
    return json({ error: e.error ?? "error", message: e.message } satisfies ErrorBody, e.status, e.headers);
  }
  console.error(JSON.stringify({ level: "error", event: "http.unhandled", error: err instanceof Error ? err.name : "unknown" }));
  return json({ error: "internal", message: "internal error" } satisfies ErrorBody, 500);
}

/** The token of a single `Authorization: Bearer <token>` header, or null (the scheme is case-insensitive, RFC 9110 §11.1). */
export function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  if (!header) return null;
  const m = /^Bearer +([A-Za-z0-9._~+/=-]{1,512})$/i.exec(header);
  return m ? m[1]! : null;
}
