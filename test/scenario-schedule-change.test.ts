/**
 * Issue #9 scenario 8, through the platform model: `overlap` and `rotate_every` change between
 * runs (deploys with a new MODEL_SETS), shorter and then longer, while every location keeps
 * reading. DESIGN §3: a change of overlap or rotate_every never shortens a promise already
 * served: no key is revoked before the latest expires_at served for it, and no later document
 * of a key promises less than an earlier one did.
 */
import { describe, expect, it } from "vitest";
import { brokenPromises, describeViolations, iso, makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const sets = (rotate_every: string, overlap: string) => ({ demo: { model_ids: ["abcd1234"], rotate_every, overlap } });

describe("scenario: overlap / rotate_every change between runs", () => {
  it("no served promise is shortened", async () => {
    const p = await makePlatform({ seed: "scenario-8", sets: sets("30m", "20m"), consumers: { "demo-svc": ["demo"] } });
    const start = p.clock.now();
    const changes: [number, string, string][] = [
      [10 * MIN, "10m", "2m"], // both shorter, before the first rotation is due
      [45 * MIN, "1h", "30m"], // both longer
      [75 * MIN, "5m", "3m"], // much shorter, while a long promise is out
    ];
    const violations = new Set<string>();
    const shortened = new Set<string>();
    const latestByKey = new Map<string, number>();
    for (let t = start; t <= start + 150 * MIN; t += MIN) {
      p.clock.set(Math.max(t, p.clock.now()));
      for (const [at, every, overlap] of changes) if (t - start === at) p.reconfigure({ MODEL_SETS: JSON.stringify(sets(every, overlap)) });
      await p.tick();
      // An on-demand rotation two minutes after each change (the webhook path runs the same rules).
      if (changes.some(([at]) => t - start === at + 2 * MIN))
        expect((await p.webhook("east", { model_set: "demo", reason: "after a config change" })).status).toBe(200);
      while (p.clock.now() < t + MIN - 13_000) {
        await p.readEverywhere("demo");
        p.clock.advance(13_000);
      }
      for (const v of describeViolations(await brokenPromises(p))) violations.add(v);
      for (const d of p.served) {
        const prev = latestByKey.get(d.prefix) ?? 0;
        if (d.expires_at < prev)
          shortened.add(
            `gen ${d.generation} served at ${iso(d.at)} by ${d.location} promising ${iso(d.expires_at)}, after a document promised ${iso(prev)}`,
          );
        latestByKey.set(d.prefix, Math.max(prev, d.expires_at));
      }
      p.served.splice(
        0,
        p.served.length,
        ...[...latestByKey].map(([prefix, e]) => p.served.find((d) => d.prefix === prefix && d.expires_at === e)!),
      );
    }
    const rotations = new Set(p.served.map((d) => d.generation)).size;
    expect(rotations, "the schedule changes led to rotations").toBeGreaterThan(3);
    expect([...violations], "keys revoked before a promise a location served").toEqual([]);
    expect([...shortened], "documents that promised less than an earlier document of the same key").toEqual([]);
  });
});
