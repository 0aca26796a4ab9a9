/**
 * Consumer tracking (DESIGN §3.1): per consumer and set, the highest generation it has fetched
 * and when it first fetched that one (D1 `consumer_seen`).
 *
 * The read path calls `noteServed` for every answer it serves, the hot path included: a Map
 * lookup and a comparison, nothing else. Only a generation this location has not recorded yet
 * for that consumer and set costs a D1 write, and that write goes through `waitUntil`, after the
 * response. So: at most one D1 write per consumer, set and generation per location (a failed
 * write is retried by a later request), never on the response path.
 *
 * `consumerStatus` is what `/v1/admin/status` shows under `consumers`, and `laggingEvents` the
 * `consumer.lagging` events a cron tick sends (once per consumer, set and generation).
 */
import type { Config } from "../config.ts";
import { log } from "../log.ts";
import type { Identity } from "./index.ts";
import { listManaged } from "./managed.ts";

/** A consumer is lagging when it is still on a replaced key this long after that key's refresh_at. */
export const LAGGING_AFTER_MS = 5 * 60_000;

type Recorded = Map<string, Map<string, number>>;
const recorded = new WeakMap<Config, Recorded>();

function recordedOf(config: Config): Recorded {
  let r = recorded.get(config);
  if (!r) recorded.set(config, (r = new Map()));
  return r;
}

/** D1 writes `noteServed` started at this location (tests read it). */
export let trackingWrites = 0;

/** Called for every key served to `identity`: schedules the D1 write when the generation is new here. */
export function noteServed(
  db: D1Database,
  config: Config,
  identity: Identity,
  set: string,
  generation: number,
  now: number,
  waitUntil: ((p: Promise<unknown>) => void) | undefined,
): void {
  const r = recordedOf(config);
  for (const m of identity.members) {
    let sets = r.get(m.name);
    const have = sets?.get(set) ?? 0;
    if (have >= generation) continue;
    if (!m.modelSets.includes(set)) continue;
    if (!sets) r.set(m.name, (sets = new Map()));
    sets.set(set, generation);
    if (!waitUntil) continue;
    trackingWrites++;
    const name = m.name;
    waitUntil(
      recordSeen(db, name, set, generation, now).catch((err) => {
        // Let a later request try again.
        if (sets!.get(set) === generation) sets!.set(set, have);
        log("warn", "consumer.track_failed", {
          consumer: name,
          model_set: set,
          error: err instanceof Error ? err.message.slice(0, 120) : "unknown",
        });
      }),
    );
  }
}

/** Records that `consumer` fetched `generation` of `set` at `at`: only ever raises the generation. */
export async function recordSeen(db: D1Database, consumer: string, set: string, generation: number, at: number): Promise<void> {
  await db
    .prepare(
      `INSERT INTO consumer_seen (consumer, model_set, generation, first_at) VALUES (?1, ?2, ?3, ?4)
       ON CONFLICT (consumer, model_set) DO UPDATE SET generation = excluded.generation, first_at = excluded.first_at
       WHERE excluded.generation > consumer_seen.generation`,
    )
    .bind(consumer, set, generation, at)
    .run();
}

interface SeenRow {
  consumer: string;
  model_set: string;
  generation: number;
  first_at: number;
  lagging_notified: number | null;
  /** Of the key the consumer holds. */
  refresh_at: number | null;
  /** The set's current generation. */
  current: number | null;
}

async function seenRows(db: D1Database): Promise<SeenRow[]> {
  const { results } = await db
    .prepare(
      `SELECT s.consumer, s.model_set, s.generation, s.first_at, s.lagging_notified, k.refresh_at,
              (SELECT c.generation FROM keys c WHERE c.model_set = s.model_set AND c.state = 'current') AS current
       FROM consumer_seen s LEFT JOIN keys k ON k.model_set = s.model_set AND k.generation = s.generation`,
    )
    .all<SeenRow>();
  return results;
}

