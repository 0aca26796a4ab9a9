/**
 * `npm run bench -- --only scale` (or `node bench/scale.ts`): 2,000 model sets configured in
 * rotator.config.json, checked, deployed in a dry run, and rotated through the queue path.
 *
 *   1. config   writes a rotator.config.json with N sets (default 2000) and one consumer into a
 *               copy of the project (src/, wrangler.toml, ...; node_modules linked), and runs the
 *               offline check (`baseten-key-rotator check --local`) on it
 *   2. deploy   `wrangler deploy --dry-run --outdir dist/bench-scale` on that copy: the bundle
 *               holds the 2,000 sets (no var does: Cloudflare caps a var at 5 KB); its size next to
 *               the bundle of the repository as it is (the committed `{}` file)
 *   3. rotate   that very bundle in workerd (Miniflare) with wrangler.toml's D1, KV and queues, no
 *               MODEL_SETS var, INLINE_ROTATION_BUDGET=0: one cron tick sends every set to the
 *               queue and the consumer rotates them, the fake Baseten answering each call in
 *               --latency ms (default 200: a management API call over the internet)
 *   4. report   wall time from the tick to the last set's KV write, next to the ideal
 *               N x latency / 6 (six calls in flight), and the bundle sizes
 *
 * Options: --sets N (2000), --latency ms (200). Everything runs on loopback and stops by itself.
 */
/// <reference types="node" />
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { type FakeBaseten, startFakeBaseten } from "../dev/fake-baseten.ts";
import { ROOT, type StartedWorker, migrate, randomB64, sha256Hex, sleep, startWorker } from "./lib.ts";

const CONCURRENCY = 6;
const TEAM = "team-scale";
const OUT_DIR = path.join(ROOT, "dist", "bench-scale");
const WRANGLER = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const CLI = path.join(ROOT, "dist", "cli", "baseten-key-rotator.mjs");

export interface ScaleResult {
  sets: number;
  latencyMs: number;
  configFileBytes: number;
  check: { ok: boolean; line: string; ms: number };
  bundle: { withSets: { bytes: number; gzipBytes: number }; empty: { bytes: number; gzipBytes: number } };
  firstAnswerMs: number;
  enqueuedMs: number;
  wallMs: number;
  idealMs: number;
  ratio: number;
  batches: number;
  callMs: number;
  errors: string[];
  load: number[];
}

const setId = (i: number) => `set-${String(i).padStart(4, "0")}`;
const say = (line: string) => process.stderr.write(`${line}\n`);
const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", NO_COLOR: "1" };

/** A copy of the project that `wrangler deploy` can build, with its own rotator.config.json. */
function projectWith(config: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bkr-scale-"));
  for (const entry of ["src", "migrations", "wrangler.toml", "package.json", "tsconfig.json"])
    cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
  writeFileSync(path.join(dir, "rotator.config.json"), JSON.stringify(config, null, 1));
  return dir;
}

/** `wrangler deploy --dry-run --outdir <out>` in `cwd`; the bundle's size. */
function dryRun(cwd: string, outdir: string): { bytes: number; gzipBytes: number } {
  rmSync(outdir, { recursive: true, force: true });
  const run = spawnSync(process.execPath, [WRANGLER, "deploy", "--dry-run", "--outdir", outdir], {
    cwd,
    encoding: "utf8",
    env: wranglerEnv,
  });
  if (run.status !== 0) throw new Error(`wrangler deploy --dry-run failed in ${cwd}:\n${run.stdout}\n${run.stderr}`);
  const code = readFileSync(path.join(outdir, "index.js"));
  return { bytes: code.length, gzipBytes: gzipSync(code).length };
}

async function counters(w: StartedWorker) {
  const res = await fetch(`${w.url}/__bench/counters`);
  return (await res.json()) as {
    fetch: { total: number; ms: number };
    kv: { put: number; lastPutAt: number };
    invocations: { queue: number };
  };
}

