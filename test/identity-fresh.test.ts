/**
 * The leak response reaching every consumer (DESIGN §3 fresh reads, §6): after a
 * `revoke_previous`, a location whose KV still holds the old entry keeps serving the revoked key
 * to plain reads, but `Cache-Control: no-cache` answers D1's current key, and the client's
 * refetch after Baseten's 401 sends it, so the client recovers on its next call. Fresh reads are
 * bounded: one D1 read per consumer and set per 5 s per location. Plus consumer tracking: what
 * each consumer fetched, written at most once per generation per location, lagging after 5 min.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { createKeyClient } from "../src/client/index.ts";
import { loadConfig } from "../src/config.ts";
import type { KeyDocument } from "../src/document.ts";
import type { Env } from "../src/env.ts";
import { consumerStatus, laggingEvents } from "../src/identity/tracking.ts";
import { MIN, type World, makeWorld, prefixOf } from "./helpers/world.ts";

/** A KV namespace for another location whose edge cache still holds what KV held at `snapshot()`. */
async function laggingKv(kv: KVNamespace): Promise<KVNamespace> {
  const listed = await kv.list();
  const held = new Map<string, { value: string | null; metadata: unknown }>();
  for (const k of listed.keys) {
    const { value, metadata } = await kv.getWithMetadata(k.name, { type: "text" });
    held.set(k.name, { value, metadata });
  }
  const typed = (value: string | null, type: unknown) => {
    if (value === null) return null;
    const t = typeof type === "string" ? type : (type as { type?: string } | undefined)?.type;
    if (t === "json") return JSON.parse(value);
    if (t === "arrayBuffer") return new TextEncoder().encode(value).buffer;
    if (t === "stream") return new Response(value).body;
    return value;
  };
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "get")
        return async (key: string, opts?: unknown) => (held.has(key) ? typed(held.get(key)!.value, opts) : target.get(key, opts as never));
      if (prop === "getWithMetadata")
        return async (key: string, opts?: unknown) =>
          held.has(key)
            ? { value: typed(held.get(key)!.value, opts), metadata: held.get(key)!.metadata, cacheStatus: null }
            : target.getWithMetadata(key, opts as never);
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** Another location: its own isolate memory (a fresh env object) and a lagging KV. */
async function location(w: World, kv: KVNamespace) {
  const locEnv = { ...w.env, KEYS: kv } as Env;
  let d1 = 0;
  const countedEnv = {
    ...locEnv,
    DB: new Proxy(locEnv.DB, {
      // D1 reads (tracking writes are counted by their own test).
      get: (t, p) =>
        p === "prepare"
          ? (sql: string) => (/^\s*SELECT/i.test(sql) && d1++, t.prepare(sql))
          : typeof Reflect.get(t, p) === "function"
            ? Reflect.get(t, p).bind(t)
            : Reflect.get(t, p),
    }),
  } as Env;
  const app = createApp({ clock: w.clock.now });
  const fetchHere = async (input: Request | string | URL, init?: RequestInit) => {
    const ctx = createExecutionContext();
    const res = await app.fetch(new Request(input, init), countedEnv, ctx);
    await waitOnExecutionContext(ctx);
    return res;
  };
  return { env: countedEnv, fetch: fetchHere, d1: () => d1 };
}

const revokePrevious = (w: World) =>
  w.request("/v1/admin/rotate/demo", {
    method: "POST",
    headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ revoke_previous: true, reason: "leak drill" }),
  });

/** A model endpoint that accepts exactly the keys live at the fake Baseten. */
const inference = (w: World) => async (input: Request | string | URL, init?: RequestInit) => {
  const auth = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined)).get("authorization") ?? "";
  const key = auth.replace(/^Api-Key /, "");
  const live = (await w.fake.liveKeys()).map((k) => k.prefix);
  return new Response(JSON.stringify({ ok: live.includes(prefixOf(key)) }), { status: live.includes(prefixOf(key)) ? 200 : 401 });
};