const isLagging = (r: SeenRow, now: number) =>
  r.current !== null && r.generation < r.current && r.refresh_at !== null && now >= r.refresh_at + LAGGING_AFTER_MS;

export interface ConsumerStatus {
  name: string;
  kind: "token" | "oidc" | "binding" | "managed";
  model_sets: string[];
  seen: { model_set: string; generation: number; at: string; lagging: boolean }[];
}

/** `consumers` of `/v1/admin/status`: every configured and managed consumer, with what it fetched. Two D1 queries. */
export async function consumerStatus(env: { DB: D1Database }, config: Config, now: number): Promise<ConsumerStatus[]> {
  const [rows, managed] = await Promise.all([seenRows(env.DB), listManaged(env.DB)]);
  const byConsumer = new Map<string, SeenRow[]>();
  for (const r of rows) byConsumer.set(r.consumer, [...(byConsumer.get(r.consumer) ?? []), r]);
  const configured = new Set(config.consumers.map((c) => c.name));
  const all: { name: string; kind: ConsumerStatus["kind"]; modelSets: string[] }[] = [
    ...config.consumers.map((c) => ({ name: c.name, kind: c.kind, modelSets: c.modelSets })),
    ...managed.filter((m) => !configured.has(m.name)).map((m) => ({ name: m.name, kind: "managed" as const, modelSets: m.modelSets })),
  ];
  return all
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((c) => ({
      name: c.name,
      kind: c.kind,
      model_sets: c.modelSets,
      seen: (byConsumer.get(c.name) ?? [])
        .filter((r) => c.modelSets.includes(r.model_set))
        .sort((a, b) => a.model_set.localeCompare(b.model_set))
        .map((r) => ({
          model_set: r.model_set,
          generation: r.generation,
          at: new Date(r.first_at).toISOString(),
          lagging: isLagging(r, now),
        })),
    }));
}

/** A `consumer.lagging` event, in the shape src/events.ts delivers (RotationEvent). */
export interface LaggingEvent {
  type: "consumer.lagging";
  model_set: string;
  generation: number;
  at: number;
  trigger: "cron";
  data: { consumer: string; held_generation: number; current_generation: number; refresh_at: string };
}

/**
 * The consumers that became lagging since the last call, each marked in D1 so the event goes out
 * once per consumer, set and generation (the mark and the event: one UPDATE per new laggard).
 * For the cron: `deliverEvents(config, env.DB, await laggingEvents(env.DB, config, now), ctx)`.
 */
export async function laggingEvents(db: D1Database, config: Config, now: number): Promise<LaggingEvent[]> {
  const rows = (await seenRows(db)).filter((r) => isLagging(r, now) && r.lagging_notified !== r.generation);
  const granted = new Map(config.consumers.map((c) => [c.name, c.modelSets]));
  for (const m of await listManaged(db)) if (!granted.has(m.name)) granted.set(m.name, m.modelSets);
  const events: LaggingEvent[] = [];
  for (const r of rows) {
    if (!granted.get(r.consumer)?.includes(r.model_set)) continue;
    // Only the location whose UPDATE changed the row sends the event.
    const res = await db
      .prepare(
        "UPDATE consumer_seen SET lagging_notified = ?1 WHERE consumer = ?2 AND model_set = ?3 AND generation = ?1 AND (lagging_notified IS NULL OR lagging_notified <> ?1)",
      )
      .bind(r.generation, r.consumer, r.model_set)
      .run();
    if (res.meta.changes === 0) continue;
    events.push({
      type: "consumer.lagging",
      model_set: r.model_set,
      generation: r.current!,
      at: now,
      trigger: "cron",
      data: {
        consumer: r.consumer,
        held_generation: r.generation,
        current_generation: r.current!,
        refresh_at: new Date(r.refresh_at!).toISOString(),
      },
    });
  }
  return events;
}
