/**
 * `npm run bench`: the rotator against its floor, in one run, on this machine.
 *
 *   read path   GET /v1/keys/{set} under load (autocannon, loopback) next to a bare worker in the
 *               same runtime (workerd) returning a constant JSON body of the same size
 *   rotation    wall time to rotate N sets (default 1000) with the fake Baseten answering each call
 *               in 100 ms, inline and through the queue, next to N x 100 ms / concurrency
 *   cost        Baseten calls, D1 statements and round trips, KV operations and subrequests per
 *               rotated set, counted by a wrapper around the bundle (bench/counting-worker.js)
 *   bundle      minified and gzipped size of what `wrangler deploy` uploads
 *   memory      peak RSS of the workerd process during the read-path run
 *
 * Prints a table and writes it to bench/results/latest.md. Everything runs on loopback and
 * stops by itself. Options: --rounds N (3), --seconds S (10), --sets N (1000), --connections C (32),
 * --only read|rotation|queue (one part, no results file), --only drill (bench/drill.ts: the leak drill), --only scale (bench/scale.ts: 2,000 sets from
 * rotator.config.json, dry-run deployed and rotated through the queue; --latency ms, default 200), --compare <bundle.js> (a second rotator
 * build under the same read load and rotating the same sets, e.g. the previous one). Method and limits: README, "Performance".
 */
/// <reference types="node" />
import { cpus, loadavg, totalmem } from "node:os";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import autocannon from "autocannon";
import { type FakeBaseten, startFakeBaseten } from "../dev/fake-baseten.ts";
import { runScale, scaleMarkdown } from "./scale.ts";
import {
  BUNDLE_DIR,
  ROOT,
  type StartedWorker,
  buildBundle,
  cpuSeconds,
  median,
  migrate,
  peakRssMiB,
  randomB64,
  sha256Hex,
  sleep,
  startWorker,
} from "./lib.ts";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

const ROUNDS = option("rounds", 3);
const SECONDS = option("seconds", 10);
const SETS = option("sets", 1000);
const CONNECTIONS = option("connections", 32);
/** --only read|rotation|queue: run one part (for iterating; the full run is the benchmark). */
const ONLY = (() => {
  const i = process.argv.indexOf("--only");
  if (i < 0) return null;
  const part = process.argv[i + 1];
  if (part !== "read" && part !== "rotation" && part !== "queue" && part !== "drill" && part !== "scale")
    throw new Error("--only takes read, rotation, queue, drill or scale");
  return part;
})();
/** --compare <bundle.js>: a second rotator bundle under the same load, e.g. the previous build. */
const COMPARE = (() => {
  const i = process.argv.indexOf("--compare");
  return i >= 0 ? process.argv[i + 1]! : null;
})();
const LATENCY_MS = 100;
const CONCURRENCY = 6;
const TEAM = "team-bench";
const WORKERD_VERSION = (
  JSON.parse(readFileSync(path.join(ROOT, "node_modules", "workerd", "package.json"), "utf8")) as { version: string }
).version;

const started: StartedWorker[] = [];
let fake: FakeBaseten | null = null;

function say(line: string) {
  process.stderr.write(`${line}\n`);
}

function secrets() {
  return { ENCRYPTION_KEY: randomB64(32), ADMIN_TOKEN: `adm_${randomB64(24)}`, WEBHOOK_SECRET: `whsec_${randomB64(24)}` };
}

function setId(i: number) {
  return `set-${String(i).padStart(4, "0")}`;
}

function modelSets(n: number) {
  return Object.fromEntries(
    Array.from({ length: n }, (_, i) => [setId(i), { model_ids: [`model${i}`], rotate_every: "24h", overlap: "1h" }]),
  );
}

async function fakeTenant(latencyMs: number): Promise<string> {
  const key = `fake-mgmt-bench-${randomB64(9).replace(/[^A-Za-z0-9]/g, "")}`;
  const res = await fetch(`${fake!.url}/__control/${key}/latency`, { method: "POST", body: JSON.stringify({ ms: latencyMs }) });
  if (!res.ok) throw new Error(`fake latency: ${res.status}`);
  return key;
}

async function fakeCounts(key: string): Promise<Record<string, number>> {
  const res = await fetch(`${fake!.url}/__control/${key}/calls`);
  return ((await res.json()) as { counts: Record<string, number> }).counts;
}

