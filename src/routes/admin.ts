/**
 * Admin routes (`Authorization: Bearer $ADMIN_TOKEN`):
 *   POST /v1/admin/rotate/{set}  rotate now (same options and answers as the webhook)
 * (GET /v1/admin/status is src/status.ts.)
 */
import { sha256Hex, timingSafeEqual } from "../crypto.ts";
import { fail } from "../http.ts";
import { type RotateContext, type RotateRequest, parseRotateBody, readBody, requireJson, rotateNow } from "./rotate.ts";

const CHALLENGE = { "www-authenticate": 'Bearer realm="baseten-key-rotator-admin"' };

const notConfigured = (): never => fail(503, "not_configured", "ADMIN_TOKEN is not set: admin routes are turned off");

/** Hashing both sides first makes the comparison constant-time in the token's length too. */
export async function authenticateAdmin(request: Request, adminToken: string): Promise<void> {
  const header = request.headers.get("authorization");
  if (header === null) fail(401, "unauthorized", "missing admin bearer token", CHALLENGE);
  const m = /^Bearer ([\x21-\x7e]{1,1024})$/i.exec(header);
  if (!m) fail(401, "unauthorized", "malformed Authorization header: expected 'Bearer <token>'", CHALLENGE);
  const [given, expected] = await Promise.all([sha256Hex(m[1]!), sha256Hex(adminToken)]);
  if (!timingSafeEqual(given, expected)) fail(401, "unauthorized", "invalid admin token", CHALLENGE);
}

export async function adminRotate(request: Request & { params: Record<string, string> }, c: RotateContext): Promise<Response> {
  if (!c.config.adminToken) notConfigured();
  await authenticateAdmin(request, c.config.adminToken!);
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
