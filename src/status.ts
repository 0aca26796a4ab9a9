/**
 * The operator's view (GET /v1/admin/status, DESIGN §3): the one place that builds it.
 *
 *   sets             per set: config (enabled, team, model ids), the current key's generation and
 *                    times, the previous keys still live and when they go, a pending mint, the last
 *                    run; and for the page's timeline `history` (the newest generations with their
 *                    times, revoked ones included) and `failures` (failed runs of the last day)
 *   config_problems  the same list /healthz gives (status answers on an invalid config too)
 *   engine           the last cron tick and whether the cron looks stalled
 *   encryption       the key id sealing new data and how many stored ciphertexts each key sealed
 *   consumers        each consumer, its kind, grants and the generations it has fetched
 *   event_failures   subscribers whose last event delivery failed for good
 *
 * Never key material. Each live key shows its `prefix`: Baseten's public key id, the one thing
 * its UI and list call show, so an operator can find (or revoke by hand) that key.
 * D1: one batch (one round trip) of seven statements and, alongside it, the two reads of
 * `consumerStatus` (src/identity/tracking.ts); plus one KV list pass for `encryption`.
 */
import type { Config } from "./config.ts";
import { type ManagementKeyStatus, managementKeyStatus } from "./management-key.ts";
import { type EncryptionStatus, encryptionStatus } from "./reseal.ts";
import { type RequestContext, NO_STORE, json } from "./http.ts";
import { type DeliveryRow, type KeyRow, type SetStatusRow, decode, engineStatus } from "./ledger.ts";
import { consumerStatus } from "./identity/tracking.ts";
import { authenticateOperator } from "./routes/admin-auth.ts";

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** Generations per set in `history` (the page's timeline). */
export const HISTORY_PER_SET = 8;
/** Revoked generations stay in `history` this long; failed runs show for a day. */
const HISTORY_MS = 7 * 86_400_000;
const FAILURES_MS = 86_400_000;

export interface HistoryEntry {
  generation: number;
  state: string;
  created_at: string | null;
  refresh_at: string | null;
  replaced_at: string | null;
  /** The promise: when the key goes unless revoked earlier. */
  expires_at: string | null;
  revoked_at: string | null;
}

export interface SetStatus {
  model_set: string;
  /** Whether MODEL_SETS names the set; null while the configuration is invalid (unknown). */
  configured: boolean | null;
  enabled: boolean | null;
  team_id: string | null;
  model_ids: string[];
  generation: number | null;
  prefix: string | null;
  created_at: string | null;
  refresh_at: string | null;
  expires_at: string | null;
  previous: { generation: number; prefix: string | null; expires_at: string | null }[];
  /** A mint recorded and not finished (in flight, or left by a run that died). */
  pending: number | null;
  last_run: { trigger: string; outcome: string; error: string | null; at: string | null } | null;
  /** Newest first, at most HISTORY_PER_SET. */
  history: HistoryEntry[];
  /** Failed runs of the last 24 h, newest first. */
  failures: { at: string; trigger: string; error: string | null }[];
}

export interface ConsumerStatus {
  name: string;
  kind: string;
  model_sets: string[];
  seen: { model_set: string; generation: number; at: string; lagging: boolean }[];
}

export interface Status {
  generated_at: string;
  sets: SetStatus[];
  config_problems: string[];
  engine: { last_tick_at: string | null; stalled: boolean };
  encryption: EncryptionStatus | null;
  management_key: ManagementKeyStatus;
  consumers: ConsumerStatus[];
  event_failures: {
    subscriber: string;
    event_id: string;
    event_type: string;
    model_set: string;
    generation: number | null;
    attempts: number;
    error: string;
    at: string | null;
    last_success_at: string | null;
  }[];
}

/** GET /v1/admin/status (answers on an invalid configuration too: ADMIN_TOKEN alone admits). */
export async function statusRoute(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c);
  const loaded = c.loaded;
  const status = await buildStatus(c.env.DB, c.env.KEYS, loaded.ok ? loaded.config : null, loaded.ok ? [] : loaded.problems, c.now);
  return json(status, 200, NO_STORE);
}

type HistoryRow = Pick<KeyRow, "model_set" | "generation" | "state" | "created_at" | "refresh_at" | "expires_at" | "replaced_at"> & {
  revoked_at: number | null;
};

/**
 * Sets shown: every configured one, and every one D1 still holds live keys for (a set removed
 * from MODEL_SETS while its keys run out their promises). `config` is null when the
 * configuration is invalid: then only what D1 knows is shown.
 */
