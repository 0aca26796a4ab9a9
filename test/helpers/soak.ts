/**
 * The soak simulation (reliability item 5): days of cron ticks over many sets on a simulated
 * clock, with faults from the fault catalogue injected at a seeded rate, webhook-like early
 * rotations (some with revoke_previous) and consumer reads from this location and from a
 * "remote" one whose KV edge copy lags up to 60 s. After every engine action and every read the
 * model checks DESIGN §4's invariants against the fake Baseten's live keys and D1:
 *
 *   live-current   every enabled set that has had a key has a current key in D1 that is live at
 *                  Baseten, and every document served names a live key (this location: always;
 *                  another location: except for up to MAX_STALENESS after an emergency revoke)
 *   promise        no key is revoked before the latest expires_at served for it, nor before
 *                  replaced_at + overlap, unless revoke_previous asked for it
 *   bounded        live keys per set <= current + previous keys with an unexpired promise + 1
 *   tracked        every live bkr- key at Baseten is known to D1; one D1 has written off
 *                  (abandoned/revoked) is deleted within a few ticks
 *   document       refresh_at is in the future, expires_at >= refresh_at + overlap
 *   converged      after the faults stop: one current per set, KV = D1, no pendings, no leftovers
 *
 * Everything random comes from one PRNG seeded by the seed's name, so a seed replays the same
 * schedule of faults, rotations and reads (`SOAK_SEEDS=name npx vitest run test/soak.test.ts`).
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { tick } from "../../src/cron.ts";
import { type KeyDocument, MAX_STALENESS_MS } from "../../src/document.ts";
import type { Env } from "../../src/env.ts";
import { type Engine, createEngine, runSet } from "../../src/rotation.ts";
import type { Fault } from "./fake.ts";
import type { Row as InvariantRow } from "./invariants.ts";
import { type D1Rule, FaultPlan, type KVHistory, type KVRule, faultyD1, faultyKV } from "./faulty-bindings.ts";
import { MIN, makeWorld, prefixOf } from "./world.ts";

const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

// --- deterministic randomness ------------------------------------------------------------

/** xmur3 string hash: a 32-bit seed from a seed's name. */
export function hashSeed(name: string): number {
  let h = 1779033703 ^ name.length;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  h = Math.imul(h ^ (h >>> 13), 3266489909);
  return (h ^= h >>> 16) >>> 0;
}

/** mulberry32: a small, fast, seedable PRNG in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(readonly next: () => number) {}
  chance(p: number) {
    return this.next() < p;
  }
  int(lo: number, hi: number) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

// --- the world -------------------------------------------------------------------------

/** Ten sets, periods from 6 h to 7 d, overlaps from the 2 min minimum to a day. */
export const SOAK_SETS: Record<string, { model_ids: string[]; rotate_every: string; overlap: string }> = {
  alpha: { model_ids: ["m-alpha"], rotate_every: "6h", overlap: "10m" },
  bravo: { model_ids: ["m-bravo"], rotate_every: "8h", overlap: "2m" },
  charlie: { model_ids: ["m-charlie", "m-shared"], rotate_every: "12h", overlap: "30m" },
  delta: { model_ids: ["m-delta"], rotate_every: "12h", overlap: "1h" },
  echo: { model_ids: ["m-echo"], rotate_every: "24h", overlap: "2h" },
  foxtrot: { model_ids: ["m-foxtrot"], rotate_every: "24h", overlap: "1h" },
  golf: { model_ids: ["m-golf", "m-shared"], rotate_every: "2d", overlap: "4h" },
  hotel: { model_ids: ["m-hotel"], rotate_every: "7d", overlap: "1d" },
  india: { model_ids: ["m-india"], rotate_every: "8h", overlap: "20m" },
  "juliet-2": { model_ids: ["m-juliet"], rotate_every: "12h", overlap: "3m" },
};

