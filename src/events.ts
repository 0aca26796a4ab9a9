/**
 * Events out (EVENT_WEBHOOKS): after `key.rotated`, `key.revoked` and `rotation.failed`, and
 * `rotation.overdue` (a set's rotation more than 5 minutes overdue: once per set and generation,
 * found by `afterTick`), a Standard-Webhooks-signed POST to every subscriber that wants the type.
 *
 * Fire-and-forget through `ctx.waitUntil`: a rotation never waits for, or fails because of,
 * a receiver. Each delivery is retried a few times with backoff, every attempt under a
 * timeout; the webhook-id stays the same across retries (receivers dedupe on it) and the
 * signature is made afresh per attempt (receivers check the timestamp against their clock).
 * A delivery that fails for good is logged and recorded for /v1/admin/status.
 * Payloads carry set, generation, times and trigger: never a key.
 */
import type { Config, EventSubscriber } from "./config.ts";
import { randomId, sha256Hex, signWebhook } from "./crypto.ts";
import { recordDeliveryFailure, recordDeliverySuccess } from "./ledger.ts";
import { log, redactSecrets } from "./log.ts";
import type { RotationEvent, RunResult } from "./rotation.ts";

export interface DeliveryOptions {
  /** Attempts per subscriber and event (first try included). */
  attempts: number;
  /** Wait before the second attempt; doubled before each later one. */
  backoffMs: number;
  timeoutMs: number;
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<void>;
  /** Time recorded with failures (the app's clock); signatures always use the wall clock. */
  now: () => number;
}

export const DELIVERY_DEFAULTS: DeliveryOptions = {
  attempts: 3,
  backoffMs: 300,
  // 3 x 5 s + backoff stays well inside the 30 s waitUntil grants after the response.
  timeoutMs: 5_000,
  fetch: (input, init) => fetch(input, init),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  now: Date.now,
};

/** Every event this worker sends: the engine's, and the ones the operator views find. */
export type OutboundEvent = Omit<RotationEvent, "type"> & { type: RotationEvent["type"] | "rotation.overdue" | "consumer.lagging" };

export interface EventPayload {
  type: OutboundEvent["type"];
  timestamp: string;
  data: { model_set: string; generation: number | null; trigger: string } & Record<string, unknown>;
}

export function eventPayload(event: OutboundEvent): EventPayload {
  return {
    type: event.type,
    timestamp: new Date(event.at).toISOString(),
    data: { model_set: event.model_set, generation: event.generation, trigger: event.trigger, ...event.data },
  };
}

const wants = (sub: EventSubscriber, type: string) => sub.events.length === 0 || sub.events.includes(type);

/** The part of a subscriber URL safe to show and log: URLs often carry a credential in path or query. */
export const subscriberOrigin = (url: string) => new URL(url).origin;

/** Schedules delivery of `events` to every interested subscriber; returns at once. */
export function deliverEvents(
  config: Config,
  db: D1Database | null,
  events: OutboundEvent[],
  ctx: ExecutionContext,
  options: Partial<DeliveryOptions> = {},
): void {
  if (config.events.length === 0 || events.length === 0) return;
  const opts = { ...DELIVERY_DEFAULTS, ...options };
  const jobs: Promise<void>[] = [];
  for (const event of events) {
    const id = `evt_${randomId(24)}`;
    const body = JSON.stringify(eventPayload(event));
    for (const sub of config.events) if (wants(sub, event.type)) jobs.push(deliver(sub, id, event, body, db, opts));
  }
  if (jobs.length > 0) ctx.waitUntil(Promise.allSettled(jobs).then(() => undefined));
}

/** The events of a tick's (or queue batch's) runs; a busy run did nothing and has none. */
export function dispatchRunEvents(
  config: Config,
  db: D1Database | null,
  results: RunResult[],
  ctx: ExecutionContext,
  options: Partial<DeliveryOptions> = {},
): void {
  const events = results.flatMap((r) => (r.outcome === "busy" ? [] : r.events));
  deliverEvents(config, db, events, ctx, options);
}