export async function buildStatus(
  db: D1Database,
  kv: KVNamespace,
  config: Config | null,
  configProblems: string[],
  now: number,
): Promise<Status> {
  // Consumers (identity: two D1 reads) alongside the batch, not after it.
  const consumers = config ? consumerStatus({ DB: db }, config, now) : Promise.resolve([]);
  consumers.catch(() => {}); // awaited below; no unhandled rejection if the batch fails first
  const engine = engineStatus(db, now);
  engine.catch(() => {}); // awaited below
  const encryption = config ? encryptionStatus(db, kv, config.keyring) : Promise.resolve(null);
  encryption.catch(() => {}); // awaited below
  const managementKey = managementKeyStatus(db);
  managementKey.catch(() => {}); // awaited below
  const [live, runs, failures, history, failedRuns] = await db.batch([
    db.prepare(
      "SELECT model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at FROM keys WHERE state IN ('pending', 'current', 'previous')",
    ),
    db.prepare("SELECT model_set, last_trigger, last_outcome, last_error, last_run_at FROM sets ORDER BY model_set"),
    db.prepare("SELECT * FROM event_deliveries WHERE failed_at IS NOT NULL ORDER BY failed_at DESC"),
    db
      .prepare(
        `SELECT model_set, generation, state, created_at, refresh_at, expires_at, replaced_at, revoked_at FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY model_set ORDER BY generation DESC) AS rn
           FROM keys WHERE state IN ('pending', 'current', 'previous') OR revoked_at >= ?1
         ) WHERE rn <= ?2 ORDER BY model_set, generation DESC`,
      )
      .bind(now - HISTORY_MS, HISTORY_PER_SET),
    db
      .prepare("SELECT model_set, trigger, reason, at FROM audit WHERE action = 'failed' AND at >= ?1 ORDER BY at DESC LIMIT 500")
      .bind(now - FAILURES_MS),
  ]);
  const rows = live!.results.map((r) => decode<KeyRow>(r));
  const runBySet = new Map((runs!.results as unknown as SetStatusRow[]).map((r) => [r.model_set, r]));
  const historyBySet = groupBy(history!.results as unknown as HistoryRow[]);
  const failuresBySet = groupBy(
    failedRuns!.results as unknown as { model_set: string; trigger: string; reason: string | null; at: number }[],
  );
  const ids = new Set<string>([...(config?.sets.keys() ?? []), ...rows.map((r) => r.model_set)]);

  const sets: SetStatus[] = [...ids].sort().map((id) => {
    const cfg = config?.sets.get(id);
    const mine = rows.filter((r) => r.model_set === id);
    const current = mine.find((r) => r.state === "current");
    const run = runBySet.get(id);
    return {
      model_set: id,
      configured: config ? cfg !== undefined : null,
      enabled: config ? cfg?.enabled === true : null,
      team_id: cfg ? (cfg.teamId ?? config!.teamId) : null,
      model_ids: cfg?.modelIds ?? current?.model_ids ?? [],
      generation: current?.generation ?? null,
      prefix: current?.prefix ?? null,
      created_at: iso(current?.created_at),
      refresh_at: iso(current?.refresh_at),
      expires_at: iso(current?.expires_at),
      previous: mine
        .filter((r) => r.state === "previous")
        .sort((a, b) => b.generation - a.generation)
        .map((r) => ({ generation: r.generation, prefix: r.prefix, expires_at: iso(r.expires_at) })),
      pending: mine.find((r) => r.state === "pending")?.generation ?? null,
      last_run: run?.last_outcome
        ? { trigger: run.last_trigger ?? "", outcome: run.last_outcome, error: run.last_error, at: iso(run.last_run_at) }
        : null,
      history: (historyBySet.get(id) ?? []).map((h) => ({
        generation: h.generation,
        state: h.state,
        created_at: iso(h.created_at),
        refresh_at: iso(h.refresh_at),
        replaced_at: iso(h.replaced_at),
        expires_at: iso(h.expires_at),
        revoked_at: iso(h.revoked_at),
      })),
      failures: (failuresBySet.get(id) ?? []).slice(0, 50).map((f) => ({ at: iso(f.at)!, trigger: f.trigger, error: f.reason })),
    };
  });

  return {
    generated_at: iso(now)!,
    sets,
    config_problems: configProblems,
    engine: await engine,
    encryption: await encryption,
    management_key: await managementKey,
    consumers: await consumers,
    event_failures: (failures!.results as unknown as DeliveryRow[]).map((f) => ({
      subscriber: f.origin,
      event_id: f.failed_event_id,
      event_type: f.failed_event_type,
      model_set: f.failed_model_set,
      generation: f.failed_generation,
      attempts: f.failed_attempts,
      error: f.failed_error,
      at: iso(f.failed_at),
      last_success_at: iso(f.last_success_at),
    })),
  };
}

function groupBy<T extends { model_set: string }>(rows: T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const r of rows) {
    let list = out.get(r.model_set);
    if (!list) out.set(r.model_set, (list = []));
    list.push(r);
  }
  return out;
}
