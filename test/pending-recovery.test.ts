/**
 * A run that died mid-mint (DESIGN §4.6) leaves a `pending` row behind. Once it is older than
 * the lease, the next run looks its name up at Baseten, deletes what it finds, marks the row
 * `abandoned`, and mints a fresh key that gets served. Nothing is left untracked at Baseten.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { LEASE_MS } from "../src/rotation.ts";
import { T0, type World, makeWorld, prefixOf } from "./helpers/world.ts";

const SETS = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };
const CONSUMERS = { "demo-svc": ["demo"] };

interface Row {
  generation: number;
  state: string;
  name: string;
  prefix: string | null;
}

const rows = async (): Promise<Row[]> =>
  (await env.DB.prepare("SELECT generation, state, name, prefix FROM keys WHERE model_set = 'demo' ORDER BY generation").all<Row>())
    .results;

const audit = async () =>
  (
    await env.DB.prepare("SELECT generation, action, reason FROM audit WHERE model_set = 'demo' ORDER BY id").all<{
      generation: number;
      action: string;
      reason: string;
    }>()
  ).results;

/** What a run that died right after recording its pending (and maybe after Baseten created the key) leaves behind. */
async function deadRun(w: World, name: string, at: number): Promise<void> {
  await env.DB.batch([
    env.DB.prepare("INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES ('demo', 'dead-run', ?1)").bind(at + LEASE_MS),
    env.DB.prepare(
      "INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, created_at) VALUES ('demo', 1, 'pending', ?1, '[\"abcd1234\"]', 3600000, ?2)",
    ).bind(name, at),
  ]);
}

async function servedDoc(w: World): Promise<KeyDocument> {
  const res = await w.getKey("demo");
  expect(res.status).toBe(200);
  return (await res.json()) as KeyDocument;
}

describe("pending recovery", () => {
  it("a key minted by a run that died is found by name, deleted, and replaced by a fresh one", async () => {
    const w = await makeWorld({ sets: SETS, consumers: CONSUMERS });
    const name = "bkr-demo-1-deadrun1";
    await deadRun(w, name, T0);
    // The dead run's mint reached Baseten: the key exists under the pending name.
    const orphan = await w.fake.createKey(name, ["abcd1234"]);

    // While the dead run's lease holds, nothing happens: it might still be alive.
    w.clock.advance(LEASE_MS - 1_000);
    await w.tick();
    expect(await rows()).toEqual([{ generation: 1, state: "pending", name, prefix: null }]);
    expect(await w.liveKeyPrefixes()).toEqual([prefixOf(orphan)]);
    expect((await w.getKey("demo")).status).toBe(503);

    // Past the lease the run is known dead.
    w.clock.set(T0 + LEASE_MS + 1_000);
    await w.tick();
    const after = await rows();
    expect(after.map((r) => [r.generation, r.state])).toEqual([
      [1, "abandoned"],
      [2, "current"],
    ]);
    const orphanAtFake = (await w.fake.keys()).find((k) => k.name === name)!;
    expect(orphanAtFake.revoked_at).not.toBeNull();

    const doc = await servedDoc(w);
    expect(doc.generation).toBe(2);
    expect(doc.api_key).not.toBe(orphan);
    // Exactly one live key at Baseten: the one being served.
    expect(await w.liveKeyPrefixes()).toEqual([prefixOf(doc.api_key)]);
    expect(after[1]!.prefix).toBe(prefixOf(doc.api_key));
    expect(await audit()).toEqual([
      { generation: 1, action: "abandoned", reason: "recovered: deleted at Baseten" },
      { generation: 2, action: "minted", reason: null },
    ]);
  });

  it("a pending that never reached Baseten is abandoned without deleting anything", async () => {
    const w = await makeWorld({ sets: SETS, consumers: CONSUMERS });
    await deadRun(w, "bkr-demo-1-neverran", T0);
    // Someone else's key on the same team must be left alone.
    const foreign = await w.fake.createKey("someone-elses-key", ["abcd1234"]);

    w.clock.set(T0 + LEASE_MS + 1_000);
    await w.tick();
    expect((await rows()).map((r) => [r.generation, r.state])).toEqual([
      [1, "abandoned"],
      [2, "current"],
    ]);
    expect((await w.fake.calls()).counts.revoke).toBe(0);
    const doc = await servedDoc(w);
    expect(doc.generation).toBe(2);
    expect((await w.liveKeyPrefixes()).sort()).toEqual([prefixOf(foreign), prefixOf(doc.api_key)].sort());
    expect((await audit())[0]).toEqual({ generation: 1, action: "abandoned", reason: "recovered: never created" });
  });

  it("a mint whose answer was lost, and whose immediate clean-up failed too, is cleaned up after the lease", async () => {
    // One attempt per call, so each queued fault hits exactly one call.
    const w = await makeWorld({ sets: SETS, consumers: CONSUMERS, vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    await w.fake.fault(
      { op: "mint", kind: "lost_after_commit" }, // the key is created, the answer never arrives
      { op: "list", kind: "500", count: 2 }, // the tick's sweep and the run's immediate recovery both fail
    );
    const first = await w.tick();
    expect(first.results[0]).toMatchObject({ outcome: "failed", failure: { code: "upstream_network" } });
    const [pending] = await rows();
    expect(pending).toMatchObject({ generation: 1, state: "pending" });
    const lost = await w.fake.liveKeys();
    expect(lost.map((k) => k.name)).toEqual([pending!.name]);
    expect((await w.getKey("demo")).status).toBe(503);

    // Inside the lease a later tick neither mints a second key nor touches the pending.
    w.clock.advance(30_000);
    await w.tick();
    expect((await rows()).map((r) => r.state)).toEqual(["pending"]);
    expect((await w.fake.keys()).length).toBe(1);

    w.clock.set(T0 + LEASE_MS + 1_000);
    await w.tick();
    expect((await rows()).map((r) => [r.generation, r.state])).toEqual([
      [1, "abandoned"],
      [2, "current"],
    ]);
    const doc = await servedDoc(w);
    expect(doc.generation).toBe(2);
    expect(await w.liveKeyPrefixes()).toEqual([prefixOf(doc.api_key)]);
    expect((await w.fake.keys()).find((k) => k.prefix === lost[0]!.prefix)!.revoked_at).not.toBeNull();
  });

  it("a lost mint answer is cleaned up at once when Baseten can be asked", async () => {
    const w = await makeWorld({ sets: SETS, consumers: CONSUMERS });
    await w.fake.fault({ op: "mint", kind: "lost_after_commit" });
    const first = await w.tick();
    expect(first.results[0]).toMatchObject({ outcome: "failed" });
    // The retry met 409 (the name exists), the run found the key by name and deleted it.
    expect((await rows()).map((r) => [r.generation, r.state])).toEqual([[1, "abandoned"]]);
    expect(await w.liveKeyPrefixes()).toEqual([]);
    expect((await w.fake.keys()).length).toBe(1);

    // The set is still due: the next tick mints and serves.
    w.clock.advance(60_000);
    await w.tick();
    const doc = await servedDoc(w);
    expect(doc.generation).toBe(2);
    expect(await w.liveKeyPrefixes()).toEqual([prefixOf(doc.api_key)]);
  });
});