const OVERLAP_MS: Record<string, number> = {};
for (const [id, s] of Object.entries(SOAK_SETS)) OVERLAP_MS[id] = parseDur(s.overlap);
function parseDur(d: string): number {
  const n = Number(d.slice(0, -1));
  return n * ({ s: 1000, m: MIN, h: HOUR, d: DAY } as Record<string, number>)[d.slice(-1)]!;
}

// --- the fault catalogue ---------------------------------------------------------------

interface Injection {
  kind: string;
  fake?: Fault[];
  d1?: D1Rule[];
  kv?: KVRule[];
}

const OPS = ["mint", "list", "revoke"] as const;

/** Every fault of reliability items 1-3, and the unnamed ones the suite must also survive. */
const CATALOGUE: ((r: Rng) => Injection)[] = [
  // 1. upstream
  (r) => ({ kind: "upstream 429 retry_after", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "429", retry_after: r.pick([0, 0.2, 1, 5, 120]), retry_after_header: r.chance(0.5), count: r.int(1, 4) }] }),
  (r) => ({ kind: "upstream 429 no hint", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "429", count: r.int(1, 4) }] }),
  (r) => ({ kind: "upstream 5xx burst", fake: [{ op: r.pick([...OPS, "any"] as const), kind: r.pick(["500", "502", "503"] as const), count: r.int(1, 5) }] }),
  (r) => ({ kind: "upstream stall", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "stall", stall_ms: 2_000, count: r.int(1, 2) }] }),
  (r) => ({ kind: "upstream refused", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "refuse", count: r.int(1, 3) }] }),
  (r) => ({ kind: "upstream malformed 200", fake: [{ op: r.pick(OPS), kind: r.pick(["malformed", "empty"] as const) }] }),
  (r) => ({ kind: "upstream 401/403", fake: [{ op: r.pick([...OPS, "any"] as const), kind: r.pick(["401", "403"] as const), count: r.int(1, 3) }] }),
  // 2. crash points
  (r) => ({ kind: "mint answer lost", fake: [{ op: "mint", kind: r.pick(["lost_after_commit", "malformed_after_commit", "empty_after_commit"] as const) }] }),
  (r) => ({ kind: "mint answer lost + list down", fake: [{ op: "mint", kind: "lost_after_commit" }, { op: "list", kind: "503", count: r.int(3, 6) }] }),
  (r) => ({ kind: "revoke answer lost", fake: [{ op: "revoke", kind: r.pick(["lost_after_commit", "malformed_after_commit", "empty_after_commit"] as const), count: r.int(1, 2) }] }),
  (r) => ({ kind: "revoke fails", fake: [{ op: "revoke", kind: r.pick(["500", "403", "refuse"] as const), count: r.int(1, 4) }] }),
  (r) => ({ kind: "d1 promote fails", d1: [{ op: "batch", match: "SET state = 'current'", after: r.chance(0.5) }] }),
  (r) => ({ kind: "d1 lease fails", d1: [{ op: "batch", match: "lease_expires_at = excluded.lease_expires_at", after: r.chance(0.5) }] }),
  (r) => ({ kind: "d1 mark-revoked fails", d1: [{ op: "batch", match: "SET state = 'revoked'", after: r.chance(0.5) }] }),
  (r) => ({ kind: "d1 mark-abandoned fails", d1: [{ op: "batch", match: "SET state = 'abandoned'", after: r.chance(0.5) }], fake: [{ op: "mint", kind: "lost_after_commit" }] }),
  () => ({ kind: "d1 release fails", d1: [{ op: "run", match: "lease_holder = NULL" }] }),
  () => ({ kind: "d1 tick read fails", d1: [{ op: "all", match: "state IN ('pending', 'current', 'previous')" }] }),
  // 3. cache
  (r) => ({ kind: "kv put fails", kv: [{ op: "put", count: r.int(1, 3) }] }),
  (r) => ({ kind: "kv put fails + revoke_previous", kv: [{ op: "put", count: r.int(1, 2) }, { op: "delete", count: r.int(0, 1) || 1 }] }),
  (r) => ({ kind: "kv read fails", kv: [{ op: "get", count: r.int(1, 20) }] }),
  () => ({ kind: "kv list fails", kv: [{ op: "list" }] }),
  (r) => ({ kind: "kv check fails", kv: [{ op: "getWithMetadata", count: r.int(1, 3) }] }),
];

