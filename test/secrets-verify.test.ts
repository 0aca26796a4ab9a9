/**
 * Verify before promote (DESIGN §4.8) against the fake Baseten's model endpoint
 * (`POST {base}/model/{model_id}/predict`: 200 for a live key scoped to the model, 401 otherwise),
 * and per-set `team_id` (mints go to /v1/teams/{team_id}/api_keys; the fake keeps keys per team).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { VerifyConfig } from "../src/config.ts";
import type { KeyDocument } from "../src/document.ts";
import { verifyKey, verifyRequest } from "../src/verify.ts";
import { redeploy } from "./helpers/secrets.ts";
import { HOUR, type World, makeWorld, prefixOf } from "./helpers/world.ts";

/** A clock that moves only when the verifier sleeps: retries take no real time. */
function fakeTime(start = Date.parse("2026-11-27T15:00:00Z")) {
  let t = start;
  const sleeps: number[] = [];
  return { clock: () => t, sleep: async (ms: number) => void (sleeps.push(ms), (t += ms)), sleeps };
}

async function doc(res: Response): Promise<KeyDocument> {
  if (res.status !== 200) throw new Error(`expected 200, got ${res.status}: ${await res.text()}`);
  return (await res.json()) as KeyDocument;
}

describe("the fake's model endpoint", () => {
  it("200 for a live key scoped to the model; 401 for another model, a revoked key, a wrong secret, no key", async () => {
    const w = await makeWorld();
    const key = await w.fake.createKey("someone-else", ["abcd1234"]);
    const post = (model: string, auth?: string) =>
      fetch(w.fake.predictUrl(model), {
        method: "POST",
        headers: { ...(auth ? { authorization: auth } : {}), "content-type": "application/json" },
        body: "{}",
      });
    expect((await post("abcd1234", `Api-Key ${key}`)).status).toBe(200);
    expect((await post("abcd1234", `Bearer ${key}`)).status).toBe(200);
    expect((await post("qwer0987", `Api-Key ${key}`)).status).toBe(401);
    expect((await post("abcd1234", `Api-Key ${key}x`)).status).toBe(401);
    expect((await post("abcd1234")).status).toBe(401);
    expect((await post("abcd1234", `Api-Key ${w.fake.key}`)).status).toBe(401);
    await fetch(`${env.BASETEN_API_BASE}/v1/api_keys/${prefixOf(key)}`, {
      method: "DELETE",
      headers: { authorization: `Api-Key ${w.fake.key}` },
    });
    expect((await post("abcd1234", `Api-Key ${key}`)).status).toBe(401);
    // Calls without a key of this tenant (none, the management key) are not the tenant's to count.
    expect((await w.fake.calls()).counts.predict).toBe(5);
  });
});

