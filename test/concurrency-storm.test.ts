/**
 * Reliability item 4: twenty triggers for one set at once (webhooks with distinct ids, admin
 * calls and cron ticks together) create exactly one key at Baseten. Every other trigger is told
 * so: 409 `rotation_in_progress` with a Retry-After (webhook, admin), or a skipped / no-op run
 * (cron). The fake Baseten answers slowly so that all of them are really in flight together.
 */
import { describe, expect, it } from "vitest";
import type { RunResult } from "../src/rotation.ts";
import { expectConverged, rows } from "./helpers/invariants.ts";
import { tally, useTally } from "./helpers/tally.ts";
import { sendWebhook } from "./helpers/webhooks.ts";
import { type World, makeWorld } from "./helpers/world.ts";

useTally();

const SET = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };

const adminRotate = (w: World) =>
  w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });

interface Storm {
  http: { kind: "webhook" | "admin"; id?: string; status: number; retryAfter: string | null; body: Record<string, unknown> }[];
  cron: RunResult[];
}

/** 8 webhooks with distinct ids, 8 admin calls and 4 cron ticks, all started together. */
async function storm(w: World): Promise<Storm> {
  const ids = Array.from({ length: 8 }, (_, i) => `msg_storm_${i}_${crypto.randomUUID()}`);
  const http = [
    ...ids.map(async (id) => ({ kind: "webhook" as const, id, res: await sendWebhook(w, { model_set: "demo", reason: "storm" }, { id }) })),
    ...Array.from({ length: 8 }, async () => ({ kind: "admin" as const, id: undefined, res: await adminRotate(w) })),
  ];
  const ticks = Array.from({ length: 4 }, () => w.tick());
  const [answers, summaries] = await Promise.all([Promise.all(http), Promise.all(ticks)]);
  const out: Storm = { http: [], cron: summaries.flatMap((s) => s.results.filter((r) => r.model_set === "demo")) };
  for (const a of answers) {
    out.http.push({
      kind: a.kind,
      id: a.id,
      status: a.res.status,
      retryAfter: a.res.headers.get("retry-after"),
      body: (await a.res.json()) as Record<string, unknown>,
    });
    tally("response", String(a.res.status));
  }
  tally("concurrency", "triggers", 20);
  return out;
}

function expectOneWinner(s: Storm) {
  const httpWins = s.http.filter((h) => h.status === 200);
  const cronWins = s.cron.filter((r) => r.outcome === "rotated");
  expect(httpWins.length + cronWins.length, "exactly one trigger rotated").toBe(1);
  for (const h of s.http.filter((x) => x.status !== 200)) {
    expect(h.status).toBe(409);
    expect(h.body.error).toBe("rotation_in_progress");
    expect(Number(h.retryAfter)).toBeGreaterThan(0);
  }
  for (const r of s.cron) if (r.outcome !== "rotated") expect(["busy", "noop"]).toContain(r.outcome);
}

describe("twenty concurrent triggers for one set", () => {
  it("with no key yet: exactly one key is created, everyone else is told to retry", async () => {
    const w = await makeWorld({ sets: SET, consumers: { "demo-svc": ["demo"] } });
    await w.fake.latency(400); // under the client timeout (1 s), far over the time 20 lease attempts take
    const s = await storm(w);
    await w.fake.latency(0);
    expectOneWinner(s);
    expect((await w.fake.keys()).length).toBe(1);
    expect((await w.fake.calls()).counts.mint).toBe(1);
    expect((await rows("demo")).map((r) => r.state)).toEqual(["current"]);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("with a key due for rotation: exactly one new key; the old one keeps its overlap", async () => {
    const w = await makeWorld({ sets: SET, consumers: { "demo-svc": ["demo"] } });
    await w.tick();
    const first = (await rows("demo"))[0]!;
    w.clock.set(first.refresh_at!);
    await w.fake.latency(400); // under the client timeout (1 s), far over the time 20 lease attempts take
    const s = await storm(w);
    await w.fake.latency(0);
    expectOneWinner(s);
    expect((await w.fake.keys()).length).toBe(2);
    expect((await w.fake.liveKeys()).length).toBe(2);
    expect((await rows("demo")).map((r) => r.state)).toEqual(["previous", "current"]);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("a webhook refused with 409 during the storm is processed anew when its sender retries with the same id", async () => {
    const w = await makeWorld({ sets: SET, consumers: { "demo-svc": ["demo"] } });
    await w.tick();
    await w.fake.latency(400); // under the client timeout (1 s), far over the time 20 lease attempts take
    const s = await storm(w);
    await w.fake.latency(0);
    expectOneWinner(s);
    const refused = s.http.find((h) => h.kind === "webhook" && h.status === 409)!;
    const again = await sendWebhook(w, { model_set: "demo", reason: "storm" }, { id: refused.id });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBeNull();
    // One key from the storm, one from the retry: never one per trigger.
    expect((await w.fake.keys()).length).toBe(3);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("with the winner's mint answer lost: no key survives the storm, and the set converges afterwards", async () => {
    const w = await makeWorld({ sets: SET, consumers: { "demo-svc": ["demo"] } });
    await w.tick();
    await w.fake.latency(400); // under the client timeout (1 s), far over the time 20 lease attempts take
    await w.fake.fault({ op: "mint", kind: "lost_after_commit" });
    tally("concurrency", "storm with a lost mint answer");
    const s = await storm(w);
    await w.fake.latency(0);
    // One trigger ran the rotation (and failed it cleanly), nobody else minted.
    const ran =
      s.http.filter((h) => h.status !== 409).length + s.cron.filter((r) => r.outcome === "failed" || r.outcome === "rotated").length;
    expect(ran).toBe(1);
    expect((await w.fake.keys()).filter((k) => k.name?.startsWith("bkr-demo-2-")).length).toBe(1);
    expect((await w.fake.liveKeys()).length).toBe(1);
    expect((await rows("demo")).map((r) => r.state)).toEqual(["current", "abandoned"]);
    expect((await adminRotate(w)).status).toBe(200);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });
});