export async function runScale(opts: { sets?: number; latencyMs?: number; fake?: FakeBaseten } = {}): Promise<ScaleResult> {
  const sets = opts.sets ?? 2000;
  const latencyMs = opts.latencyMs ?? 200;
  const load = loadavg();
  const consumerToken = `scale_${randomB64(24).replace(/[^A-Za-z0-9]/g, "")}`;
  const config = {
    MODEL_SETS: Object.fromEntries(
      Array.from({ length: sets }, (_, i) => [setId(i), { model_ids: [`model${i}`], rotate_every: "24h", overlap: "1h" }]),
    ),
    CONSUMERS: { "scale-reader": { token_sha256: sha256Hex(consumerToken), model_sets: [setId(0), setId(sets - 1)] } },
  };
  const project = projectWith(config);
  const fake = opts.fake ?? (await startFakeBaseten({ port: 0 }));
  let w: StartedWorker | null = null;
  try {
    const configFileBytes = Buffer.byteLength(readFileSync(path.join(project, "rotator.config.json")));

    say(`scale: ${sets} sets in rotator.config.json (${(configFileBytes / 1024).toFixed(0)} KiB), checking...`);
    spawnSync(process.execPath, [path.join(ROOT, "dev", "build-cli.ts"), "--quiet"], { cwd: ROOT, stdio: "inherit" });
    let t0 = performance.now();
    const check = spawnSync(process.execPath, [CLI, "check", "--local"], { cwd: project, encoding: "utf8", env: wranglerEnv });
    const checkResult = { ok: check.status === 0, line: (check.stdout || check.stderr).trim().split("\n")[0]!, ms: performance.now() - t0 };
    if (!checkResult.ok) throw new Error(`check refused the generated config:\n${check.stdout}${check.stderr}`);
    say(`  ${checkResult.line}`);

    say("  wrangler deploy --dry-run with the 2,000-set file, and with the committed one...");
    const withSets = dryRun(project, OUT_DIR);
    const emptyDir = path.join(ROOT, "dist", "bench-scale-empty");
    const empty = dryRun(ROOT, emptyDir);
    rmSync(emptyDir, { recursive: true, force: true });
    say(
      `  bundle ${(withSets.bytes / 1024).toFixed(0)} KiB (${(withSets.gzipBytes / 1024).toFixed(0)} KiB gzip) with the sets; ${(empty.bytes / 1024).toFixed(0)} KiB (${(empty.gzipBytes / 1024).toFixed(0)} KiB gzip) without`,
    );

    // The dry run's bundle, wrapped by the bench's counting worker, with no MODEL_SETS var.
    const tenant = `fake-mgmt-scale-${randomB64(9).replace(/[^A-Za-z0-9]/g, "")}`;
    await fetch(`${fake.url}/__control/${tenant}/latency`, { method: "POST", body: JSON.stringify({ ms: latencyMs }) });
    const modules = [
      { path: path.join(OUT_DIR, "counting-worker.js"), contents: readFileSync(path.join(ROOT, "bench", "counting-worker.js"), "utf8") },
      { path: path.join(OUT_DIR, "index.js"), contents: readFileSync(path.join(OUT_DIR, "index.js"), "utf8") },
    ];
    w = await startWorker({
      modules,
      storage: true,
      queues: true,
      vars: {
        BASETEN_API_BASE: fake.url,
        BASETEN_TEAM_ID: TEAM,
        BASETEN_API_KEY: tenant,
        BASETEN_CONCURRENCY: String(CONCURRENCY),
        INLINE_ROTATION_BUDGET: "0",
        ENCRYPTION_KEY: randomB64(32),
        ADMIN_TOKEN: `adm_${randomB64(30).replace(/[^A-Za-z0-9]/g, "")}`,
      },
    });
    await migrate(w.mf);
    t0 = performance.now();
    const health = await fetch(`${w.url}/healthz`);
    const firstAnswerMs = performance.now() - t0;
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}: ${await health.text()}`);

    say(
      `  rotating ${sets} sets through the queue, fake latency ${latencyMs} ms, ${CONCURRENCY} calls in flight (ideal ${((sets * latencyMs) / CONCURRENCY / 1000).toFixed(1)} s)...`,
    );
    const start = Date.now();
    const worker = await w.mf.getWorker("worker");
    const tick = await worker.scheduled({ cron: "* * * * *", scheduledTime: new Date() });
    if (tick.outcome !== "ok") throw new Error(`scheduled() ended with outcome ${tick.outcome}`);
    const enqueuedMs = Date.now() - start;
    let c = await counters(w);
    let lastSay = Date.now();
    while (c.kv.put < sets) {
      if (Date.now() - start > 900_000) throw new Error(`only ${c.kv.put} of ${sets} sets rotated after 900 s`);
      await sleep(500);
      c = await counters(w);
      if (Date.now() - lastSay > 15_000) {
        say(`    ${((Date.now() - start) / 1000).toFixed(0)} s: ${c.kv.put} rotated`);
        lastSay = Date.now();
      }
    }
    const wallMs = c.kv.lastPutAt - start;
    const db = await w.mf.getD1Database("DB", "worker");
    const current = ((await db.prepare("SELECT COUNT(*) AS n FROM keys WHERE state = 'current'").first()) as { n: number }).n;
    if (current !== sets) throw new Error(`${current} current keys for ${sets} sets`);
    // A consumer of the file's CONSUMERS reads the last set's key.
    const read = await fetch(`${w.url}/v1/keys/${setId(sets - 1)}`, { headers: { authorization: `Bearer ${consumerToken}` } });
    if (read.status !== 200) throw new Error(`GET /v1/keys/${setId(sets - 1)} answered ${read.status}`);
    await read.arrayBuffer();

    const idealMs = (sets * latencyMs) / CONCURRENCY;
    const result: ScaleResult = {
      sets,
      latencyMs,
      configFileBytes,
      check: checkResult,
      bundle: { withSets, empty },
      firstAnswerMs,
      enqueuedMs,
      wallMs,
      idealMs,
      ratio: idealMs / wallMs,
      batches: c.invocations.queue,
      callMs: c.fetch.ms / Math.max(1, c.fetch.total),
      errors: w.logs.errors,
      load,
    };
    say(
      `  ${(wallMs / 1000).toFixed(1)} s for ${sets} sets: ${result.ratio.toFixed(2)} of the ideal ${(idealMs / 1000).toFixed(1)} s (${result.batches} batches; a Baseten call took ${result.callMs.toFixed(0)} ms on average)`,
    );
    return result;
  } finally {
    if (w) await w.dispose();
    if (!opts.fake) await fake.close();
    rmSync(project, { recursive: true, force: true });
  }
}

export function scaleMarkdown(r: ScaleResult): string {
  const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  return `## Scale: ${r.sets.toLocaleString("en-US")} sets from rotator.config.json

Load average at the start: ${r.load.map((n) => n.toFixed(2)).join(" / ")}.

| figure | value |
| --- | --- |
| rotator.config.json | ${r.sets} sets + 1 consumer, ${kib(r.configFileBytes)} (a var holds 5 KB) |
| offline check (\`check --local\`) | ${r.check.line.replace(/\|/g, "\\|")} (${(r.check.ms / 1000).toFixed(1)} s) |
| \`wrangler deploy --dry-run\` bundle, with the file | ${kib(r.bundle.withSets.bytes)} (${kib(r.bundle.withSets.gzipBytes)} gzip) |
| the same, with the committed \`{}\` file | ${kib(r.bundle.empty.bytes)} (${kib(r.bundle.empty.gzipBytes)} gzip) |
| first answer of a fresh isolate (\`/healthz\`, parses the ${r.sets} sets) | ${r.firstAnswerMs.toFixed(0)} ms |
| cron tick: plan and enqueue ${r.sets} sets | ${(r.enqueuedMs / 1000).toFixed(1)} s |
| rotation of ${r.sets} sets through the queue, fake latency ${r.latencyMs} ms | ${(r.wallMs / 1000).toFixed(1)} s |
| ideal (${r.sets} × ${r.latencyMs} ms ÷ 6 in flight) | ${(r.idealMs / 1000).toFixed(1)} s |
| ratio (ideal ÷ measured) | ${r.ratio.toFixed(2)} |
| consumer batches / mean Baseten call seen from the worker | ${r.batches} / ${r.callMs.toFixed(0)} ms |
| bound with that call time (${r.sets} × ${r.callMs.toFixed(0)} ms ÷ 6), reached | ${((r.sets * r.callMs) / 6 / 1000).toFixed(1)} s, ${((r.sets * r.callMs) / 6 / r.wallMs).toFixed(2)} |
| error log lines | ${r.errors.length} |
`;
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runScale({ sets: option("sets", 2000), latencyMs: option("latency", 200) });
  const md = scaleMarkdown(r);
  mkdirSync(path.join(ROOT, "bench", "results"), { recursive: true });
  writeFileSync(path.join(ROOT, "bench", "results", "scale.md"), md);
  console.log(md);
}