/** The worker's modules; `bundle` (--compare) swaps in another build, beside ours under compare/. */
function bundleModules(main: "index.js" | "counting-worker.js", bundle: string | null = null) {
  const dir = bundle ? path.join(BUNDLE_DIR, "compare") : BUNDLE_DIR;
  const rotator = { path: path.join(dir, "index.js"), contents: readFileSync(bundle ?? path.join(BUNDLE_DIR, "index.js"), "utf8") };
  if (main === "index.js") return [rotator];
  const wrapper = {
    path: path.join(dir, "counting-worker.js"),
    contents: readFileSync(path.join(ROOT, "bench", "counting-worker.js"), "utf8"),
  };
  return [wrapper, rotator];
}

async function launch(spec: Parameters<typeof startWorker>[0]): Promise<StartedWorker> {
  const w = await startWorker(spec);
  started.push(w);
  return w;
}

async function stop(w: StartedWorker) {
  started.splice(started.indexOf(w), 1);
  await w.dispose();
}

async function scheduled(w: StartedWorker): Promise<void> {
  const worker = await w.mf.getWorker("worker");
  const result = await worker.scheduled({ cron: "* * * * *", scheduledTime: new Date() });
  if (result.outcome !== "ok") throw new Error(`scheduled() ended with outcome ${result.outcome}`);
}

// --- read path -------------------------------------------------------------------------

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerReq: number;
  non2xx: number;
  errors: number;
}

