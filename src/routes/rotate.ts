/**
 * What the rotation webhook and the admin rotate route share: a bounded JSON body, the
 * rotation options, running the set inline and mapping its outcome to the contract (DESIGN §3).
 */
import type { Config } from "../config.ts";
import { SET_ID } from "../config.ts";
import type { Env } from "../env.ts";
import { deliverEvents } from "../events.ts";
import { fail, json } from "../http.ts";
import { redactSecrets } from "../log.ts";
import { iso } from "../document.ts";
import { type RunReport, type RunResult, type Trigger, createEngine, runSet } from "../rotation.ts";
import { redactReason } from "../reason.ts";

export const MAX_BODY_BYTES = 64 * 1024;
const MAX_REASON_LENGTH = 500;
const FIELDS = new Set(["model_set", "reason", "revoke_previous"]);

/** `application/json`, with or without parameters (charset). */
export function isJson(request: Request): boolean {
  const type = request.headers.get("content-type");
  return type !== null && /^application\/json\s*(;|$)/i.test(type.trim());
}

export function requireJson(request: Request): void {
  if (!isJson(request)) fail(415, "unsupported_media_type", "send the body as Content-Type: application/json");
}

/** The raw body, reading at most `limit` + 1 bytes: a larger body is refused, never buffered. */
export async function readBody(request: Request, limit = MAX_BODY_BYTES): Promise<Uint8Array> {
  const tooLarge = () => fail(413, "payload_too_large", `the body must be at most ${limit} bytes`);
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) tooLarge();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

export interface RotateRequest {
  model_set: string | undefined;
  reason: string | null;
  revokePrevious: boolean;
}

const invalid = (message: string): never => fail(400, "invalid_body", message);

/**
 * The body as a JSON object (strict UTF-8) with no field outside `fields` (unknown fields are
 * refused, not ignored), or 400 `invalid_body`. Shared with the admin revoke route.
 */
export function parseJsonObject(bytes: Uint8Array, message: string, fields: ReadonlySet<string>): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    invalid(message);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) invalid(message);
  const body = value as Record<string, unknown>;
  const unknown = Object.keys(body).filter((k) => !fields.has(k));
  if (unknown.length > 0) {
    const named = unknown.slice(0, 5).map((k) => JSON.stringify(k.slice(0, 40)));
    invalid(`unknown field(s): ${named.join(", ")}; allowed: ${[...fields].join(", ")}`);
  }
  return body;
}

/** `{"model_set", "reason"?, "revoke_previous"?}`; unknown fields are refused, not ignored. */
export function parseRotateBody(bytes: Uint8Array): RotateRequest {
  const body = parseJsonObject(bytes, "the body must be a JSON object", FIELDS);
  if (body.model_set !== undefined && typeof body.model_set !== "string") invalid("model_set must be a string");
  if (body.reason !== undefined && body.reason !== null && typeof body.reason !== "string") invalid("reason must be a string");
  if (typeof body.reason === "string" && body.reason.length > MAX_REASON_LENGTH)
    invalid(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  if (body.revoke_previous !== undefined && typeof body.revoke_previous !== "boolean") invalid("revoke_previous must be true or false");
  // A leak scanner may well quote the leaked key in its reason: the reason is echoed in the
  // response, the audit trail, the logs and events, so anything key-shaped is cut out first.
  const reason = typeof body.reason === "string" && body.reason.trim() !== "" ? redactSecrets(body.reason) : null;
  return { model_set: body.model_set as string | undefined, reason, revokePrevious: body.revoke_previous === true };
}

export interface RotateContext {
  env: Env;
  config: Config;
  ctx: ExecutionContext;
  clock: () => number;
}

/** A webhook delivery's claim on its id, turned into the answer in the rotation's own D1 batch. */
export interface ReceiptClaim {
  webhookId: string;
  claimedAt: number;
}

/** Runs `set` now (mint regardless of schedule) and answers per the contract; events go out after. */
export async function rotateNow(
  c: RotateContext,
  set: string,
  trigger: Trigger,
  req: RotateRequest,
  receipt?: ReceiptClaim,
): Promise<Response> {
  const setConfig = SET_ID.test(set) ? c.config.sets.get(set) : undefined;
  if (!setConfig) fail(404, "unknown_model_set", "no such model set");
  if (!setConfig.enabled)
    fail(409, "set_disabled", "the model set is disabled (enabled: false); enable it in MODEL_SETS to rotate it", { "retry-after": "60" });
  // The reason is stored, logged, sent and answered: the set's live secrets go first, in any form.
  if (req.reason !== null) req = { ...req, reason: await redactReason(c.env.DB, c.config.keyring, set, req.reason) };
  const engine = createEngine(c.config, c.env, c.clock);
  const result = await runSet(engine, set, {
    trigger,
    mint: "now",
    revokePrevious: req.revokePrevious,
    reason: req.reason,
    receipt: receipt && { ...receipt, render: (report) => JSON.stringify(rotationBody(report, trigger, req)) },
  });
  if (result.outcome !== "busy") deliverEvents(c.config, c.env.DB, result.events, c.ctx, { now: c.clock });
  return rotationResponse(result, trigger, req);
}

/** The 200 body of a rotation (DESIGN §3). */
export function rotationBody(r: RunReport, trigger: Trigger, req: RotateRequest) {
  const m = r.minted!;
  return {
    model_set: r.model_set,
    generation: m.generation,
    created_at: iso(m.created_at),
    refresh_at: iso(m.refresh_at),
    expires_at: iso(m.expires_at),
    replaced: r.replaced && { generation: r.replaced.generation, expires_at: iso(r.replaced.expires_at) },
    revoked: r.revoked,
    // Asked for (revoke_previous) and not yet confirmed gone at Baseten: the next cron tick revokes them.
    revoke_pending: r.revokePending,
    trigger,
    reason: req.reason,
  };
}

/** RunResult -> the contract's answer. Error messages are the engine's, already redacted. */
export function rotationResponse(result: RunResult, trigger: Trigger, req: RotateRequest): Response {
  switch (result.outcome) {
    case "busy":
      return fail(409, "rotation_in_progress", "another rotation of this set is running; retry after it", {
        "retry-after": String(result.retryAfterS),
      });
    case "rejected": {
      const f = result.failure!;
      const retry = f.retryAfterS ? { "retry-after": String(f.retryAfterS) } : undefined;
      const status = f.code === "rate_limited" ? 429 : f.code === "unknown_model_set" || f.code === "unknown_generation" ? 404 : 409;
      return fail(status, f.code, f.message, retry);
    }
    case "failed":
      if (result.failure?.code === "verify_failed") return fail(502, "verify_failed", result.failure.message);
      if (result.failure?.code.startsWith("upstream_")) return fail(502, "upstream_failed", result.failure.message);
      return fail(503, "rotation_failed", result.failure?.message ?? "the rotation failed", { "retry-after": "60" });
    case "noop":
      // Nothing was minted although a rotation was asked for (cannot happen with mint: "now").
      return fail(409, "rotation_in_progress", "the rotation did not run; retry in a minute", { "retry-after": "60" });
    case "rotated":
      return json(rotationBody(result, trigger, req));
  }
}
