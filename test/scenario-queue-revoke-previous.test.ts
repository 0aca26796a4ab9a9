/**
 * Issue #9 scenario 1, through the platform model (test/helpers/platform.ts): the cron fans out
 * through the queue, a leak response (`revoke_previous`) runs while its KV put and delete fail,
 * and the next ticks go through the queue path too. The queue consumer must repair the cache like
 * the inline tick does (DESIGN §4, "one path"), so after the next ticks no location serves the
 * revoked key.
 */
import { describe, expect, it } from "vitest";
import { describeStale, makePlatform, servedAfterRevocation } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };

describe("scenario: queue fan-out + revoke_previous with the KV put and delete failing", () => {
  it("after the next ticks (queue path) no location serves the revoked key", async () => {
    const p = await makePlatform({
      seed: "scenario-1",
      sets: SETS,
      consumers: { "demo-svc": ["demo"] },
      vars: { INLINE_ROTATION_BUDGET: "0" },
    });
    const first = await p.queueTick();
    expect(first.queued).toBe(1);
    const docs = await Promise.all(
      (await p.readEverywhere("demo")).map((r) => r.json() as Promise<{ generation: number; api_key: string }>),
    );
    expect(docs.map((d) => d.generation)).toEqual([1, 1, 1]);

    // The leak response at "east": its cache write and its cache delete both fail.
    p.clock.advance(10 * MIN);
    p.hook(
      { op: "kv:put", match: "demo", fail: "before", count: Infinity },
      { op: "kv:delete", match: "demo", fail: "before", count: Infinity },
    );
    const res = await p.webhook("east", { model_set: "demo", reason: "leak-scanner alert", revoke_previous: true });
    expect(res.status).toBe(200);
    const rotated = (await res.json()) as { generation: number; revoked: number[] };
    expect(rotated.generation).toBe(2);
    expect(rotated.revoked).toContain(1);
    p.clearHooks();
    const live = await p.livePrefixes();
    expect(live.has(docs[0]!.api_key.split(".")[0]!)).toBe(false);
    const revokedAt = p.revokedAt.get(docs[0]!.api_key.split(".")[0]!)!;

    // The next ticks, every minute, through the queue path; every location reads in between.
    for (let i = 0; i < 8; i++) {
      p.clock.advance(MIN);
      await p.queueTick();
      await p.readEverywhere("demo");
      p.clock.advance(20_000);
      await p.readEverywhere("demo");
    }
    // Well past KV's 60 s: every location, and one that never read before, serves the new key.
    p.clock.advance(70_000);
    p.addLocation("late");
    const final = await Promise.all(
      (await p.readEverywhere("demo")).map((r) => r.json() as Promise<{ generation: number; api_key: string }>),
    );
    const liveNow = await p.livePrefixes();
    // Until the cache is repaired other locations may serve it from KV; the queue path must repair
    // within the next three ticks, and edge copies then age out within 65 s (KV 60 s + memory 5 s).
    const repairedBy = revokedAt + 3 * MIN + 65_000;
    expect(
      describeStale(servedAfterRevocation(p).filter((s) => s.servedAt > repairedBy)),
      "documents of the revoked key served after the next three ticks + 65 s",
    ).toEqual([]);
    expect(
      final.map((d) => d.generation),
      "generation served at cron, east, west, late",
    ).toEqual([2, 2, 2, 2]);
    for (const d of final) expect(liveNow.has(d.api_key.split(".")[0]!)).toBe(true);
  });
});
