/**
 * `npm start`: the whole thing locally, offline, in one command.
 *
 *   1. writes a demo `.dev.vars` if there is none (fake management key, fresh secrets, a demo
 *      consumer token, one model set `demo` that rotates every 10 minutes);
 *   2. applies the D1 migrations to the local database (.wrangler/state);
 *   3. starts the fake Baseten (dev/fake-baseten.ts) on 8788, or a free port if that is taken;
 *   4. runs `wrangler dev --local --test-scheduled` pointed at the fake;
 *   5. once the worker answers /healthz, prints the curl lines to try.
 * Ctrl-C (SIGINT) or SIGTERM stops everything it started.
 *
 * Usage: npm start [-- --port 8787] [--fake-port 8788] [--reset] [other `wrangler dev` flags]
 */
/// <reference types="node" />
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import path from "node:path";
import { parseEnv } from "node:util";
import { type FakeBaseten, startFakeBaseten } from "./fake-baseten.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const DEV_VARS = path.join(ROOT, ".dev.vars");
const STATE_DIR = path.join(ROOT, ".wrangler", "state");
const DEMO_MANAGEMENT_KEY = "fake-mgmt-demo";
const TOKEN_COMMENT = "# DEMO_CONSUMER_TOKEN=";
const HEALTH_TIMEOUT_MS = 90_000;

const USAGE = `usage: npm start [-- [--port N] [--fake-port N] [--reset] [wrangler dev flags...]]
  --port N       port of the worker (default 8787)
  --fake-port N  port of the fake Baseten (default 8788; a free port if that one is taken)
  --reset        delete the local D1/KV state (.wrangler/state) first
  anything else is passed on to \`wrangler dev\``;

interface Args {
  port: number;
  fakePort: number | null;
  reset: boolean;
  passThrough: string[];
}

