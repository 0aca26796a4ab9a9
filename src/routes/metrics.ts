/**
 * GET /metrics (METRICS_TOKEN or an admin token): Prometheus text exposition, version 0.0.4.
 *
 *   bkr_key_generation{model_set}                 generation of the current key
 *   bkr_key_age_seconds{model_set}                since the current key was minted
 *   bkr_key_refresh_in_seconds{model_set}         until its refresh_at (negative while overdue)
 *   bkr_live_keys{model_set}                      keys D1 holds as not revoked or abandoned
 *   bkr_rotations_total{model_set,outcome}        mints (outcome="rotated", the first key included)
 *                                                 and failed runs (outcome="failed")
 *   bkr_last_tick_age_seconds                     since the last cron tick (+Inf: none recorded)
 *   bkr_consumer_generation_lag{consumer,model_set} current generation minus the highest the consumer fetched
 *   bkr_config_problems                           problems in the configuration (0: valid)
 *
 * Computed from D1 in one batch (one round trip) of four statements, whatever the number of sets:
 * the live key rows, the per-set action counts (`audit_counts`, kept by a trigger on the audit
 * table), the last tick and consumer tracking (`consumer_seen`, src/identity/tracking.ts). Answers on an invalid configuration too (then from what D1 knows).
 */
import type { Config } from "../config.ts";
import { type RequestContext, NO_STORE } from "../http.ts";
import { authenticateOperator } from "./admin-auth.ts";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

interface LiveRow {
  model_set: string;
  generation: number;
  state: string;
  created_at: number;
  refresh_at: number | null;
}

export async function metricsRoute(request: Request, c: RequestContext): Promise<Response> {
  await authenticateOperator(request, c, true);
  const loaded = c.loaded;
  const text = await renderMetrics(c.env.DB, loaded.ok ? loaded.config : null, loaded.ok ? 0 : loaded.problems.length, c.now);
  return new Response(text, { status: 200, headers: { "content-type": CONTENT_TYPE, ...NO_STORE } });
}

/** Label values escaped as the text format wants (backslash, double quote, line feed). */
const esc = (v: string) => v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(",")}}`;
const num = (n: number) => (Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : n > 0 ? "+Inf" : "-Inf");

class Exposition {
  private out: string[] = [];
  family(name: string, type: "gauge" | "counter", help: string, samples: [Record<string, string>, number][]) {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) this.out.push(`${name}${Object.keys(l).length ? labels(l) : ""} ${num(v)}`);
  }
  text() {
    return `${this.out.join("\n")}\n`;
  }
}

export async function renderMetrics(db: D1Database, config: Config | null, configProblems: number, now: number): Promise<string> {
  const [live, counts, tick, seen] = await db.batch([
    db.prepare("SELECT model_set, generation, state, created_at, refresh_at FROM keys WHERE state IN ('pending', 'current', 'previous')"),
    db.prepare("SELECT model_set, action, n FROM audit_counts WHERE action IN ('minted', 'failed')"),
    db.prepare("SELECT value AS at FROM meta WHERE name = 'last_tick_at'"),
    // Per consumer and set, the highest generation fetched; managed consumers' grants come along.
    db.prepare(
      "SELECT s.consumer, s.model_set, s.generation, m.model_sets AS managed_sets FROM consumer_seen s LEFT JOIN managed_consumers m ON m.name = s.consumer",
    ),
  ]);
  const rows = live!.results as unknown as LiveRow[];
  const sets = [...new Set([...(config?.sets.keys() ?? []), ...rows.map((r) => r.model_set)])].sort();
  const current = new Map(rows.filter((r) => r.state === "current").map((r) => [r.model_set, r]));
  const liveCount = new Map<string, number>();
  for (const r of rows) liveCount.set(r.model_set, (liveCount.get(r.model_set) ?? 0) + 1);
  const count = new Map(
    (counts!.results as { model_set: string; action: string; n: number }[]).map((r) => [`${r.model_set}\n${r.action}`, r.n]),
  );
  const lastTick = (tick!.results[0] as { at: number } | undefined)?.at ?? null;

  const m = new Exposition();
  const withKey = sets.filter((s) => current.has(s));
  m.family(
    "bkr_key_generation",
    "gauge",
    "Generation of the set's current key.",
    withKey.map((s) => [{ model_set: s }, current.get(s)!.generation]),
  );
  m.family(
    "bkr_key_age_seconds",
    "gauge",
    "Seconds since the set's current key was minted.",
    withKey.map((s) => [{ model_set: s }, (now - current.get(s)!.created_at) / 1000]),
  );
  m.family(
    "bkr_key_refresh_in_seconds",
    "gauge",
    "Seconds until the current key's refresh_at (negative while the rotation is overdue).",
    withKey.map((s) => [{ model_set: s }, ((current.get(s)!.refresh_at ?? now) - now) / 1000]),
  );
  m.family(
    "bkr_live_keys",
    "gauge",
    "Keys of the set that D1 holds as not revoked or abandoned.",
    sets.map((s) => [{ model_set: s }, liveCount.get(s) ?? 0]),
  );
  m.family(
    "bkr_rotations_total",
    "counter",
    'Mints (outcome="rotated", the first key included) and failed runs (outcome="failed").',
    sets.flatMap((s): [Record<string, string>, number][] => [
      [{ model_set: s, outcome: "rotated" }, count.get(`${s}\nminted`) ?? 0],
      [{ model_set: s, outcome: "failed" }, count.get(`${s}\nfailed`) ?? 0],
    ]),
  );
  m.family("bkr_last_tick_age_seconds", "gauge", "Seconds since the last cron tick (+Inf: no tick recorded).", [
    [{}, lastTick === null ? Infinity : (now - lastTick) / 1000],
  ]);
  m.family(
    "bkr_consumer_generation_lag",
    "gauge",
    "Current generation minus the highest generation the consumer fetched.",
    consumerLag(seen!.results as unknown as SeenRow[], current, config),
  );
  m.family("bkr_config_problems", "gauge", "Problems in the configuration (0: valid).", [[{}, configProblems]]);
  return m.text();
}

interface SeenRow {
  consumer: string;
  model_set: string;
  generation: number;
  /** JSON array of set ids when the consumer is a managed one. */
  managed_sets: string | null;
}

/**
 * Per consumer and granted set it has fetched from, the set's current generation minus the
 * highest generation it fetched (never below 0). Grants: the configuration's consumers first (a
 * configured name wins over a managed one, as in authentication), then the managed table. With
 * an invalid configuration (`config` null) every tracked pair with a current key is shown.
 */
function consumerLag(rows: SeenRow[], current: Map<string, LiveRow>, config: Config | null): [Record<string, string>, number][] {
  const configured = new Map(config?.consumers.map((c) => [c.name, c.modelSets]) ?? []);
  const granted = (r: SeenRow): boolean => {
    if (config === null) return true;
    const sets = configured.get(r.consumer);
    if (sets) return sets.includes(r.model_set);
    if (r.managed_sets === null) return false;
    try {
      const managed: unknown = JSON.parse(r.managed_sets);
      return Array.isArray(managed) && managed.includes(r.model_set);
    } catch {
      return false;
    }
  };
  return rows
    .filter((r) => current.has(r.model_set) && granted(r))
    .sort((a, b) => a.consumer.localeCompare(b.consumer) || a.model_set.localeCompare(b.model_set))
    .map((r) => [{ consumer: r.consumer, model_set: r.model_set }, Math.max(0, current.get(r.model_set)!.generation - r.generation)]);
}
