/**
 * Issue #9 scenario 5, through the platform model: Baseten calls share a small number of slots
 * (BASETEN_CONCURRENCY). One run's mint holds the only slot while its answer is slow (the answer
 * comes 100 s after the request left); another run of the same tick waits for the slot. DESIGN §4:
 * the run's deadline bounds every await, the wait for a slot included, so no run outlives its
 * lease (at most 90 s): no Baseten call of a run leaves after the run's lease has ended.
 */
import { describe, expect, it } from "vitest";
import { iso, makePlatform } from "./helpers/platform.ts";

const LEASE_MS = 90_000; // DESIGN §4: a lease lasts at most 90 s
const SETS = {
  alpha: { model_ids: ["m-alpha"], rotate_every: "24h", overlap: "1h" },
  bravo: { model_ids: ["m-bravo"], rotate_every: "24h", overlap: "1h" },
};

describe("scenario: a Baseten call that waits for a concurrency slot", () => {
  it("still ends by the run's deadline: no call of a run leaves after its lease", async () => {
    const p = await makePlatform({
      seed: "scenario-5",
      sets: SETS,
      consumers: { svc: ["alpha", "bravo"] },
      vars: { BASETEN_CONCURRENCY: "1" },
    });
    const tickAt = p.clock.now();
    // The first mint's answer is slow: the slot stays taken for 100 s.
    p.hook({ op: "baseten:mint", stallAfterMs: 100_000 });
    await p.tick();
    expect(p.hits["baseten:mint"]).toBe(1);
    const mints = p.basetenCalls.filter((c) => c.op === "mint");
    expect(mints.length).toBeGreaterThanOrEqual(1);
    // Every Baseten request this tick's runs sent left before their leases ended. (Both runs
    // started within a few hundred ms of the tick, so their leases end by tickAt + 90 s + that.)
    const late = p.basetenCalls
      .filter((c) => c.sentAt > tickAt + LEASE_MS)
      .map((c) => `${c.op} ${c.path} sent at ${iso(c.sentAt)}, ${Math.round((c.sentAt - tickAt) / 1000)} s after the tick`);
    expect(late, "Baseten calls sent after the run's lease ended").toEqual([]);

    // The set whose run gave up is rotated by the next tick; nothing untracked is left behind.
    p.clock.advance(60_000);
    await p.tick();
    p.clock.advance(60_000);
    await p.tick();
    const live = (await p.fake.liveKeys()).filter((k) => k.name?.startsWith("bkr-"));
    for (const set of Object.keys(SETS)) {
      const rows = await p.rows(set);
      const current = rows.filter((r) => r.state === "current");
      expect(current, `${set}: one current key`).toHaveLength(1);
      expect(live.some((k) => k.prefix === current[0]!.prefix)).toBe(true);
    }
    const known = new Set(
      [...(await p.rows("alpha")), ...(await p.rows("bravo"))]
        .filter((r) => r.state === "current" || r.state === "previous")
        .map((r) => r.prefix),
    );
    expect(
      live.filter((k) => !known.has(k.prefix)).map((k) => k.name),
      "live bkr- keys D1 does not hold as current or previous",
    ).toEqual([]);
  });
});
