/**
 * Issue #9 scenario 3, through the platform model: a rotation's KV write fails, so every
 * location keeps serving the replaced key from KV, as an overdue key (its documents promise
 * the next attempt + overlap). A later run repairs the cache, and the D1 write that should record
 * what those documents promised fails. DESIGN §3: promises are recorded before they are served,
 * so the key is never revoked before the latest expires_at any location served for it.
 */
import { describe, expect, it } from "vitest";
import { brokenPromises, describeViolations, makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" } };
type Doc = { generation: number; api_key: string; refresh_at: string };

describe("scenario: a cache repair whose promise-extension write fails", () => {
  it("the replaced key is never revoked before the latest expires_at any location served", async () => {
    const p = await makePlatform({ seed: "scenario-3", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const [doc1] = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    const rotateAt = Date.parse(doc1!.refresh_at);

    // Every 5 minutes a cron tick (the soak's cadence); every location reads every 13 s.
    const violations = new Set<string>();
    for (let t = rotateAt; t <= rotateAt + 40 * MIN; t += 5 * MIN) {
      p.clock.set(Math.max(t, p.clock.now()));
      // The rotation's cache write fails: KV keeps gen 1 and every location serves it, overdue.
      if (t === rotateAt) p.hook({ op: "kv:put", match: "demo", fail: "before", label: "rotation kv put" });
      // At the next tick, the first D1 write after the cache repair's KV put fails: the recording
      // of what the stale cache promised (today: the extension of gen 1's expiry).
      if (t === rotateAt + 5 * MIN)
        p.hook({
          op: "d1:write",
          match: /\bkeys\b/,
          armedBy: { op: "kv:put", match: "demo" },
          fail: "before",
          label: "promise write after repair",
        });
      await p.tick();
      // Reads every 13 s (out of step with the ticks and KV's 60 s, so edge copies of every age are read).
      while (p.clock.now() < t + 5 * MIN - 13_000) {
        await p.readEverywhere("demo");
        p.clock.advance(13_000);
        for (const v of describeViolations(await brokenPromises(p), (x) => x)) violations.add(v);
      }
    }
    expect(p.hits["rotation kv put"]).toBe(1);
    const rows = await p.rows("demo");
    const gen1 = rows.find((r) => r.generation === 1)!;
    const served1 = p.served.filter((d) => d.generation === 1);
    const latest = Math.max(...served1.map((d) => d.expires_at));
    expect(served1.length).toBeGreaterThan(0);
    expect([...violations], "keys revoked before a promise a location served").toEqual([]);
    // By the end gen 1 has been revoked, and no earlier than anything served for it.
    const revoked = p.revokedAt.get(gen1.prefix!);
    expect(revoked, "gen 1 revoked by the end").toBeDefined();
    expect(revoked!).toBeGreaterThanOrEqual(latest);
  });
});
