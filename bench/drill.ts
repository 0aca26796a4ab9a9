/**
 * The leak drill (`npm run bench -- --only drill`, or `node bench/drill.ts`): does a
 * `revoke_previous` reach every consumer at every location?
 *
 * The rotator's production bundle runs in workerd behind a bench-only wrapper that simulates
 * locations: each location has its own env object (so its own isolate memory, config, token and
 * fresh-read caches) and its own KV edge cache, which holds every value it read for 60 s (KV's
 * `cacheTtl`) whatever happens to KV meanwhile: exactly the lag of a real location. N clients
 * (the real client library, src/client/index.ts, in Node) are spread over the locations, each
 * calling a fake model endpoint in a loop with `fetchWithKey`; the endpoint accepts exactly the
 * keys live at the fake Baseten. Mid-run a signed `revoke_previous` webhook arrives at
 * location 0. The drill runs twice, side by side: with the fresh read (the client's refetch
 * after a 401 sends `Cache-Control: no-cache`) and without it (the wrapper strips the header:
 * the behaviour before fresh reads).
 *
 * Reported: time from the webhook to the old key dead at Baseten; per client, failed model
 * calls beyond the one 401 that triggers its refetch; time until every client is on the new
 * generation; rotator requests per client during the drill. Plus an authentication figure:
 * requests/s with 10,000 configured consumers against 1 (unknown tokens: the full hash +
 * lookup path, and a known token).
 */
/// <reference types="node" />
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import autocannon from "autocannon";
import { type FakeBaseten, startFakeBaseten } from "../dev/fake-baseten.ts";
import { createKeyClient } from "../src/client/index.ts";
import { signWebhook } from "../src/crypto.ts";
import { BUNDLE_DIR, type StartedWorker, buildBundle, migrate, randomB64, sha256Hex, sleep, startWorker } from "./lib.ts";

export interface DrillOptions {
  clients?: number;
  locations?: number;
  /** Model calls per client per second (each client loops with this pause). */
  callEveryMs?: number;
  /** Run this long before the webhook. */
  warmupMs?: number;
  /** Give up waiting for every client to move after this long. */
  maxAfterMs?: number;
}

const WRAPPER = `
import rotator from "./index.js";
const EDGE_TTL_MS = 60_000;
const envs = new Map();
function edgeKv(kv) {
  const edge = new Map();
  const cached = (key, type, read) => {
    const slot = key + "\\u0000" + type;
    const hit = edge.get(slot);
    if (hit && Date.now() - hit.at < EDGE_TTL_MS) return hit.value;
    const value = read();
    edge.set(slot, { value, at: Date.now() });
    value.catch(() => edge.delete(slot));
    return value;
  };
  const typeOf = (opts) => (typeof opts === "string" ? opts : (opts && opts.type) || "text");
  return new Proxy(kv, {
    get(target, prop) {
      // Streams are read once: never cached (the engine's own checks use them, at location 0).
      if (prop === "get") return (key, opts) => (typeOf(opts) === "stream" ? target.get(key, opts) : cached(key, "get:" + typeOf(opts), () => target.get(key, opts)));
      if (prop === "getWithMetadata") return (key, opts) => (typeOf(opts) === "stream" ? target.getWithMetadata(key, opts) : cached(key, "gwm:" + typeOf(opts), () => target.getWithMetadata(key, opts)));
      if (prop === "put" || prop === "delete") return (key, ...rest) => { for (const k of edge.keys()) if (k.startsWith(key + "\\u0000")) edge.delete(k); return target[prop](key, ...rest); };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
function envFor(env, loc) {
  let e = envs.get(loc);
  if (!e) envs.set(loc, (e = { ...env, KEYS: edgeKv(env.KEYS) }));
  return e;
}
export default {
  fetch(request, env, ctx) {
    const loc = request.headers.get("x-bench-location") || "0";
    if (request.headers.get("x-bench-no-fresh") === "1" && request.headers.has("cache-control")) {
      const headers = new Headers(request.headers);
      headers.delete("cache-control");
      request = new Request(request, { headers });
    }
    return rotator.fetch(request, envFor(env, loc), ctx);
  },
  scheduled(controller, env, ctx) {
    return rotator.scheduled(controller, envFor(env, "0"), ctx);
  },
};
`;

