/**
 * Issue #9 scenario 4, through the platform model: a scheduled rotation whose KV write lands a
 * while after the mint (a slow promote: the write is held 80 s). Until it lands, and for up to
 * 60 s after at other locations, the replaced key is still served, as an overdue key. DESIGN §3:
 * the replaced key stays live until the latest expires_at any document served for it.
 */
import { describe, expect, it } from "vitest";
import { afterPromote, brokenPromises, describeViolations, makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "2m" } };
type Doc = { generation: number; api_key: string; refresh_at: string };

describe("scenario: a slow promote (the KV write lands a while after the mint)", () => {
  it("the replaced key outlives every document served for it", async () => {
    const p = await makePlatform({ seed: "scenario-4", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const [doc1] = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    const rotateAt = Date.parse(doc1!.refresh_at);
    // The cron fires every minute (from ten minutes before refresh_at: an engine may rotate ahead of
    // it). The rotation's cache write is held 80 s; every location keeps reading meanwhile.
    p.clock.set(rotateAt - 10 * MIN);
    p.hook(
      afterPromote("demo", {
        location: "cron",
        during: async () => {
          const until = p.clock.now() + 80_000;
          while (p.clock.now() < until) {
            p.clock.advance(13_000);
            await p.readEverywhere("demo");
          }
        },
      }),
    );
    const violations = new Set<string>();
    for (let t = rotateAt - 10 * MIN; t <= rotateAt + 12 * MIN; t += MIN) {
      p.clock.set(Math.max(t, p.clock.now()));
      await p.tick();
      while (p.clock.now() < t + MIN - 13_000) {
        await p.readEverywhere("demo");
        p.clock.advance(13_000);
        for (const v of describeViolations(await brokenPromises(p))) violations.add(v);
      }
    }
    expect(p.pendingHooks(), "the cache write was held").toBe(0);
    const gen1 = (await p.rows("demo")).find((r) => r.generation === 1)!;
    const latest = Math.max(...p.served.filter((d) => d.generation === 1).map((d) => d.expires_at));
    expect([...violations], "keys revoked before a promise a location served").toEqual([]);
    const revoked = p.revokedAt.get(gen1.prefix!);
    expect(revoked, "gen 1 revoked by the end").toBeDefined();
    expect(revoked!).toBeGreaterThanOrEqual(latest);
  });
});
