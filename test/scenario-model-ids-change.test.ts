/**
 * Issue #9 scenario 7, through the platform model: an operator changes a set's `model_ids`
 * (a deploy with a new MODEL_SETS). DESIGN §3: the change makes the set due, so the next tick
 * mints a key with the new scope; the admin status, the document every location serves and the
 * key live at Baseten then agree on the new scope (the old key follows the promise rule).
 */
import { describe, expect, it } from "vitest";
import { makePlatform } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const sets = (modelIds: string[]) => ({ demo: { model_ids: modelIds, rotate_every: "24h", overlap: "1h" } });
type Doc = { generation: number; api_key: string; model_ids: string[]; expires_at: string };

describe("scenario: the model_ids of a set change", () => {
  it("the next tick re-mints with the new scope; status, document and the live key agree", async () => {
    const p = await makePlatform({ seed: "scenario-7", sets: sets(["abcd1234"]), consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const before = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    expect(before.map((d) => d.model_ids)).toEqual([["abcd1234"], ["abcd1234"], ["abcd1234"]]);

    p.clock.advance(2 * 60 * MIN);
    p.reconfigure({ MODEL_SETS: JSON.stringify(sets(["abcd1234", "zzzz9999"])) });
    p.clock.advance(MIN);
    await p.tick();
    // Past KV's 60 s, every location serves the new scope.
    p.clock.advance(70_000);
    const after = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    const keys = await p.fake.keys();
    const scopeOf = (d: Doc) => keys.find((k) => k.prefix === d.api_key.split(".")[0])?.model_ids;

    const status = await p
      .location("cron")
      .request("/v1/admin/status", { headers: { authorization: `Bearer ${p.world.env.ADMIN_TOKEN}` } });
    expect(status.status).toBe(200);
    const demo = ((await status.json()) as { sets: { model_set: string; generation: number; model_ids: string[] }[] }).sets.find(
      (s) => s.model_set === "demo",
    )!;

    expect(
      after.map((d) => d.generation),
      "a new generation is served everywhere",
    ).toEqual([2, 2, 2]);
    expect(
      after.map((d) => d.model_ids),
      "documents carry the new scope",
    ).toEqual(Array(3).fill(["abcd1234", "zzzz9999"]));
    expect(after.map(scopeOf), "the served key's scope at Baseten").toEqual(Array(3).fill(["abcd1234", "zzzz9999"]));
    expect({ generation: demo.generation, model_ids: demo.model_ids }, "admin status").toEqual({
      generation: 2,
      model_ids: ["abcd1234", "zzzz9999"],
    });
    // The old key keeps its promise.
    const live = await p.livePrefixes();
    expect(live.has(before[0]!.api_key.split(".")[0]!), "the old key is live until its promise ends").toBe(true);
  });
});