// --- the model -------------------------------------------------------------------------

type Row = Omit<InvariantRow, "revoked_at">;

export interface SoakOptions {
  seed: string;
  days?: number;
  tickMs?: number;
  /** Chance that a tick with work predicted gets a fault; idle ticks get `faultRate / 10`. */
  faultRate?: number;
  /** Chance per tick of a webhook-like early rotation of a random set. */
  earlyRate?: number;
  /** Of early rotations, the share with revoke_previous. */
  emergencyShare?: number;
}

export interface SoakReport {
  seed: string;
  ticks: number;
  convergenceTicks: number;
  simulatedDays: number;
  rotations: number;
  earlyRotations: number;
  emergencyRevokes: number;
  revocations: number;
  reads: number;
  documents: number;
  /** Documents of a key D1 had already replaced (served from a stale cache): where promises get subtle. */
  staleDocuments: number;
  failedRuns: number;
  failedTicks: number;
  faultsInjected: number;
  faultsFired: number;
  /** Injected faults by kind, and how many of them fired (hit a call) before being cleared. */
  faultsByKind: Record<string, number>;
  firedByKind: Record<string, number>;
  violations: number;
  firstViolations: string[];
  wallMs: number;
}

export function formatReport(r: SoakReport): string {
  const kinds = Object.entries(r.faultsByKind)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}=${r.firedByKind[k] ?? 0}/${n}`)
    .join(", ");
  return (
    `soak seed=${r.seed}: ${r.ticks} ticks (${r.simulatedDays} days, 10 sets, + ${r.convergenceTicks} clean), ${r.rotations} rotations ` +
    `(${r.earlyRotations} early, ${r.emergencyRevokes} revoke_previous), ${r.revocations} revocations, ${r.reads} reads / ${r.documents} documents (${r.staleDocuments} from a stale cache), ` +
    `${r.failedRuns} failed runs, ${r.failedTicks} failed ticks, faults fired/injected=${r.faultsFired}/${r.faultsInjected} [${kinds}], ` +
    `violations=${r.violations}, ${(r.wallMs / 1000).toFixed(1)} s`
  );
}

const LIVE_SQL = "SELECT model_set, generation, state, name, prefix, created_at, refresh_at, expires_at, replaced_at FROM keys WHERE state IN ('pending', 'current', 'previous')";

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const rng = new Rng(mulberry32(hashSeed(opts.seed)));
  const tickMs = opts.tickMs ?? 5 * MIN;
  const days = opts.days ?? 30;
  const ticks = Math.round((days * DAY) / tickMs);
  const faultRate = opts.faultRate ?? 0.3;
  const earlyRate = opts.earlyRate ?? 0.01;
  const emergencyShare = opts.emergencyShare ?? 0.35;

  const plan = new FaultPlan();
  const history: KVHistory = new Map();
  let clockNow = () => 0;
  const localKV = faultyKV(env.KEYS, plan, { clock: () => clockNow(), history });
  // Another location: its own isolate memory (its own binding object), an edge copy up to 60 s old.
  let remoteLag = 0;
  const remoteKV = faultyKV(env.KEYS, plan, { clock: () => clockNow(), history, edgeLagMs: () => remoteLag });
  const db = faultyD1(env.DB, plan);
  const w = await makeWorld({
    sets: SOAK_SETS,
    consumers: { everything: Object.keys(SOAK_SETS) },
    vars: { DB: db, KEYS: localKV, BASETEN_TIMEOUT_MS: "250", BASETEN_MAX_ATTEMPTS: "3" },
  });
  clockNow = w.clock.now;
  const remoteEnv = { ...w.env, KEYS: remoteKV } as Env;
  const remoteApp = createApp({ clock: w.clock.now });
  const config = loadConfig(w.env);
  if (!config.ok) throw new Error(config.problems.join("; "));
  // The engine with the real client; its backoff sleeps move the simulated clock instead of waiting.
  const engine: Engine = createEngine(config.config, w.env, w.clock.now, {
    sleep: async (ms) => w.clock.advance(ms),
    random: rng.next,
  });


  const report: SoakReport = {
    seed: opts.seed,
    ticks: 0,
    convergenceTicks: 0,
    simulatedDays: days,
    rotations: 0,
    earlyRotations: 0,
    emergencyRevokes: 0,
    revocations: 0,
    reads: 0,
    documents: 0,
    staleDocuments: 0,
    failedRuns: 0,
    failedTicks: 0,
    faultsInjected: 0,
    faultsFired: 0,
    faultsByKind: {},
    firedByKind: {},
    violations: 0,
    firstViolations: [],
    wallMs: 0,
  };
  const violation = (what: string) => {
    report.violations++;
    if (report.firstViolations.length < 25) report.firstViolations.push(`[t=${new Date(w.clock.now()).toISOString()}] ${what}`);
  };

  // Model state.
  const served = new Map<string, number>(); // prefix -> latest expires_at served
  const servedHow = new Map<string, string>(); // prefix -> how that latest promise was served (for reports)
  const emergency = new Map<string, number>(); // prefix -> when revoke_previous asked for it
  const hadKey = new Set<string>();
  let live = new Map<string, string>(); // live bkr- prefix -> name (last seen at the fake)
  const revokedAt = new Map<string, number>();
  const leftoverSince = new Map<string, number>(); // prefix written off by D1 but live -> first seen (tick)
  const ghostSince = new Map<string, number>(); // prefix D1 lists as previous but gone at Baseten -> first seen (tick)
  let rows: Row[] = [];
  let rowsByPrefix = new Map<string, Row>();

  const setOfName = (name: string) => /^bkr-(.+)-(\d+)-[a-z0-9]+$/.exec(name)?.[1] ?? null;

  async function loadRows() {
    rows = (await env.DB.prepare(LIVE_SQL).all<Row>()).results;
    rowsByPrefix = new Map(rows.filter((r) => r.prefix).map((r) => [r.prefix!, r]));
  }

  /**
   * After an engine action that started at `t0`: the fake's live keys against the model and D1.
   * D1 is read again only when the action may have changed it (`busy`) or Baseten changed.
   */
  async function check(t0: number, tickIndex: number, busy: boolean) {
    const fakeLive = (await w.fake.liveKeys()).filter((k) => k.name?.startsWith("bkr-"));
    const now = w.clock.now();
    const next = new Map(fakeLive.map((k) => [k.prefix, k.name!]));
    const changed = busy || next.size !== live.size || [...next.keys()].some((p) => !live.has(p));
    if (changed) await loadRows();
    else if (leftoverSince.size === 0) {
      // Nothing moved: only the time-dependent bound can change.
      checkBounded(fakeLive, now, tickIndex);
      return;
    }

    // promise: keys that disappeared during the action were revoked no earlier than t0
    for (const [prefix, name] of live) {
      if (next.has(prefix)) continue;
      revokedAt.set(prefix, t0);
      const set = setOfName(name);
      const row = rowsByPrefixBefore.get(prefix);
      if (row?.state === "current" || row?.state === "previous") report.revocations++;
      if (emergency.has(prefix)) continue;
      const promised = served.get(prefix);
      if (promised !== undefined && promised > t0) violation(`promise: ${name} revoked at or after ${iso(t0)} but a document served for it promised ${iso(promised)} (${servedHow.get(prefix)}; row ${JSON.stringify(row ?? null)})`);
      if (row?.replaced_at != null && set && row.replaced_at + OVERLAP_MS[set]! > t0) violation(`promise: ${name} revoked ${t0 - row.replaced_at} ms after it was replaced (overlap ${OVERLAP_MS[set]} ms)`);
      if (row?.state === "current") violation(`promise: ${name} was current in D1 when it was revoked`);
    }
    live = next;

    // tracked: every live bkr- key is known to D1, and written-off ones get deleted
    const unknownNames = fakeLive.filter((k) => !rows.some((r) => r.name === k.name)).map((k) => k.name!);
    if (unknownNames.length > 0) {
      const known = new Map<string, string>();
      for (const name of unknownNames) {
        const r = await env.DB.prepare("SELECT state FROM keys WHERE name = ?1").bind(name).first<{ state: string }>();
        if (r) known.set(name, r.state);
      }
      for (const k of fakeLive) {
        if (!unknownNames.includes(k.name!)) continue;
        const state = known.get(k.name!);
        if (!state) violation(`tracked: ${k.name} is live at Baseten and unknown to D1`);
        else if (!leftoverSince.has(k.prefix)) leftoverSince.set(k.prefix, tickIndex);
        else if (tickIndex - leftoverSince.get(k.prefix)! > 6) violation(`tracked: ${k.name} is ${state} in D1 but still live at Baseten ${tickIndex - leftoverSince.get(k.prefix)!} ticks later`);
      }
    }
    for (const p of [...leftoverSince.keys()]) if (!next.has(p)) leftoverSince.delete(p);

    checkBounded(fakeLive, now, tickIndex);
    rowsByPrefixBefore = rowsByPrefix;
  }
  let rowsByPrefixBefore = new Map<string, Row>();

  /** live-current, bounded and D1-follows-Baseten, per set. */
  function checkBounded(fakeLive: { prefix: string; name: string | null }[], now: number, tickIndex: number) {
    // A key D1 still lists as previous after Baseten deleted it (a revoke whose answer was lost)
    // must be closed by a later run, not stay in D1 forever.
    const previous = new Set(rows.filter((r) => r.state === "previous" && r.prefix).map((r) => r.prefix!));
    for (const p of [...ghostSince.keys()]) if (!previous.has(p) || live.has(p)) ghostSince.delete(p);
    for (const p of previous) {
      if (live.has(p)) continue;
      const since = ghostSince.get(p);
      if (since === undefined) ghostSince.set(p, tickIndex);
      else if (tickIndex - since === 12) violation(`tracked: D1 still lists ${rowsByPrefix.get(p)?.model_set} gen ${rowsByPrefix.get(p)?.generation} as previous 12 ticks after Baseten deleted it`);
    }
    for (const set of Object.keys(SOAK_SETS)) {
      const setRows = rows.filter((r) => r.model_set === set);
      const current = setRows.find((r) => r.state === "current");
      if (current) hadKey.add(set);
      if (hadKey.has(set)) {
        if (!current) violation(`live-current: ${set} has no current key in D1`);
        else if (!live.has(current.prefix!)) violation(`live-current: ${set}'s current key gen ${current.generation} is not live at Baseten`);
      }
      const liveHere = fakeLive.filter((k) => setOfName(k.name!) === set).length;
      const promised = setRows.filter(
        (r) => r.state === "current" || (r.state === "previous" && Math.max(r.expires_at ?? 0, served.get(r.prefix ?? "") ?? 0) > now),
      ).length;
      if (liveHere > promised + 1) violation(`bounded: ${set} has ${liveHere} live keys for ${promised} unexpired promises`);
    }
  }

  /**
   * Reads as the consumer, here or at the lagging location, and records the promises: every set
   * through GET /v1/keys, or the given sets one by one through GET /v1/keys/{set}.
   */
  async function read(remote: boolean, only: string[] | null) {
    const now = w.clock.now();
    remoteLag = remote ? rng.int(0, 60_000) : 0;
    const fetchOne = async (path: string) => {
      const init = { headers: { authorization: `Bearer ${w.tokens.everything}` } };
      if (!remote) return w.request(path, init);
      const ctx = createExecutionContext();
      const res = await remoteApp.fetch(new Request(`https://rotator.test${path}`, init), remoteEnv, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    };
    report.reads++;
    const docs: KeyDocument[] = [];
    if (only === null) {
      const res = await fetchOne("/v1/keys");
      if (res.status !== 200) return violation(`read: GET /v1/keys answered ${res.status} ${await res.text()}`);
      docs.push(...((await res.json()) as { keys: KeyDocument[] }).keys);
      for (const set of hadKey) if (!docs.some((d) => d.model_set === set)) violation(`live-current: ${set} had a key but the read served none`);
    } else {
      for (const set of only) {
        const res = await fetchOne(`/v1/keys/${set}`);
        if (res.status === 200) docs.push((await res.json()) as KeyDocument);
        else if (hadKey.has(set) || res.status !== 503) violation(`read: GET /v1/keys/${set} answered ${res.status} ${await res.text()}`);
      }
    }
    for (const doc of docs) {
      report.documents++;
      const cur = rows.find((r) => r.model_set === doc.model_set && r.state === "current");
      if (cur && doc.generation < cur.generation) report.staleDocuments++;
      const prefix = prefixOf(doc.api_key);
      const refresh = Date.parse(doc.refresh_at);
      const expires = Date.parse(doc.expires_at);
      if (expires > (served.get(prefix) ?? 0)) {
        served.set(prefix, expires);
        servedHow.set(prefix, `served at ${iso(now)} ${remote ? `elsewhere, edge lag ${remoteLag} ms` : "here"}, refresh_at ${doc.refresh_at}`);
      }
      if (refresh <= now) violation(`document: ${doc.model_set} gen ${doc.generation} served refresh_at ${doc.refresh_at} at ${iso(now)}`);
      if (expires < refresh + OVERLAP_MS[doc.model_set]!) violation(`document: ${doc.model_set} gen ${doc.generation} expires_at less than refresh_at + overlap`);
      if (!live.has(prefix)) {
        const e = emergency.get(prefix);
        // Elsewhere, a key revoke_previous revoked may be served while KV (or its edge copy, or
        // that isolate's memory) still holds it: up to MAX_STALENESS after KV stopped holding it.
        const excused = remote && e !== undefined && kvHeld(doc.model_set, doc.generation, now - MAX_STALENESS_MS, now);
        if (!excused) violation(`live-current: ${remote ? "another location" : "this location"} served ${doc.model_set} gen ${doc.generation}, which is not live at Baseten${e !== undefined ? ` (revoke_previous ${now - e} ms before)` : ""}`);
      }
    }
  }

  /** Sets whose promises are in motion around `[from, to]`: due, overdue, just rotated, expiring, pending. */
  function hotSets(from: number, to: number): string[] {
    const hot = new Set<string>();
    for (const r of rows) {
      if (r.state === "pending") hot.add(r.model_set);
      if (r.state === "current" && ((r.refresh_at ?? 0) <= to || r.created_at >= from - (to - from))) hot.add(r.model_set);
      if (r.state === "previous" && (r.expires_at ?? 0) <= to && (r.expires_at ?? 0) > from - (to - from)) hot.add(r.model_set);
    }
    return [...hot].sort();
  }

  /** Whether KV's (fresh) entry for `set` held `generation` at any time in [from, to]. */
  function kvHeld(set: string, generation: number, from: number, to: number): boolean {
    const versions = history.get(`key:${set}`) ?? [];
    // KV values are sealed whole (src/cache.ts): the generation is in the entry's metadata.
    const genOf = (v: { value: string | null; metadata: unknown }) => (v.value === null ? null : ((v.metadata as { g?: number } | null)?.g ?? null));
    let atFrom: number | null = null;
    for (const v of versions) {
      if (v.at <= from) atFrom = genOf(v);
      else if (v.at <= to && genOf(v) === generation) return true;
    }
    return atFrom === generation;
  }

  function predictedWork(now: number): boolean {
    return rows.some((r) => (r.state === "current" && (r.refresh_at ?? 0) <= now) || (r.state === "previous" && (r.expires_at ?? 0) <= now) || r.state === "pending");
  }

  async function inject(faultChance: number): Promise<Injection | null> {
    if (!rng.chance(faultChance)) return null;
    const inj = rng.pick(CATALOGUE)(rng);
    if (inj.fake) await w.fake.fault(...inj.fake);
    if (inj.d1) plan.d1(...inj.d1);
    if (inj.kv) plan.kv(...inj.kv);
    report.faultsInjected++;
    report.faultsByKind[inj.kind] = (report.faultsByKind[inj.kind] ?? 0) + 1;
    return inj;
  }

  /** Counts what fired and clears what did not, so every action starts clean. */
  async function settle(inj: Injection | null) {
    if (!inj) return;
    let fired = plan.totalHits;
    plan.clear();
    for (const k of Object.keys(plan.hits)) delete plan.hits[k];
    if (inj.fake) {
      const res = await fetch(`${env.BASETEN_API_BASE}/__control/${encodeURIComponent(w.fake.key)}/faults`);
      const left = ((await res.json()) as { faults: { count: number }[] }).faults.reduce((a, f) => a + f.count, 0);
      fired += inj.fake.reduce((a, f) => a + (f.count ?? 1), 0) - left;
      await w.fake.clearFaults();
    }
    if (fired > 0) {
      report.faultsFired++;
      report.firedByKind[inj.kind] = (report.firedByKind[inj.kind] ?? 0) + 1;
    }
  }

  const start = w.clock.now();
  const setIds = Object.keys(SOAK_SETS);
  for (let i = 0; i < ticks; i++) {
    const t = start + i * tickMs;
    w.clock.set(Math.max(t, w.clock.now()));
    const t0 = w.clock.now();
    const inj = await inject(predictedWork(t0) ? faultRate : faultRate / 10);
    rowsByPrefixBefore = rowsByPrefix;
    let busy = inj !== null;
    try {
      const summary = await tick(engine);
      busy ||= summary.planned > 0;
      for (const r of summary.results) {
        if (r.outcome === "rotated") report.rotations++;
        if (r.outcome === "failed") report.failedRuns++;
      }
    } catch {
      report.failedTicks++; // the cron's own read failed: the whole tick is retried at the next one
    }
    report.ticks++;
    await settle(inj);
    await check(t0, i, busy);

    // Between ticks: reads here and there, maybe an early rotation, at seeded offsets. Reads are
    // dense where promises are made that matter: around rotations, overdue keys, faults.
    const hot = hotSets(t, t + tickMs);
    const lively = busy || hot.length > 0 || leftoverSince.size > 0;
    const events: { at: number; what: "local" | "remote" | "early" }[] = [];
    // Half the reads of a lively interval fall in the first 90 s after the tick: while edge copies
    // and isolate memories elsewhere may still hold what the tick replaced.
    const offset = () => (lively && rng.chance(0.5) ? rng.int(0, 90_000) : rng.int(0, tickMs - 1));
    if (rng.chance(lively ? 0.6 : 0.05)) events.push({ at: offset(), what: "local" });
    if (rng.chance(lively ? 0.6 : 0.03)) events.push({ at: offset(), what: "remote" });
    if (rng.chance(earlyRate)) events.push({ at: rng.int(0, tickMs - 1), what: "early" });
    events.sort((a, b) => a.at - b.at);
    for (const ev of events) {
      w.clock.set(Math.max(t + ev.at, w.clock.now()));
      if (ev.what !== "early") {
        const readFault = rng.chance(0.03) ? await inject(1) : null;
        await read(ev.what === "remote", hot.length > 0 && rng.chance(0.8) ? hot : null);
        await settle(readFault);
        continue;
      }
      const set = rng.pick(setIds);
      const revokePrevious = rng.chance(emergencyShare);
      const before = rows.find((r) => r.model_set === set && r.state === "current");
      const e0 = w.clock.now();
      const earlyInj = await inject(faultRate);
      rowsByPrefixBefore = rowsByPrefix;
      const result = await runSet(engine, set, { trigger: "webhook", mint: "now", revokePrevious, reason: `soak ${opts.seed} early rotation` });
      if (result.outcome === "rotated") {
        report.rotations++;
        report.earlyRotations++;
      } else if (result.outcome === "failed") report.failedRuns++;
      // revoke_previous applies once the replacement is promoted, even if the run then failed
      // (the promote committed and its answer was lost): the old key may go at once.
      if (revokePrevious && before?.prefix) {
        const after = await env.DB.prepare("SELECT state FROM keys WHERE model_set = ?1 AND generation = ?2").bind(set, before.generation).first<{ state: string }>();
        if (after?.state !== "current") {
          // Engine v2: revoke_previous revokes every key of the set other than the new one.
          for (const r of rows) if (r.model_set === set && r.prefix && (r.state === "current" || r.state === "previous")) emergency.set(r.prefix, e0);
          report.emergencyRevokes++;
        }
      }
      await settle(earlyInj);
      await check(e0, i, true);
    }
  }

  // Convergence: faults stop; after a clean day (the longest overlap) every set is tidy.
  const end = w.clock.now();
  for (let t = end + tickMs; t <= end + 26 * HOUR; t += 6 * tickMs) {
    w.clock.set(t);
    rowsByPrefixBefore = rowsByPrefix;
    await tick(engine);
    report.convergenceTicks++;
    await check(t, ticks + report.convergenceTicks, true);
    if (rng.chance(0.3)) await read(rng.chance(0.5), null);
  }
  const cached = await env.KEYS.list({ prefix: "key:" });
  const now = w.clock.now();
  for (const set of setIds) {
    const current = rows.filter((r) => r.model_set === set && r.state === "current");
    if (current.length !== 1) violation(`converged: ${set} has ${current.length} current keys`);
    const kvGen = (cached.keys.find((k) => k.name === `key:${set}`)?.metadata as { g?: number } | undefined)?.g;
    if (current[0] && kvGen !== current[0].generation) violation(`converged: ${set} KV holds gen ${kvGen} while D1's current is gen ${current[0].generation}`);
    const pend = rows.filter((r) => r.model_set === set && r.state === "pending");
    if (pend.length > 0) violation(`converged: ${set} still has ${pend.length} pending rows`);
    const expected = rows.filter((r) => r.model_set === set && (r.state === "current" || (r.state === "previous" && (r.expires_at ?? 0) > now))).map((r) => r.prefix!);
    const liveHere = [...live].filter(([, name]) => setOfName(name) === set).map(([p]) => p);
    if (liveHere.length !== expected.length || !expected.every((p) => liveHere.includes(p))) violation(`converged: ${set} live keys ${liveHere.length} != D1's current + unexpired previous ${expected.length}`);
    const overdue = rows.filter((r) => r.model_set === set && r.state === "previous" && (r.expires_at ?? 0) <= now - tickMs);
    if (overdue.length > 0) violation(`converged: ${set} gen ${overdue.map((r) => r.generation).join(", ")} still previous after its promise ended`);
  }
  report.wallMs = Date.now() - started;
  return report;
}

const iso = (ms: number) => new Date(ms).toISOString();
