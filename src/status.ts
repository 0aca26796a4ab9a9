/**
 * The operator's view (GET /v1/admin/status): per set, the current key's generation and times,
 * the previous keys still live and when they go, the last run, and event delivery failures.
 *
 * Never key material. Each live key shows its `prefix`: Baseten's public key id, the one
 * thing its UI and list call show, so an operator can find (or revoke by hand) that key.
 */
import type { Config } from "./config.ts";
import { deliveryFailures, engineStatus, liveRows, setStatuses } from "./ledger.ts";

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

export interface SetStatus {
  model_set: string;
  /** Whether MODEL_SETS names the set; null while the configuration is invalid (unknown). */
  configured: boolean | null;
  enabled: boolean | null;
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
}

/**
 * Sets shown: every configured one, and every one D1 still holds live keys for (a set removed
 * from MODEL_SETS while its keys run out their promises). `config` is null when the
 * configuration is invalid: then only what D1 knows is shown.
 */
// TODO(lead): pass the app's clock as `now` (admin route) so tests with a moved clock see the same time.
export async function buildStatus(db: D1Database, config: Config | null, configProblems: string[], now = Date.now()) {
  const [rows, runs, failures, engine] = await Promise.all([liveRows(db), setStatuses(db), deliveryFailures(db), engineStatus(db, now)]);
  const ids = new Set<string>([...(config?.sets.keys() ?? []), ...rows.map((r) => r.model_set)]);
  const runBySet = new Map(runs.map((r) => [r.model_set, r]));
  const sets: SetStatus[] = [...ids].sort().map((id) => {
    const cfg = config?.sets.get(id);
    const mine = rows.filter((r) => r.model_set === id);
    const current = mine.find((r) => r.state === "current");
    const run = runBySet.get(id);
    return {
      model_set: id,
      configured: config ? cfg !== undefined : null,
      enabled: config ? cfg?.enabled === true : null,
      model_ids: cfg?.modelIds ?? (current?.model_ids ?? []),
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
      last_run: run?.last_outcome ? { trigger: run.last_trigger ?? "", outcome: run.last_outcome, error: run.last_error, at: iso(run.last_run_at) } : null,
    };
  });
  return {
    sets,
    config_problems: configProblems,
    engine,
    event_failures: failures.map((f) => ({
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
