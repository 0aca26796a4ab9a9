/**
 * Reliability item 1: every kind of upstream fault, injected for real at the fake Baseten.
 * Each time the rotation is retried within bounds (and succeeds) or fails cleanly; the old key
 * stays current and served; the failure shows in /v1/admin/status and as a `rotation.failed`
 * event at a subscriber; no key is left behind at Baseten; and once the fault is gone the next
 * run converges. The same faults hit the cron path, where the served document must then point
 * at the next attempt (the promise rule for overdue rotations).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type Engine, LEASE_MS, type RunReport, createEngine, runSet } from "../src/rotation.ts";
import { type Fault, type FakeTenant, fakeTenant } from "./helpers/fake.ts";
import {
  adminStatus,
  currentRow,
  expectConverged,
  expectNoUntrackedKeys,
  expectOverdueDocument,
  servedLive,
} from "./helpers/invariants.ts";
import { randomSecret } from "./helpers/webhooks.ts";
import { HOUR, type World, makeWorld, prefixOf } from "./helpers/world.ts";
import { tally, useTally } from "./helpers/tally.ts";

useTally();

const SET = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };

async function world(): Promise<{ w: World; sink: FakeTenant }> {
  const sink = fakeTenant(env.BASETEN_API_BASE);
  const w = await makeWorld({
    sets: SET,
    consumers: { "demo-svc": ["demo"] },
    vars: { BASETEN_TIMEOUT_MS: "300", EVENT_WEBHOOKS: JSON.stringify([{ url: sink.sinkUrl(), secret: randomSecret() }]) },
  });
  return { w, sink };
}

const adminRotate = (w: World) =>
  w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });

async function events(sink: FakeTenant): Promise<{ type: string; data: Record<string, unknown> }[]> {
  return (await sink.sink()).filter((d) => d.status < 300).map((d) => JSON.parse(d.body));
}

async function mintCalls(w: World): Promise<number> {
  return (await w.fake.calls()).counts.mint ?? 0;
}

interface Case {
  name: string;
  faults: Fault[];
  /** rotated: the retries absorbed the fault; failed: the run gave up cleanly. */
  outcome: "rotated" | "failed";
  code?: string;
  /** Mint attempts Baseten saw: the retry bound. */
  mintCalls: number;
  /** Upstream status named in the failure (status and event). */
  upstream?: string;
}

const CASES: Case[] = [
  {
    name: "429 with retry_after 0 in the body, once",
    faults: [{ op: "mint", kind: "429", retry_after: 0 }],
    outcome: "rotated",
    mintCalls: 2,
  },
  {
    name: "429 with a Retry-After header only, once",
    faults: [{ op: "mint", kind: "429", retry_after_header: true }],
    outcome: "rotated",
    mintCalls: 2,
  },
  { name: "429 without any retry hint, once", faults: [{ op: "mint", kind: "429" }], outcome: "rotated", mintCalls: 2 },
  {
    name: "429 on every attempt",
    faults: [{ op: "mint", kind: "429", retry_after: 0, count: 5 }],
    outcome: "failed",
    code: "upstream_rate_limited",
    mintCalls: 3,
    upstream: "429",
  },
  {
    name: "429 asking for longer than the run may take",
    faults: [{ op: "mint", kind: "429", retry_after: 600, retry_after_header: true }],
    outcome: "failed",
    code: "upstream_rate_limited",
    mintCalls: 1,
    upstream: "429",
  },
  { name: "a burst of two 500s", faults: [{ op: "mint", kind: "500", count: 2 }], outcome: "rotated", mintCalls: 3 },
  {
    name: "a burst of 502s longer than the retries",
    faults: [{ op: "mint", kind: "502", count: 5 }],
    outcome: "failed",
    code: "upstream_server",
    mintCalls: 3,
    upstream: "502",
  },
  {
    name: "503 on every attempt",
    faults: [{ op: "any", kind: "503", count: 10 }],
    outcome: "failed",
    code: "upstream_server",
    mintCalls: 3,
    upstream: "503",
  },
  {
    name: "a stall past the client timeout, once",
    faults: [{ op: "mint", kind: "stall", stall_ms: 5_000 }],
    outcome: "rotated",
    mintCalls: 2,
  },
  {
    name: "stalls on every attempt",
    faults: [{ op: "mint", kind: "stall", stall_ms: 5_000, count: 3 }],
    outcome: "failed",
    code: "upstream_timeout",
    mintCalls: 3,
  },
  { name: "connection refused, once", faults: [{ op: "mint", kind: "refuse" }], outcome: "rotated", mintCalls: 2 },
  {
    name: "connection refused on every attempt",
    faults: [{ op: "mint", kind: "refuse", count: 3 }],
    outcome: "failed",
    code: "upstream_network",
    mintCalls: 3,
  },
  {
    name: "a malformed 200 body",
    faults: [{ op: "mint", kind: "malformed" }],
    outcome: "failed",
    code: "upstream_malformed",
    mintCalls: 1,
    upstream: "200",
  },
  {
    name: "an empty 200 body",
    faults: [{ op: "mint", kind: "empty" }],
    outcome: "failed",
    code: "upstream_malformed",
    mintCalls: 1,
    upstream: "200",
  },
  {
    name: "401: a bad management key",
    faults: [{ op: "any", kind: "401", count: 10 }],
    outcome: "failed",
    code: "upstream_client",
    mintCalls: 1,
    upstream: "401",
  },
  {
    name: "403: a management key without the permission",
    faults: [{ op: "any", kind: "403", count: 10 }],
    outcome: "failed",
    code: "upstream_client",
    mintCalls: 1,
    upstream: "403",
  },
];

