/**
 * The soak simulation (issue #9 item 7): days of cron ticks over ten sets on a simulated clock,
 * run through the platform model of test/helpers/platform.ts (per-location KV edge caches that lag
 * up to 60 s, three locations each with its own isolate memory, time passing during every D1, KV
 * and Baseten call, holds and crashes between any two steps), over the inline path or the queue
 * path (the cron fans every due set out to the queue; the consumer runs a batch built from
 * exactly what the tick enqueued).
 *
 * Faults come from the existing catalogue (upstream faults at the fake Baseten, D1/KV failures of
 * faulty-bindings.ts's FaultPlan) and from the model's own (stalls, slow promotes, a run
 * outliving its lease while another trigger runs, writes applied and then lost), at a seeded
 * rate. Early rotations go through the signed webhook route, some with revoke_previous.
 *
 * After EVERY engine action (tick, queue batch, webhook) every location reads every set, and the
 * invariants of DESIGN §4 are checked against the fake Baseten's live keys, D1 and what each
 * location served:
 *
 *   live-current   every enabled set that has had a key has a current key in D1 that is live at
 *                  Baseten; every document served names a live key, except a key an explicit
 *                  revoke_previous revoked, for at most 65 s (KV's 60 s + 5 s of isolate memory)
 *   promise        no key is revoked before the latest expires_at any location served for it, nor
 *                  before min(replaced_at, refresh_at) + overlap, unless revoke_previous asked for
 *                  it; no current key is revoked
 *   bounded        live keys per set <= current + previous keys with an unexpired promise + 1
 *   tracked        every live bkr- key at Baseten is known to D1; one D1 has written off
 *                  (abandoned/revoked) is deleted within a few ticks
 *   document       refresh_at is in the future, expires_at >= refresh_at + overlap
 *   lease          no Baseten request leaves more than 90 s after the action that sent it began
 *   converged      after the faults stop: one current key per set, served by every location, no
 *                  pendings, every live key current or promised
 *
 * Everything random comes from PRNGs seeded by the seed's name, so a seed replays the same
 * schedule of faults, rotations and reads (`SOAK_SEEDS=name npx vitest run test/soak.test.ts`);
 * the interleaving of concurrent runs inside one tick is workerd's.
 */
import { env } from "cloudflare:test";
import type { Fault } from "./fake.ts";
import { type D1Rule, FaultPlan, type KVRule } from "./faulty-bindings.ts";
import { type Hook, type Platform, afterPromote, hashSeed, makePlatform, mulberry32 } from "./platform.ts";
import { MIN, prefixOf } from "./world.ts";

export { hashSeed, mulberry32 };

const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** DESIGN §4: a lease lasts at most 90 s, and a run never outlives it. */
const LEASE_MS = 90_000;
/** KV's edge cache (60 s) plus a few seconds of isolate memory. */
const STALE_MS = 65_000;

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
const SET_IDS = Object.keys(SOAK_SETS);

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
  hooks?: Hook[];
}

const OPS = ["mint", "list", "revoke"] as const;

