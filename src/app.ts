/**
 * The HTTP application: one route table, read top to bottom.
 *
 * Each row is a method, a path (`:name` is a path parameter, taken as written in the URL), its
 * handler, and whether it answers on an invalid configuration (`open`: /healthz, status,
 * metrics, the page). Everything else fails closed with 503 `config_invalid`. The table alone
 * decides the answers no handler gives: `HEAD` on a `GET` row runs that row and drops the body,
 * a path some row has with another method is 405 with `Allow` (from the table), any other is 404.
 *
 * The hot path: a row with `fast` (GET /v1/keys/{set}) is also matched on the raw URL, before
 * the URL is parsed or the table scanned; `fast` answers from isolate memory without a promise,
 * or returns null and the row's handler answers. Anything the raw pattern does not take exactly
 * (query, trailing slash, odd set id) goes the ordinary way. Measured in bench/ (README, Performance).
 *
 * Routes owned elsewhere keep their own parameter lists for now; their rows adapt them.
 */
import { type ConfigResult, loadConfig } from "./config.ts";
import type { Env } from "./env.ts";
import { HttpError, type RequestContext, configInvalid, errorResponse } from "./http.ts";
import { adminRotate } from "./routes/admin.ts";
import { auditRoute } from "./routes/audit.ts";
import { createConsumer, deleteConsumer, listConsumers } from "./routes/consumers.ts";
import { health } from "./routes/health.ts";
import { getKey, getKeyFromMemory, listKeys } from "./routes/keys.ts";
import { metricsRoute } from "./routes/metrics.ts";
import { pageIconRoute, pageRoute, pageScriptRoute, pageStyleRoute } from "./routes/page.ts";
import { revokeRoute } from "./routes/revoke.ts";
import { rotationWebhook } from "./routes/webhooks.ts";
import { statusRoute } from "./status.ts";

export interface AppOptions {
  /** Milliseconds since the epoch; tests move it. */
  clock?: () => number;
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
export type Handler = (request: Request, c: RequestContext) => Response | Promise<Response>;

export interface Route {
  method: Method;
  path: string;
  handler: Handler;
  /** Answers on an invalid configuration too (the handler reads `c.loaded`, never `c.config`). */
  open?: boolean;
  /** The hot path's answer without I/O, or null to run `handler`. */
  fast?: (request: Request, c: RequestContext) => Response | null;
}

/** Every route of the worker (DESIGN §3). New routes are one row here. */
export const ROUTES: Route[] = [
  { method: "GET", path: "/healthz", open: true, handler: (_r, c) => health(c) },
  { method: "GET", path: "/v1/keys", handler: listKeys },
  {
    method: "GET",
    path: "/v1/keys/:set",
    handler: getKey,
    fast: getKeyFromMemory,
  },
  { method: "POST", path: "/v1/webhooks/rotate", handler: rotationWebhook },
  { method: "POST", path: "/v1/admin/rotate/:set", handler: adminRotate },
  { method: "POST", path: "/v1/admin/revoke/:set", handler: revokeRoute },
  { method: "GET", path: "/v1/admin/status", open: true, handler: statusRoute },
  { method: "GET", path: "/v1/admin/audit", handler: auditRoute },
  { method: "GET", path: "/v1/admin/consumers", handler: listConsumers },
  { method: "POST", path: "/v1/admin/consumers", handler: createConsumer },
  { method: "DELETE", path: "/v1/admin/consumers/:name", handler: deleteConsumer },
  { method: "GET", path: "/metrics", open: true, handler: metricsRoute },
  { method: "GET", path: "/admin", open: true, handler: pageRoute },
  { method: "GET", path: "/admin/app.js", open: true, handler: pageScriptRoute },
  { method: "GET", path: "/admin/app.css", open: true, handler: pageStyleRoute },
  { method: "GET", path: "/admin/favicon.svg", open: true, handler: pageIconRoute },
];

/** What the hot path's raw-URL pattern takes for a parameter: exactly the ids the routes serve. */
const FAST_PARAM: Record<string, string> = { set: "[a-z0-9][a-z0-9-]{0,31}" };

interface Compiled {
  route: Route;
  /** On the pathname: parameters are any non-empty segment; trailing slashes are the same resource. */
  pattern: RegExp;
  names: string[];
}

function compile(route: Route): Compiled {
  const names: string[] = [];
  const source = route.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:(\w+)/g, (_m, name: string) => {
    names.push(name);
    return "([^/]+?)";
  });
  return { route, pattern: new RegExp(`^${source}/*$`), names };
}