async function deliver(
  sub: EventSubscriber,
  id: string,
  event: OutboundEvent,
  body: string,
  db: D1Database | null,
  opts: DeliveryOptions,
): Promise<void> {
  let error = "";
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    if (attempt > 1) await opts.sleep(opts.backoffMs * 2 ** (attempt - 2));
    error = await attemptOnce(sub, id, body, opts);
    if (error === "") {
      if (db) await recordDeliverySuccess(db, await sha256Hex(sub.url), opts.now()).catch(() => {});
      return;
    }
  }
  const origin = subscriberOrigin(sub.url);
  log("warn", "event.delivery_failed", {
    subscriber: origin,
    event_id: id,
    event_type: event.type,
    model_set: event.model_set,
    generation: event.generation,
    attempts: opts.attempts,
    error,
  });
  if (!db) return;
  await recordDeliveryFailure(db, {
    subscriber: await sha256Hex(sub.url),
    origin,
    at: opts.now(),
    eventId: id,
    eventType: event.type,
    modelSet: event.model_set,
    generation: event.generation,
    attempts: opts.attempts,
    error,
  }).catch((err) => log("warn", "event.record_failed", { subscriber: origin, error: redactSecrets(String(err)).slice(0, 200) }));
}

/** One signed POST; returns "" on a 2xx, else a short reason (never the secret or the URL). */
async function attemptOnce(sub: EventSubscriber, id: string, body: string, opts: DeliveryOptions): Promise<string> {
  const timestamp = Math.floor(Date.now() / 1000);
  try {
    const res = await opts.fetch(sub.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "baseten-key-rotator",
        "webhook-id": id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": await signWebhook(sub.secret, id, timestamp, body),
      },
      body,
      // A redirect would send the signed event somewhere the operator did not configure.
      redirect: "manual",
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    await res.body?.cancel().catch(() => {});
    return res.status >= 200 && res.status < 300 ? "" : `HTTP ${res.status}`;
  } catch (err) {
    if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return `timeout after ${opts.timeoutMs} ms`;
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return redactSecrets(text.replaceAll(sub.url, subscriberOrigin(sub.url))).slice(0, 200);
  }
}

// --- after every cron tick ------------------------------------------------------------------

/** A rotation this late (past the current key's refresh_at) is an incident worth an event. */
export const OVERDUE_AFTER_MS = 5 * 60_000;
/** Notices older than this are pruned (a generation overdue for a month has long been seen). */
const NOTICE_RETENTION_MS = 30 * 86_400_000;

/**
 * Called by the cron after each tick (src/index.ts): returns one `rotation.overdue` event
 * per enabled set whose current key is more than 5 minutes past its refresh_at, once per set and
 * generation (`overdue_notices` remembers which were sent). One D1 statement, one more batch when
 * some set is newly overdue. (The tick itself records `last_tick_at`: src/ledger.ts tickSnapshot.)
 */
export async function afterTick(config: Config, db: D1Database, now: number): Promise<OutboundEvent[]> {
  const overdue = await db
    .prepare(
      `SELECT k.model_set, k.generation, k.refresh_at FROM keys k
         WHERE k.state = 'current' AND k.refresh_at < ?1
           AND NOT EXISTS (SELECT 1 FROM overdue_notices o WHERE o.model_set = k.model_set AND o.generation = k.generation)`,
    )
    .bind(now - OVERDUE_AFTER_MS)
    .all();
  const due = (overdue.results as { model_set: string; generation: number; refresh_at: number }[]).filter(
    (r) => config.sets.get(r.model_set)?.enabled === true,
  );
  if (due.length === 0) return [];
  const statements: D1PreparedStatement[] = [db.prepare("DELETE FROM overdue_notices WHERE at < ?1").bind(now - NOTICE_RETENTION_MS)];
  for (let i = 0; i < due.length; i += 30) {
    const chunk = due.slice(i, i + 30);
    statements.push(
      db
        .prepare(
          `INSERT INTO overdue_notices (model_set, generation, at) VALUES ${chunk.map((_, j) => `(?${j * 2 + 2}, ?${j * 2 + 3}, ?1)`).join(", ")} ON CONFLICT DO NOTHING RETURNING model_set, generation`,
        )
        .bind(now, ...chunk.flatMap((r) => [r.model_set, r.generation])),
    );
  }
  const inserted = new Set(
    (await db.batch(statements))
      .slice(1)
      .flatMap((r) => (r.results as { model_set: string; generation: number }[]).map((x) => `${x.model_set}:${x.generation}`)),
  );
  return due
    .filter((r) => inserted.has(`${r.model_set}:${r.generation}`))
    .map((r) => ({
      type: "rotation.overdue" as const,
      model_set: r.model_set,
      generation: r.generation,
      at: now,
      trigger: "cron" as const,
      data: { refresh_at: new Date(r.refresh_at).toISOString(), overdue_seconds: Math.floor((now - r.refresh_at) / 1000) },
    }));
}
