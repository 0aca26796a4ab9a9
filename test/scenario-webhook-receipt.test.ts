/**
 * Issue #9 scenario 6, through the platform model: a leak scanner's webhook (`revoke_previous`)
 * rotates, and storing its receipt fails (every D1 write that records the webhook-id after the
 * mint fails before applying). The sender redelivers the same `webhook-id` minutes later.
 * DESIGN §3: the same webhook-id is never processed twice, even when storing its first answer
 * failed (the idempotency record is written in the same D1 batch as the rotation), so the
 * redelivery mints nothing and never revokes the key the first delivery minted.
 */
import { describe, expect, it } from "vitest";
import { makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };
type Rotation = { generation: number; revoked: number[] };

describe("scenario: the webhook's receipt store fails, then the sender redelivers", () => {
  it("the redelivered webhook-id is not processed again and never revokes the key the first delivery minted", async () => {
    const p = await makePlatform({ seed: "scenario-6", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    expect((await p.rows("demo")).map((r) => r.state)).toEqual(["current"]);
    p.clock.advance(30 * MIN);

    const id = "msg_leak_scanner_0001";
    const body = { model_set: "demo", reason: "leak-scanner alert 42", revoke_previous: true };
    p.hook({
      op: "d1:*",
      match: /webhook_receipts/,
      armedBy: { op: "baseten:mint" },
      fail: "before",
      count: Infinity,
      label: "receipt write",
    });
    const first = await p.webhook("east", body, { id });
    p.clearHooks();
    expect(p.hits["receipt write"], "a receipt write failed").toBeGreaterThanOrEqual(1);
    const firstText = await first.text();
    const mintsAfterFirst = p.basetenCalls.filter((c) => c.op === "mint").length;
    const rowsAfterFirst = await p.rows("demo");
    const currentAfterFirst = rowsAfterFirst.find((r) => r.state === "current")!;

    // Minutes later (a sender's retry schedule), the same delivery again, at another location.
    for (const wait of [3 * MIN, 5 * MIN]) {
      p.clock.advance(wait);
      await p.tick();
      const again = await p.webhook("west", body, { id });
      if (first.status === 200) {
        // The first delivery rotated: the redelivery gets that answer back and changes nothing.
        expect(again.status, "redelivery answer").toBe(200);
        expect(JSON.parse(await again.text()) as Rotation, "the redelivery answers the first answer").toEqual(
          JSON.parse(firstText) as Rotation,
        );
        expect(p.basetenCalls.filter((c) => c.op === "mint").length, "mints after the redelivery").toBe(mintsAfterFirst);
        const rows = await p.rows("demo");
        expect(rows.find((r) => r.state === "current")?.generation, "current generation after the redelivery").toBe(
          currentAfterFirst.generation,
        );
        const live = await p.livePrefixes();
        expect(live.has(currentAfterFirst.prefix!), "the key the first delivery minted is live").toBe(true);
      } else {
        // The first delivery did not rotate (its rotation and receipt failed together): the
        // redelivery is processed once, as a first delivery.
        expect([200, 409, 429]).toContain(again.status);
      }
    }
    // Either way: one rotation for one webhook-id.
    const minted = (await p.rows("demo")).filter((r) => r.generation > 1 && r.state !== "abandoned");
    expect(minted.length, "rotations for one webhook-id").toBe(1);
  });
});
