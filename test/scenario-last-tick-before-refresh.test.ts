/**
 * Through the platform model: the last cron tick before a key's refresh_at finds the set due,
 * and its mint's answer arrives only after the run's deadline (Baseten answers 90 s late: the
 * same as a run that dies mid-mint). The cron fires every 5 minutes, so the next tick comes
 * after refresh_at. DESIGN §3: while the rotation is overdue, every document's refresh_at is the
 * next attempt and its expires_at is at least refresh_at + overlap — so that tick must have
 * recorded the extended promise before it called Baseten. (Found by the soak, seed bravo.)
 *
 * And the read path's side of the same rule: an isolate that remembered the key's entry (read
 * from a lagging KV edge copy) a moment before refresh_at must not serve it from memory a moment
 * after, when that entry can no longer make a valid overdue document.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const OVERLAP_MS = 2 * MIN;
const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "8h", overlap: "2m" } };
type Doc = { generation: number; refresh_at: string; expires_at: string };

const breaksOverdueRule = (d: Doc, now: number) =>
  Date.parse(d.refresh_at) <= now || Date.parse(d.expires_at) < Date.parse(d.refresh_at) + OVERLAP_MS;

describe("scenario: the last tick before refresh_at stalls in its mint (5-minute cron)", () => {
  it("every document served after refresh_at keeps the overdue rule, and the next tick rotates", async () => {
    const p = await makePlatform({ seed: "last-tick", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const [doc1] = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    const R = Date.parse(doc1!.refresh_at);
    const bad: string[] = [];
    const readAll = async () => {
      const now = p.clock.now();
      for (const res of await p.readEverywhere("demo")) {
        expect(res.status).toBe(200);
        const d = (await res.json()) as Doc;
        if (breaksOverdueRule(d, now))
          bad.push(`at ${new Date(now).toISOString()}: gen ${d.generation} refresh_at ${d.refresh_at} expires_at ${d.expires_at}`);
      }
    };
    // Five-minute ticks; the one at R - 4 min is the last before refresh_at (and the set is due).
    for (let t = R - 24 * MIN; t <= R + 6 * MIN; t += 5 * MIN) {
      p.clock.set(Math.max(t, p.clock.now()));
      if (t === R - 4 * MIN) p.hook({ op: "baseten:mint", stallAfterMs: 90_000, count: 1 });
      await p.tick();
      while (p.clock.now() < t + 5 * MIN - 10_000) {
        await readAll();
        p.clock.advance(10_000);
      }
    }
    expect(p.pendingHooks(), "the mint was held").toBe(0);
    expect(bad, "documents that break the overdue rule").toEqual([]);
    const current = (await p.rows("demo")).find((r) => r.state === "current")!;
    expect(current.generation, "the tick after refresh_at rotated").toBeGreaterThan(1);
  });
});

describe("scenario: an isolate's memory across refresh_at", () => {
  it("an entry remembered just before refresh_at is not served from memory just after it, when it cannot make a valid overdue document", async () => {
    const p = await makePlatform({ seed: "memory-refresh", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const east = p.location("east");
    const doc1 = (await (await east.getKey("demo")).json()) as Doc;
    const R = Date.parse(doc1.refresh_at);
    // East's KV edge copy is fetched at R - 50 s: the entry as minted (expires_at = R + overlap).
    p.clock.set(R - 50_000);
    await east.getKey("demo");
    // The tick at R - 45 s finds the set due, its mint fails: the extension is recorded in D1 and
    // written to KV, but east's edge copy still holds the old entry for another ~55 s.
    await p.fake.fault({ op: "mint", kind: "503", count: 100 });
    p.clock.set(R - 45_000);
    await p.tick();
    const extended = await env.DB.prepare("SELECT expires_at FROM keys WHERE model_set = 'demo' AND state = 'current'").first<{
      expires_at: number;
    }>();
    expect(extended!.expires_at, "the extension is recorded").toBeGreaterThan(R + OVERLAP_MS);
    // R - 2 s: east reads the old edge copy (still a valid document before refresh_at) into memory.
    p.clock.set(R - 2_000);
    const before = (await (await east.getKey("demo")).json()) as Doc;
    expect(breaksOverdueRule(before, p.clock.now())).toBe(false);
    // R + 2 s: within the memory's 5 s, but past refresh_at: the old entry cannot be served.
    p.clock.set(R + 2_000);
    const after = (await (await east.getKey("demo")).json()) as Doc;
    expect(after.generation).toBe(1);
    expect(breaksOverdueRule(after, p.clock.now()), `east served refresh_at ${after.refresh_at} expires_at ${after.expires_at}`).toBe(
      false,
    );
    await p.fake.clearFaults();
  });
});
