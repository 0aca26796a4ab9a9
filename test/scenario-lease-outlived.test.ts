/**
 * Issue #9 scenario 2, through the platform model: a scheduled run promotes generation N, then
 * stalls before its KV write until past its 90 s lease; meanwhile a leak response
 * (`revoke_previous`) mints N+1 and revokes N. The stalled run's late cache write must not bring
 * N back (DESIGN §4: KV put/delete only while the run holds the lease; a run that lost the race
 * repairs, never regresses, the cache). So KV ends at N+1 and no location serves N after 60 s.
 */
import { describe, expect, it } from "vitest";
import { afterPromote, describeStale, makePlatform, servedAfterRevocation } from "./helpers/platform.ts";
import { MIN } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "10m" } };
type Doc = { generation: number; api_key: string; refresh_at: string };

describe("scenario: a run outlives its lease between promote and KV write", () => {
  it("KV ends at N+1 and no location serves N 60 s after the leak response revoked it", async () => {
    const p = await makePlatform({ seed: "scenario-2", sets: SETS, consumers: { "demo-svc": ["demo"] } });
    await p.tick();
    const [doc1] = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    p.clock.set(Date.parse(doc1!.refresh_at));

    // The scheduled run promotes N = 2, then its cache write is held 95 s; meanwhile, at "east",
    // a leak scanner's webhook rotates with revoke_previous (N+1 = 3, N revoked).
    let leak: { status: number; body: { generation: number; revoked: number[] } } | null = null;
    p.hook(
      afterPromote("demo", {
        location: "cron",
        stallBeforeMs: 95_000,
        during: async () => {
          const res = await p.webhook("east", { model_set: "demo", reason: "leak", revoke_previous: true });
          leak = { status: res.status, body: (await res.json()) as { generation: number; revoked: number[] } };
        },
      }),
    );
    await p.tick();
    expect(p.hits["kv:put"], "the scheduled run's cache write was held").toBe(1);
    expect(leak!.status).toBe(200);
    const n1 = leak!.body.generation;
    expect(n1).toBe(3);
    const rows = await p.rows("demo");
    const n = rows.find((r) => r.generation === 2)!;
    expect(n.state).not.toBe("current");
    const revokedN = p.revokedAt.get(n.prefix!);
    expect(revokedN, "the leak response revoked N at Baseten").toBeDefined();

    // Reads everywhere every 15 s for 3 minutes, then at a location that never read before.
    for (let i = 0; i < 12; i++) {
      await p.readEverywhere("demo");
      p.clock.advance(15_000);
    }
    p.addLocation("late");
    const final = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    expect(
      describeStale(servedAfterRevocation(p)),
      "documents of a revoked key served more than 65 s (KV 60 s + isolate memory 5 s) after its revocation",
    ).toEqual([]);
    expect(
      final.map((d) => d.generation),
      "generation served at cron, east, west, late (KV ends at N+1)",
    ).toEqual([n1, n1, n1, n1]);
    const live = await p.livePrefixes();
    for (const d of final) expect(live.has(d.api_key.split(".")[0]!)).toBe(true);
    // And the next tick does not bring N back either.
    p.clock.advance(MIN);
    await p.tick();
    p.clock.advance(70_000);
    const after = await Promise.all((await p.readEverywhere("demo")).map((r) => r.json() as Promise<Doc>));
    expect(after.map((d) => d.generation)).toEqual([n1, n1, n1, n1]);
  });
});
