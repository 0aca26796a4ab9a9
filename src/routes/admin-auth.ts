/**
 * Who may use the operator routes: `Authorization: Bearer <token>` with an admin token
 * (ADMIN_TOKEN, a space-separated list) or, for GET /metrics only, METRICS_TOKEN.
 *
 * Tokens are read from the env, not the parsed config, so status and metrics still admit
 * the operator when the rest of the configuration is invalid (exactly when they need it).
 * Both sides are hashed before a constant-time comparison, every token compared (no early exit).
 */
import { sha256Hex, timingSafeEqual } from "../crypto.ts";
import { usableAdminTokens, usableMetricsTokens } from "../config.ts";
import { type RequestContext, configInvalid, fail } from "../http.ts";

const CHALLENGE = { "www-authenticate": 'Bearer realm="baseten-key-rotator-admin"' };
/** The admin tokens: the config's list, or (config invalid) the list as far as ADMIN_TOKEN itself is sound. */
export function adminTokens(c: Pick<RequestContext, "env" | "loaded">): readonly string[] {
  return c.loaded.ok ? c.loaded.config.adminTokens : usableAdminTokens(c.env);
}

/** METRICS_TOKEN (a list), admitted by GET /metrics only: the config's, or (config invalid) the sound ones. */
export function metricsTokens(c: Pick<RequestContext, "env" | "loaded">): readonly string[] {
  return c.loaded.ok ? c.loaded.config.metricsTokens : usableMetricsTokens(c.env);
}

export type Principal = "admin" | "metrics";

/**
 * Admits an admin token (or, with `allowMetrics`, METRICS_TOKEN); 401 with a Bearer challenge
 * otherwise. With no usable token configured the route is off: 503 (config_invalid if that is why).
 */
export async function authenticateOperator(request: Request, c: RequestContext, allowMetrics = false): Promise<Principal> {
  const admins = adminTokens(c);
  const metrics = allowMetrics ? metricsTokens(c) : [];
  if (admins.length === 0 && metrics.length === 0) {
    if (!c.loaded.ok) configInvalid(c.loaded.problems.length);
    fail(
      503,
      "not_configured",
      allowMetrics
        ? "neither ADMIN_TOKEN nor METRICS_TOKEN is set: this route is turned off"
        : "ADMIN_TOKEN is not set: admin routes are turned off",
    );
  }
  const header = request.headers.get("authorization");
  if (header === null) fail(401, "unauthorized", "missing bearer token", CHALLENGE);
  const m = /^Bearer ([\x21-\x7e]{1,1024})$/i.exec(header);
  if (!m) fail(401, "unauthorized", "malformed Authorization header: expected 'Bearer <token>'", CHALLENGE);
  const given = await sha256Hex(m[1]!);
  const hashes = await Promise.all([...admins, ...metrics].map((t) => sha256Hex(t)));
  let who: Principal | null = null;
  hashes.forEach((h, i) => {
    if (timingSafeEqual(given, h)) who = i < admins.length ? "admin" : "metrics";
  });
  if (who === null) fail(401, "unauthorized", allowMetrics ? "invalid admin or metrics token" : "invalid admin token", CHALLENGE);
  return who;
}