describe("verifyKey", () => {
  let w: World;
  const live = async () => {
    w = await makeWorld();
    return w.fake.createKey("probe", ["abcd1234"]);
  };
  const cfg = (over: Partial<VerifyConfig> = {}): VerifyConfig => ({
    url: w.fake.predictUrl("abcd1234"),
    method: "POST",
    headers: {},
    body: { prompt: "ping" },
    ...over,
  });

  it("a working key passes; a key scoped elsewhere fails at once on 401, with no retry", async () => {
    const key = await live();
    const t = fakeTime();
    expect(await verifyKey(cfg(), key, { deadline: t.clock() + 60_000, clock: t.clock, sleep: t.sleep })).toEqual({ ok: true });
    const other = await verifyKey(cfg({ url: w.fake.predictUrl("qwer0987") }), key, {
      deadline: t.clock() + 60_000,
      clock: t.clock,
      sleep: t.sleep,
    });
    expect(other).toMatchObject({ ok: false, code: "verify_failed" });
    expect((other as { message: string }).message).toMatch(/answered 401: the new key does not work/);
    expect((other as { message: string }).message).not.toContain(key.slice(key.indexOf(".") + 1));
    expect(t.sleeps).toEqual([]);
  });

  it("403 fails at once too", async () => {
    const key = await live();
    await w.fake.fault({ op: "predict", kind: "403" });
    const t = fakeTime();
    const r = await verifyKey(cfg(), key, { deadline: t.clock() + 60_000, clock: t.clock, sleep: t.sleep });
    expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/answered 403/) });
    expect(t.sleeps).toEqual([]);
  });

  it("5xx, a dropped connection and an unexpected status are retried; then it passes", async () => {
    const key = await live();
    await w.fake.fault({ op: "predict", kind: "503", count: 2 }, { op: "predict", kind: "refuse" }, { op: "predict", kind: "429" });
    const t = fakeTime();
    expect(await verifyKey(cfg(), key, { deadline: t.clock() + 60_000, clock: t.clock, sleep: t.sleep })).toEqual({ ok: true });
    expect(t.sleeps).toEqual([500, 1000, 2000, 4000]);
    expect((await w.fake.calls()).counts.predict).toBe(5);
  });

  it("keeps failing: gives up within 30 s, and never past the run's deadline", async () => {
    const key = await live();
    await w.fake.fault({ op: "predict", kind: "500", count: 50 });
    const t = fakeTime();
    const start = t.clock();
    const r = await verifyKey(cfg(), key, { deadline: start + 60_000, clock: t.clock, sleep: t.sleep });
    expect(r).toMatchObject({
      ok: false,
      code: "verify_failed",
      message: expect.stringMatching(/answered 500 \(expected a 2xx\); gave up after \d+ s/),
    });
    expect(t.clock() - start).toBeLessThanOrEqual(30_000);
    const t2 = fakeTime();
    const r2 = await verifyKey(cfg(), key, { deadline: t2.clock() + 3_000, clock: t2.clock, sleep: t2.sleep });
    expect(r2.ok).toBe(false);
    expect(t2.sleeps.reduce((a, b) => a + b, 0)).toBeLessThan(3_000);
  });

  it("expect: only the listed statuses pass (a 2xx outside it is retried)", async () => {
    const key = await live();
    const t = fakeTime();
    const r = await verifyKey(cfg({ expect: [422] }), key, { deadline: t.clock() + 10_000, clock: t.clock, sleep: t.sleep });
    expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/answered 200 \(expected 422\)/) });
    expect(await verifyKey(cfg({ expect: [200, 422] }), key, { deadline: t.clock() + 10_000, clock: t.clock, sleep: t.sleep })).toEqual({
      ok: true,
    });
  });

  it("the request: POST by default, Api-Key auth with the new key, an object body as JSON, a string as is", async () => {
    const obj = verifyRequest({ url: "https://x.test/p", method: "POST", headers: { "x-probe": "1" }, body: { a: 1 } }, "pfx.secret");
    const h = new Headers(obj.headers);
    expect([obj.method, obj.body, h.get("content-type"), h.get("authorization"), h.get("x-probe")]).toEqual([
      "POST",
      '{"a":1}',
      "application/json",
      "Api-Key pfx.secret",
      "1",
    ]);
    const str = verifyRequest(
      { url: "https://x.test/p", method: "PUT", headers: { "content-type": "text/plain" }, body: "hello" },
      "pfx.secret",
    );
    expect([str.method, str.body, new Headers(str.headers).get("content-type")]).toEqual(["PUT", "hello", "text/plain"]);
    expect(verifyRequest({ url: "https://x.test/p", method: "GET", headers: {} }, "k").body).toBeUndefined();
  });
});

const verifySets = (w: World, modelForVerify: string) => ({
  demo: {
    model_ids: ["abcd1234"],
    rotate_every: "24h",
    overlap: "1h",
    verify: { url: w.fake.predictUrl(modelForVerify), body: { prompt: "ping" } },
  },
});