/** Every fault of the existing catalogue (reliability items 1-3) and of the platform model. */
function catalogue(ctx: {
  p: () => Platform;
  webhook: (set: string, revokePrevious: boolean) => Promise<unknown>;
  readAll: () => Promise<void>;
}): ((r: Rng) => Injection)[] {
  return [
    // 1. upstream
    (r) => ({
      kind: "upstream 429 retry_after",
      fake: [
        {
          op: r.pick([...OPS, "any"] as const),
          kind: "429",
          retry_after: r.pick([0, 0.2, 1, 5, 120]),
          retry_after_header: r.chance(0.5),
          count: r.int(1, 4),
        },
      ],
    }),
    (r) => ({ kind: "upstream 429 no hint", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "429", count: r.int(1, 4) }] }),
    (r) => ({
      kind: "upstream 5xx burst",
      fake: [{ op: r.pick([...OPS, "any"] as const), kind: r.pick(["500", "502", "503"] as const), count: r.int(1, 5) }],
    }),
    (r) => ({
      kind: "upstream stall",
      fake: [{ op: r.pick([...OPS, "any"] as const), kind: "stall", stall_ms: 2_000, count: r.int(1, 2) }],
    }),
    (r) => ({ kind: "upstream refused", fake: [{ op: r.pick([...OPS, "any"] as const), kind: "refuse", count: r.int(1, 3) }] }),
    (r) => ({ kind: "upstream malformed 200", fake: [{ op: r.pick(OPS), kind: r.pick(["malformed", "empty"] as const) }] }),
    (r) => ({
      kind: "upstream 401/403",
      fake: [{ op: r.pick([...OPS, "any"] as const), kind: r.pick(["401", "403"] as const), count: r.int(1, 3) }],
    }),
    // 2. crash points
    (r) => ({
      kind: "mint answer lost",
      fake: [{ op: "mint", kind: r.pick(["lost_after_commit", "malformed_after_commit", "empty_after_commit"] as const) }],
    }),
    (r) => ({
      kind: "mint answer lost + list down",
      fake: [
        { op: "mint", kind: "lost_after_commit" },
        { op: "list", kind: "503", count: r.int(3, 6) },
      ],
    }),
    (r) => ({
      kind: "revoke answer lost",
      fake: [
        { op: "revoke", kind: r.pick(["lost_after_commit", "malformed_after_commit", "empty_after_commit"] as const), count: r.int(1, 2) },
      ],
    }),
    (r) => ({ kind: "revoke fails", fake: [{ op: "revoke", kind: r.pick(["500", "403", "refuse"] as const), count: r.int(1, 4) }] }),
    (r) => ({ kind: "d1 promote fails", d1: [{ op: "batch", match: "SET state = 'current'", after: r.chance(0.5) }] }),
    (r) => ({ kind: "d1 lease fails", d1: [{ op: "batch", match: "lease_expires_at = excluded.lease_expires_at", after: r.chance(0.5) }] }),
    (r) => ({ kind: "d1 mark-revoked fails", d1: [{ op: "batch", match: "SET state = 'revoked'", after: r.chance(0.5) }] }),
    (r) => ({
      kind: "d1 mark-abandoned fails",
      d1: [{ op: "batch", match: "SET state = 'abandoned'", after: r.chance(0.5) }],
      fake: [{ op: "mint", kind: "lost_after_commit" }],
    }),
    () => ({ kind: "d1 release fails", d1: [{ op: "run", match: "lease_holder = NULL" }] }),
    () => ({ kind: "d1 tick read fails", d1: [{ op: "all", match: "state IN ('pending', 'current', 'previous')" }] }),
    // 3. cache
    (r) => ({ kind: "kv put fails", kv: [{ op: "put", count: r.int(1, 3) }] }),
    (r) => ({
      kind: "kv put fails + revoke_previous",
      kv: [
        { op: "put", count: r.int(1, 2) },
        { op: "delete", count: 1 },
      ],
    }),
    (r) => ({ kind: "kv read fails", kv: [{ op: "get", count: r.int(1, 20) }] }),
    () => ({ kind: "kv list fails", kv: [{ op: "list" }] }),
    (r) => ({ kind: "kv check fails", kv: [{ op: "getWithMetadata", count: r.int(1, 3) }] }),
    // 4. the platform model: engine-agnostic (no SQL of today's engine)
    (r) => ({ kind: "d1 write fails", hooks: [{ op: "d1:write", skip: r.int(0, 6), fail: "before" }] }),
    (r) => ({ kind: "d1 write applied, answer lost", hooks: [{ op: "d1:write", skip: r.int(0, 6), fail: "after" }] }),
    (r) => ({ kind: "d1 stall", hooks: [{ op: "d1:*", skip: r.int(0, 8), stallBeforeMs: r.int(5, 60) * 1000 }] }),
    (r) => ({ kind: "kv put applied, answer lost", hooks: [{ op: "kv:put", fail: "after", count: r.int(1, 2) }] }),
    (r) => ({ kind: "kv stall", hooks: [{ op: "kv:*", skip: r.int(0, 4), stallBeforeMs: r.int(5, 60) * 1000 }] }),
    (r) => ({
      kind: "baseten slow answer",
      hooks: [{ op: r.pick(["baseten:mint", "baseten:list", "baseten:revoke"] as const), stallAfterMs: r.int(5, 100) * 1000 }],
    }),
    (r) => ({
      kind: "slow promote (kv write held, reads meanwhile)",
      hooks: [
        {
          op: "kv:put",
          during: async () => {
            const until = ctx.p().clock.now() + r.int(10, 85) * 1000;
            while (ctx.p().clock.now() < until) {
              ctx.p().clock.advance(r.int(5, 20) * 1000);
              await ctx.readAll();
            }
          },
        },
      ],
    }),
    (r) => ({
      kind: "run outlives its lease (another trigger meanwhile)",
      hooks: [
        {
          op: r.pick(["kv:put", "baseten:mint", "baseten:revoke", "d1:write"] as const),
          skip: r.int(0, 2),
          stallBeforeMs: 95_000,
          during: async (info) => {
            const key = info.detail[0] ?? "";
            const set = SET_IDS.find((s) => key.endsWith(`:${s}`) || key.includes(`bkr-${s}-`)) ?? r.pick(SET_IDS);
            await ctx.webhook(set, r.chance(0.5));
          },
        },
      ],
    }),
    () => ({
      kind: "promise write after a cache repair fails",
      hooks: [{ op: "d1:write", match: /\bkeys\b/, armedBy: { op: "kv:put" }, fail: "before" }],
    }),
  ];
}

