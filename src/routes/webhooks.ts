/**
 * POST /v1/webhooks/rotate: rotation on demand from a signed Standard Webhook (leak scanner,
 * incident runbook, deploy pipeline).
 *
 * Order matters: 415/413 (headers and size only), then the signature over the raw bytes,
 * then idempotency by webhook-id, and only then is the body parsed. Everything after the
 * receipt claim ends in exactly one of: the answer stored (2xx, 400: final, a redelivery gets
 * it back and mints nothing) or the claim dropped (404, 409, 429, 5xx: a retry runs anew; an
 * unknown set stores nothing, so a leaked secret cannot fill D1 with receipts).
 *
 * A rotation writes its receipt in the same D1 batch as its promote (src/ledger.ts, promote):
 * once the new key is current, this id is answered from D1 even if storing the final answer
 * below fails, so a redelivered revoke_previous never revokes the key its first delivery minted.
 */
import { errorResponse, fail } from "../http.ts";
import { claimReceipt, releaseReceipt, storeReceipt } from "../ledger.ts";
import { errorText, log } from "../log.ts";
import { LEASE_MS } from "../rotation.ts";
import { verifyWebhook } from "../webhook-signature.ts";
import { type RotateContext, parseRotateBody, readBody, requireJson, rotateNow } from "./rotate.ts";

/** Redeliveries are answered from the receipt for at least 24 h; receipts are pruned after 48 h. */
export const RECEIPT_RETENTION_MS = 48 * 3_600_000;
/** A claim older than this belongs to a request that died (a rotation ends inside one lease). */
const CLAIM_STALE_MS = 2 * LEASE_MS;
/** A claim is normally held for one rotation: seconds. */
const IN_PROGRESS_RETRY_S = 5;

const isFinal = (status: number) => (status >= 200 && status < 300) || status === 400;

export async function rotationWebhook(request: Request, c: RotateContext): Promise<Response> {
  const secrets = c.config.webhookSecrets;
  if (secrets.length === 0) fail(503, "not_configured", "WEBHOOK_SECRET is not set: rotation webhooks are turned off");
  requireJson(request);
  const raw = await readBody(request);
  const now = c.clock();
  const verified = await verifyWebhook(secrets, request.headers, raw, now);
  if (!verified.ok) fail(401, "invalid_signature", verified.reason);
  const id = verified.id;

  const claim = await claimReceipt(c.env.DB, id, now, CLAIM_STALE_MS);
  if (claim.kind === "stored") {
    return new Response(claim.body, {
      status: claim.status,
      headers: { "content-type": "application/json; charset=utf-8", "idempotent-replayed": "true" },
    });
  }
  if (claim.kind === "in_progress") {
    fail(409, "rotation_in_progress", "a delivery with this webhook-id is being processed; retry to get its answer", {
      "retry-after": String(IN_PROGRESS_RETRY_S),
    });
  }

  let response: Response;
  try {
    const req = parseRotateBody(raw);
    if (req.model_set === undefined) fail(400, "invalid_body", "model_set is required");
    response = await rotateNow(c, req.model_set, "webhook", req, { webhookId: id, claimedAt: now });
  } catch (err) {
    response = errorResponse(err);
  }
  try {
    if (isFinal(response.status))
      await storeReceipt(c.env.DB, id, now, response.status, await response.clone().text(), now - RECEIPT_RETENTION_MS);
    else await releaseReceipt(c.env.DB, id, now);
  } catch (err) {
    // The answer still goes out. An unstored final answer means a redelivery after the claim
    // goes stale runs again; a claim left behind answers 409 until then.
    log("warn", "webhook.receipt_failed", { webhook_id: id, status: response.status, error: errorText(err) });
  }
  log("info", "webhook.rotate", { webhook_id: id, status: response.status });
  return response;
}
