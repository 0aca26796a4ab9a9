/**
 * Two triggers for one set at the same moment (cron + webhook, two webhooks, webhook + admin)
 * mint exactly one key; the loser is told 409 + Retry-After (a webhook or admin call) or
 * skips the set and logs it (the cron). The fake Baseten is slowed down so that both are
 * really in flight together.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { sendWebhook } from "./helpers/webhooks.ts";
import { type World, makeWorld } from "./helpers/world.ts";

const ONE_SET = { sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }, consumers: { "demo-svc": ["demo"] } };

async function expectOneKey(w: World) {
  expect((await w.fake.calls()).counts.mint).toBe(1);
  expect((await w.fake.keys()).length).toBe(1);
}

/** Resolves once some run holds the set's lease in D1. */
async function leaseTaken(w: World, set = "demo") {
  for (let i = 0; i < 400; i++) {
    const row = await w.env.DB.prepare("SELECT lease_holder FROM sets WHERE model_set = ?1")
      .bind(set)
      .first<{ lease_holder: string | null }>();
    if (row?.lease_holder) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("no run took the lease");
}

const adminRotate = (w: World) =>
  w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });

describe("concurrent triggers", () => {
  afterEach(() => vi.restoreAllMocks());

  it("webhook and cron tick together (Promise.all) mint one key", async () => {
    const w = await makeWorld(ONE_SET);
    await w.fake.latency(200);
    const [res, summary] = await Promise.all([sendWebhook(w, { model_set: "demo" }), w.tick()]);
    await expectOneKey(w);
    const cron = summary.results.find((r) => r.model_set === "demo");
    if (res.status === 200) {
      // The webhook won: the cron found the set leased (busy) or, once released, not due.
      expect(cron === undefined || cron.outcome === "busy" || cron.outcome === "noop").toBe(true);
    } else {
      expect(res.status).toBe(409);
      expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(cron?.outcome).toBe("rotated");
    }
  });

  it("two webhooks with different ids together: one 200, one 409 with Retry-After, one key", async () => {
    const w = await makeWorld(ONE_SET);
    await w.fake.latency(200);
    const [a, b] = await Promise.all([sendWebhook(w, { model_set: "demo" }), sendWebhook(w, { model_set: "demo" })]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const loser = a.status === 409 ? a : b;
    expect(loser.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await loser.json()).toMatchObject({ error: "rotation_in_progress" });
    await expectOneKey(w);
  });

  it("webhook and admin rotate together: one key", async () => {
    const w = await makeWorld(ONE_SET);
    await w.fake.latency(200);
    const [a, b] = await Promise.all([sendWebhook(w, { model_set: "demo" }), adminRotate(w)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    await expectOneKey(w);
  });

  it("while the cron holds the set, a webhook gets 409 + Retry-After and mints nothing", async () => {
    const w = await makeWorld(ONE_SET);
    await w.fake.latency(300);
    const ticking = w.tick();
    await leaseTaken(w);
    const res = await sendWebhook(w, { model_set: "demo" });
    expect(res.status).toBe(409);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect((await ticking).results.find((r) => r.model_set === "demo")?.outcome).toBe("rotated");
    await expectOneKey(w);
  });

  it("while a webhook holds the set, the cron skips it and says so in its log", async () => {
    const w = await makeWorld(ONE_SET);
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    await w.fake.latency(600); // the webhook's mint is slow…
    const hooking = sendWebhook(w, { model_set: "demo" });
    await leaseTaken(w);
    await w.fake.latency(0); // …the cron's own calls are not, so it reaches the set while the mint is in flight
    const summary = await w.tick();
    // The tick sees the webhook's mint in flight (its pending row) and does not run the set at all,
    // or finds its lease taken: either way it skips it.
    const cron = summary.results.find((r) => r.model_set === "demo");
    expect(cron === undefined || cron.outcome === "busy").toBe(true);
    expect(lines.some((l) => l.includes('"run.skipped"') && l.includes('"demo"'))).toBe(true);
    expect((await hooking).status).toBe(200);
    await expectOneKey(w);
  });
});