interface ClientFigures {
  location: number;
  calls: number;
  failedCalls: number;
  baseten401s: number;
  rotatorRequests: number;
  movedAfterMs: number | null;
}

export interface DrillRun {
  fresh: boolean;
  clients: ClientFigures[];
  oldKeyDeadAfterMs: number | null;
  allMovedAfterMs: number | null;
  webhookMs: number;
}

async function liveKeys(fakeUrl: string, tenant: string): Promise<{ prefix: string; revoked_at: string | null }[]> {
  const res = await fetch(`${fakeUrl}/__control/${tenant}/keys`);
  return ((await res.json()) as { keys: { prefix: string; revoked_at: string | null }[] }).keys;
}

async function drillOnce(fake: FakeBaseten, fresh: boolean, o: Required<DrillOptions>): Promise<DrillRun> {
  const tenant = `fake-mgmt-drill-${randomBytes(6).toString("hex")}`;
  const secrets = {
    ENCRYPTION_KEY: randomB64(32),
    ADMIN_TOKEN: `adm_${randomB64(30).replace(/[^A-Za-z0-9]/g, "")}`,
    WEBHOOK_SECRET: `whsec_${randomB64(32)}`,
  };
  // 10 consumers with 5 replicas each (a replica shares its service's token).
  const consumers = Math.max(1, Math.ceil(o.clients / 5));
  const tokens = Array.from({ length: consumers }, (_, i) => `drill_${i}_${randomBytes(16).toString("hex")}`);
  const w: StartedWorker = await startWorker({
    modules: [
      { path: path.join(BUNDLE_DIR, "drill-worker.js"), contents: WRAPPER },
      {
        path: path.join(BUNDLE_DIR, "index.js"),
        contents: (await import("node:fs")).readFileSync(path.join(BUNDLE_DIR, "index.js"), "utf8"),
      },
    ],
    storage: true,
    vars: {
      BASETEN_API_BASE: fake.url,
      BASETEN_TEAM_ID: "team-drill",
      BASETEN_API_KEY: tenant,
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
      CONSUMERS: JSON.stringify(
        Object.fromEntries(tokens.map((t, i) => [`svc-${i}`, { token_sha256: sha256Hex(t), model_sets: ["demo"] }])),
      ),
      ...secrets,
    },
  });
  try {
    await migrate(w.mf);
    const worker = await w.mf.getWorker("worker");
    const sched = await worker.scheduled({ cron: "* * * * *", scheduledTime: new Date() });
    if (sched.outcome !== "ok") throw new Error(`scheduled: ${sched.outcome}`);

    // The model endpoint: accepts the keys live at the fake Baseten, polled every 50 ms.
    let live = new Set((await liveKeys(fake.url, tenant)).filter((k) => k.revoked_at === null).map((k) => k.prefix));
    let polling = true;
    let webhookAt = 0;
    let oldKeyDeadAt: number | null = null;
    const firstPrefix = [...live][0]!;
    const poller = (async () => {
      while (polling) {
        const keys = await liveKeys(fake.url, tenant);
        live = new Set(keys.filter((k) => k.revoked_at === null).map((k) => k.prefix));
        const old = keys.find((k) => k.prefix === firstPrefix);
        if (webhookAt && oldKeyDeadAt === null && old?.revoked_at) oldKeyDeadAt = Date.parse(old.revoked_at);
        await sleep(50);
      }
    })();
    const model = async (_input: Request | string | URL, init?: RequestInit) => {
      const key = (new Headers(init?.headers).get("authorization") ?? "").replace(/^Api-Key /, "");
      const ok = live.has(key.slice(0, key.indexOf(".")));
      return new Response(ok ? "{}" : '{"error":"invalid key"}', { status: ok ? 200 : 401 });
    };

    let stop = false;
    let newGeneration = 0;
    const figures: ClientFigures[] = [];
    const loops = Array.from({ length: o.clients }, async (_, i) => {
      const location = i % o.locations;
      const f: ClientFigures = { location, calls: 0, failedCalls: 0, baseten401s: 0, rotatorRequests: 0, movedAfterMs: null };
      figures.push(f);
      const headers = { "x-bench-location": String(location), ...(fresh ? {} : { "x-bench-no-fresh": "1" }) };
      const client = createKeyClient({
        url: w.url,
        token: tokens[i % consumers]!,
        modelSet: "demo",
        random: () => Math.random(),
        fetch: (input, init) => {
          if (webhookAt) f.rotatorRequests++;
          return fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } });
        },
        basetenFetch: async (input, init) => {
          const res = await model(input, init);
          if (res.status === 401 && webhookAt) f.baseten401s++;
          return res;
        },
      });
      await sleep(Math.random() * o.callEveryMs);
      while (!stop) {
        const res = await client.fetchWithKey("https://model.bench/predict", { method: "POST", body: "{}" });
        await res.arrayBuffer();
        if (webhookAt) {
          f.calls++;
          if (res.status !== 200) f.failedCalls++;
          else if (f.movedAfterMs === null && newGeneration && (await client.getKey()).generation === newGeneration)
            f.movedAfterMs = Date.now() - webhookAt;
        }
        await sleep(o.callEveryMs);
      }
    });

    await sleep(o.warmupMs);
    // The leak response, signed, at location 0.
    const body = JSON.stringify({ model_set: "demo", reason: "leak drill", revoke_previous: true });
    const id = `msg_${randomBytes(8).toString("hex")}`;
    const ts = Math.floor(Date.now() / 1000);
    webhookAt = Date.now();
    const res = await fetch(`${w.url}/v1/webhooks/rotate`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(ts),
        "webhook-signature": await signWebhook(secrets.WEBHOOK_SECRET, id, ts, body),
        "x-bench-location": "0",
      },
      body,
    });
    const result = (await res.json()) as { generation?: number };
    const webhookMs = Date.now() - webhookAt;
    if (res.status !== 200 || !result.generation) throw new Error(`webhook answered ${res.status} ${JSON.stringify(result)}`);
    newGeneration = result.generation;
    const deadline = webhookAt + o.maxAfterMs;
    while (Date.now() < deadline && !(figures.length === o.clients && figures.every((f) => f.movedAfterMs !== null))) await sleep(100);
    // A little longer, so the figures include calls after everyone moved.
    await sleep(1_000);
    stop = true;
    await Promise.all(loops);
    polling = false;
    await poller;
    const moved = figures.map((f) => f.movedAfterMs);
    return {
      fresh,
      clients: figures,
      oldKeyDeadAfterMs: oldKeyDeadAt === null ? null : Math.max(0, oldKeyDeadAt - webhookAt),
      allMovedAfterMs: moved.every((m) => m !== null) ? Math.max(...(moved as number[])) : null,
      webhookMs,
    };
  } finally {
    await w.dispose();
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

function drillTable(runs: DrillRun[], o: Required<DrillOptions>): string {
  const row = (label: string, f: (r: DrillRun) => string) => `| ${label} | ${runs.map(f).join(" | ")} |`;
  const beyond = (r: DrillRun) => r.clients.map((c) => c.failedCalls);
  const per = (r: DrillRun, k: "rotatorRequests" | "baseten401s") => r.clients.map((c) => c[k]);
  const s = (ms: number | null) => (ms === null ? `not within ${o.maxAfterMs / 1000} s` : `${(ms / 1000).toFixed(2)} s`);
  return [
    `Leak drill: ${o.clients} clients over ${o.locations} locations (KV edge cache 60 s each, isolate memory 5 s), one model call per client every ${o.callEveryMs} ms, \`revoke_previous\` webhook after ${o.warmupMs / 1000} s at location 0.`,
    "",
    `| figure | ${runs.map((r) => (r.fresh ? "with fresh read (this version)" : "without fresh read (before)")).join(" | ")} |`,
    `| --- | ${runs.map(() => "---").join(" | ")} |`,
    row("webhook answered in", (r) => `${r.webhookMs} ms`),
    row("webhook to old key dead at Baseten", (r) => s(r.oldKeyDeadAfterMs)),
    row(
      "failed model calls per client beyond the one 401 (max / median / total)",
      (r) => `${Math.max(...beyond(r))} / ${pct(beyond(r), 50)} / ${beyond(r).reduce((a, b) => a + b, 0)}`,
    ),
    row("Baseten 401s seen per client (max / median)", (r) => `${Math.max(...per(r, "baseten401s"))} / ${pct(per(r, "baseten401s"), 50)}`),
    row("webhook to every client on the new generation", (r) => s(r.allMovedAfterMs)),
    row("webhook to a client on the new generation (median / p90)", (r) => {
      const m = r.clients.map((c) => c.movedAfterMs ?? o.maxAfterMs);
      return `${(pct(m, 50) / 1000).toFixed(2)} s / ${(pct(m, 90) / 1000).toFixed(2)} s`;
    }),
    row(
      "rotator requests per client after the webhook (max / median)",
      (r) => `${Math.max(...per(r, "rotatorRequests"))} / ${pct(per(r, "rotatorRequests"), 50)}`,
    ),
    row(
      "model calls per client after the webhook (median)",
      (r) =>
        `${pct(
          r.clients.map((c) => c.calls),
          50,
        )}`,
    ),
  ].join("\n");
}

// --- authentication cost with many consumers ----------------------------------------------

async function authRun(
  fake: FakeBaseten,
  consumers: number,
  seconds: number,
): Promise<{ unknownRps: number; knownRps: number; firstSeenRps: number }> {
  const tokens = Array.from({ length: consumers }, (_, i) => `auth_${i}_${randomBytes(12).toString("hex")}`);
  const tenant = `fake-mgmt-auth-${randomBytes(6).toString("hex")}`;
  const w = await startWorker({
    modules: [
      {
        path: path.join(BUNDLE_DIR, "index.js"),
        contents: (await import("node:fs")).readFileSync(path.join(BUNDLE_DIR, "index.js"), "utf8"),
      },
    ],
    storage: true,
    vars: {
      BASETEN_API_BASE: fake.url,
      BASETEN_TEAM_ID: "team-auth",
      BASETEN_API_KEY: tenant,
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
      CONSUMERS: JSON.stringify(
        Object.fromEntries(tokens.map((t, i) => [`svc-${i}`, { token_sha256: sha256Hex(t), model_sets: ["demo"] }])),
      ),
      ENCRYPTION_KEY: randomB64(32),
      ADMIN_TOKEN: `adm_${randomB64(30).replace(/[^A-Za-z0-9]/g, "")}`,
      WEBHOOK_SECRET: `whsec_${randomB64(32)}`,
    },
  });
  try {
    await migrate(w.mf);
    const worker = await w.mf.getWorker("worker");
    await worker.scheduled({ cron: "* * * * *", scheduledTime: new Date() });
    const url = `${w.url}/v1/keys/demo`;
    const last = tokens[tokens.length - 1]!;
    if ((await fetch(url, { headers: { authorization: `Bearer ${last}` } })).status !== 200)
      throw new Error("auth bench: the last consumer's token was refused");
    const run = async (requests: unknown[] | undefined, headers: Record<string, string> | undefined) => {
      await autocannon({ url, headers, requests, connections: 16, duration: 1 });
      const r = await autocannon({ url, headers, requests, connections: 16, duration: seconds });
      return r.requests.total / r.duration;
    };
    const unknownRps = await run(undefined, { authorization: "Bearer tok_not_a_consumer_0123456789" });
    const knownRps = await run(undefined, { authorization: `Bearer ${last}` });
    // Every consumer's token in turn, each seen once before (so its one tracking write is done):
    // with more tokens than the isolate remembers (1,000), every request takes the full path.
    for (let i = 0; i < tokens.length; i += 32)
      await Promise.all(
        tokens.slice(i, i + 32).map((t) => fetch(url, { headers: { authorization: `Bearer ${t}` } }).then((r) => r.arrayBuffer())),
      );
    let n = 0;
    const firstSeenRps = await run(
      [
        {
          setupRequest: (req: { headers?: Record<string, string> }) => ({
            ...req,
            headers: { ...req.headers, authorization: `Bearer ${tokens[n++ % tokens.length]}` },
          }),
        },
      ],
      undefined,
    );
    return { unknownRps, knownRps, firstSeenRps };
  } finally {
    await w.dispose();
  }
}

export async function runDrill(
  fake: FakeBaseten,
  options: DrillOptions & { authOnly?: boolean } = {},
): Promise<{ markdown: string; runs: DrillRun[] }> {
  const o: Required<DrillOptions> = { clients: 50, locations: 3, callEveryMs: 100, warmupMs: 3_000, maxAfterMs: 75_000, ...options };
  const runs: DrillRun[] = [];
  if (!options.authOnly) {
    runs.push(await drillOnce(fake, true, o));
    process.stderr.write(`drill with fresh read: all moved after ${runs[0]!.allMovedAfterMs} ms\n`);
    runs.push(await drillOnce(fake, false, o));
    process.stderr.write(`drill without fresh read: all moved after ${runs[1]!.allMovedAfterMs} ms\n`);
  }
  const one = await authRun(fake, 1, 5);
  const many = await authRun(fake, 10_000, 5);
  const f0 = (x: number) => x.toFixed(0);
  const auth = [
    "Authentication with many consumers (GET /v1/keys/demo, 16 connections, 5 s each, same machine):",
    "",
    "| token | 1 consumer | 10,000 consumers | ratio |",
    "| --- | --- | --- | --- |",
    `| unknown token (hash + Map lookup, 401) | ${f0(one.unknownRps)} req/s | ${f0(many.unknownRps)} req/s | ${(many.unknownRps / one.unknownRps).toFixed(2)} |`,
    `| the last configured consumer's token | ${f0(one.knownRps)} req/s | ${f0(many.knownRps)} req/s | ${(many.knownRps / one.knownRps).toFixed(2)} |`,
    `| every consumer's token in turn (10,000 tokens: more than the isolate remembers, so each request hashes and looks up; compared with the unknown token at 1 consumer) | ${f0(one.unknownRps)} req/s (unknown token) | ${f0(many.firstSeenRps)} req/s | ${(many.firstSeenRps / one.unknownRps).toFixed(2)} |`,
  ].join("\n");
  return { markdown: `${runs.length ? `${drillTable(runs, o)}\n\n` : ""}${auth}\n`, runs };
}

// Standalone: `node bench/drill.ts [--auth] [--out file.md]` (--auth: only the authentication figure).
if (import.meta.url === `file://${process.argv[1]}`) {
  buildBundle();
  const fake = await startFakeBaseten({ port: 0 });
  try {
    const { markdown } = await runDrill(fake, { authOnly: process.argv.includes("--auth") });
    console.log(markdown);
    const i = process.argv.indexOf("--out");
    if (i > 0) writeFileSync(process.argv[i + 1]!, markdown);
  } finally {
    await fake.close();
  }
}
