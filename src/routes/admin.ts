/**
 * Admin routes (`Authorization: Bearer $ADMIN_TOKEN`):
 *   POST /v1/admin/rotate/{set}  rotate now (same options and answers as the webhook)
 * (GET /v1/admin/status is src/status.ts.)
 */
import { type RequestContext, fail } from "../http.ts";
import { authenticateOperator } from "./admin-auth.ts";
import { type RotateRequest, parseRotateBody, readBody, requireJson, rotateNow } from "./rotate.ts";

export async function adminRotate(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const raw = await readBody(request);
  let req: RotateRequest = { model_set: undefined, reason: null, revokePrevious: false };
  // The body is optional here: the set is in the path.
  if (raw.byteLength > 0) {
    requireJson(request);
    req = parseRotateBody(raw);
  }
  const set = c.params.set!;
  if (req.model_set !== undefined && req.model_set !== set)
    fail(400, "invalid_body", "model_set in the body must match the set in the path");
  return rotateNow(c, set, "admin", req);
}
