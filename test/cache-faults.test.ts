/**
 * Reliability item 3: cache faults, injected through a failing KV binding. With KV unreadable
 * (or holding an unreadable entry) the read path serves from D1; with KV down altogether the
 * cron still rotates and holds revocations back until it can see the cache again. After an
 * emergency revoke (revoke_previous) this location never serves the revoked key again: not
 * from its memory, not from a KV entry the failed write left behind, not from a read that was
 * in flight while the rotation ran.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { FaultPlan, faultyD1, faultyKV } from "./helpers/faulty-bindings.ts";
import { currentRow, expectConverged, kvGeneration, promiseBook, servedLive } from "./helpers/invariants.ts";
import { sendWebhook } from "./helpers/webhooks.ts";
import { tally, useTally } from "./helpers/tally.ts";
import { MIN, type World, makeWorld, prefixOf } from "./helpers/world.ts";

useTally();

const SET = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };

async function world(): Promise<{ w: World; plan: FaultPlan }> {
  const plan = new FaultPlan();
  const w = await makeWorld({
    sets: SET,
    consumers: { "demo-svc": ["demo"] },
    vars: { DB: faultyD1(env.DB, plan), KEYS: faultyKV(env.KEYS, plan) },
  });
  return { w, plan };
}

const KV_DOWN = [
  { op: "get", count: Infinity },
  { op: "getWithMetadata", count: Infinity },
  { op: "put", count: Infinity },
  { op: "delete", count: Infinity },
  { op: "list", count: Infinity },
] as const;

const adminRotate = (w: World, body?: unknown) =>
  w.request("/v1/admin/rotate/demo", {
    method: "POST",
    headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

describe("cache faults on the read path", () => {
  it("KV reads failing: GET /v1/keys/{set} and GET /v1/keys serve the current key from D1", async () => {
    const { w, plan } = await world();
    await w.tick();
    const doc = await servedLive(w);
    w.clock.advance(10_000); // past the isolate's memory
    plan.kv({ op: "get", count: Infinity });
    tally("cache", "kv get down");
    const fromD1 = await servedLive(w);
    expect(fromD1).toEqual({ ...doc });
    const list = (await (await w.request("/v1/keys", { headers: { authorization: `Bearer ${w.tokens["demo-svc"]}` } })).json()) as {
      keys: KeyDocument[];
    };
    expect(list.keys.map((k) => k.api_key)).toEqual([doc.api_key]);
    expect(plan.hits["kv:get"]).toBeGreaterThanOrEqual(1);
  });

  it("an unreadable KV entry (not JSON, or sealed with another key) is skipped for D1", async () => {
    const { w } = await world();
    await w.tick();
    const doc = await servedLive(w);
    for (const junk of [
      "not json",
      JSON.stringify({
        v: 1,
        model_set: "demo",
        model_ids: [],
        generation: 1,
        created_at: 0,
        refresh_at: 0,
        expires_at: 0,
        overlap_ms: 0,
        ct: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      }),
    ]) {
      await env.KEYS.put("key:demo", junk, { metadata: { g: 1 } });
      tally("cache", "kv entry unreadable");
      w.clock.advance(10_000);
      expect((await servedLive(w)).api_key).toBe(doc.api_key);
    }
  });

  it("KV down altogether: the cron still rotates, reads come from D1, and no previous key is revoked until the cache can be checked", async () => {
    const { w, plan } = await world();
    const book = promiseBook();
    await w.tick();
    const first = await book.read(w);
    plan.kv(...KV_DOWN);
    tally("cache", "kv down");
    w.clock.set(Date.parse(first.refresh_at));
    await w.tick();
    w.clock.advance(10_000);
    const second = await book.read(w);
    expect(second.generation).toBe(2);
    // Long past gen 1's promise, KV still down: gen 1 is kept (a stale KV could still serve it).
    w.clock.set(Date.parse(first.expires_at) + 30 * MIN);
    for (let i = 0; i < 3; i++) {
      await w.tick();
      await book.checkRevocations(w);
      expect((await w.fake.liveKeys()).map((k) => k.prefix)).toContain(prefixOf(first.api_key));
      await book.read(w);
      w.clock.advance(5 * MIN);
    }
    // KV back: the cache is repaired, then gen 1 goes once every promise made meanwhile has ended.
    plan.clear();
    for (let i = 0; i < 40 && (await w.fake.liveKeys()).length > 1; i++) {
      await w.tick();
      await book.checkRevocations(w);
      w.clock.advance(5 * MIN);
    }
    expect(await kvGeneration("demo")).toBe(2);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
    await expectConverged(w, "demo");
  });
});

describe("cache faults around an emergency revoke (revoke_previous)", () => {
  /** gen 1 served and remembered in this isolate's memory, then the leak response. */
  async function leak(w: World, plan: FaultPlan, rules: Parameters<FaultPlan["kv"]>) {
    await w.tick();
    const leaked = await servedLive(w); // now in memory and KV
    w.clock.advance(1_000);
    plan.kv(...rules);
    const res = await sendWebhook(w, { model_set: "demo", reason: "leak-scanner alert", revoke_previous: true });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ generation: 2, replaced: { generation: 1 }, revoked: [1] });
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(leaked.api_key));
    return leaked;
  }

  async function neverServed(w: World, leaked: KeyDocument) {
    // Right away (inside the memory TTL), a little later, and after the memory has expired.
    for (const step of [0, 1_000, 10_000, 70_000]) {
      w.clock.advance(step);
      const doc = await servedLive(w);
      expect(doc.api_key).not.toBe(leaked.api_key);
      expect(doc.generation).toBe(2);
    }
  }

  it("the cache write works: the new key is served at once", async () => {
    const { w, plan } = await world();
    const leaked = await leak(w, plan, []);
    tally("cache", "emergency revoke");
    await neverServed(w, leaked);
  });

  it("the cache write fails: the entry is dropped, reads go to D1", async () => {
    const { w, plan } = await world();
    const leaked = await leak(w, plan, [{ op: "put" }]);
    tally("cache", "emergency revoke + kv put fails");
    await neverServed(w, leaked);
    w.clock.advance(5 * MIN);
    await w.tick(); // the cron writes the missing entry
    await expectConverged(w, "demo");
  });

  it("the cache write and the drop both fail: the stale KV entry is not served here", async () => {
    const { w, plan } = await world();
    const leaked = await leak(w, plan, [{ op: "put" }, { op: "delete" }]);
    tally("cache", "emergency revoke + kv put and delete fail");
    expect(await kvGeneration("demo")).toBe(1); // KV still holds the leaked key...
    await neverServed(w, leaked); // ...and this location does not serve it
    w.clock.advance(5 * MIN);
    await w.tick(); // the cron repairs the cache
    expect(await kvGeneration("demo")).toBe(2);
    await expectConverged(w, "demo");
  });

  it("a read in flight while the rotation runs does not put the revoked key back into memory", async () => {
    const { w, plan } = await world();
    await w.tick();
    const leaked = await servedLive(w);
    w.clock.advance(10_000); // memory expired: the next read goes to KV
    let release!: () => void;
    plan.kv({ op: "get", holdUntil: new Promise<void>((r) => (release = r)) });
    tally("cache", "emergency revoke racing a read");
    const inFlight = w.getKey("demo"); // reads gen 1 from KV, answer held
    const res = await sendWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true });
    expect(res.status).toBe(200);
    release();
    await inFlight; // whatever it answered, it was in flight during the revoke
    await neverServed(w, leaked);
  });

  it("a read served from D1 (KV failing) in flight while the rotation runs does not put the revoked key into memory", async () => {
    const { w, plan } = await world();
    await w.tick();
    const leaked = await servedLive(w);
    w.clock.advance(10_000);
    let release!: () => void;
    plan.kv({ op: "get" });
    plan.d1({ op: "first", match: "ciphertext FROM keys", holdUntil: new Promise<void>((r) => (release = r)) });
    tally("cache", "emergency revoke racing a D1 read");
    const inFlight = w.getKey("demo"); // KV fails, D1 answers gen 1, the answer is held
    const res = await sendWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true });
    expect(res.status).toBe(200);
    release();
    await inFlight;
    await neverServed(w, leaked);
  });

  it("cron rotations and revocations keep working with the cache faults gone", async () => {
    const { w, plan } = await world();
    await leak(w, plan, [{ op: "put" }, { op: "delete" }]);
    const book = promiseBook();
    const second = await book.read(w);
    w.clock.set(Date.parse(second.refresh_at));
    await w.tick();
    w.clock.advance(10_000);
    expect((await book.read(w)).generation).toBe(3);
    w.clock.set(Date.parse(second.expires_at) + 5 * MIN);
    await w.tick();
    await book.checkRevocations(w);
    expect((await currentRow("demo"))?.generation).toBe(3);
    await expectConverged(w, "demo");
  });
});
