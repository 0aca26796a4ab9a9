/**
 * Admin routes (`Authorization: Bearer $ADMIN_TOKEN`):
 *   POST /v1/admin/rotate/{set}  rotate now (same options and answers as the webhook)
 *   GET  /v1/admin/status        per-set state, config problems, event delivery failures
 *
 * Status answers even when the rest of the configuration is invalid, as long as ADMIN_TOKEN
 * itself is usable: that is exactly when an operator needs it. It then shows what D1 knows
 * plus the config problems (the same list /healthz gives).
 */
import { loadConfig, usableAdminTokens } from "../config.ts";
import { sha256Hex, timingSafeEqual } from "../crypto.ts";
import type { Env } from "../env.ts";
import { NO_STORE, fail, json } from "../http.ts";
import { managementKeyStatus } from "../management-key.ts";
import { encryptionStatus } from "../reseal.ts";
import { buildStatus } from "../status.ts";
import { type RotateContext, type RotateRequest, parseRotateBody, readBody, requireJson, rotateNow } from "./rotate.ts";

const CHALLENGE = { "www-authenticate": 'Bearer realm="baseten-key-rotator-admin"' };

const notConfigured = (): never => fail(503, "not_configured", "ADMIN_TOKEN is not set: admin routes are turned off");

/** Hashing both sides first makes the comparison constant-time in the token's length too; any listed token admits. */
export async function authenticateAdmin(request: Request, adminTokens: readonly string[]): Promise<void> {
  const header = request.headers.get("authorization");
  if (header === null) fail(401, "unauthorized", "missing admin bearer token", CHALLENGE);
  const m = /^Bearer ([\x21-\x7e]{1,1024})$/i.exec(header);
  if (!m) fail(401, "unauthorized", "malformed Authorization header: expected 'Bearer <token>'", CHALLENGE);
  const [given, ...expected] = await Promise.all([sha256Hex(m[1]!), ...adminTokens.map(sha256Hex)]);
  let match = false;
  for (const e of expected) if (timingSafeEqual(given!, e)) match = true; // no early exit
  if (!match) fail(401, "unauthorized", "invalid admin token", CHALLENGE);
}

export async function adminRotate(request: Request & { params: Record<string, string> }, c: RotateContext): Promise<Response> {
  if (c.config.adminTokens.length === 0) notConfigured();
  await authenticateAdmin(request, c.config.adminTokens);
  const raw = await readBody(request);
  let req: RotateRequest = { model_set: undefined, reason: null, revokePrevious: false };
  // The body is optional here: the set is in the path.
  if (raw.byteLength > 0) {
    requireJson(request);
    req = parseRotateBody(raw);
  }
  const set = request.params.set!;
  if (req.model_set !== undefined && req.model_set !== set) fail(400, "invalid_body", "model_set in the body must match the set in the path");
  return rotateNow(c, set, "admin", req);
}

export async function adminStatus(request: Request, env: Env): Promise<Response> {
  const result = loadConfig(env);
  const tokens = result.ok ? result.config.adminTokens : usableAdminTokens(env);
  if (tokens.length === 0) {
    if (!result.ok) fail(503, "config_invalid", `the configuration is invalid: ${result.problems.length} problem(s); see /healthz`);
    notConfigured();
  }
  await authenticateAdmin(request, tokens);
  const config = result.ok ? result.config : null;
  const status = await buildStatus(env.DB, config, result.ok ? [] : result.problems);
  // TODO(lead): move into src/status.ts (operators), with each set's `team_id`
  // (config.sets.get(id)?.teamId ?? config.teamId). Issue #11: what sealed the stored keys
  // (key ids only) and whether Baseten last accepted the management key.
  const [encryption, managementKey] = await Promise.all([config ? encryptionStatus(env.DB, env.KEYS, config.keyring) : null, managementKeyStatus(env.DB)]);
  return json({ ...status, encryption, management_key: managementKey }, 200, NO_STORE);
}