describe("verify before promote, in a rotation", () => {
  it("the verify endpoint answers 401: the run fails verify_failed (502), the old key stays served, the new key is deleted at the fake, audit and event say so", async () => {
    const w0 = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w0.tick();
    const served = await doc(await w0.getKey("demo"));
    // Verify against a model the set's keys are not scoped to: every new key answers 401 there.
    const sink = w0.fake.sinkUrl();
    const d = redeploy(w0, {
      MODEL_SETS: JSON.stringify(verifySets(w0, "qwer0987")),
      EVENT_WEBHOOKS: JSON.stringify([{ url: sink, secret: `whsec_${btoa("x".repeat(24))}`, events: ["rotation.failed"] }]),
    });
    const res = await d.request("/v1/admin/rotate/demo", {
      method: "POST",
      headers: { authorization: `Bearer ${w0.env.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "drill" }),
    });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe("verify_failed");
    expect(body.message).toMatch(/qwer0987\/predict answered 401/);

    w0.clock.advance(10_000);
    const still = await doc(await d.getKey("demo"));
    expect([still.generation, still.api_key]).toEqual([served.generation, served.api_key]);
    const keys = await w0.fake.keys();
    expect(keys).toHaveLength(2);
    expect(keys.find((k) => k.prefix !== prefixOf(served.api_key))!.revoked_at).not.toBeNull(); // the new key, deleted
    expect((await w0.fake.liveKeys()).map((k) => k.prefix)).toEqual([prefixOf(served.api_key)]);

    const audit = await env.DB.prepare("SELECT generation, action, reason FROM audit WHERE model_set = 'demo' ORDER BY id").all<{
      generation: number;
      action: string;
      reason: string;
    }>();
    // The new key abandoned with the reason, then the failed run itself (DESIGN §3 audit actions).
    expect(audit.results.slice(-2)).toMatchObject([
      { generation: 2, action: "abandoned", reason: expect.stringMatching(/^verify_failed: /) },
      { generation: null, action: "failed", reason: expect.stringMatching(/answered 401/) },
    ]);
    const status = await d.status();
    expect(status.sets.find((s) => s.model_set === "demo")!.last_run).toMatchObject({
      outcome: "failed",
      error: expect.stringMatching(/answered 401/),
    });
    const events = (await w0.fake.sink()).map((e) => JSON.parse(e.body) as { type: string; data: { error: string } });
    expect(events.map((e) => [e.type, e.data.error])).toEqual([["rotation.failed", "verify_failed"]]);
  });

  it("a verify endpoint that keeps failing: the cron backs off (no mint and delete every tick), the current key stays served and its promise keeps being extended", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    const served = await doc(await w.getKey("demo"));
    const d = redeploy(w, { MODEL_SETS: JSON.stringify(verifySets(w, "qwer0987")) });
    // Due: the cron reaches refresh_at (well past the run-ahead), every minute.
    w.clock.advance(Date.parse(served.refresh_at) - w.clock.now() + 5_000);
    const minted = async () => (await w.fake.keys()).length;
    await d.tick();
    expect(await minted()).toBe(2); // one attempt: minted, verify 401, deleted
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).toEqual([prefixOf(served.api_key)]);
    for (let i = 1; i <= 4; i++) {
      w.clock.advance(60_000);
      await d.tick();
      expect(await minted(), `tick ${i} after the failure`).toBe(2); // backing off
      const now = w.clock.now();
      const still = await doc(await d.getKey("demo"));
      expect([still.generation, still.api_key]).toEqual([served.generation, served.api_key]);
      // The overdue key's promise covers the next attempt and the replaced key's overlap.
      expect(Date.parse(still.expires_at)).toBeGreaterThanOrEqual(now + 60_000 + HOUR);
    }
    // The back-off over, the next tick tries again (and fails again, the same way).
    w.clock.advance(2 * 60_000);
    await d.tick();
    expect(await minted()).toBe(3);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).toEqual([prefixOf(served.api_key)]);
    const audit = await env.DB.prepare(
      "SELECT action, reason FROM audit WHERE model_set = 'demo' AND action = 'abandoned' ORDER BY id",
    ).all<{ action: string; reason: string }>();
    expect(audit.results.map((r) => r.reason.startsWith("verify_failed: "))).toEqual([true, true]);
    // An on-demand rotation is not held back by the cron's back-off (it is rate limited instead).
    const res = await d.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });
    expect(res.status).toBe(502);
    expect(await minted()).toBe(4);
  });

  it("verify fails and the new key's deletion fails too: the row stays pending, and recovery deletes the key by name", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    const served = await doc(await w.getKey("demo"));
    const d = redeploy(w, { MODEL_SETS: JSON.stringify(verifySets(w, "qwer0987")) });
    await w.fake.fault({ op: "revoke", kind: "500", count: 50 });
    const res = await d.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toBe("verify_failed");
    const row = await env.DB.prepare("SELECT state FROM keys WHERE model_set = 'demo' AND generation = 2").first<{ state: string }>();
    expect(row?.state).toBe("pending");
    expect((await w.fake.liveKeys()).length).toBe(2); // not deleted yet
    await w.fake.clearFaults();
    // After a lease, the cron's recovery finds the key by name and deletes it; the current key stays.
    w.clock.advance(2 * 60_000);
    await d.tick();
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).toEqual([prefixOf(served.api_key)]);
    const after = await env.DB.prepare("SELECT state FROM keys WHERE model_set = 'demo' AND generation = 2").first<{ state: string }>();
    expect(after?.state).toBe("abandoned");
    expect((await doc(await d.getKey("demo"))).api_key).toBe(served.api_key);
  });

  it("the verify endpoint accepts the new key: the rotation goes through, and the consumer's key works at the model", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    const d = redeploy(w, { MODEL_SETS: JSON.stringify(verifySets(w, "abcd1234")) });
    await d.tick();
    const first = await doc(await d.getKey("demo"));
    expect(first.generation).toBe(1);
    const res = await fetch(w.fake.predictUrl("abcd1234"), {
      method: "POST",
      headers: { authorization: `Api-Key ${first.api_key}` },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect((await w.fake.calls()).counts.predict).toBe(2); // the verify step's call, then ours
  });
});

describe("per-set team_id", () => {
  it("a set with its own team_id is minted under that team; the others under BASETEN_TEAM_ID; the fake checks the path", async () => {
    const w = await makeWorld({
      sets: {
        demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h", team_id: "team-enterprise" },
        other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
      },
    });
    await w.fake.setTeams(["team-test", "team-enterprise"]);
    await w.tick();
    const demo = await doc(await w.getKey("demo", "demo-svc"));
    const other = await doc(await w.getKey("other", "other-svc"));
    expect((await w.fake.teamKeys("team-enterprise")).map((k) => k.prefix)).toEqual([prefixOf(demo.api_key)]);
    expect((await w.fake.teamKeys("team-test")).map((k) => k.prefix)).toEqual([prefixOf(other.api_key)]);
    const paths = (await w.fake.calls()).calls
      .filter((c) => c.op === "mint")
      .map((c) => c.path)
      .sort();
    expect(paths).toEqual(["/v1/teams/team-enterprise/api_keys", "/v1/teams/team-test/api_keys"]);
  });

  it("a team the management key cannot mint under fails the rotation (the fake answers 404), the other sets rotate", async () => {
    const w = await makeWorld({
      sets: {
        demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h", team_id: "team-unknown" },
        other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
      },
    });
    await w.fake.setTeams(["team-test"]);
    const summary = await w.tick();
    const bySet = Object.fromEntries(summary.results.map((r) => [r.model_set, r.outcome]));
    expect(bySet).toEqual({ demo: "failed", other: "rotated" });
  });
});