let w: World;
const bearer = () => ({ authorization: `Bearer ${w.tokens["demo-svc"]}` });

describe("fresh reads after a revoke_previous", () => {
  beforeEach(async () => {
    w = await makeWorld();
    await w.tick();
    w.clock.advance(10_000);
  });

  it("a lagging location serves the revoked key to a plain read, D1's current key to Cache-Control: no-cache", async () => {
    const old = (await (await w.getKey("demo")).json()) as KeyDocument;
    const far = await location(w, await laggingKv(env.KEYS));
    expect(((await (await far.fetch("https://rotator.test/v1/keys/demo", { headers: bearer() })).json()) as KeyDocument).generation).toBe(
      1,
    );

    expect((await revokePrevious(w)).status).toBe(200);
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(old.api_key));

    w.clock.advance(6_000); // past the far location's memory: it reads its (lagging) KV again
    const plain = (await (await far.fetch("https://rotator.test/v1/keys/demo", { headers: bearer() })).json()) as KeyDocument;
    expect(plain.generation).toBe(1); // what a lagging location does without a fresh read

    const freshRes = await far.fetch("https://rotator.test/v1/keys/demo", { headers: { ...bearer(), "cache-control": "no-cache" } });
    expect(freshRes.status).toBe(200);
    expect(freshRes.headers.get("cache-control")).toBe("no-store");
    const fresh = (await freshRes.json()) as KeyDocument;
    expect(fresh.generation).toBe(2);
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(fresh.api_key));
    // ... and the location's memory now holds the new key for plain reads too.
    expect(((await (await far.fetch("https://rotator.test/v1/keys/demo", { headers: bearer() })).json()) as KeyDocument).generation).toBe(
      2,
    );
  });

  it("a client at the lagging location recovers on its next call: one 401, then the new key", async () => {
    const far = await location(w, await laggingKv(env.KEYS));
    const client = createKeyClient({
      url: "https://rotator.test",
      token: w.tokens["demo-svc"]!,
      modelSet: "demo",
      fetch: far.fetch,
      basetenFetch: inference(w),
      clock: w.clock.now,
      random: () => 0,
    });
    expect((await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" })).status).toBe(200);
    expect((await client.getKey()).generation).toBe(1);

    expect((await revokePrevious(w)).status).toBe(200);
    w.clock.advance(6_000);
    const res = await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    expect((await client.getKey()).generation).toBe(2);
  });

  it("without a fresh read (today's behaviour) the same client stays on the revoked key", async () => {
    const far = await location(w, await laggingKv(env.KEYS));
    // Strip the header the client sends: what a rotator without fresh reads answers.
    const noFresh = (input: Request | string | URL, init?: RequestInit) => {
      const h = new Headers(init?.headers);
      h.delete("cache-control");
      return far.fetch(input, { ...init, headers: h });
    };
    const client = createKeyClient({
      url: "https://rotator.test",
      token: w.tokens["demo-svc"]!,
      modelSet: "demo",
      fetch: noFresh,
      basetenFetch: inference(w),
      clock: w.clock.now,
      random: () => 0,
    });
    expect((await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" })).status).toBe(200);
    expect((await revokePrevious(w)).status).toBe(200);
    w.clock.advance(6_000);
    expect((await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" })).status).toBe(401);
  });

  it("fresh reads cost at most one D1 read per consumer and set per 5 s; within that the last answer is reused", async () => {
    const far = await location(w, await laggingKv(env.KEYS));
    const fresh = () => far.fetch("https://rotator.test/v1/keys/demo", { headers: { ...bearer(), "cache-control": "no-cache" } });
    const first = await fresh();
    expect(first.status).toBe(200);
    const afterFirst = far.d1();
    for (let i = 0; i < 20; i++) {
      w.clock.advance(200); // 4 s in all
      expect((await fresh()).status).toBe(200);
    }
    expect(far.d1() - afterFirst).toBe(0);
    w.clock.advance(1_100);
    await fresh();
    expect(far.d1() - afterFirst).toBe(1);
    // Another consumer has its own budget.
    await far.fetch("https://rotator.test/v1/keys/other", {
      headers: { authorization: `Bearer ${w.tokens["other-svc"]}`, "cache-control": "no-cache" },
    });
    expect(far.d1() - afterFirst).toBe(2);
  });

  it("fresh on GET /v1/keys too; an unauthenticated no-cache request costs nothing", async () => {
    const far = await location(w, await laggingKv(env.KEYS));
    expect((await revokePrevious(w)).status).toBe(200);
    const before = far.d1();
    expect(
      (await far.fetch("https://rotator.test/v1/keys/demo", { headers: { authorization: "Bearer nope", "cache-control": "no-cache" } }))
        .status,
    ).toBe(401);
    const list = (await (
      await far.fetch("https://rotator.test/v1/keys", { headers: { ...bearer(), "cache-control": "no-cache" } })
    ).json()) as { keys: KeyDocument[] };
    expect(list.keys.map((k) => k.generation)).toEqual([2]);
    expect(far.d1() - before).toBeLessThanOrEqual(3); // managed snapshot + current row (+ tracking)
  });
});

describe("consumer tracking", () => {
  beforeEach(async () => {
    w = await makeWorld();
    await w.tick();
    w.clock.advance(10_000);
  });

  it("records the highest generation per consumer and set, once per generation per location, off the response path", async () => {
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    const { trackingWrites: before } = await import("../src/identity/tracking.ts");
    for (let i = 0; i < 30; i++) expect((await w.getKey("demo")).status).toBe(200);
    const mod = await import("../src/identity/tracking.ts");
    expect(mod.trackingWrites - before).toBe(1);
    const rows = await env.DB.prepare("SELECT consumer, model_set, generation, first_at FROM consumer_seen").all();
    expect(rows.results).toEqual(
      [{ consumer: "demo-svc", model_set: "demo", generation: 1, first_at: w.clock.now() - 0 }].map((r) => ({
        ...r,
        first_at: expect.any(Number),
      })),
    );

    const status = await consumerStatus(w.env, config.config, w.clock.now());
    expect(status.find((c) => c.name === "demo-svc")).toMatchObject({
      kind: "token",
      model_sets: ["demo"],
      seen: [{ model_set: "demo", generation: 1, lagging: false }],
    });
    expect(status.find((c) => c.name === "other-svc")).toMatchObject({ seen: [] });
  });

  it("a consumer still on a replaced generation 5 minutes after its refresh_at is lagging, and gets one consumer.lagging event", async () => {
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    const doc = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect((await revokePrevious(w)).status).toBe(200);
    // Replaced early: not lagging before the old key's refresh_at + 5 min.
    let status = await consumerStatus(w.env, config.config, w.clock.now());
    expect(status.find((c) => c.name === "demo-svc")!.seen[0]).toMatchObject({ generation: 1, lagging: false });
    const late = Date.parse(doc.refresh_at) + 5 * MIN + 1;
    status = await consumerStatus(w.env, config.config, late);
    expect(status.find((c) => c.name === "demo-svc")!.seen[0]).toMatchObject({ generation: 1, lagging: true });
    const events = await laggingEvents(w.env.DB, config.config, late);
    expect(events).toEqual([
      expect.objectContaining({
        type: "consumer.lagging",
        model_set: "demo",
        data: expect.objectContaining({ consumer: "demo-svc", held_generation: 1, current_generation: 2 }),
      }),
    ]);
    expect(await laggingEvents(w.env.DB, config.config, late + MIN)).toEqual([]);
    // Fetching the new key ends it.
    w.clock.set(late);
    await w.tick();
    expect((await w.request("/v1/keys/demo", { headers: { ...bearer(), "cache-control": "no-cache" } })).status).toBe(200);
    status = await consumerStatus(w.env, config.config, late);
    expect(status.find((c) => c.name === "demo-svc")!.seen[0]!.lagging).toBe(false);
  });
});
