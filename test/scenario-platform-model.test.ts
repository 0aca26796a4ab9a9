/**
 * The platform model's own behaviour (test/helpers/platform.ts), not one of issue #9's eight
 * scenarios: what the scenario tests and the soak rely on it to do, checked directly.
 */
import { describe, expect, it } from "vitest";
import { makePlatform } from "./helpers/platform.ts";

describe("the platform model", () => {
  it("a location reads KV through its own edge cache: stale until the entry is older than the read's cacheTtl (at least 30 s, 60 s by default)", async () => {
    const p = await makePlatform({ seed: "model-kv" });
    const [a, b] = [p.location("east").kv, p.location("west").kv];
    await a.put("k", "v1");
    expect(await b.get("k")).toBe("v1");
    expect(await b.get("k", { cacheTtl: 10 })).toBe("v1");
    expect(await a.get("k")).toBe("v1");
    await a.put("k", "v2");
    expect(await b.get("k"), "west's copy is fresh for 60 s").toBe("v1");
    expect(await a.get("k"), "the writer's own copy is not refreshed either").toBe("v1");
    p.clock.advance(61_000);
    expect(await b.get("k")).toBe("v2");
    // A short cacheTtl is raised to 30 s, and a miss is cached too.
    expect(await b.get("other", { cacheTtl: 10 })).toBeNull();
    await a.put("other", "x");
    p.clock.advance(20_000);
    expect(await b.get("other", { cacheTtl: 10 })).toBeNull();
    p.clock.advance(11_000);
    expect(await b.get("other", { cacheTtl: 30 })).toBe("x");
    // list lags as well.
    const before = (await b.list({ prefix: "n:" })).keys.length;
    await a.put("n:1", "1");
    expect((await b.list({ prefix: "n:" })).keys.length).toBe(before);
    p.clock.advance(61_000);
    expect((await b.list({ prefix: "n:" })).keys.length).toBe(before + 1);
  });

  it("time passes during every D1, KV and Baseten call", async () => {
    const p = await makePlatform({ seed: "model-time" });
    let t = p.clock.now();
    await p.db.prepare("SELECT 1").first();
    expect(p.clock.now()).toBeGreaterThan(t);
    t = p.clock.now();
    await p.location("cron").kv.get("x");
    expect(p.clock.now()).toBeGreaterThan(t);
    t = p.clock.now();
    await p.tick();
    expect(p.clock.now() - t, "a first rotation (list, mint, D1, KV) takes simulated time").toBeGreaterThan(80);
    expect(p.basetenCalls.map((c) => c.op)).toEqual(expect.arrayContaining(["list", "mint"]));
  });

  it("hooks stall, run something meanwhile, fail before applying, or apply and then throw", async () => {
    const p = await makePlatform({ seed: "model-hooks" });
    const kv = p.location("cron").kv;
    p.hook({ op: "kv:put", match: "a", fail: "before" });
    await expect(kv.put("a", "1")).rejects.toThrow();
    p.clock.advance(61_000);
    expect(await p.location("west").kv.get("a"), "not applied").toBeNull();
    p.hook({ op: "kv:put", match: "b", fail: "after" });
    await expect(kv.put("b", "1")).rejects.toThrow();
    expect(await p.location("east").kv.get("b"), "applied, answer lost").toBe("1");
    let ran = 0;
    const t = p.clock.now();
    p.hook({ op: "d1:first", stallBeforeMs: 95_000, during: async () => void ran++ });
    await p.db.prepare("SELECT 1").first();
    expect(ran).toBe(1);
    expect(p.clock.now() - t).toBeGreaterThanOrEqual(95_000);
    p.hook({ op: "kv:get", match: "c", armedBy: { op: "kv:put", match: "c" }, fail: "before" });
    expect(await kv.get("c"), "not armed yet").toBeNull();
    await kv.put("c", "1");
    await expect(kv.get("c")).rejects.toThrow();
    expect(p.pendingHooks()).toBe(0);
  });
});
