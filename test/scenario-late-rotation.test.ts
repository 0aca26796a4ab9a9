/**
 * The outside client's story of issue #9 ("Done when"), through the platform model (time passes
 * during every D1, KV and Baseten call): a set rotating every 150 s with a 120 s overlap, the
 * cron fired by hand at refresh_at + 5 s and again at expires_at + 5 s. The first hand-fired cron
 * is late (no tick ran inside the run-ahead window), so the rotation happens after refresh_at.
 * DESIGN §3: the replaced key is deleted at Baseten by the first cron after the expires_at it was
 * served with, from whichever location served it, and no promise any location served is broken.
 */
import { describe, expect, it } from "vitest";
import { brokenPromises, describeViolations, makePlatform } from "./helpers/platform.ts";

const SETS = { fast: { model_ids: ["abcd1234"], rotate_every: "150s", overlap: "120s" } };
type Doc = { generation: number; api_key: string; refresh_at: string; expires_at: string };

describe("scenario: a late rotation (the cron fired by hand after refresh_at)", () => {
  it("the replaced key is deleted by the first cron fired after the expires_at every location served it with", async () => {
    const p = await makePlatform({ seed: "late-rotation", sets: SETS, consumers: { "fast-svc": ["fast"] } });
    await p.tick();
    const first = await Promise.all((await p.readEverywhere("fast")).map((r) => r.json() as Promise<Doc>));
    const E = Math.max(...first.map((d) => Date.parse(d.expires_at)));
    const R = Date.parse(first[0]!.refresh_at);
    // Every location keeps reading gen 1 until refresh_at + 5 s (its documents promise E).
    p.clock.set(R - 30_000);
    await p.readEverywhere("fast");
    p.clock.set(R + 5_000);
    await p.readEverywhere("fast");
    await p.tick();
    // The rotation is in; locations read on (some still serve gen 1 from their edge copy).
    for (let i = 0; i < 6; i++) {
      p.clock.advance(10_000);
      await p.readEverywhere("fast");
    }
    const servedGen1 = p.served.filter((d) => d.generation === 1);
    expect(Math.max(...servedGen1.map((d) => d.expires_at)), "every gen-1 document promised E").toBe(E);
    p.clock.set(E + 5_000);
    const prefix1 = (await p.rows("fast")).find((r) => r.generation === 1)!.prefix!;
    await p.tick();
    expect(await p.livePrefixes(), "gen 1 deleted at Baseten by the first cron after E").not.toContain(prefix1);
    expect(p.revokedAt.get(prefix1)!).toBeGreaterThanOrEqual(E);
    expect(describeViolations(await brokenPromises(p))).toEqual([]);
  });

  it("and on: the cron at expires_at + 5 s also rotates ahead (25 s before refresh_at); that key too is deleted by the first cron after the expires_at it was served with", async () => {
    const p = await makePlatform({ seed: "late-rotation-2", sets: SETS, consumers: { "fast-svc": ["fast"] } });
    const docs = async () => Promise.all((await p.readEverywhere("fast")).map((r) => r.json() as Promise<Doc>));
    await p.tick();
    const first = (await docs())[0]!;
    p.clock.set(Date.parse(first.refresh_at) + 5_000);
    await p.tick();
    p.clock.advance(70_000);
    const second = await docs();
    expect(second.map((d) => d.generation)).toEqual([2, 2, 2]);
    const E2 = Math.max(...second.map((d) => Date.parse(d.expires_at)));
    // Cron 3, two minutes after cron 2: revokes gen 1 and, 25 s before gen 2's refresh_at, mints gen 3.
    p.clock.set(Date.parse(first.expires_at) + 5_000);
    await p.tick();
    for (let i = 0; i < 8; i++) {
      p.clock.advance(15_000);
      await p.readEverywhere("fast");
    }
    expect(Math.max(...p.served.filter((d) => d.generation === 2).map((d) => d.expires_at)), "gen 2 was only ever served with E2").toBe(E2);
    const prefix2 = (await p.rows("fast")).find((r) => r.generation === 2)!.prefix!;
    p.clock.set(Math.max(p.clock.now(), E2 + 5_000));
    await p.tick();
    expect(await p.livePrefixes(), "gen 2 deleted by the first cron after E2").not.toContain(prefix2);
    expect(describeViolations(await brokenPromises(p))).toEqual([]);
  });
});