function compileFast(route: Route): { route: Route; url: RegExp; names: string[] } {
  const names: string[] = [];
  const source = route.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:(\w+)/g, (_m, name: string) => {
    names.push(name);
    const p = FAST_PARAM[name];
    if (!p) throw new Error(`no fast pattern for :${name}`);
    return `(${p})`;
  });
  return { route, url: new RegExp(`^https?:\\/\\/[^/?#]+${source.replaceAll("/", "\\/")}$`), names };
}

class Context implements RequestContext {
  constructor(
    readonly env: Env,
    readonly loaded: ConfigResult,
    readonly now: number,
    readonly clock: () => number,
    readonly ctx: ExecutionContext,
    readonly params: Record<string, string>,
  ) {}
  get config() {
    const l = this.loaded;
    return l.ok ? l.config : configInvalid(l.problems.length);
  }
}

export function createApp(options: AppOptions = {}, routes: Route[] = ROUTES) {
  const clock = options.clock ?? Date.now;
  const table = routes.map(compile);
  const fast = routes.filter((r) => r.fast).map(compileFast);

  const params = (names: string[], m: RegExpExecArray): Record<string, string> => {
    const out: Record<string, string> = {};
    for (let i = 0; i < names.length; i++) out[names[i]!] = m[i + 1]!;
    return out;
  };

  /** Runs one row: the config gate, then its fast answer or its handler; every error answered here. */
  const run = (
    route: Route,
    request: Request,
    env: Env,
    ctx: ExecutionContext,
    p: Record<string, string>,
    useFast: boolean,
  ): Response | Promise<Response> => {
    try {
      const loaded = loadConfig(env);
      if (!route.open && !loaded.ok) configInvalid(loaded.problems.length);
      const c = new Context(env, loaded, clock(), clock, ctx, p);
      const quick = useFast ? route.fast!(request, c) : null;
      if (quick) return quick;
      const res = route.handler(request, c);
      return res instanceof Response ? res : res.catch(errorResponse);
    } catch (err) {
      return errorResponse(err);
    }
  };

  const routed = (request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> => {
    const path = new URL(request.url).pathname;
    const method = request.method;
    const head = method === "HEAD";
    const methods: string[] = [];
    for (const { route, pattern, names } of table) {
      const m = pattern.exec(path);
      if (!m) continue;
      if (route.method === method || (head && route.method === "GET")) {
        const res = run(route, request, env, ctx, params(names, m), false);
        return head ? withoutBody(res) : res;
      }
      methods.push(route.method);
    }
    if (methods.length > 0) {
      const allow = [...new Set(methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])))].join(", ");
      return errorResponse(new HttpError(405, "method_not_allowed", `use ${allow}`, { allow }));
    }
    return errorResponse(new HttpError(404, "not_found", "no such route"));
  };

  return {
    fetch: (request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> => {
      if (request.method === "GET") {
        for (const f of fast) {
          const m = f.url.exec(request.url);
          if (m) return run(f.route, request, env, ctx, params(f.names, m), true);
        }
      }
      return routed(request, env, ctx);
    },
  };
}

/** HEAD: the GET answer's status and headers, no body (uptime checkers; RFC 9110 §9.3.2). */
function withoutBody(res: Response | Promise<Response>): Response | Promise<Response> {
  const strip = (r: Response) => {
    void r.body?.cancel().catch(() => {});
    return new Response(null, { status: r.status, statusText: r.statusText, headers: r.headers });
  };
  return res instanceof Response ? strip(res) : res.then(strip);
}
