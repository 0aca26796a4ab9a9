/**
 * Managed consumers (DESIGN §3, admin token):
 *   POST   /v1/admin/consumers          {"name", "model_sets", "reason"?} -> 201 {"name", "model_sets", "token"}
 *   GET    /v1/admin/consumers          -> 200 {"consumers": [{"name", "kind", "model_sets"}]}
 *   DELETE /v1/admin/consumers/{name}   -> 200 {"name", "deleted": true}
 *
 * The token is returned once (Cache-Control: no-store) and only its SHA-256 is stored. Names
 * never collide with configured consumers (409). Each change writes audit rows
 * (`consumer_created` / `consumer_deleted`, one per granted set, `consumer` = the name) in the
 * same D1 batch as the change. The location that made the change forgets its snapshot at once;
 * every other location sees it within 60 s (identity/managed.ts).
 */
import { sha256Hex, toBase64 } from "../crypto.ts";
import { NO_STORE, type RequestContext, fail, json } from "../http.ts";
import { configuredNames, forgetRemembered } from "../identity/index.ts";
import {
  MANAGED_NAME,
  type ManagedConsumer,
  deleteManaged,
  dropManagedSnapshot,
  insertManaged,
  listManaged,
  managedByName,
} from "../identity/managed.ts";
import { authenticateOperator } from "./admin-auth.ts";

const MAX_BODY_BYTES = 8 * 1024;
const BODY_FIELDS = new Set(["name", "model_sets", "reason"]);

async function readJson(request: Request): Promise<unknown> {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) fail(415, "unsupported_media_type", "send the body as Content-Type: application/json");
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) fail(413, "payload_too_large", `the body must be at most ${MAX_BODY_BYTES} bytes`);
  const reader = request.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      fail(413, "payload_too_large", `the body must be at most ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.byteLength;
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    return fail(400, "invalid_body", "the body is not valid JSON");
  }
}

const audit = (
  db: D1Database,
  action: "consumer_created" | "consumer_deleted",
  name: string,
  sets: string[],
  reason: string | null,
  at: number,
  guardExists: boolean,
) =>
  sets.map((set) =>
    guardExists
      ? db
          .prepare(
            "INSERT INTO audit (model_set, generation, action, trigger, reason, consumer, at) SELECT ?1, NULL, ?2, 'admin', ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM managed_consumers WHERE name = ?4)",
          )
          .bind(set, action, reason, name, at)
      : db
          .prepare(
            "INSERT INTO audit (model_set, generation, action, trigger, reason, consumer, at) VALUES (?1, NULL, ?2, 'admin', ?3, ?4, ?5)",
          )
          .bind(set, action, reason, name, at),
  );

export async function createConsumer(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const { env, config, now } = c;
  const body = await readJson(request);
  if (body === null || typeof body !== "object" || Array.isArray(body))
    fail(400, "invalid_body", "the body must be a JSON object {name, model_sets}");
  const b = body as Record<string, unknown>;
  for (const field of Object.keys(b)) if (!BODY_FIELDS.has(field)) fail(400, "invalid_body", `unknown field "${field.slice(0, 40)}"`);
  const name = b.name;
  if (typeof name !== "string" || !MANAGED_NAME.test(name)) fail(400, "invalid_name", "name must match ^[a-z0-9][a-z0-9-]{0,63}$");
  const sets = b.model_sets;
  if (!Array.isArray(sets) || sets.length === 0 || !sets.every((s) => typeof s === "string"))
    fail(400, "invalid_body", "model_sets must be a non-empty array of set ids");
  for (const s of sets as string[])
    if (!config.sets.has(s)) fail(400, "unknown_model_set", `model_sets names a set that is not configured: "${s.slice(0, 40)}"`);
  const reason = b.reason;
  if (reason !== undefined && (typeof reason !== "string" || reason.length > 200))
    fail(400, "invalid_body", "reason must be a string of at most 200 characters");
  if (configuredNames(config).has(name as string)) fail(409, "consumer_exists", "a configured consumer has that name");
  const modelSets = [...new Set(sets as string[])];
  const token = `bkr_${toBase64(crypto.getRandomValues(new Uint8Array(32)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "")}`;
  const consumer: ManagedConsumer = { name: name as string, tokenSha256: await sha256Hex(token), modelSets, createdAt: now };
  try {
    await insertManaged(
      env.DB,
      consumer,
      audit(env.DB, "consumer_created", consumer.name, modelSets, (reason as string | undefined) ?? null, now, false),
    );
  } catch (err) {
    if (err instanceof Error && /UNIQUE|constraint/i.test(err.message)) fail(409, "consumer_exists", "a managed consumer has that name");
    throw err;
  }
  dropManagedSnapshot(config);
  return json({ name: consumer.name, model_sets: modelSets, token }, 201, NO_STORE);
}

export async function listConsumers(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const { env, config } = c;
  const configured = configuredNames(config);
  const managed = (await listManaged(env.DB)).filter((m) => !configured.has(m.name));
  const consumers = [
    ...config.consumers.map((c) => ({ name: c.name, kind: c.kind, model_sets: c.modelSets })),
    ...managed.map((m) => ({ name: m.name, kind: "managed" as const, model_sets: m.modelSets })),
  ].sort((a, b) => a.name.localeCompare(b.name));
  return json({ consumers }, 200, NO_STORE);
}

export async function deleteConsumer(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const { env, config, now } = c;
  const rawName = c.params.name!;
  let name: string;
  try {
    name = decodeURIComponent(rawName);
  } catch {
    return fail(400, "invalid_name", "name must match ^[a-z0-9][a-z0-9-]{0,63}$");
  }
  if (configuredNames(config).has(name))
    fail(409, "configured_consumer", "that consumer is configured in CONSUMERS: remove it there and redeploy");
  if (!MANAGED_NAME.test(name)) fail(400, "invalid_name", "name must match ^[a-z0-9][a-z0-9-]{0,63}$");
  const existing = await managedByName(env.DB, name);
  if (!existing) fail(404, "unknown_consumer", "no managed consumer has that name");
  const deleted = await deleteManaged(env.DB, name, audit(env.DB, "consumer_deleted", name, existing!.modelSets, null, now, true));
  if (!deleted) fail(404, "unknown_consumer", "no managed consumer has that name");
  // This location stops accepting the token at once; the others within 60 s.
  dropManagedSnapshot(config);
  forgetRemembered(config);
  return json({ name, deleted: true }, 200);
}
