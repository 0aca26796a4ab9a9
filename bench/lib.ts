/**
 * Helpers for bench/run.ts (Node, not workerd): building the bundle, starting workers in
 * workerd through Miniflare, reading a process's CPU time and peak RSS, small statistics.
 */
/// <reference types="node" />
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Log, LogLevel, Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } from "wrangler";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const BUNDLE_DIR = path.join(ROOT, "dist", "bench-bundle");

export interface Bundle {
  path: string;
  minifiedBytes: number;
  gzipBytes: number;
}

/** The deployable bundle, exactly as `wrangler deploy` would upload it (minified). */
export function buildBundle(): Bundle {
  const wrangler = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const run = spawnSync(process.execPath, [wrangler, "deploy", "--dry-run", "--minify", "--outdir", BUNDLE_DIR], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", NO_COLOR: "1" },
  });
  if (run.status !== 0) throw new Error(`wrangler deploy --dry-run failed:\n${run.stdout}\n${run.stderr}`);
  const file = path.join(BUNDLE_DIR, "index.js");
  const code = readFileSync(file);
  return { path: file, minifiedBytes: code.length, gzipBytes: gzipSync(code).length };
}

export const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");
export const randomB64 = (bytes: number) => randomBytes(bytes).toString("base64");

/** Bindings, compatibility date and queues as wrangler.toml declares them. */
function wranglerOptions() {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(path.join(ROOT, "wrangler.toml"));
  return workerOptions as {
    compatibilityDate?: string;
    compatibilityFlags?: string[];
    bindings?: Record<string, unknown>;
    queueProducers?: Record<string, unknown>;
    queueConsumers?: Record<string, unknown>;
  };
}

export interface StartedWorker {
  mf: Miniflare;
  /** Base URL of a socket straight into the worker (no Miniflare entry worker in between). */
  url: string;
  pid: number;
  logs: { lines: number; errors: string[] };
  dispose(): Promise<void>;
}

export interface WorkerSpec {
  /** ES modules; the first is the main module. */
  modules: { path: string; contents: string }[];
  vars: Record<string, string>;
  /** D1, KV and the queues of wrangler.toml (the floor has none). */
  storage: boolean;
  queues?: boolean;
}

function workerdChildren(): Set<number> {
  const out = new Set<number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (comm === "workerd" && ppid === process.pid) out.add(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export async function startWorker(spec: WorkerSpec): Promise<StartedWorker> {
  const w = wranglerOptions();
  const logs = { lines: 0, errors: [] as string[] };
  const before = workerdChildren();
  // Miniflare 5 takes a new options shape; the v4 one (what wrangler.toml maps to) converts.
  const options = convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: 0,
    log: new Log(LogLevel.WARN),
    cf: false,
    // The worker's own log lines (one per rotation) are counted, not printed; errors are kept.
    handleStructuredLogs: ({ level, message }) => {
      logs.lines++;
      if (level === "error" && logs.errors.length < 20) logs.errors.push(message.slice(0, 300));
    },
    workers: [
      {
        name: "worker",
        modules: spec.modules.map((m) => ({ type: "ESModule" as const, path: m.path, contents: m.contents })),
        compatibilityDate: w.compatibilityDate,
        compatibilityFlags: w.compatibilityFlags,
        bindings: { ...spec.vars },
        ...(spec.storage ? { d1Databases: { DB: "bench-db" }, kvNamespaces: { KEYS: "bench-kv" } } : {}),
        ...(spec.queues ? { queueProducers: w.queueProducers, queueConsumers: w.queueConsumers } : {}),
        unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      },
    ],
  } as Parameters<typeof convertV4MiniflareOptions>[0]);
  const mf = new Miniflare(options);
  await mf.ready;
  const url = (await mf.unsafeGetDirectURL("worker")).toString().replace(/\/$/, "");
  const started = [...workerdChildren()].filter((p) => !before.has(p));
  if (started.length !== 1) throw new Error(`expected one new workerd process, found ${started.length}`);
  return { mf, url, pid: started[0]!, logs, dispose: () => mf.dispose() };
}

/** Applies migrations/*.sql in order to the worker's D1 database. */
export async function migrate(mf: Miniflare): Promise<void> {
  const db = await mf.getD1Database("DB", "worker");
  const dir = path.join(ROOT, "migrations");
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    const statements = unstable_splitSqlQuery(readFileSync(path.join(dir, file), "utf8"));
    await db.batch(statements.map((s) => db.prepare(s)));
  }
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[11] = utime, fields[12] = stime (clock ticks; 100 per second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak resident set size (VmHWM) of a process, in MiB. */
export function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
