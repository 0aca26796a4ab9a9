/**
 * GET /metrics as a Prometheus scraper reads it: text format 0.0.4, every family DESIGN §3 names
 * with HELP and TYPE, labelled per set, values that agree with /v1/admin/status, from one D1 round
 * trip; METRICS_TOKEN or an admin token, 401 otherwise. And the cron's after-tick step: the tick
 * recorded (engine.last_tick_at, bkr_last_tick_age_seconds) and `rotation.overdue` sent once per
 * set and generation when a rotation is more than 5 minutes overdue.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import type { Env } from "../src/env.ts";
import { OVERDUE_AFTER_MS, afterTick } from "../src/events.ts";
import worker from "../src/index.ts";
import { renderMetrics } from "../src/routes/metrics.ts";
import type { Status } from "../src/status.ts";
import { fakeTenant } from "./helpers/fake.ts";
import { METRICS_TOKEN, admin, adminJson, bearer, expectRefused } from "./helpers/operators.ts";
import { randomSecret } from "./helpers/webhooks.ts";
import { HOUR, MIN, type World, makeWorld } from "./helpers/world.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict reader of the text format: every sample line belongs to a family declared by HELP and TYPE before it. */
function parse(text: string): { families: Map<string, { type: string; help: string }>; samples: Sample[] } {
  const families = new Map<string, { type: string; help: string }>();
  const samples: Sample[] = [];
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.slice(0, -1).split("\n")) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-z_]+) (.+)$/.exec(line))) families.set(m[1]!, { help: m[2]!, type: "" });
    else if ((m = /^# TYPE ([a-z_]+) (gauge|counter)$/.exec(line))) {
      expect(families.has(m[1]!), `TYPE after HELP for ${m[1]}`).toBe(true);
      families.get(m[1]!)!.type = m[2]!;
    } else {
      m = /^([a-z_]+)(?:\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\})? (-?\d+(?:\.\d+)?|\+Inf|-Inf|NaN)$/.exec(line);
      expect(m, `a sample line: ${line}`).not.toBeNull();
      expect(families.get(m![1]!)?.type, `${m![1]} declared before its samples`).toMatch(/gauge|counter/);
      const labels = Object.fromEntries([...(m![2] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
      samples.push({ name: m![1]!, labels, value: m![3] === "+Inf" ? Infinity : Number(m![3]) });
    }
  }
  return { families, samples };
}

const FAMILIES = {
  bkr_key_generation: "gauge",
  bkr_key_age_seconds: "gauge",
  bkr_key_refresh_in_seconds: "gauge",
  bkr_live_keys: "gauge",
  bkr_rotations_total: "counter",
  bkr_last_tick_age_seconds: "gauge",
  bkr_consumer_generation_lag: "gauge",
  bkr_config_problems: "gauge",
};

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find(
    (s) =>
      s.name === name &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
      Object.keys(s.labels).length === Object.keys(labels).length,
  )?.value;

/** The cron as Cloudflare runs it (src/index.ts scheduled), at the world's clock for the engine. */
async function cron(w: World, at: number) {
  const ctx = createExecutionContext();
  const realNow = Date.now;
  Date.now = () => at;
  try {
    await worker.scheduled!(createScheduledController({ scheduledTime: at, cron: "* * * * *" }), w.env, ctx);
    await waitOnExecutionContext(ctx);
  } finally {
    Date.now = realNow;
  }
}

describe("GET /metrics", () => {
  it("every family with HELP and TYPE, per set and outcome, agreeing with status", async () => {
    const w = await makeWorld({ vars: { METRICS_TOKEN, BASETEN_MAX_ATTEMPTS: "1" } });
    await cron(w, w.clock.now());
    w.clock.advance(10 * MIN);
    expect((await w.request("/v1/admin/rotate/demo", { method: "POST", headers: admin(w) })).status).toBe(200);
    await w.fake.fault({ op: "mint", kind: "401" });
    expect((await w.request("/v1/admin/rotate/other", { method: "POST", headers: admin(w) })).status).toBe(502);
    w.clock.advance(30_000);

    const res = await w.request("/metrics", { headers: bearer(METRICS_TOKEN) });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const { families, samples } = parse(await res.text());
    for (const [name, type] of Object.entries(FAMILIES)) expect(families.get(name)?.type, name).toBe(type);

    const status = (await adminJson<Status>(w, "/v1/admin/status")).body;
    const now = w.clock.now();
    for (const set of status.sets) {
      const l = { model_set: set.model_set };
      expect(value(samples, "bkr_key_generation", l)).toBe(set.generation);
      expect(value(samples, "bkr_key_age_seconds", l)).toBe((now - Date.parse(set.created_at!)) / 1000);
      expect(value(samples, "bkr_key_refresh_in_seconds", l)).toBe((Date.parse(set.refresh_at!) - now) / 1000);
      expect(value(samples, "bkr_live_keys", l)).toBe(1 + set.previous.length);
    }
    expect(value(samples, "bkr_rotations_total", { model_set: "demo", outcome: "rotated" })).toBe(2);
    expect(value(samples, "bkr_rotations_total", { model_set: "demo", outcome: "failed" })).toBe(0);
    expect(value(samples, "bkr_rotations_total", { model_set: "other", outcome: "rotated" })).toBe(1);
    expect(value(samples, "bkr_rotations_total", { model_set: "other", outcome: "failed" })).toBe(1);
    expect(value(samples, "bkr_last_tick_age_seconds")).toBe((now - Date.parse(status.engine.last_tick_at!)) / 1000);
    expect(value(samples, "bkr_config_problems")).toBe(0);
    // An admin token is admitted too.
    expect((await w.request("/metrics", { headers: admin(w) })).status).toBe(200);
  });

  it("one D1 round trip whatever the number of sets; negative refresh_in while overdue; tick age, +Inf before any tick", async () => {
    const sets = Object.fromEntries(
      Array.from({ length: 40 }, (_, i) => [`s${i}`, { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" }]),
    );
    const w = await makeWorld({ sets, consumers: {} });
    await w.tick();
    let roundTrips = 0;
    const db = new Proxy(env.DB, {
      get(target, prop) {
        if (prop === "batch" || prop === "exec") roundTrips++;
        const v = Reflect.get(target, prop);
        if (prop === "prepare")
          return (sql: string) => {
            const stmt = (v as D1Database["prepare"]).call(target, sql);
            return new Proxy(stmt, {
              get: (s, p) => {
                if (p === "first" || p === "all" || p === "run" || p === "raw") roundTrips++;
                const f = Reflect.get(s, p);
                return typeof f === "function" ? f.bind(s) : f;
              },
            });
          };
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    const text = await renderMetrics(db, config.config, 0, w.clock.now() + 2 * HOUR);
    expect(roundTrips).toBe(1);
    const { samples } = parse(text);
    expect(samples.filter((s) => s.name === "bkr_key_generation").length).toBe(40);
    expect(value(samples, "bkr_key_refresh_in_seconds", { model_set: "s7" })).toBe(-3600);
    expect(value(samples, "bkr_last_tick_age_seconds")).toBe(2 * 3600); // the tick above, two hours ago
    await env.DB.prepare("DELETE FROM meta").run(); // as before the first tick
    expect(value(parse(await renderMetrics(env.DB, config.config, 0, w.clock.now())).samples, "bkr_last_tick_age_seconds")).toBe(Infinity);
  });

  it("bkr_consumer_generation_lag: per consumer and set it fetched, current generation minus the highest it fetched", async () => {
    const w = await makeWorld({ vars: { METRICS_TOKEN } });
    await w.tick();
    w.clock.advance(10_000);
    const created = await w.request("/v1/admin/consumers", {
      method: "POST",
      headers: { ...admin(w), "content-type": "application/json" },
      body: JSON.stringify({ name: "batch-jobs", model_sets: ["demo", "other"] }),
    });
    expect(created.status).toBe(201);
    const managedToken = ((await created.json()) as { token: string }).token;
    expect((await w.getKey("demo", "demo-svc")).status).toBe(200);
    expect((await w.request("/v1/keys/demo", { headers: bearer(managedToken) })).status).toBe(200);
    const lag = async () =>
      parse(await (await w.request("/metrics", { headers: bearer(METRICS_TOKEN) })).text()).samples.filter(
        (s) => s.name === "bkr_consumer_generation_lag",
      );

    // Both on the current generation; other-svc fetched nothing, and nobody fetched "other": no sample.
    expect(await lag()).toEqual([
      { name: "bkr_consumer_generation_lag", labels: { consumer: "batch-jobs", model_set: "demo" }, value: 0 },
      { name: "bkr_consumer_generation_lag", labels: { consumer: "demo-svc", model_set: "demo" }, value: 0 },
    ]);
    w.clock.advance(10 * MIN);
    expect((await w.request("/v1/admin/rotate/demo", { method: "POST", headers: admin(w) })).status).toBe(200);
    w.clock.advance(10 * MIN);
    expect((await w.request("/v1/admin/rotate/demo", { method: "POST", headers: admin(w) })).status).toBe(200);
    expect((await w.request("/v1/keys/demo", { headers: { ...bearer(managedToken), "cache-control": "no-cache" } })).status).toBe(200);
    expect(await lag()).toEqual([
      { name: "bkr_consumer_generation_lag", labels: { consumer: "batch-jobs", model_set: "demo" }, value: 0 },
      { name: "bkr_consumer_generation_lag", labels: { consumer: "demo-svc", model_set: "demo" }, value: 2 },
    ]);
    // Deleting the managed consumer removes its sample (no grant any more).
    expect((await w.request("/v1/admin/consumers/batch-jobs", { method: "DELETE", headers: admin(w) })).status).toBe(200);
    expect(await lag()).toEqual([{ name: "bkr_consumer_generation_lag", labels: { consumer: "demo-svc", model_set: "demo" }, value: 2 }]);
  });

  it("answers on an invalid configuration with bkr_config_problems; refuses everyone else", async () => {
    const w = await makeWorld({ vars: { METRICS_TOKEN } });
    await w.tick();
    const broken = { ...w.env, BASETEN_TEAM_ID: "", MODEL_SETS: "{" } as Env;
    const { createApp } = await import("../src/app.ts");
    const res = await createApp({ clock: w.clock.now }).fetch(
      new Request("https://rotator.test/metrics", { headers: bearer(METRICS_TOKEN) }),
      broken,
      createExecutionContext(),
    );
    expect(res.status).toBe(200);
    const { samples } = parse(await res.text());
    expect(value(samples, "bkr_config_problems")).toBeGreaterThanOrEqual(2);
    expect(value(samples, "bkr_key_generation", { model_set: "demo" })).toBe(1);
    for (const [name, headers] of [
      ["no token", {}],
      ["wrong token", bearer(`${METRICS_TOKEN}x`)],
      ["consumer token", bearer(w.tokens["demo-svc"]!)],
      ["Basic", { authorization: `Basic ${btoa(`x:${METRICS_TOKEN}`)}` }],
    ] as [string, Record<string, string>][]) {
      await expectRefused(w, name, () => w.request("/metrics", { headers }), { status: 401, error: "unauthorized", challenge: true });
    }
    await expectRefused(w, "POST", () => w.request("/metrics", { method: "POST", headers: bearer(METRICS_TOKEN) }), {
      status: 405,
      allow: "GET, HEAD",
    });
  });
});

describe("after every cron tick", () => {
  it("records the tick and sends rotation.overdue once per set and generation, > 5 min overdue only", async () => {
    const sink = fakeTenant(env.BASETEN_API_BASE);
    const secret = randomSecret();
    const w = await makeWorld({
      sets: {
        demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" },
        off: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" },
      },
      consumers: {},
      vars: { EVENT_WEBHOOKS: JSON.stringify([{ url: sink.sinkUrl(), secret, events: ["rotation.overdue"] }]), BASETEN_MAX_ATTEMPTS: "1" },
    });
    await cron(w, w.clock.now());
    const status0 = (await adminJson<Status>(w, "/v1/admin/status")).body;
    expect(status0.engine).toEqual({ last_tick_at: new Date(w.clock.now()).toISOString(), stalled: false });
    const refreshAt = Date.parse(status0.sets[0]!.refresh_at!);

    // Baseten refuses every mint from now on: the rotation at refresh_at fails, tick after tick.
    await w.fake.fault({ op: "mint", kind: "403", count: 1000 });
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    w.clock.set(refreshAt + 60_000);
    await cron(w, w.clock.now());
    expect(await afterTick(config.config, env.DB, refreshAt + OVERDUE_AFTER_MS)).toEqual([]); // exactly 5 min: not yet
    w.clock.set(refreshAt + OVERDUE_AFTER_MS + 60_000);
    await cron(w, w.clock.now());
    w.clock.advance(60_000);
    await cron(w, w.clock.now());
    const got = (await sink.sink()).map((d) => JSON.parse(d.body) as { type: string; data: Record<string, unknown> });
    expect(got.map((e) => [e.type, e.data.model_set, e.data.generation]).sort()).toEqual([
      ["rotation.overdue", "demo", 1],
      ["rotation.overdue", "off", 1],
    ]);
    expect(got[0]!.data).toMatchObject({ refresh_at: new Date(refreshAt).toISOString(), overdue_seconds: 360, trigger: "cron" });
    // The tick shows in status, and the failed runs in the set's timeline data.
    const status = (await adminJson<Status>(w, "/v1/admin/status")).body;
    expect(status.engine).toEqual({ last_tick_at: new Date(w.clock.now()).toISOString(), stalled: false });
    expect(status.sets.find((s) => s.model_set === "demo")!.failures.length).toBeGreaterThanOrEqual(3);
    // Later ticks stay quiet for the same generations.
    expect(await afterTick(config.config, env.DB, w.clock.now() + HOUR)).toEqual([]);
  });

  it("a disabled set is never overdue; the engine is stalled once no tick ran for 5 minutes", async () => {
    const w = await makeWorld({ sets: { demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" } }, consumers: {} });
    await cron(w, w.clock.now());
    const off = {
      ...w.env,
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m", enabled: false } }),
    } as Env;
    const config = loadConfig(off);
    if (!config.ok) throw new Error("config");
    expect(await afterTick(config.config, env.DB, w.clock.now() + 3 * HOUR)).toEqual([]);
    w.clock.advance(3 * HOUR + 6 * MIN);
    const status = (await adminJson<Status>(w, "/v1/admin/status")).body;
    expect(status.engine.stalled).toBe(true);
  });
});