// --- the model -------------------------------------------------------------------------

interface Row {
  model_set: string;
  generation: number;
  state: string;
  name: string;
  prefix: string | null;
  created_at: number;
  refresh_at: number | null;
  expires_at: number | null;
  replaced_at: number | null;
}

interface KeyDoc {
  model_set: string;
  generation: number;
  api_key: string;
  refresh_at: string;
  expires_at: string;
}

export type SoakPath = "inline" | "queue";

export interface SoakOptions {
  seed: string;
  path?: SoakPath;
  days?: number;
  tickMs?: number;
  /** Chance that a tick with work predicted gets a fault; idle ticks get `faultRate / 10`. */
  faultRate?: number;
  /** Chance per tick of a webhook rotation of a random set. */
  earlyRate?: number;
  /** Of early rotations, the share with revoke_previous. */
  emergencyShare?: number;
  /** Wall-clock budget: past it the soak stops and says so as a violation (never hangs a CI run). */
  maxWallMs?: number;
}

export interface SoakReport {
  seed: string;
  path: SoakPath;
  ticks: number;
  convergenceTicks: number;
  simulatedDays: number;
  rotations: number;
  earlyRotations: number;
  emergencyRevokes: number;
  revocations: number;
  reads: number;
  documents: number;
  staleDocuments: number;
  failedRuns: number;
  failedTicks: number;
  queued: number;
  faultsInjected: number;
  faultsFired: number;
  faultsByKind: Record<string, number>;
  firedByKind: Record<string, number>;
  violations: number;
  violationsByKind: Record<string, number>;
  firstViolations: string[];
  wallMs: number;
}

export function formatReport(r: SoakReport): string {
  const kinds = Object.entries(r.faultsByKind)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}=${r.firedByKind[k] ?? 0}/${n}`)
    .join(", ");
  const vk = Object.entries(r.violationsByKind)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}=${n}`)
    .join(", ");
  return (
    `soak seed=${r.seed} path=${r.path}: ${r.ticks} ticks (${r.simulatedDays} days, 10 sets, 3 locations, + ${r.convergenceTicks} clean), ${r.rotations} rotations ` +
    `(${r.earlyRotations} early, ${r.emergencyRevokes} revoke_previous), ${r.revocations} revocations, ${r.queued} queued, ${r.reads} reads / ${r.documents} documents (${r.staleDocuments} of a replaced key), ` +
    `${r.failedRuns} failed runs, ${r.failedTicks} failed ticks, faults fired/injected=${r.faultsFired}/${r.faultsInjected} [${kinds}], ` +
    `violations=${r.violations}${vk ? ` [${vk}]` : ""}, ${(r.wallMs / 1000).toFixed(1)} s`
  );
}