function parseArgs(argv: string[]): Args {
  const args: Args = { port: 8787, fakePort: null, reset: false, passThrough: [] };
  const portValue = (flag: string, raw: string | undefined): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 65535) die(`${flag} needs a port number (1-65535), got ${raw ?? "nothing"}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    if (flag === "--port" || flag === "-p") args.port = portValue(flag, inline ?? argv[++i]);
    else if (flag === "--fake-port") args.fakePort = portValue(flag, inline ?? argv[++i]);
    else if (flag === "--reset") args.reset = true;
    else if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else args.passThrough.push(arg);
  }
  return args;
}

function die(message: string): never {
  console.error(`npm start: ${message}`);
  process.exit(1);
}

const b64 = (bytes: number) => randomBytes(bytes).toString("base64");
const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** Writes the demo `.dev.vars`; wrangler dev reads it as vars and secrets (overriding [vars]). */
function writeDemoDevVars(fakeUrl: string): void {
  const token = `demo_${randomBytes(24).toString("hex")}`;
  const modelSets = { demo: { model_ids: ["demo0001"], rotate_every: "10m", overlap: "2m" } };
  const consumers = { demo: { token_sha256: sha256Hex(token), model_sets: ["demo"] } };
  const lines = [
    "# Demo configuration written by `npm start` (dev/start.ts) for local runs against the fake Baseten.",
    "# wrangler dev reads these as vars and secrets; they override [vars] in wrangler.toml.",
    "# Never commit this file (it is in .gitignore). Delete it to get fresh secrets and a new token.",
    "# The consumer token below is the one whose SHA-256 is in CONSUMERS (npm start prints it).",
    `${TOKEN_COMMENT}${token}`,
    `BASETEN_API_BASE=${fakeUrl}`,
    "BASETEN_TEAM_ID=demo-team",
    `BASETEN_API_KEY=${DEMO_MANAGEMENT_KEY}`,
    `ENCRYPTION_KEY=${b64(32)}`,
    `WEBHOOK_SECRET=whsec_${b64(32)}`,
    `ADMIN_TOKEN=adm_${randomBytes(24).toString("hex")}`,
    `MODEL_SETS='${JSON.stringify(modelSets)}'`,
    `CONSUMERS='${JSON.stringify(consumers)}'`,
    "",
  ];
  writeFileSync(DEV_VARS, lines.join("\n"), { mode: 0o600 });
}

interface DevVars {
  values: Record<string, string>;
  demoToken: string | null;
}

function readDevVars(): DevVars {
  const text = readFileSync(DEV_VARS, "utf8");
  const tokenLine = text.split(/\r?\n/).find((l) => l.startsWith(TOKEN_COMMENT));
  return {
    values: parseEnv(text) as Record<string, string>,
    demoToken: tokenLine ? tokenLine.slice(TOKEN_COMMENT.length).trim() || null : null,
  };
}

function wranglerBin(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve("wrangler/package.json")), "bin", "wrangler.js");
}

const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
  ...extra,
});

/** The wrangler process running now (migrations, then dev), in its own process group. */
let child: ChildProcess | null = null;

function spawnWrangler(args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
  // stdin closed: wrangler takes its non-interactive path (no prompts, no hotkeys).
  // detached: its own process group, so stop() can end wrangler and everything it spawned.
  child = spawn(process.execPath, [wranglerBin(), ...args], {
    cwd: ROOT,
    env: childEnv(extraEnv),
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  return child;
}

/** Runs wrangler to completion; resolves with its exit code. */
function runWrangler(args: string[], extraEnv: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawnWrangler(args, extraEnv);
    c.once("error", reject);
    c.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function startFake(port: number | null): Promise<FakeBaseten> {
  try {
    return await startFakeBaseten({ port: port ?? 8788 });
  } catch (err) {
    if (port !== null || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    console.log("port 8788 is taken: the fake Baseten listens on a free port instead");
    return startFakeBaseten({ port: 0 });
  }
}

/** Whether something already listens on host:port (checked before wrangler's noisier failure). */
function portInUse(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "EADDRINUSE"));
    probe.listen(port, host, () => probe.close(() => resolve(false)));
  });
}

async function waitForHealth(url: string, dev: ChildProcess): Promise<{ status: number; body: unknown }> {
  const until = Date.now() + HEALTH_TIMEOUT_MS;
  while (Date.now() < until) {
    if (dev.exitCode !== null || dev.signalCode !== null) throw new Error("wrangler dev exited before the worker answered");
    // One attempt, body included, bounded by a timer of our own: a request answered while
    // wrangler reloads the worker can leave its body hanging past the fetch's abort signal.
    const attempt = (async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return { status: res.status, body: await res.json().catch(() => null) };
    })().catch(() => null);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([attempt, new Promise<null>((r) => (timer = setTimeout(() => r(null), 3_000)))]);
    clearTimeout(timer);
    if (result) return result;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`the worker did not answer ${url} within ${HEALTH_TIMEOUT_MS / 1000} s`);
}

function printTryLines(worker: string, fakeUrl: string, vars: DevVars): void {
  const token = vars.demoToken ?? "<a consumer token from your .dev.vars>";
  const mgmt = vars.values.BASETEN_API_KEY ?? DEMO_MANAGEMENT_KEY;
  const admin = vars.values.ADMIN_TOKEN ?? "<ADMIN_TOKEN from .dev.vars>";
  const sets = Object.keys(safeJson(vars.values.MODEL_SETS) ?? {});
  const set = sets.includes("demo") || sets.length === 0 ? "demo" : sets[0]!;
  const lines = [
    "",
    "────────────────────────────────────────────────────────────────────────────",
    `baseten-key-rotator is running at ${worker} (fake Baseten at ${fakeUrl})`,
    "",
    "# 1. fire the cron (mints the first key; later ticks rotate once refresh_at is reached)",
    `curl "${worker}/__scheduled?cron=*+*+*+*+*"`,
    "",
    `# 2. fetch the current key of set "${set}" as the demo consumer`,
    `curl -H "Authorization: Bearer ${token}" ${worker}/v1/keys/${set}`,
    "",
    "# 3. the keys that exist at the fake Baseten (revoked ones have revoked_at set)",
    `curl ${fakeUrl}/__control/${encodeURIComponent(mgmt)}/keys`,
    "",
    "# 4. per-set state, no key material",
    `curl -H "Authorization: Bearer ${admin}" ${worker}/v1/admin/status`,
    "",
    "# 5. rotate now instead of waiting for refresh_at (the replaced key stays live until the",
    "#    expires_at it was served with; the first cron fired after that revokes it)",
    `curl -X POST -H "Authorization: Bearer ${admin}" -H "content-type: application/json" -d '{"reason":"trying it out"}' ${worker}/v1/admin/rotate/${set}`,
    "",
    "# 6. the leak response: rotate and revoke the replaced key at Baseten at once",
    `curl -X POST -H "Authorization: Bearer ${admin}" -H "content-type: application/json" -d '{"reason":"leaked","revoke_previous":true}' ${worker}/v1/admin/rotate/${set}`,
    "",
    "# 7. a signed rotation webhook, as a leak scanner sends it (signed when you run it, with the",
    "#    WEBHOOK_SECRET of .dev.vars; run it again with --id <the printed id> to see the replay)",
    `WEBHOOK_SECRET="$(sed -n 's/^WEBHOOK_SECRET=//p' .dev.vars)" npm run -s cli -- webhook ${set} --url ${worker} --reason "trying the webhook"`,
    "",
    "# 8. the operator command line (npx baseten-key-rotator from a packed tarball; --help lists all)",
    `export BKR_URL=${worker} BKR_ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)"`,
    `npm run -s cli -- status && npm run -s cli -- audit --set ${set}`,
    "",
    "Ctrl-C stops the worker and the fake Baseten. The fake forgets its keys when it stops; the",
    "local D1/KV state in .wrangler/state does not (`npm start -- --reset` starts from scratch).",
    "────────────────────────────────────────────────────────────────────────────",
    "",
  ];
  console.log(lines.join("\n"));
}

