/**
 * Every write fenced, every await bounded (DESIGN §4): a run that outlives its lease writes
 * nothing that decides what is served, a KV put that lands late (after another run's) is found
 * by the re-check and repaired, and KV entries are sealed whole: an entry copied to another set,
 * edited, or left by an older version is a miss that reads D1, never served.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { LEASE_MS, type RunReport, createEngine, runSet } from "../src/rotation.ts";
import { elsewhere, expectConverged, kvGeneration, rows, servedLive } from "./helpers/invariants.ts";
import { MIN, makeWorld, prefixOf } from "./helpers/world.ts";

/** A KV binding whose puts can be held back before they reach storage (a put that lands late). */
function laggingPuts(kv: KVNamespace) {
  let hold: Promise<void> | null = null;
  let release = () => {};
  let reached = () => {};
  const state = {
    /** The next put waits until `release()`; resolves once that put has been issued. */
    holdNext(): Promise<void> {
      hold = new Promise<void>((r) => (release = r));
      return new Promise<void>((r) => (reached = r));
    },
    release: () => release(),
    kv: new Proxy(kv, {
      get(target, prop) {
        if (prop === "put") {
          return async (...args: Parameters<KVNamespace["put"]>) => {
            const h = hold;
            if (h) {
              hold = null;
              reached();
              await h;
            }
            return target.put(...args);
          };
        }
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }),
  };
  return state;
}

describe("fencing", () => {
  it("a run whose KV put stalls past its lease while another run rotates with revoke_previous: KV ends at the newest key and no location serves the revoked one after the caches' lag", async () => {
    const lag = laggingPuts(env.KEYS);
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
      vars: { KEYS: lag.kv },
    });
    const other = elsewhere(w);
    await w.tick();
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error(config.problems.join("; "));
    const engine = createEngine(config.config, w.env, w.clock.now);

    // Run A promotes gen 2, then its KV put hangs.
    const reached = lag.holdNext();
    const a = runSet(engine, "demo", { trigger: "admin", mint: "now" });
    await reached;
    // A stalls past its lease; run B takes the set and answers a leak: gen 3, gens 1 and 2 revoked.
    w.clock.advance(LEASE_MS + 1_000);
    const b = (await runSet(engine, "demo", { trigger: "webhook", mint: "now", revokePrevious: true, reason: "leak" })) as RunReport;
    expect(b).toMatchObject({ outcome: "rotated", minted: { generation: 3 }, revoked: [1, 2] });
    const ra = (await a) as RunReport;
    expect(ra.minted?.generation).toBe(2);
    // A's put lands now, over B's entry: KV serves the revoked gen 2 again...
    lag.release();
    await new Promise((r) => setTimeout(r, 50));
    expect(await kvGeneration("demo")).toBe(2);
    // ...but A's re-check recorded that KV may be behind, so the next tick rewrites it.
    expect(
      (await env.DB.prepare("SELECT cached_generation FROM sets WHERE model_set = 'demo'").first<{ cached_generation: number }>())
        ?.cached_generation,
    ).toBe(2);
    w.clock.advance(MIN);
    await w.tick();
    expect(await kvGeneration("demo")).toBe(3);
    w.clock.advance(65_000);
    for (const via of [other, w.getKey.bind(w)]) expect((await servedLive(w, "demo", "demo-svc", via)).generation).toBe(3);
    await expectConverged(w, "demo");
  });

  it("a mint answered after the run's deadline is neither promoted nor cached; the next run deletes that key by name", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    const first = await servedLive(w);
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error(config.problems.join("; "));
    // Baseten answers the mint while 80 s pass on the run's clock.
    const engine = createEngine(config.config, w.env, w.clock.now, {
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (new Request(input, init).method === "POST") w.clock.advance(80_000);
        return res;
      },
    });
    const r = (await runSet(engine, "demo", { trigger: "admin", mint: "now" })) as RunReport;
    expect(r.outcome).toBe("failed");
    const gen2 = (await rows("demo")).find((x) => x.generation === 2)!;
    expect(gen2.state).toBe("pending"); // not promoted: the run's D1 writes stop at its deadline
    expect(await kvGeneration("demo")).toBe(1);
    expect((await servedLive(w)).api_key).toBe(first.api_key);
    // After the lease, the next run finds the key by name, deletes it, and mints afresh.
    w.clock.advance(LEASE_MS);
    expect(
      (await w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } })).status,
    ).toBe(200);
    expect((await rows("demo")).find((x) => x.generation === 2)?.state).toBe("abandoned");
    expect((await w.fake.liveKeys()).some((k) => k.name === gen2.name)).toBe(false);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });
});

describe("cache entries sealed whole", () => {
  async function twoSets() {
    const w = await makeWorld({ consumers: { "demo-svc": ["demo"], "other-svc": ["other"] } });
    await w.tick();
    const demo = await servedLive(w, "demo", "demo-svc");
    const other = await servedLive(w, "other", "other-svc");
    w.clock.advance(10_000); // past this isolate's memory: the next reads go to KV
    return { w, demo, other };
  }

  it("an entry copied from key:demo to key:other is a miss: other's consumer gets other's key from D1", async () => {
    const { w, other } = await twoSets();
    const { value, metadata } = await env.KEYS.getWithMetadata("key:demo");
    await env.KEYS.put("key:other", value!, { metadata });
    const doc = await servedLive(w, "other", "other-svc");
    expect(doc).toMatchObject({ model_set: "other", generation: other.generation });
    expect(doc.api_key).toBe(other.api_key);
  });

  it("an edited entry (one byte of the ciphertext changed) is a miss, never served as written", async () => {
    const { w, demo } = await twoSets();
    const { value, metadata } = await env.KEYS.getWithMetadata("key:demo");
    // The keyring's format: k1:<key id>:<base64(iv || ciphertext)>; one byte of the ciphertext flipped.
    const [tag, id, b64] = value!.split(":");
    const bytes = atob(b64!);
    const flipped = bytes.slice(0, 40) + String.fromCharCode(bytes.charCodeAt(40) ^ 1) + bytes.slice(41);
    await env.KEYS.put("key:demo", `${tag}:${id}:${btoa(flipped)}`, { metadata });
    const doc = await servedLive(w, "demo", "demo-svc");
    expect(doc).toEqual(demo);
  });

  it("an entry in the old format (JSON with only api_key sealed, refresh_at edited) is a miss; the next tick rewrites it", async () => {
    const { w, demo } = await twoSets();
    const old = {
      v: 1,
      model_set: "demo",
      model_ids: ["evil"],
      generation: demo.generation,
      created_at: 0,
      refresh_at: Date.parse("2099-01-01T00:00:00Z"),
      expires_at: 0,
      overlap_ms: 0,
      ct: "AAAA",
    };
    await env.KEYS.put("key:demo", JSON.stringify(old), { metadata: { g: demo.generation } });
    expect(await servedLive(w, "demo", "demo-svc")).toEqual(demo);
    expect(prefixOf(demo.api_key)).toBeTruthy();
  });
});
