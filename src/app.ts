/**
 * The HTTP application: routes, the config gate and error formatting, wired once.
 * Middleware that returns nothing passes the request on; one that returns a Response ends it.
 */
import { type IRequest, Router } from "itty-router";
import { type Config, loadConfig } from "./config.ts";
import type { Env } from "./env.ts";
import { errorResponse, fail } from "./http.ts";
import { adminRotate, adminStatus } from "./routes/admin.ts";
import { createConsumer, deleteConsumer, listConsumers } from "./routes/consumers.ts";
import { health } from "./routes/health.ts";
import { getKey, getKeyFromMemory, listKeys } from "./routes/keys.ts";
import { rotationWebhook } from "./routes/webhooks.ts";

export interface AppOptions {
  /** Milliseconds since the epoch; tests move it. */
  clock?: () => number;
}

type Args = [Env, ExecutionContext];
type Handler = (request: IRequest, env: Env, config: Config, now: number, ctx: ExecutionContext) => Promise<Response> | Response;

/** The routes and the methods they allow (405 + Allow for any other method). */
const ROUTES: { pattern: RegExp; allow: string }[] = [
  { pattern: /^\/healthz$/, allow: "GET" },
  { pattern: /^\/v1\/keys$/, allow: "GET" },
  { pattern: /^\/v1\/keys\/[^/]+$/, allow: "GET" },
  { pattern: /^\/v1\/webhooks\/rotate$/, allow: "POST" },
  { pattern: /^\/v1\/admin\/rotate\/[^/]+$/, allow: "POST" },
  { pattern: /^\/v1\/admin\/status$/, allow: "GET" },
  { pattern: /^\/v1\/admin\/consumers$/, allow: "GET, POST" },
  { pattern: /^\/v1\/admin\/consumers\/[^/]+$/, allow: "DELETE" },
];

/** An absolute URL whose path is exactly /v1/keys/{set id}, without query or fragment. */
const KEY_URL = /^https?:\/\/[^/?#]+\/v1\/keys\/([a-z0-9][a-z0-9-]{0,31})$/;

export function createApp(options: AppOptions = {}) {
  const clock = options.clock ?? Date.now;
  /** Every route but /healthz fails closed on an invalid configuration. */
  const configOf = (env: Env): Config => {
    const result = loadConfig(env);
    if (!result.ok) fail(503, "config_invalid", `the configuration is invalid: ${result.problems.length} problem(s); see /healthz`);
    return result.config;
  };
  const withConfig =
    (handler: Handler) =>
    (request: IRequest, env: Env, ctx: ExecutionContext): Promise<Response> | Response =>
      handler(request, env, configOf(env), clock(), ctx);

  const router = Router<IRequest, Args>({ catch: errorResponse });
  router
    .get("/healthz", (request, env) => health(request, env))
    .get("/v1/keys", withConfig((request, env, config, now, ctx) => listKeys(request, env, config, now, ctx)))
    .get("/v1/keys/:set", withConfig((request, env, config, now, ctx) => getKey(request, env, config, now, request.params.set!, ctx)))
    .post("/v1/webhooks/rotate", withConfig((request, env, config, _now, ctx) => rotationWebhook(request, { env, config, ctx, clock })))
    .post("/v1/admin/rotate/:set", withConfig((request, env, config, _now, ctx) => adminRotate(request as IRequest & { params: Record<string, string> }, { env, config, ctx, clock })))
    .post("/v1/admin/consumers", withConfig((request, env, config, now) => createConsumer(request, env, config, now)))
    .get("/v1/admin/consumers", withConfig((request, env, config) => listConsumers(request, env, config)))
    .delete("/v1/admin/consumers/:name", withConfig((request, env, config, now) => deleteConsumer(request, env, config, now, request.params.name!)))
    // Not behind the config gate: it authenticates with ADMIN_TOKEN alone and reports the config problems.
    .get("/v1/admin/status", (request, env) => adminStatus(request, env))
    .all("*", (request) => {
      const path = new URL(request.url).pathname;
      const route = ROUTES.find((r) => r.pattern.test(path));
      if (route) fail(405, "method_not_allowed", `use ${route.allow}`, { allow: route.allow });
      fail(404, "not_found", "no such route");
    });
  // The hot path: every consumer's GET /v1/keys/{set} skips the router (no URL object, no route
  // scan); anything the pattern does not take exactly (query, trailing slash, odd set id) goes
  // through the router, which answers it as before. Measured in bench/ (README, Performance).
  const keyRoute = (request: Request, env: Env, set: string, ctx: ExecutionContext): Response | Promise<Response> => {
    try {
      const config = configOf(env);
      const now = clock();
      return getKeyFromMemory(request, env, config, now, set, ctx) ?? getKey(request, env, config, now, set, ctx).catch(errorResponse);
    } catch (err) {
      return errorResponse(err);
    }
  };
  return {
    fetch: (request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> => {
      if (request.method === "GET") {
        const m = KEY_URL.exec(request.url);
        if (m) return keyRoute(request, env, m[1]!, ctx);
      }
      return router.fetch(request, env, ctx) as Promise<Response>;
    },
  };
}