function safeJson(text: string | undefined): Record<string, unknown> | null {
  try {
    const v = text ? JSON.parse(text) : null;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let fake: FakeBaseten | null = null;
  let stopping = false;

  /** Stops what was started: wrangler's whole process group (wrangler, esbuild, workerd), then the fake. */
  const stop = async (code: number): Promise<never> => {
    if (stopping) return new Promise<never>(() => {});
    stopping = true;
    const c = child;
    if (c && c.pid !== undefined) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise<void>((r) => c.once("exit", () => r()));
        killGroup(c.pid, "SIGTERM");
        const timer = setTimeout(() => killGroup(c.pid!, "SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      killGroup(c.pid, "SIGKILL"); // anything of the group that outlived wrangler itself
    }
    if (fake) await fake.close();
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(130));
  process.on("SIGTERM", () => void stop(143));

  if (await portInUse(args.port, "127.0.0.1"))
    die(`port ${args.port} is already in use (another \`npm start\` or \`wrangler dev\`?); pick another with \`npm start -- --port N\``);

  if (args.reset && existsSync(STATE_DIR)) {
    rmSync(STATE_DIR, { recursive: true, force: true });
    console.log("deleted the local D1/KV state (.wrangler/state)");
  }

  // (3 before 1: the demo .dev.vars records the fake's address.)
  fake = await startFake(args.fakePort);
  if (!existsSync(DEV_VARS)) {
    writeDemoDevVars(fake.url);
    console.log(`wrote a demo .dev.vars (fake management key, fresh secrets, demo consumer token)`);
  } else {
    console.log("using the existing .dev.vars (delete it to get a fresh demo configuration)");
  }
  const vars = readDevVars();
  const mgmt = vars.values.BASETEN_API_KEY ?? "";
  if (!mgmt.startsWith("fake-mgmt-")) {
    console.warn(`warning: BASETEN_API_KEY in .dev.vars is not a fake-mgmt-* key; the fake Baseten will answer 401 to it`);
  }

  console.log("applying D1 migrations to the local database…");
  // stdin is closed, so wrangler skips its confirmation prompt ("fallback value in non-interactive context").
  const migrated = await runWrangler(["d1", "migrations", "apply", "DB", "--local"], { CI: "true" });
  if (migrated !== 0) {
    console.error(`npm start: \`wrangler d1 migrations apply DB --local\` failed (exit ${migrated})`);
    await stop(1);
  }
  if (stopping) return;

  const worker = `http://127.0.0.1:${args.port}`;
  const wranglerArgs = [
    "dev",
    "--local",
    "--test-scheduled",
    "--ip",
    "127.0.0.1",
    "--port",
    String(args.port),
    "--show-interactive-dev-session=false",
    // The fake's address of this run wins over the one written in .dev.vars.
    "--var",
    `BASETEN_API_BASE:${fake.url}`,
    ...args.passThrough,
  ];
  console.log(`starting wrangler dev on ${worker}…`);
  const dev = spawnWrangler(wranglerArgs);
  dev.once("exit", (code, signal) => {
    if (stopping) return;
    console.error(`npm start: wrangler dev exited (${signal ?? `code ${code}`})`);
    void stop(code || 1);
  });

  let health: { status: number; body: unknown };
  try {
    health = await waitForHealth(`${worker}/healthz`, dev);
  } catch (err) {
    if (!stopping) {
      console.error(`npm start: ${(err as Error).message}`);
      await stop(1);
    }
    return;
  }
  if (health.status !== 200) {
    const problems = (health.body as { problems?: string[] } | null)?.problems ?? [];
    console.warn(
      `\nwarning: /healthz answered ${health.status}: the configuration in .dev.vars is invalid:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  printTryLines(worker, fake.url, vars);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

await main();
