/**
 * POST /v1/admin/revoke/{set} (admin token): emergency revoke of named non-current generations,
 * or of every previous one, at Baseten now (DESIGN §3). The current key is never revoked this
 * way (409 `is_current`: rotate with `revoke_previous` instead).
 *
 * Body: `{"generations": [3, 5]}` or `{"all_previous": true}`, optional `"reason"`.
 * 200 `{"model_set", "revoked": [...], "reason"}` (`revoked`: what this call revoked; already
 * revoked or abandoned generations are skipped). 400 bad body, 401, 404 unknown set or
 * `unknown_generation`, 409 `is_current` / `rotation_in_progress`, 413, 415, 502 Baseten failing.
 * The whole request is checked, under the set's lease, before anything is revoked.
 */
import { SET_ID } from "../config.ts";
import { deliverEvents } from "../events.ts";
import { type RequestContext, HttpError, fail, json } from "../http.ts";
import { redactSecrets } from "../log.ts";
import { redactReason } from "../reason.ts";
import { createEngine, runSet } from "../rotation.ts";
import { authenticateOperator } from "./admin-auth.ts";
import { parseJsonObject, readBody, requireJson } from "./rotate.ts";

const FIELDS = new Set(["generations", "all_previous", "reason"]);
const MAX_GENERATIONS = 100;
const MAX_REASON_LENGTH = 500;

export type RevokeTarget = { generations: number[] } | { allPrevious: true };

export interface RevokeRequest {
  revoke: RevokeTarget;
  reason: string | null;
}

const invalid = (message: string): never => fail(400, "invalid_body", message);

export function parseRevokeBody(bytes: Uint8Array): RevokeRequest {
  const body = parseJsonObject(bytes, 'the body must be a JSON object: {"generations": [..]} or {"all_previous": true}', FIELDS);
  const hasList = body.generations !== undefined;
  const hasAll = body.all_previous !== undefined;
  if (hasList === hasAll) invalid('give exactly one of "generations" (a list) or "all_previous": true');
  if (body.reason !== undefined && body.reason !== null && typeof body.reason !== "string") invalid("reason must be a string");
  if (typeof body.reason === "string" && body.reason.length > MAX_REASON_LENGTH)
    invalid(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  // The reason goes to the answer, the audit trail, logs and events: nothing key-shaped survives.
  const reason = typeof body.reason === "string" && body.reason.trim() !== "" ? redactSecrets(body.reason) : null;
  if (hasAll) {
    if (body.all_previous !== true) invalid("all_previous must be true (or leave it out and name generations)");
    return { revoke: { allPrevious: true }, reason };
  }
  const list = body.generations;
  if (!Array.isArray(list) || list.length === 0) return invalid("generations must be a non-empty list of generation numbers");
  if (list.length > MAX_GENERATIONS) invalid(`generations may name at most ${MAX_GENERATIONS} generations`);
  for (const g of list)
    if (!Number.isSafeInteger(g) || (g as number) < 1)
      invalid(`generations must be whole numbers from 1, got ${JSON.stringify(g).slice(0, 40)}`);
  return { revoke: { generations: [...new Set(list as number[])].sort((a, b) => a - b) }, reason };
}

export async function revokeRoute(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  requireJson(request);
  const req = parseRevokeBody(await readBody(request));
  const set = c.params.set!;
  const config = c.config;
  // A set removed from MODEL_SETS whose keys still run out their promises can be revoked too.
  const known =
    SET_ID.test(set) &&
    (config.sets.has(set) ||
      (await c.env.DB.prepare("SELECT 1 FROM keys WHERE model_set = ?1 AND state IN ('pending', 'current', 'previous') LIMIT 1")
        .bind(set)
        .first()) !== null);
  if (!known) fail(404, "unknown_model_set", "no such model set");
  // Checked here first so a refused request writes nothing (no lease taken, no run recorded);
  // the engine checks again under the lease, which decides when a rotation races this one.
  const nothingToDo = await precheck(c.env.DB, set, req.revoke);
  if (nothingToDo) return json({ model_set: set, revoked: [], reason: req.reason });

  // A reason never carries a live key's secret in any form (DESIGN §4): redacted before it is stored or sent.
  if (req.reason !== null) req.reason = await redactReason(c.env.DB, config.keyring, set, req.reason);
  const engine = createEngine(config, c.env, c.clock);
  const result = await runSet(engine, set, { trigger: "admin", mint: false, revoke: req.revoke, reason: req.reason });
  if (result.outcome === "busy")
    fail(409, "rotation_in_progress", "another run of this set is in progress; retry after it", {
      "retry-after": String(result.retryAfterS),
    });
  deliverEvents(config, c.env.DB, result.events, c.ctx, { now: c.clock });
  const failure = result.failure;
  if (failure?.code === "is_current") fail(409, "is_current", failure.message);
  if (failure?.code === "unknown_generation") fail(404, "unknown_generation", failure.message);
  if (failure) {
    const upstream = failure.code.startsWith("upstream_");
    throw new HttpError(
      upstream ? 502 : 503,
      upstream ? "upstream_failed" : "revoke_failed",
      failure.message,
      upstream ? {} : { "retry-after": "60" },
      { model_set: set, revoked: result.revoked },
    );
  }
  if (result.revokePending.length > 0) {
    // Baseten did not confirm every delete: the revocation is recorded (revoke_at) and the next
    // tick retries it; the caller learns which generations are still live.
    const pending = result.revokePending.join(", ");
    throw new HttpError(
      502,
      "upstream_failed",
      `Baseten did not confirm the delete of generation ${pending}; it stays recorded for revocation and the next cron tick retries`,
      {},
      {
        model_set: set,
        revoked: result.revoked,
        revoke_pending: result.revokePending,
      },
    );
  }
  return json({ model_set: set, revoked: result.revoked, reason: req.reason });
}

/**
 * The request against D1 as it stands: unknown generations 404, the current one (or one being
 * minted) 409. Returns true when there is nothing left to revoke (all named ones already gone, or
 * no previous key at all), so the answer needs no run.
 */
async function precheck(db: D1Database, set: string, target: RevokeTarget): Promise<boolean> {
  const named = "generations" in target ? target.generations : [];
  const { results } = await db
    .prepare(
      `SELECT generation, state FROM keys WHERE model_set = ?1 AND (state IN ('pending', 'current', 'previous')${named.length ? ` OR generation IN (${named.map((_, i) => `?${i + 2}`).join(", ")})` : ""})`,
    )
    .bind(set, ...named)
    .all<{ generation: number; state: string }>();
  const state = new Map(results.map((r) => [r.generation, r.state]));
  if (!("generations" in target)) return ![...state.values()].includes("previous");
  const unknown = named.filter((g) => !state.has(g));
  if (unknown.length > 0) fail(404, "unknown_generation", `model set ${set} has no generation ${unknown.join(", ")}`);
  const live = named.filter((g) => state.get(g) === "current" || state.get(g) === "pending");
  if (live.length > 0)
    fail(409, "is_current", `generation ${live.join(", ")} is the current key (or being minted): rotate with revoke_previous instead`);
  return !named.some((g) => state.get(g) === "previous");
}