async function load(url: string, headers: Record<string, string>, seconds: number, pid: number): Promise<LoadResult> {
  const cpu0 = cpuSeconds(pid);
  const r = await autocannon({ url, headers, connections: CONNECTIONS, duration: seconds, pipelining: 1 });
  const cpu = cpuSeconds(pid) - cpu0;
  const total = r.requests.total;
  return {
    rps: total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    cpuUsPerReq: (cpu * 1e6) / Math.max(1, total),
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

/** A rotator bundle in workerd with one set minted and a consumer token for it. */
async function seededRotator(bundle: string | null) {
  const token = `bench_${randomB64(24).replace(/[^A-Za-z0-9]/g, "")}`;
  const tenant = await fakeTenant(0);
  const modules = bundleModules("index.js");
  // Miniflare loads modules by path under the project: the compared build is placed beside ours.
  if (bundle) modules[0] = { path: path.join(BUNDLE_DIR, "compare.js"), contents: readFileSync(bundle, "utf8") };
  const w = await launch({
    modules,
    storage: true,
    vars: {
      BASETEN_API_BASE: fake!.url,
      BASETEN_TEAM_ID: TEAM,
      BASETEN_API_KEY: tenant,
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
      CONSUMERS: JSON.stringify({ bench: { token_sha256: sha256Hex(token), model_sets: ["demo"] } }),
      ...secrets(),
    },
  });
  await migrate(w.mf);
  await scheduled(w);
  const headers = { authorization: `Bearer ${token}` };
  const res = await fetch(`${w.url}/v1/keys/demo`, { headers });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`seeding failed: GET /v1/keys/demo answered ${res.status} ${body}`);
  return { w, headers, body };
}

type Summary = { rps: number; p50: number; p99: number; cpuUsPerReq: number };

async function readPath() {
  const rotator = await seededRotator(null);
  const compare = COMPARE ? await seededRotator(COMPARE) : null;
  const bodyBytes = Buffer.byteLength(rotator.body);
  // A JSON string of exactly the document's size.
  const floor = await launch({
    modules: [
      { path: path.join(ROOT, "bench", "floor-worker.js"), contents: readFileSync(path.join(ROOT, "bench", "floor-worker.js"), "utf8") },
    ],
    storage: false,
    vars: { BODY: JSON.stringify("x".repeat(bodyBytes - 2)) },
  });
  const floorBody = await (await fetch(`${floor.url}/`)).text();
  if (Buffer.byteLength(floorBody) !== bodyBytes) throw new Error("floor body size differs from the key document");

  const targets: Record<string, { url: string; headers: Record<string, string>; pid: number }> = {
    // The same request (token included) goes to the floor, which ignores it.
    floor: { url: `${floor.url}/v1/keys/demo`, headers: rotator.headers, pid: floor.pid },
    rotator: { url: `${rotator.w.url}/v1/keys/demo`, headers: rotator.headers, pid: rotator.w.pid },
  };
  if (compare) targets.compare = { url: `${compare.w.url}/v1/keys/demo`, headers: compare.headers, pid: compare.w.pid };
  const names = Object.keys(targets);
  say(`read path: ${ROUNDS} rounds x ${SECONDS} s per worker, ${CONNECTIONS} connections, body ${bodyBytes} bytes`);
  // Warm each (JIT, connections) before anything is recorded.
  for (const t of Object.values(targets)) await load(t.url, t.headers, 2, t.pid);
  const runs: Record<string, LoadResult[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate which goes first so drift on the machine hits all alike.
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const t = targets[name]!;
      const r = await load(t.url, t.headers, SECONDS, t.pid);
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${name}: ${r.non2xx} non-2xx answers and ${r.errors} errors under load`);
      runs[name]!.push(r);
      say(
        `  round ${round + 1} ${name.padEnd(7)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50} ms  p99 ${r.p99} ms  ${r.cpuUsPerReq.toFixed(1)} µs CPU/req`,
      );
    }
  }
  const summary = (list: LoadResult[]): Summary => ({
    rps: median(list.map((r) => r.rps)),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpuUsPerReq: median(list.map((r) => r.cpuUsPerReq)),
  });
  // Per round, the rotator's throughput over the floor's in the same round: less sensitive to
  // whatever else the machine was doing than a ratio of medians.
  const pairedRatio = median(runs.rotator!.map((r, i) => r.rps / runs.floor![i]!.rps));
  // And against the compared build, round by round (the two are the same kind of worker).
  const comparedRatio = compare ? median(runs.rotator!.map((r, i) => r.rps / runs.compare![i]!.rps)) : null;
  const result = {
    rotator: summary(runs.rotator!),
    floor: summary(runs.floor!),
    compare: compare ? summary(runs.compare!) : null,
    pairedRatio,
    comparedRatio,
    rssMiB: { rotator: peakRssMiB(rotator.w.pid), floor: peakRssMiB(floor.pid) },
    bodyBytes,
  };
  await stop(rotator.w);
  if (compare) await stop(compare.w);
  await stop(floor);
  return result;
}

// --- rotation ----------------------------------------------------------------------------

interface Counters {
  fetch: { total: number; mint: number; list: number; revoke: number; other: number; ms: number };
  d1: { statements: number; roundTrips: number };
  kv: { get: number; getWithMetadata: number; put: number; delete: number; list: number; lastPutAt: number };
  queue: { sends: number; messages: number };
  invocations: { fetch: number; scheduled: number; queue: number };
}

async function counters(w: StartedWorker, reset = false): Promise<Counters> {
  const res = await fetch(`${w.url}/__bench/counters`, { method: reset ? "POST" : "GET" });
  return (await res.json()) as Counters;
}

async function sql<T>(w: StartedWorker, query: string, ...params: unknown[]): Promise<T[]> {
  const db = await w.mf.getD1Database("DB", "worker");
  const { results } = await db
    .prepare(query)
    .bind(...params)
    .all();
  return results as T[];
}

async function countCurrent(w: StartedWorker): Promise<number> {
  return (await sql<{ n: number }>(w, "SELECT COUNT(*) AS n FROM keys WHERE state = 'current'"))[0]!.n;
}

/** Waits until the counters stop moving (a queue consumer finishing its last batch). */
async function settledCounters(w: StartedWorker): Promise<Counters> {
  let last = JSON.stringify(await counters(w));
  for (let quiet = 0; quiet < 3;) {
    await sleep(500);
    const now = JSON.stringify(await counters(w));
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return JSON.parse(last) as Counters;
}

interface Cost {
  sets: number;
  basetenCalls: number;
  mints: number;
  lists: number;
  revokes: number;
  d1Statements: number;
  d1RoundTrips: number;
  kvWrites: number;
  kvReads: number;
  queueMessages: number;
  fetchSubrequests: number;
  allOperations: number;
}

function cost(c: Counters, fakeCalls: Record<string, number>, sets: number): Cost {
  const kvWrites = c.kv.put + c.kv.delete;
  const kvReads = c.kv.get + c.kv.getWithMetadata + c.kv.list;
  const basetenCalls = (fakeCalls.mint ?? 0) + (fakeCalls.list ?? 0) + (fakeCalls.revoke ?? 0);
  if (basetenCalls !== c.fetch.total - c.fetch.other)
    throw new Error(`fetch count ${c.fetch.total} disagrees with the fake's ${basetenCalls} calls`);
  return {
    sets,
    basetenCalls,
    mints: fakeCalls.mint ?? 0,
    lists: fakeCalls.list ?? 0,
    revokes: fakeCalls.revoke ?? 0,
    d1Statements: c.d1.statements,
    d1RoundTrips: c.d1.roundTrips,
    kvWrites,
    kvReads,
    queueMessages: c.queue.messages,
    fetchSubrequests: c.fetch.total,
    allOperations: c.fetch.total + c.d1.roundTrips + kvWrites + kvReads + c.queue.sends,
  };
}

/** A tick's counts less what any tick costs: the work per set. */
function perSet(c: Cost, tick: Cost): Cost {
  const out = { ...c };
  for (const k of Object.keys(c) as (keyof Cost)[]) if (k !== "sets") out[k] = c[k] - tick[k];
  return out;
}

async function rotator(sets: number, inlineBudget: number, latencyMs: number, bundle: string | null = null) {
  const tenant = await fakeTenant(latencyMs);
  const w = await launch({
    modules: bundleModules("counting-worker.js", bundle),
    storage: true,
    queues: true,
    vars: {
      BASETEN_API_BASE: fake!.url,
      BASETEN_TEAM_ID: TEAM,
      BASETEN_API_KEY: tenant,
      BASETEN_CONCURRENCY: String(CONCURRENCY),
      INLINE_ROTATION_BUDGET: String(inlineBudget),
      MODEL_SETS: JSON.stringify(modelSets(sets)),
      CONSUMERS: "{}",
      ...secrets(),
    },
  });
  await migrate(w.mf);
  return { w, tenant };
}

async function setLatency(tenant: string, ms: number) {
  await fetch(`${fake!.url}/__control/${tenant}/latency`, { method: "POST", body: JSON.stringify({ ms }) });
}

async function callsSince(tenant: string, before: Record<string, number>) {
  const now = await fakeCounts(tenant);
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

async function rotationInline() {
  const { w, tenant } = await rotator(SETS, 10_000, LATENCY_MS);
  say(`rotation, inline: ${SETS} sets, fake latency ${LATENCY_MS} ms, ${CONCURRENCY} calls in flight`);
  await counters(w, true);
  const cpu0 = cpuSeconds(w.pid);
  const t0 = performance.now();
  await scheduled(w);
  const wallMs = performance.now() - t0;
  const cpuMsPerSet = ((cpuSeconds(w.pid) - cpu0) * 1000) / SETS;
  const current = await countCurrent(w);
  if (current !== SETS) throw new Error(`inline tick left ${SETS - current} sets without a key`);
  const firstCounters = await counters(w);
  const callMs = firstCounters.fetch.ms / Math.max(1, firstCounters.fetch.total);
  const first = cost(firstCounters, await fakeCounts(tenant), SETS);
  say(`  ${(wallMs / 1000).toFixed(2)} s for ${SETS} sets (a Baseten call took ${callMs.toFixed(1)} ms on average, seen from the worker)`);

  // Steady state, counted (latency off: counts do not depend on it). Time moves by rewriting
  // the ledger's times: every current key due now, then every replaced key's promise ended.
  await setLatency(tenant, 0);
  const now = Date.now();
  await sql(w, "UPDATE keys SET refresh_at = ?1 WHERE state = 'current'", now - 1);
  let before = await fakeCounts(tenant);
  await counters(w, true);
  await scheduled(w);
  const steady = cost(await counters(w), await callsSince(tenant, before), SETS);
  // (engine v2: a previous key also waits until KV has served its replacement for 65 s)
  await sql(w, "UPDATE keys SET expires_at = ?1, kv_replaced_at = ?1 - 65000 WHERE state = 'previous'", Date.now() - 1);
  before = await fakeCounts(tenant);
  await counters(w, true);
  await scheduled(w);
  const revocation = cost(await counters(w), await callsSince(tenant, before), SETS);
  const left = (await sql<{ n: number }>(w, "SELECT COUNT(*) AS n FROM keys WHERE state = 'previous'"))[0]!.n;
  if (left !== 0 || revocation.revokes !== SETS)
    throw new Error(`revocation tick left ${left} previous keys (${revocation.revokes} revokes)`);
  // A tick with nothing due: what every tick costs whatever it finds (reads, plan, sweep).
  before = await fakeCounts(tenant);
  await counters(w, true);
  await scheduled(w);
  const idleTick = cost(await counters(w), await callsSince(tenant, before), 1);
  const errors = w.logs.errors;
  await stop(w);
  return {
    wallMs,
    cpuMsPerSet,
    callMs,
    first: perSet(first, idleTick),
    steady: perSet(steady, idleTick),
    revocation: perSet(revocation, idleTick),
    idleTick,
    errors,
  };
}

async function rotationQueue() {
  const { w, tenant } = await rotator(SETS, 0, LATENCY_MS);
  say(`rotation, queue: ${SETS} sets through ROTATIONS (wrangler.toml consumer settings), fake latency ${LATENCY_MS} ms`);
  await counters(w, true);
  const t0 = Date.now();
  await scheduled(w);
  const enqueuedMs = Date.now() - t0;
  // Done when the last set's KV entry is written (the worker stamps it); polling the worker's
  // counters is cheap and stays out of D1's way.
  let c = await counters(w);
  while (c.kv.put < SETS) {
    if (Date.now() - t0 > 300_000) throw new Error(`queue path: only ${c.kv.put} of ${SETS} sets rotated after 300 s`);
    await sleep(250);
    c = await counters(w);
    if (process.env.BENCH_DEBUG) say(`    ${Date.now() - t0} ms: ${c.kv.put} rotated`);
  }
  const wallMs = c.kv.lastPutAt - t0;
  const current = await countCurrent(w);
  if (current !== SETS) throw new Error(`queue path: ${current} current keys for ${SETS} sets`);
  c = await settledCounters(w);
  const result = {
    wallMs,
    enqueuedMs,
    callMs: c.fetch.ms / Math.max(1, c.fetch.total),
    batches: c.invocations.queue,
    cost: cost(c, await fakeCounts(tenant), SETS),
    errors: w.logs.errors,
  };
  say(
    `  ${(wallMs / 1000).toFixed(2)} s for ${SETS} sets (${result.batches} consumer batches; a Baseten call took ${result.callMs.toFixed(1)} ms on average)`,
  );
  await stop(w);
  return result;
}

/**
 * --compare: the other build rotating the same N sets, inline (one tick) and through the queue
 * (until its last KV write), right after ours in the same run: wall times only.
 */
async function rotationCompare(bundle: string): Promise<{ inlineMs: number; queueMs: number; inlineCallMs: number }> {
  const inline = await rotator(SETS, 10_000, LATENCY_MS, bundle);
  say(`rotation, --compare ${bundle}: ${SETS} sets inline`);
  await counters(inline.w, true);
  const t0 = performance.now();
  await scheduled(inline.w);
  const inlineMs = performance.now() - t0;
  const c = await counters(inline.w);
  const inlineCallMs = c.fetch.ms / Math.max(1, c.fetch.total);
  if ((await countCurrent(inline.w)) !== SETS) throw new Error("--compare: the inline tick left sets without a key");
  await stop(inline.w);
  say(`  ${(inlineMs / 1000).toFixed(2)} s (a Baseten call took ${inlineCallMs.toFixed(1)} ms on average)`);
  const queued = await rotator(SETS, 0, LATENCY_MS, bundle);
  await counters(queued.w, true);
  const q0 = Date.now();
  await scheduled(queued.w);
  let q = await counters(queued.w);
  while (q.kv.put < SETS) {
    if (Date.now() - q0 > 300_000) throw new Error(`--compare queue path: only ${q.kv.put} of ${SETS} sets rotated after 300 s`);
    await sleep(250);
    q = await counters(queued.w);
  }
  const queueMs = q.kv.lastPutAt - q0;
  await stop(queued.w);
  say(`  ${(queueMs / 1000).toFixed(2)} s through the queue`);
  return { inlineMs, queueMs, inlineCallMs };
}

/** The read path's storage traffic, counted: D1 must stay untouched while KV has the key. */
async function readCost() {
  const token = `bench_${randomB64(24).replace(/[^A-Za-z0-9]/g, "")}`;
  const tenant = await fakeTenant(0);
  const w = await launch({
    modules: bundleModules("counting-worker.js"),
    storage: true,
    vars: {
      BASETEN_API_BASE: fake!.url,
      BASETEN_TEAM_ID: TEAM,
      BASETEN_API_KEY: tenant,
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
      CONSUMERS: JSON.stringify({ bench: { token_sha256: sha256Hex(token), model_sets: ["demo"] } }),
      ...secrets(),
    },
  });
  await migrate(w.mf);
  await scheduled(w);
  await counters(w, true);
  const seconds = Math.min(SECONDS, 6);
  const r = await autocannon({
    url: `${w.url}/v1/keys/demo`,
    headers: { authorization: `Bearer ${token}` },
    connections: 8,
    duration: seconds,
  });
  const c = await counters(w);
  await stop(w);
  if (r.non2xx > 0) throw new Error(`read cost run: ${r.non2xx} non-2xx answers`);
  return {
    requests: r.requests.total,
    seconds,
    d1RoundTrips: c.d1.roundTrips,
    kvReads: c.kv.get + c.kv.getWithMetadata,
    fetches: c.fetch.total,
  };
}

// --- report --------------------------------------------------------------------------------

type Results = {
  bundle: ReturnType<typeof buildBundle>;
  read: Awaited<ReturnType<typeof readPath>>;
  reads: Awaited<ReturnType<typeof readCost>>;
  inline: Awaited<ReturnType<typeof rotationInline>>;
  queued: Awaited<ReturnType<typeof rotationQueue>>;
  rotationCompared: Awaited<ReturnType<typeof rotationCompare>> | null;
  load: { start: number[]; end: number[] };
  seconds: number;
};

const f0 = (n: number) => n.toFixed(0);
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const f3 = (n: number) => n.toFixed(3);
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const mark = (ok: boolean) => (ok ? "met" : "**missed**");

function report(r: Results): { markdown: string; missed: string[] } {
  const idealMs = (SETS * LATENCY_MS) / CONCURRENCY;
  const readRatio = r.read.rotator.rps / r.read.floor.rps;
  const inlineRatio = idealMs / r.inline.wallMs;
  const queueRatio = idealMs / r.queued.wallMs;
  const per = (c: Cost, k: keyof Cost) => (c[k] as number) / c.sets;
  const first = r.inline.first;
  const rows: string[][] = [
    [
      "read path: requests/s (median)",
      f0(r.read.rotator.rps),
      `floor ${f0(r.read.floor.rps)}`,
      f2(readRatio),
      "≥ 0.85 of floor",
      mark(readRatio >= 0.85),
    ],
    ["read path: same-round ratio (median)", "", "", f2(r.read.pairedRatio), "", ""],
    ...(r.read.compare
      ? [
          [
            `read path: --compare ${COMPARE} requests/s`,
            f0(r.read.compare.rps),
            `floor ${f0(r.read.floor.rps)}`,
            f2(r.read.compare.rps / r.read.floor.rps),
            "",
            "",
          ],
          ["read path: rotator ÷ --compare, same round (median)", "", "", f2(r.read.comparedRatio ?? 0), "", ""],
        ]
      : []),
    ["read path: p50 latency", `${r.read.rotator.p50} ms`, `floor ${r.read.floor.p50} ms`, "", "", ""],
    ["read path: p99 latency", `${r.read.rotator.p99} ms`, `floor ${r.read.floor.p99} ms`, "", "", ""],
    [
      "read path: workerd CPU per request",
      `${f0(r.read.rotator.cpuUsPerReq)} µs`,
      `floor ${f0(r.read.floor.cpuUsPerReq)} µs`,
      f2(r.read.floor.cpuUsPerReq / r.read.rotator.cpuUsPerReq),
      "",
      "",
    ],
    [
      "read path: D1 queries / KV reads per 1,000 requests",
      `${f1((r.reads.d1RoundTrips * 1000) / r.reads.requests)} / ${f2((r.reads.kvReads * 1000) / r.reads.requests)}`,
      "0 / —",
      "",
      "no D1 on a KV hit",
      mark(r.reads.d1RoundTrips === 0),
    ],
    [
      "memory: peak RSS of workerd (read-path run)",
      `${f1(r.read.rssMiB.rotator)} MiB`,
      `floor ${f1(r.read.rssMiB.floor)} MiB`,
      f2(r.read.rssMiB.floor / r.read.rssMiB.rotator),
      "",
      "",
    ],
    [
      `rotation: ${SETS} sets inline, one tick`,
      `${f2(r.inline.wallMs / 1000)} s`,
      `ideal ${f2(idealMs / 1000)} s`,
      f2(inlineRatio),
      "≥ 0.8 of ideal",
      mark(inlineRatio >= 0.8),
    ],
    [
      `rotation: ${SETS} sets through the queue`,
      `${f2(r.queued.wallMs / 1000)} s`,
      `ideal ${f2(idealMs / 1000)} s`,
      f2(queueRatio),
      "≥ 0.8 of ideal",
      mark(queueRatio >= 0.8),
    ],
    ...(r.rotationCompared
      ? [
          [
            `rotation: ${SETS} sets inline, --compare ${COMPARE}`,
            `${f2(r.rotationCompared.inlineMs / 1000)} s`,
            `ideal ${f2(idealMs / 1000)} s`,
            f2(idealMs / r.rotationCompared.inlineMs),
            "",
            "",
          ],
          [
            `rotation: ${SETS} sets through the queue, --compare ${COMPARE}`,
            `${f2(r.rotationCompared.queueMs / 1000)} s`,
            `ideal ${f2(idealMs / 1000)} s`,
            f2(idealMs / r.rotationCompared.queueMs),
            "",
            "",
          ],
        ]
      : []),
    [
      "cost per rotated set: Baseten calls",
      `${f3(per(first, "basetenCalls"))}`,
      "1 mint",
      "",
      "one mint",
      mark(first.mints === first.sets && first.basetenCalls === first.sets),
    ],
    ["cost per rotated set: KV writes", f3(per(first, "kvWrites")), "1", "", "one KV write", mark(first.kvWrites === first.sets)],
    [
      "cost per rotated set: D1 round trips (queries; a batch is one)",
      f3(per(first, "d1RoundTrips")),
      "≤ 3",
      "",
      "≤ 3 amortized",
      mark(per(first, "d1RoundTrips") <= 3),
    ],
    [
      "cost per rotated set: D1 statements",
      f3(per(first, "d1Statements")),
      "≤ 3",
      "",
      "≤ 3 amortized",
      mark(per(first, "d1Statements") <= 3),
    ],
    ["cost per rotated set: KV reads", f3(per(first, "kvReads")), "", "", "", ""],
    ["cost per rotated set: fetch subrequests", f3(per(first, "fetchSubrequests")), "", "", "", ""],
    ["cost per rotated set: all outbound operations", f3(per(first, "allOperations")), "", "", "", ""],
    [
      "cost per tick, whatever is due",
      `${r.inline.idleTick.lists} list call, ${r.inline.idleTick.d1RoundTrips} D1 round trip(s), ${r.inline.idleTick.kvReads} KV list`,
      "",
      "",
      "",
      "",
    ],
    [
      "bundle: minified",
      kib(r.bundle.minifiedBytes),
      "< 32 KiB",
      f2((32 * 1024) / r.bundle.minifiedBytes),
      "< 32 KiB",
      mark(r.bundle.minifiedBytes < 32 * 1024),
    ],
    ["bundle: minified + gzip", kib(r.bundle.gzipBytes), "", "", "", ""],
  ];
  const missed = rows.filter((row) => row[5] === "**missed**").map((row) => row[0]!);
  const table = (head: string[], body: string[][]) =>
    [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...body.map((row) => `| ${row.join(" | ")} |`)].join("\n");
  const costRow = (name: string, c: Cost) => [
    name,
    f3(per(c, "mints")),
    f3(per(c, "lists")),
    f3(per(c, "revokes")),
    f3(per(c, "d1RoundTrips")),
    f3(per(c, "d1Statements")),
    f3(per(c, "kvWrites")),
    f3(per(c, "kvReads")),
    f3(per(c, "queueMessages")),
    f3(per(c, "fetchSubrequests")),
    f3(per(c, "allOperations")),
  ];
  const markdown = `# Benchmark results

Written by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString()}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${f0(totalmem() / 2 ** 30)} GiB; Node ${process.version}; workerd ${WORKERD_VERSION} (through Miniflare);
load average ${r.load.start.map(f2).join(" / ")} at the start and ${r.load.end.map(f2).join(" / ")} at the end (1 / 5 / 15 min). Whole run: ${f0(r.seconds)} s.
${r.load.start[0]! > cpus().length / 2 ? `**The machine was busy** (load average ${f2(r.load.start[0]!)} on ${cpus().length} cores before the bench started): other work competed with the workers and the fake Baseten, so the figures are lower and noisier than on an idle machine.\n` : ""}Read path: ${ROUNDS} rounds × ${SECONDS} s per worker, alternating, ${CONNECTIONS} connections (autocannon, loopback), document ${r.read.bodyBytes} bytes.
Rotation: ${SETS} sets, the fake Baseten answering each call in ${LATENCY_MS} ms, ${CONCURRENCY} calls in flight.

${table(["figure", "rotator", "floor / ideal / target", "ratio", "target", ""], rows)}

Ratios are rotator ÷ floor for throughput (higher is better), ideal ÷ measured for wall time, floor ÷ rotator for CPU and memory.
The ideal rotation time is ${SETS} × ${LATENCY_MS} ms ÷ ${CONCURRENCY}; the inline tick also makes one list call (its sweep) before it rotates.
Seen from the worker a Baseten call took ${f1(r.inline.callMs)} ms on average inline and ${f1(r.queued.callMs)} ms through the queue (the fake's ${LATENCY_MS} ms plus loopback HTTP on this machine):
with those, the bound is ${f2((SETS * r.inline.callMs) / CONCURRENCY / 1000)} s inline (reached ${f2((SETS * r.inline.callMs) / CONCURRENCY / r.inline.wallMs)}) and ${f2((SETS * r.queued.callMs) / CONCURRENCY / 1000)} s through the queue (reached ${f2((SETS * r.queued.callMs) / CONCURRENCY / r.queued.wallMs)}).

## Cost per set, counted

Counted by bench/counting-worker.js around the production bundle: a tick's counts less those of a tick with nothing due
(${r.inline.idleTick.lists} list call, ${r.inline.idleTick.d1RoundTrips} D1 round trip(s) / ${r.inline.idleTick.d1Statements} statement(s), ${r.inline.idleTick.kvReads} KV list), ÷ ${SETS} sets.
The queue row is everything the tick and the consumer did, ÷ ${SETS}.
A D1 round trip is one query or one batch. The KV read of a rotation is the check of what the cache holds before it is overwritten;
"all operations" = fetches + D1 round trips + KV operations + queue sends.

${table(
  [
    "run",
    "mints",
    "lists",
    "revokes",
    "D1 round trips",
    "D1 statements",
    "KV writes",
    "KV reads",
    "queue msgs",
    "fetch subrequests",
    "all operations",
  ],
  [
    costRow("first rotation, inline", r.inline.first),
    costRow("rotation with a previous key, inline", r.inline.steady),
    costRow("revocation of the previous key, inline", r.inline.revocation),
    costRow("first rotation, through the queue", r.queued.cost),
  ],
)}

workerd CPU during the inline tick: ${f1(r.inline.cpuMsPerSet)} ms per rotated set, an upper bound: it includes the local D1 and KV simulators, which run in the same process.
Queue path: the tick enqueued ${SETS} messages in ${f0(r.queued.enqueuedMs)} ms; the consumer ran ${r.queued.batches} batches.
Read path cost run: ${r.reads.requests} requests in ${r.reads.seconds} s, ${r.reads.d1RoundTrips} D1 queries, ${r.reads.kvReads} KV reads, ${r.reads.fetches} fetches.
${r.inline.errors.length + r.queued.errors.length > 0 ? `\nError log lines seen: ${[...r.inline.errors, ...r.queued.errors].slice(0, 5).join("; ")}\n` : ""}`;
  return { markdown, missed };
}

// --- main ------------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  if (ONLY === "scale") {
    // 2,000 sets from rotator.config.json: checked, dry-run deployed, rotated through the queue (bench/scale.ts).
    const r = await runScale({ sets: process.argv.includes("--sets") ? SETS : 2000, latencyMs: option("latency", 200) });
    const markdown = scaleMarkdown(r);
    const out = path.join(ROOT, "bench", "results", "scale.md");
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, markdown);
    console.log(markdown);
    say(`written to ${path.relative(process.cwd(), out)}`);
    return;
  }
  say("building the bundle (wrangler deploy --dry-run --minify)...");
  const bundle = buildBundle();
  fake = await startFakeBaseten({ port: 0 });
  if (ONLY === "drill") return void console.log((await (await import("./drill.ts")).runDrill(fake)).markdown); // leak drill + auth (bench/drill.ts)
  const start = loadavg();
  const read = ONLY === "rotation" ? null : await readPath();
  const reads = ONLY === "rotation" ? null : await readCost();
  const inline = ONLY === "read" || ONLY === "queue" ? null : await rotationInline();
  const queued = ONLY === "read" ? null : await rotationQueue();
  const rotationCompared = COMPARE && ONLY !== "read" ? await rotationCompare(COMPARE) : null;
  if (!read || !reads || !inline || !queued) {
    console.log(JSON.stringify({ bundle, read, reads, inline, queued, rotationCompared }, null, 2));
    return;
  }
  const { markdown, missed } = report({
    bundle,
    read,
    reads,
    inline,
    queued,
    rotationCompared,
    load: { start, end: loadavg() },
    seconds: (Date.now() - t0) / 1000,
  });
  const out = path.join(ROOT, "bench", "results", "latest.md");
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, markdown);
  console.log(markdown);
  say(missed.length ? `targets missed: ${missed.join("; ")} (see README, "Performance")` : "all targets met");
  say(`written to ${path.relative(process.cwd(), out)}`);
  say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

async function shutdown() {
  for (const w of [...started]) await w.dispose().catch(() => {});
  await fake?.close();
}

process.once("SIGINT", () => void shutdown().then(() => process.exit(130)));
process.once("SIGTERM", () => void shutdown().then(() => process.exit(143)));
try {
  await main();
} finally {
  await shutdown();
}
