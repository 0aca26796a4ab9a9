/**
 * The leak response and the limits on it (DESIGN §3): `revoke_previous` revokes every key of the
 * set other than the new one; on-demand rotations (webhook and admin together) are limited to 10
 * per set in any 10 minutes; a webhook delivery is processed once even when storing its answer
 * failed, because its receipt is written in the rotation's own D1 batch.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { type RunReport, runSet } from "../src/rotation.ts";
import { FaultPlan, faultyD1 } from "./helpers/faulty-bindings.ts";
import { expectConverged, rows, servedLive } from "./helpers/invariants.ts";
import { sendWebhook, signedWebhook } from "./helpers/webhooks.ts";
import { MIN, type World, makeWorld, prefixOf } from "./helpers/world.ts";

const SET = { sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }, consumers: { "demo-svc": ["demo"] } };
const mints = async (w: World) => (await w.fake.calls()).counts.mint ?? 0;
const adminRotate = (w: World, body?: unknown) =>
  w.request("/v1/admin/rotate/demo", {
    method: "POST",
    headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

describe("revoke_previous", () => {
  it("revokes every key of the set other than the new one, the older leaked one included", async () => {
    const w = await makeWorld(SET);
    await w.tick();
    const gen1 = await servedLive(w);
    w.clock.advance(MIN);
    expect((await adminRotate(w)).status).toBe(200); // an early rotation: gen 1 keeps its promise
    w.clock.advance(10_000);
    const gen2 = await servedLive(w);
    expect(await w.liveKeyPrefixes()).toEqual(expect.arrayContaining([prefixOf(gen1.api_key), prefixOf(gen2.api_key)]));
    // The scanner reports gen 1 (it saw it before the last rotation): the leak response.
    w.clock.advance(MIN);
    const res = await sendWebhook(w, { model_set: "demo", reason: "gen 1 found on pastebin", revoke_previous: true });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { generation: number; revoked: number[]; revoke_pending: number[] };
    expect(body).toMatchObject({ generation: 3, revoked: [1, 2], revoke_pending: [] });
    const live = await w.liveKeyPrefixes();
    expect(live).not.toContain(prefixOf(gen1.api_key));
    expect(live).not.toContain(prefixOf(gen2.api_key));
    expect(live).toHaveLength(1);
    // Recorded explicitly, with the reason.
    const revoked = (
      await env.DB.prepare(
        "SELECT generation, state, revoke_at, revoke_reason FROM keys WHERE model_set = 'demo' AND generation < 3 ORDER BY generation",
      ).all()
    ).results;
    expect(revoked).toEqual([
      { generation: 1, state: "revoked", revoke_at: w.clock.now(), revoke_reason: "revoke_previous" },
      { generation: 2, state: "revoked", revoke_at: w.clock.now(), revoke_reason: "revoke_previous" },
    ]);
    expect((await servedLive(w)).generation).toBe(3);
    await expectConverged(w, "demo");
  });
});

describe("emergency revoke through the engine (POST /v1/admin/revoke/{set})", () => {
  it("revokes the named non-current keys now, recorded first; the current key and unknown generations are refused; already revoked ones are skipped", async () => {
    const w = await makeWorld(SET);
    await w.tick();
    for (let i = 0; i < 2; i++) {
      w.clock.advance(MIN);
      expect((await adminRotate(w)).status).toBe(200);
    }
    const revoke = (revoke: { generations: number[] } | { allPrevious: true }) =>
      runSet(w.engine(), "demo", { trigger: "admin", mint: false, revoke, reason: "incident 7" }) as Promise<RunReport>;
    expect(await revoke({ generations: [3] })).toMatchObject({ outcome: "rejected", failure: { code: "is_current" }, revoked: [] });
    expect(await revoke({ generations: [9] })).toMatchObject({ outcome: "rejected", failure: { code: "unknown_generation" }, revoked: [] });
    expect((await w.fake.liveKeys()).length).toBe(3);
    expect(await revoke({ generations: [1] })).toMatchObject({ outcome: "noop", revoked: [1] });
    expect(await revoke({ generations: [1] })).toMatchObject({ revoked: [] });
    expect(await revoke({ allPrevious: true })).toMatchObject({ revoked: [2] });
    const states = (
      await env.DB.prepare("SELECT generation, state, revoke_reason FROM keys WHERE model_set = 'demo' ORDER BY generation").all()
    ).results;
    expect(states).toEqual([
      { generation: 1, state: "revoked", revoke_reason: "incident 7" },
      { generation: 2, state: "revoked", revoke_reason: "incident 7" },
      { generation: 3, state: "current", revoke_reason: null },
    ]);
    expect((await w.fake.liveKeys()).length).toBe(1);
    await expectConverged(w, "demo");
  });
});

describe("on-demand limit", () => {
  it("10 on-demand rotations (webhook and admin together) in 10 minutes, then 429 rate_limited with Retry-After and nothing minted", async () => {
    const w = await makeWorld(SET);
    await w.tick();
    const first = await sendWebhook(w, { model_set: "demo" }, { id: "msg_limit_first" });
    const firstBody = await first.text();
    for (let i = 1; i < 10; i++) {
      w.clock.advance(20_000);
      const res = i % 2 === 0 ? await sendWebhook(w, { model_set: "demo", revoke_previous: i % 3 === 0 }) : await adminRotate(w);
      expect(res.status, `rotation ${i + 1}`).toBe(200);
    }
    const before = await mints(w);
    const liveBefore = (await w.liveKeyPrefixes()).sort();
    for (const attempt of [
      () => sendWebhook(w, { model_set: "demo", revoke_previous: true }),
      () => adminRotate(w, { revoke_previous: true }),
    ]) {
      w.clock.advance(1_000);
      const res = await attempt();
      expect(res.status).toBe(429);
      expect(await res.json()).toMatchObject({ error: "rate_limited" });
      const retryAfter = Number(res.headers.get("retry-after"));
      // The first of the ten (at t0) leaves the window at t0 + 10 min.
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(10 * 60 - 9 * 20 - 1 + 1);
    }
    expect(await mints(w)).toBe(before);
    expect((await w.liveKeyPrefixes()).sort()).toEqual(liveBefore);
    // A replay of an earlier webhook-id still gets its first answer.
    const replay = await sendWebhook(w, { model_set: "demo" }, { id: "msg_limit_first" });
    expect(replay.status).toBe(200);
    expect(await replay.text()).toBe(firstBody);
    // Once the first one has left the window, one more is allowed.
    w.clock.advance(10 * MIN - 9 * 20_000);
    expect((await adminRotate(w)).status).toBe(200);
    // The cron is not limited: its own rotations still run.
    expect((await rows("demo")).filter((r) => r.state === "current")).toHaveLength(1);
  });
});

describe("webhook idempotency in the rotation's own D1 batch", () => {
  it("storing the answer fails, the sender redelivers the same webhook-id minutes later: not processed again, and its revoke_previous never revokes the key the first delivery minted", async () => {
    const plan = new FaultPlan();
    const w = await makeWorld({ ...SET, vars: { DB: faultyD1(env.DB, plan) } });
    await w.tick();
    const leaked = await servedLive(w);
    // The final store (after the rotation) fails; nothing else does.
    plan.d1({ op: "batch", match: "UPDATE webhook_receipts SET status = ?2, body = ?3", count: 5 });
    const init = await signedWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true }, { id: "msg_store_fails" });
    const res = await w.request("/v1/webhooks/rotate", init);
    expect(res.status).toBe(200);
    const firstBody = (await res.json()) as { generation: number };
    expect(firstBody.generation).toBe(2);
    expect(plan.hits["d1:batch"]).toBe(1);
    w.clock.advance(10_000);
    const minted = (await servedLive(w)) as KeyDocument;
    expect(minted.generation).toBe(2);
    // Minutes later (the claim of a dead request would have gone stale by now), the same id again.
    w.clock.advance(4 * MIN);
    const again = await sendWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true }, { id: "msg_store_fails" });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as { generation: number }).generation).toBe(2);
    expect(await mints(w)).toBe(2);
    const live = await w.liveKeyPrefixes();
    expect(live).toContain(prefixOf(minted.api_key));
    expect(live).not.toContain(prefixOf(leaked.api_key));
  });

  it("an unknown set stores no receipt", async () => {
    const w = await makeWorld(SET);
    expect((await sendWebhook(w, { model_set: "nope" })).status).toBe(404);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_receipts").first<{ n: number }>())?.n).toBe(0);
  });
});
