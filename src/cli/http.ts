/// <reference types="node" />
/**
 * The command line's calls to the rotator: one function, `call`, that adds the admin token,
 * bounds the wait, and turns every answer into either the parsed JSON body or a `RequestFailed`
 * (exit 1) whose message never holds a token.
 */

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

/** A request that did not succeed: exit 1. `body` is the route's JSON body when there was one. */
export class RequestFailed extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly body: unknown,
  ) {
    super(message);
  }
}

export interface Target {
  url: string;
  token: string | null;
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** Base URL: `--url`, else BKR_URL; a trailing `/` dropped. */
export function baseUrl(flag: string | undefined, command: string): string {
  const raw = flag ?? process.env.BKR_URL ?? "";
  if (!raw) throw new UsageError("no rotator URL: set BKR_URL (or pass --url https://<your-worker>)", command);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`not a URL: ${raw}`, command);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new UsageError(`the rotator URL must be http(s): ${raw}`, command);
  return url.toString().replace(/\/+$/, "");
}

/** Admin token: `--token`, else BKR_ADMIN_TOKEN (the first of a space-separated list). Never printed. */
export function adminToken(flag: string | undefined, command: string): string {
  const raw = (flag ?? process.env.BKR_ADMIN_TOKEN ?? "").trim().split(/\s+/)[0] ?? "";
  if (!raw)
    throw new UsageError(
      "no admin token: set BKR_ADMIN_TOKEN (or pass --token; the environment keeps it out of your shell history)",
      command,
    );
  return raw;
}

export async function call(
  target: Target,
  method: string,
  path: string,
  opts: { body?: unknown; headers?: Record<string, string>; rawBody?: string; timeoutMs?: number } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { accept: "application/json", ...opts.headers };
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  let body: string | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["content-type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, {
      method,
      headers,
      body,
      signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      redirect: "manual",
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why =
      e.name === "TimeoutError"
        ? `no answer within ${(opts.timeoutMs ?? 30_000) / 1000} s`
        : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw new RequestFailed(`${method} ${target.url}${path}: request failed: ${why}`, null, null);
  }
  const text = await res.text();
  let parsed: unknown = null;
  if (text !== "") {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!res.ok) {
    const b = parsed as { error?: unknown; message?: unknown } | null;
    const code = typeof b?.error === "string" ? b.error : null;
    const message = typeof b?.message === "string" ? b.message : null;
    let hint = "";
    if (res.status === 401) hint = target.token ? " (the admin token was refused: check BKR_ADMIN_TOKEN)" : "";
    const retry = res.headers.get("retry-after");
    const detail = code
      ? `${code}${message ? `: ${message}` : ""}`
      : parsed === null
        ? text.slice(0, 200).replace(/\s+/g, " ") || "no body"
        : JSON.stringify(parsed).slice(0, 300);
    throw new RequestFailed(
      `${method} ${path}: HTTP ${res.status} ${detail}${retry ? ` (retry after ${retry} s)` : ""}${hint}`,
      res.status,
      parsed,
    );
  }
  if (parsed === null && text !== "")
    throw new RequestFailed(`${method} ${path}: HTTP ${res.status} but the body is not JSON`, res.status, null);
  return { status: res.status, headers: res.headers, body: parsed };
}