const LIVE_SQL =
  "SELECT model_set, generation, state, name, prefix, created_at, refresh_at, expires_at, replaced_at FROM keys WHERE state IN ('pending', 'current', 'previous')";

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const path = opts.path ?? "inline";
  const rng = new Rng(mulberry32(hashSeed(`${opts.seed}/${path}`)));
  const tickMs = opts.tickMs ?? 5 * MIN;
  const days = opts.days ?? 10;
  const ticks = Math.round((days * DAY) / tickMs);
  const faultRate = opts.faultRate ?? 0.3;
  const earlyRate = opts.earlyRate ?? 0.02;
  const emergencyShare = opts.emergencyShare ?? 0.35;
  const maxWallMs = opts.maxWallMs ?? 480_000;

  const plan = new FaultPlan();
  const p = await makePlatform({
    seed: `${opts.seed}/${path}`,
    sets: SOAK_SETS,
    consumers: { everything: SET_IDS },
    faults: plan,
    vars: { BASETEN_TIMEOUT_MS: "250", BASETEN_MAX_ATTEMPTS: "3", ...(path === "queue" ? { INLINE_ROTATION_BUDGET: "0" } : {}) },
  });
  const clock = p.clock;
  const realDB = env.DB;

  const report: SoakReport = {
    seed: opts.seed,
    path,
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
    queued: 0,
    faultsInjected: 0,
    faultsFired: 0,
    faultsByKind: {},
    firedByKind: {},
    violations: 0,
    violationsByKind: {},
    firstViolations: [],
    wallMs: 0,
  };
  let lastFault: { kind: string; at: number } | null = null;
  const violation = (kind: string, what: string) => {
    report.violations++;
    report.violationsByKind[kind] = (report.violationsByKind[kind] ?? 0) + 1;
    const fault = lastFault ? `; last fault: ${lastFault.kind} at ${iso(lastFault.at)}` : "";
    if (report.firstViolations.length < 25) report.firstViolations.push(`[t=${iso(clock.now())}] ${kind}: ${what}${fault}`);
  };

  // Model state.
  const served = new Map<string, { expires: number; how: string }>(); // prefix -> latest promise served
  const emergency = new Map<string, number>(); // prefix -> when revoke_previous asked for it
  const hadKey = new Set<string>();
  let live = new Map<string, string>(); // live bkr- prefix -> name (last seen at the fake)
  const leftoverSince = new Map<string, number>();
  const ghostSince = new Map<string, number>();
  let rows: Row[] = [];
  let rowsByPrefix = new Map<string, Row>();
  let rowsByPrefixBefore = new Map<string, Row>();
  let tickIndex = 0;

  const setOfName = (name: string) => /^bkr-(.+)-(\d+)-[a-z0-9]+$/.exec(name)?.[1] ?? null;

  async function loadRows() {
    rows = (await realDB.prepare(LIVE_SQL).all<Row>()).results;
    rowsByPrefix = new Map(rows.filter((r) => r.prefix).map((r) => [r.prefix!, r]));
  }

  /** After an engine action that started at `t0`: Baseten's live keys against the model and D1. */
  async function check(t0: number) {
    const fakeLive = (await p.fake.liveKeys()).filter((k) => k.name?.startsWith("bkr-"));
    const now = clock.now();
    const next = new Map(fakeLive.map((k) => [k.prefix, k.name!]));
    await loadRows();

    for (const [prefix, name] of live) {
      if (next.has(prefix)) continue;
      const at = p.revokedAt.get(prefix) ?? t0;
      const set = setOfName(name);
      const row = rowsByPrefixBefore.get(prefix) ?? rowsByPrefix.get(prefix);
      if (row?.state === "current" || row?.state === "previous") report.revocations++;
      if (emergency.has(prefix)) continue;
      const promised = served.get(prefix);
      if (promised !== undefined && promised.expires > at)
        violation(
          "promise",
          `${name} revoked at ${iso(at)} but a document served for it promised ${iso(promised.expires)} (${promised.how})`,
        );
      // DESIGN §3: at least `overlap` after the key was replaced, or after the refresh_at it was
      // served with when the rotation came later than that (the cron missed its ticks and none
      // recorded an extension): the replaced key then keeps its recorded promise, which every
      // document carried, and is not kept beyond it (README, "Rotation semantics").
      const since = row?.replaced_at != null ? Math.min(row.replaced_at, row.refresh_at ?? row.replaced_at) : null;
      if (since !== null && set && since + OVERLAP_MS[set]! > at)
        violation(
          "promise",
          `${name} revoked ${at - since} ms after it was replaced or due (${since === row!.replaced_at ? "replaced" : "refresh_at"}; overlap ${OVERLAP_MS[set]} ms)`,
        );
      const nowRow = rowsByPrefix.get(prefix);
      if (nowRow?.state === "current") violation("promise", `${name} is current in D1 but was revoked at Baseten`);
    }
    live = next;

    // tracked
    const known = new Set(rows.map((r) => r.name));
    const unknownNames = fakeLive.filter((k) => !known.has(k.name!));
    for (const k of unknownNames) {
      const r = await realDB.prepare("SELECT state FROM keys WHERE name = ?1").bind(k.name).first<{ state: string }>();
      if (!r) violation("tracked", `${k.name} is live at Baseten and unknown to D1`);
      else if (!leftoverSince.has(k.prefix)) leftoverSince.set(k.prefix, tickIndex);
      else if (tickIndex - leftoverSince.get(k.prefix)! > 6)
        violation(
          "tracked",
          `${k.name} is ${r.state} in D1 but still live at Baseten ${tickIndex - leftoverSince.get(k.prefix)!} ticks later`,
        );
    }
    for (const pr of [...leftoverSince.keys()]) if (!next.has(pr)) leftoverSince.delete(pr);

    // D1 follows Baseten: a previous key Baseten no longer has is closed by a later run.
    const previous = new Set(rows.filter((r) => r.state === "previous" && r.prefix).map((r) => r.prefix!));
    for (const pr of [...ghostSince.keys()]) if (!previous.has(pr) || live.has(pr)) ghostSince.delete(pr);
    for (const pr of previous) {
      if (live.has(pr)) continue;
      const since = ghostSince.get(pr);
      if (since === undefined) ghostSince.set(pr, tickIndex);
      else if (tickIndex - since === 12)
        violation(
          "tracked",
          `D1 still lists ${rowsByPrefix.get(pr)?.model_set} gen ${rowsByPrefix.get(pr)?.generation} as previous 12 ticks after Baseten deleted it`,
        );
    }

    // live-current, bounded
    for (const set of SET_IDS) {
      const setRows = rows.filter((r) => r.model_set === set);
      const current = setRows.find((r) => r.state === "current");
      if (current) hadKey.add(set);
      if (hadKey.has(set)) {
        if (!current) violation("live-current", `${set} has no current key in D1`);
        else if (!live.has(current.prefix!))
          violation("live-current", `${set}'s current key gen ${current.generation} is not live at Baseten`);
      }
      const liveHere = fakeLive.filter((k) => setOfName(k.name!) === set).length;
      const promised = setRows.filter(
        (r) =>
          r.state === "current" || (r.state === "previous" && Math.max(r.expires_at ?? 0, served.get(r.prefix ?? "")?.expires ?? 0) > now),
      ).length;
      if (liveHere > promised + 1) violation("bounded", `${set} has ${liveHere} live keys for ${promised} unexpired promises`);
    }

    // lease: no Baseten request of this action left more than a lease after it began
    // (Coarse: runs of one action start within a few seconds of it, a queue batch after a tick
    // that may have been held up to 60 s; calls of triggers nested in a hold are not counted.)
    for (const c of p.basetenCalls)
      if (!c.nested && c.sentAt > t0 + LEASE_MS + 60_000)
        violation("lease", `${c.op} issued ${Math.round((c.sentAt - t0) / 1000)} s after the action began`);
    p.basetenCalls.length = 0;
    rowsByPrefixBefore = rowsByPrefix;
  }

  /** Every location reads every set (GET /v1/keys), at once; every document is checked. */
  async function readAll() {
    await Promise.all(p.locations.map((l) => read(l.name)));
  }

  async function read(location: string) {
    const now = clock.now();
    report.reads++;
    const res = await p.location(location).request("/v1/keys", { headers: { authorization: `Bearer ${p.tokens.everything}` } });
    if (res.status !== 200)
      return violation("read", `${location}: GET /v1/keys answered ${res.status} ${(await res.text()).slice(0, 200)}`);
    const docs = ((await res.json()) as { keys: KeyDoc[] }).keys;
    let freshLive: Set<string> | undefined;
    for (const set of hadKey)
      if (!docs.some((d) => d.model_set === set)) violation("live-current", `${location}: ${set} had a key but the read served none`);
    for (const doc of docs) {
      report.documents++;
      const cur = rows.find((r) => r.model_set === doc.model_set && r.state === "current");
      if (cur && doc.generation < cur.generation) report.staleDocuments++;
      const prefix = prefixOf(doc.api_key);
      const refresh = Date.parse(doc.refresh_at);
      const expires = Date.parse(doc.expires_at);
      if (expires > (served.get(prefix)?.expires ?? 0))
        served.set(prefix, { expires, how: `served by ${location} at ${iso(now)}, refresh_at ${doc.refresh_at}` });
      if (refresh <= now)
        violation("document", `${location}: ${doc.model_set} gen ${doc.generation} served refresh_at ${doc.refresh_at} at ${iso(now)}`);
      if (expires < refresh + OVERLAP_MS[doc.model_set]!)
        violation("document", `${location}: ${doc.model_set} gen ${doc.generation} expires_at less than refresh_at + overlap`);
      // (A read inside a hold sees keys minted since the last check: ask Baseten itself.)
      if (!live.has(prefix) && !(freshLive ??= await p.livePrefixes()).has(prefix)) {
        const e = emergency.get(prefix);
        const revoked = p.revokedAt.get(prefix) ?? e;
        const excused = e !== undefined && revoked !== undefined && now - revoked <= STALE_MS;
        if (!excused)
          violation(
            "live-current",
            `${location} served ${doc.model_set} gen ${doc.generation}, which is not live at Baseten${revoked !== undefined ? ` (revoked ${Math.round((now - revoked) / 1000)} s before${e !== undefined ? ", by revoke_previous" : ""})` : ""}`,
          );
      }
    }
  }

  let webhookSeq = 0;
  /** A signed rotation webhook at "east"; `revokePrevious` is the leak response. */
  async function webhook(set: string, revokePrevious: boolean) {
    await loadRows(); // it may run inside a hold of another run: what D1 holds now
    const before = rows.find((r) => r.model_set === set && r.state === "current");
    const e0 = clock.now();
    const res = await p.webhook(
      "east",
      { model_set: set, reason: `soak ${opts.seed} early rotation`, revoke_previous: revokePrevious },
      { id: `soak-${opts.seed}-${path}-${++webhookSeq}` },
    );
    if (res.status === 200) {
      report.rotations++;
      report.earlyRotations++;
    } else if (res.status >= 500) report.failedRuns++;
    // revoke_previous applies once the replacement is promoted, even if the answer was lost:
    // every key of the set other than the new one may go at once.
    if (revokePrevious && before?.prefix) {
      const after = await realDB
        .prepare("SELECT state FROM keys WHERE model_set = ?1 AND generation = ?2")
        .bind(set, before.generation)
        .first<{ state: string }>();
      if (after?.state !== "current") {
        report.emergencyRevokes++;
        for (const r of rows)
          if (r.model_set === set && r.prefix && (r.state === "current" || r.state === "previous")) emergency.set(r.prefix, e0);
      }
    }
  }

  const faults = catalogue({ p: () => p, webhook, readAll });

  function predictedWork(now: number): boolean {
    // One tick of look-ahead: an engine may rotate ahead of refresh_at (DESIGN §3).
    return rows.some(
      (r) =>
        (r.state === "current" && (r.refresh_at ?? 0) <= now + tickMs) ||
        (r.state === "previous" && (r.expires_at ?? 0) <= now) ||
        r.state === "pending",
    );
  }

  async function inject(faultChance: number): Promise<Injection | null> {
    if (carried) return carried.inj;
    if (!rng.chance(faultChance)) return null;
    const inj = rng.pick(faults)(rng);
    if (inj.fake) await p.fake.fault(...inj.fake);
    if (inj.d1) plan.d1(...inj.d1);
    if (inj.kv) plan.kv(...inj.kv);
    if (inj.hooks) p.hook(...inj.hooks.map((h) => ({ ...h, label: `hook:${inj.kind}` })));
    lastFault = { kind: inj.kind, at: clock.now() };
    report.faultsInjected++;
    report.faultsByKind[inj.kind] = (report.faultsByKind[inj.kind] ?? 0) + 1;
    return inj;
  }

  /** Counts what fired and clears what did not, so every action starts clean. */
  /**
   * A model fault (a hook) whose operation did not come up in its action stays armed for up to
   * three more ticks (an engine may do that work a tick later or earlier than predicted); no
   * other fault is injected meanwhile. Everything else is cleared after its action.
   */
  let carried: { inj: Injection; ticksLeft: number } | null = null;

  /** Counts what fired and clears what did not, so every action starts clean. */
  async function settle(inj: Injection | null, tickEnd: boolean) {
    if (!inj) return;
    const hookHits = Object.values(p.hits).reduce((a, b) => a + b, 0);
    if (inj.hooks && !inj.fake && !inj.d1 && !inj.kv && hookHits === 0 && tickEnd) {
      carried ??= { inj, ticksLeft: 4 };
      if (--carried.ticksLeft > 0) return;
    }
    carried = null;
    let fired = plan.totalHits + hookHits;
    plan.clear();
    for (const k of Object.keys(plan.hits)) delete plan.hits[k];
    p.clearHooks();
    for (const k of Object.keys(p.hits)) delete p.hits[k];
    if (inj.fake) {
      const res = await fetch(`${env.BASETEN_API_BASE}/__control/${encodeURIComponent(p.fake.key)}/faults`);
      const left = ((await res.json()) as { faults: { count: number }[] }).faults.reduce((a, f) => a + f.count, 0);
      fired += inj.fake.reduce((a, f) => a + (f.count ?? 1), 0) - left;
      await p.fake.clearFaults();
    }
    if (fired > 0) {
      report.faultsFired++;
      report.firedByKind[inj.kind] = (report.firedByKind[inj.kind] ?? 0) + 1;
    }
  }

  async function cronTick() {
    if (path === "queue") {
      const r = await p.queueTick();
      report.queued += r.queued;
      return r.results;
    }
    return (await p.tick()).results;
  }

  /** Whether a recorded time of a live row falls in (from, to]. */
  function crossed(from: number, to: number): boolean {
    return rows.some((r) => [r.refresh_at, r.expires_at].some((x) => x !== null && x > from - STALE_MS && x <= to));
  }
  let lastChecked = clock.now();

  const start = clock.now();
  for (let i = 0; i < ticks; i++) {
    if (Date.now() - started > maxWallMs) {
      violation("wall-clock", `the soak stopped after ${i} of ${ticks} ticks: over its ${maxWallMs / 1000} s budget`);
      break;
    }
    tickIndex = i;
    const t = start + i * tickMs;
    clock.set(Math.max(t, clock.now()));
    const t0 = clock.now();
    const wasCarried = (carried as { inj: Injection } | null)?.inj;
    const inj = await inject(predictedWork(t0) ? faultRate : faultRate / 10);
    let busy = inj !== null && inj !== wasCarried;
    try {
      const results = await cronTick();
      busy ||= results.length > 0;
      for (const r of results) {
        if (r.outcome === "rotated") report.rotations++;
        if (r.outcome === "failed") report.failedRuns++;
      }
    } catch {
      report.failedTicks++; // the cron's own read failed: the whole tick is retried at the next one
    }
    report.ticks++;
    await settle(inj, true);
    // Every step that can have changed anything is checked at every location: a tick that ran a
    // set or met a fault, or one that passed a recorded refresh_at / expires_at (what documents
    // say changes then); a tenth of the quiet ones too.
    if (busy || crossed(lastChecked, clock.now()) || rng.chance(0.1)) {
      await check(t0);
      await readAll();
      lastChecked = clock.now();
    }

    // Between ticks: reads at random locations, maybe a webhook rotation, at seeded offsets;
    // dense in the first 90 s after a busy tick (edge copies and memories elsewhere still old).
    const events: { at: number; what: string }[] = [];
    const offset = () => (busy && rng.chance(0.6) ? rng.int(0, 90_000) : rng.int(0, tickMs - 1));
    const reads = busy ? rng.int(1, 4) : rng.chance(0.15) ? 1 : 0;
    for (let k = 0; k < reads; k++) events.push({ at: offset(), what: rng.pick(p.locations).name });
    if (rng.chance(earlyRate)) events.push({ at: rng.int(0, tickMs - 1), what: "early" });
    events.sort((a, b) => a.at - b.at);
    for (const ev of events) {
      clock.set(Math.max(t + ev.at, clock.now()));
      if (ev.what !== "early") {
        await read(ev.what);
        continue;
      }
      const e0 = clock.now();
      const earlyInj = await inject(faultRate);
      await webhook(rng.pick(SET_IDS), rng.chance(emergencyShare));
      await settle(earlyInj, false);
      await check(e0);
      await readAll();
      lastChecked = clock.now();
    }
  }

  // Convergence: faults stop; after a clean day (the longest overlap) every set is tidy.
  const end = clock.now();
  for (let t = end + tickMs; t <= end + 26 * HOUR; t += 6 * tickMs) {
    clock.set(Math.max(t, clock.now()));
    await cronTick();
    report.convergenceTicks++;
    tickIndex++;
    await check(t);
    await readAll();
  }
  clock.advance(STALE_MS);
  await loadRows();
  const now = clock.now();
  const docsAt = await Promise.all(
    p.locations.map(async (l) => {
      const res = await l.request("/v1/keys", { headers: { authorization: `Bearer ${p.tokens.everything}` } });
      return { location: l.name, docs: res.status === 200 ? ((await res.json()) as { keys: KeyDoc[] }).keys : [] };
    }),
  );
  for (const set of SET_IDS) {
    const current = rows.filter((r) => r.model_set === set && r.state === "current");
    if (current.length !== 1) violation("converged", `${set} has ${current.length} current keys`);
    for (const { location, docs } of docsAt) {
      const d = docs.find((x) => x.model_set === set);
      if (current[0] && d?.generation !== current[0].generation)
        violation("converged", `${location} serves ${set} gen ${d?.generation} while D1's current is gen ${current[0].generation}`);
    }
    const pend = rows.filter((r) => r.model_set === set && r.state === "pending");
    if (pend.length > 0) violation("converged", `${set} still has ${pend.length} pending rows`);
    const expected = rows
      .filter((r) => r.model_set === set && (r.state === "current" || (r.state === "previous" && (r.expires_at ?? 0) > now)))
      .map((r) => r.prefix!);
    const liveHere = [...live].filter(([, name]) => setOfName(name) === set).map(([pr]) => pr);
    if (liveHere.length !== expected.length || !expected.every((pr) => liveHere.includes(pr)))
      violation("converged", `${set} live keys ${liveHere.length} != D1's current + unexpired previous ${expected.length}`);
    const overdue = rows.filter((r) => r.model_set === set && r.state === "previous" && (r.expires_at ?? 0) <= now - tickMs - STALE_MS);
    if (overdue.length > 0)
      violation("converged", `${set} gen ${overdue.map((r) => r.generation).join(", ")} still previous after its promise ended`);
  }
  p.dispose();
  report.wallMs = Date.now() - started;
  return report;
}

const iso = (ms: number) => new Date(ms).toISOString();