describe("upstream faults: admin rotation", () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.outcome === "rotated" ? `retried (${c.mintCalls} attempts) and rotated` : `fails cleanly after ${c.mintCalls} attempt(s)`}`, async () => {
      const { w, sink } = await world();
      await w.tick();
      const before = await servedLive(w);
      const calls0 = await mintCalls(w);
      await w.fake.fault(...c.faults);
      tally("upstream", c.faults.map((f) => `${f.op} ${f.kind}`).join("+"));

      const res = await adminRotate(w);
      const body = (await res.json()) as Record<string, unknown>;
      expect(await mintCalls(w)).toBe(calls0 + c.mintCalls);
      await w.fake.clearFaults();
      tally("response", String(res.status));
      const { text: statusText, body: status } = await adminStatus(w);
      const demo = status.sets.find((s) => s.model_set === "demo")!;

      if (c.outcome === "rotated") {
        expect(res.status).toBe(200);
        expect(body).toMatchObject({ model_set: "demo", generation: 2, replaced: { generation: 1 }, trigger: "admin" });
        expect(demo.last_run).toMatchObject({ trigger: "admin", outcome: "rotated", error: null });
        w.clock.advance(10_000);
        const doc = await servedLive(w);
        expect(doc.generation).toBe(2);
        // The replaced key keeps its overlap.
        expect((await w.fake.liveKeys()).map((k) => k.prefix)).toContain(prefixOf(before.api_key));
        expect((await events(sink)).map((e) => e.type)).toEqual(["key.rotated"]);
      } else {
        expect(res.status).toBe(502);
        expect(body).toMatchObject({ error: "upstream_failed" });
        expect(String(body.message)).not.toMatch(/fake-mgmt|[A-Za-z0-9]{8}\.[A-Za-z0-9]{40}/);
        // Failed cleanly: the old key is still current and served, nothing was left at Baseten.
        expect((await currentRow("demo"))?.generation).toBe(1);
        w.clock.advance(10_000);
        const doc = await servedLive(w);
        expect(doc.api_key).toBe(before.api_key);
        const { live } = await expectNoUntrackedKeys(w);
        expect(live.map((k) => k.prefix)).toEqual([prefixOf(before.api_key)]);
        // Visible to the operator and to subscribers.
        expect(demo.generation).toBe(1);
        expect(demo.last_run).toMatchObject({ trigger: "admin", outcome: "failed" });
        expect(demo.last_run!.error).toBeTruthy();
        if (c.upstream) expect(demo.last_run!.error).toContain(c.upstream);
        expect(statusText).not.toContain(before.api_key);
        expect(statusText).not.toContain(w.fake.key);
        const failed = (await events(sink)).filter((e) => e.type === "rotation.failed");
        expect(failed.length).toBe(1);
        expect(failed[0]!.data).toMatchObject({ model_set: "demo", trigger: "admin", error: c.code });
        expect(JSON.stringify(failed)).not.toContain(before.api_key);
      }

      // The fault gone, the next run converges (after the lease, if the failed run had to leave
      // its pending row behind because the recovery's list call failed too).
      if (c.outcome === "failed") w.clock.advance(LEASE_MS);
      const again = await adminRotate(w);
      expect(again.status).toBe(200);
      w.clock.advance(10_000);
      await expectConverged(w, "demo");
    });
  }
});

describe("upstream faults: the cron, with the rotation overdue", () => {
  for (const c of CASES.filter((x) => x.outcome === "failed")) {
    it(`${c.name}: the old key stays served with a promise covering the next attempt, then the next tick rotates`, async () => {
      const { w } = await world();
      await w.tick();
      const first = await servedLive(w);
      w.clock.set(Date.parse(first.refresh_at));
      await w.fake.fault(...c.faults);
      tally("upstream", c.faults.map((f) => `${f.op} ${f.kind}`).join("+"));
      const summary = await w.tick();
      await w.fake.clearFaults();
      const run = summary.results.find((r) => r.model_set === "demo") as RunReport;
      expect(run.outcome).toBe("failed");
      expect(run.failure?.code).toBe(c.code);
      expect(run.events.map((e) => e.type)).toEqual(["rotation.failed"]);
      expect(run.events[0]!.data).toMatchObject({ error: c.code });
      const { body: status } = await adminStatus(w);
      expect(status.sets.find((s) => s.model_set === "demo")!.last_run).toMatchObject({ trigger: "cron", outcome: "failed" });

      // Overdue: still gen 1, live, with the promise the failed tick recorded: it covers the next
      // attempt + overlap until the next ticks extend it again (the cron fires every minute; with
      // no tick at all nothing is extended and status says the engine stalled: test/policy.test.ts).
      for (const later of [10_000, 50_000, 2 * 60_000]) {
        w.clock.set(Date.parse(first.refresh_at) + later);
        const doc = await servedLive(w);
        expect(doc.generation).toBe(1);
        expectOverdueDocument(doc, w.clock.now(), HOUR);
      }
      await w.tick();
      w.clock.advance(10_000);
      const { doc } = await expectConverged(w, "demo");
      expect(doc.generation).toBeGreaterThan(1);
    });
  }
});

/** An engine whose client records its backoff waits instead of sleeping them. */
function recordingEngine(w: World, waits: number[]): Engine {
  const { config } = w.engine();
  return createEngine(config, w.env, w.clock.now, {
    sleep: async (ms) => {
      waits.push(ms);
    },
  });
}

describe("upstream faults: retry waits", () => {
  const cases: { name: string; fault: Fault; min: number; max: number }[] = [
    { name: "retry_after in the body", fault: { op: "mint", kind: "429", retry_after: 7 }, min: 7_000, max: 7_000 },
    {
      name: "Retry-After header without a body hint",
      fault: { op: "mint", kind: "429", retry_after_header: true },
      min: 1_000,
      max: 1_000,
    },
    { name: "no hint: jittered backoff, bounded", fault: { op: "mint", kind: "429" }, min: 0, max: 200 },
    { name: "5xx: jittered backoff, bounded", fault: { op: "mint", kind: "503" }, min: 0, max: 200 },
  ];
  for (const c of cases) {
    it(`429/5xx ${c.name}: waits ${c.min}-${c.max} ms once, then rotates`, async () => {
      const { w } = await world();
      await w.fake.fault(c.fault);
      tally("upstream", `${c.fault.op} ${c.fault.kind}`);
      const waits: number[] = [];
      const result = (await runSet(recordingEngine(w, waits), "demo", { trigger: "admin", mint: "now" })) as RunReport;
      expect(result.outcome).toBe("rotated");
      expect(waits.length).toBe(1);
      expect(waits[0]).toBeGreaterThanOrEqual(c.min);
      expect(waits[0]).toBeLessThanOrEqual(c.max);
    });
  }

  it("a hint longer than the run's budget is not waited for: the run fails at once and keeps the old key", async () => {
    const { w } = await world();
    await w.tick();
    await w.fake.fault({ op: "mint", kind: "429", retry_after: 600 });
    tally("upstream", "mint 429");
    const waits: number[] = [];
    const result = (await runSet(recordingEngine(w, waits), "demo", { trigger: "admin", mint: "now" })) as RunReport;
    expect(result.outcome).toBe("failed");
    expect(waits).toEqual([]);
    expect((await currentRow("demo"))?.generation).toBe(1);
  });
});

describe("upstream faults on list and revoke", () => {
  it("list failing (sweep and recovery) and revoke failing: previous keys stay live past their promise until a revoke succeeds", async () => {
    const { w } = await world();
    await w.tick();
    const first = await servedLive(w);
    w.clock.set(Date.parse(first.refresh_at));
    await w.tick();
    w.clock.advance(10_000);
    const second = await servedLive(w);
    expect(second.generation).toBe(2);
    // Past gen 1's promise, with revokes failing in every way: it stays (previous, live).
    w.clock.set(Date.parse(first.expires_at) + 5 * 60_000);
    for (const kind of ["500", "403", "refuse", "stall", "429"] as const) {
      await w.fake.fault({ op: "revoke", kind, count: 3, stall_ms: 2_000 }, { op: "list", kind: "503", count: 3 });
      tally("upstream", `revoke ${kind}+list 503`);
      const run = (await w.tick()).results.find((r) => r.model_set === "demo") as RunReport;
      await w.fake.clearFaults();
      expect(run.revoked).toEqual([]);
      expect((await w.fake.liveKeys()).map((k) => k.prefix)).toContain(prefixOf(first.api_key));
      expect((await currentRow("demo"))?.generation).toBe(2);
      await servedLive(w);
      w.clock.advance(60_000);
    }
    const run = (await w.tick()).results.find((r) => r.model_set === "demo") as RunReport;
    expect(run.revoked).toEqual([1]);
    await expectConverged(w, "demo");
  });
});
