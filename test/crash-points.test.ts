/**
 * Reliability item 2: a failure between any two steps of a rotation (DESIGN §4), injected for
 * real: the fake Baseten commits a mint or a revoke and then loses the answer; the D1 binding
 * fails the promote, the lease, the release or the revoke bookkeeping (before or after the
 * write commits); the KV binding fails the cache write. After each, the state is safe (the old
 * key current, live and served; every live `bkr-` key known to D1; no promise broken), and
 * the next runs converge: exactly one current key, KV agrees with D1, nothing left at Baseten.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { LEASE_MS, RUN_AHEAD_MS, type RunReport } from "../src/rotation.ts";
import { FaultPlan, faultyD1, faultyKV } from "./helpers/faulty-bindings.ts";
import {
  currentRow,
  elsewhere,
  expectConverged,
  expectNoUntrackedKeys,
  kvGeneration,
  promiseBook,
  rows,
  servedLive,
} from "./helpers/invariants.ts";
import { tally, useTally } from "./helpers/tally.ts";
import { sendWebhook } from "./helpers/webhooks.ts";
import { MIN, type World, makeWorld, prefixOf } from "./helpers/world.ts";

useTally();

const SET = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } };

async function world(plan = new FaultPlan(), sets: Record<string, unknown> = SET): Promise<{ w: World; plan: FaultPlan }> {
  const w = await makeWorld({
    sets,
    consumers: { "demo-svc": ["demo"] },
    vars: { DB: faultyD1(env.DB, plan), KEYS: faultyKV(env.KEYS, plan), BASETEN_TIMEOUT_MS: "300" },
  });
  return { w, plan };
}

/** gen 1 minted and served, the clock where its scheduled rotation runs: RUN_AHEAD_MS before its refresh_at. */
async function dueWorld() {
  const { w, plan } = await world();
  await w.tick();
  const first = await servedLive(w);
  w.clock.set(Date.parse(first.refresh_at) - RUN_AHEAD_MS);
  return { w, plan, first };
}

/** The demo set's run in the next tick; a tick that finds nothing to do for it counts as a noop. */
async function demoRun(w: World): Promise<RunReport> {
  const summary = await w.tick();
  const run = summary.results.find((r) => r.model_set === "demo") as RunReport | undefined;
  return (
    run ?? { outcome: "noop", model_set: "demo", minted: null, replaced: null, revoked: [], revokePending: [], failure: null, events: [] }
  );
}

/**
 * Another location whose KV still holds gen 1 (the cache write failed) serves it while it is on
 * schedule; once its refresh_at has passed, that stale entry cannot make a document that keeps
 * the overdue rule (its recorded expires_at is not extended), so the read goes to D1: gen 2.
 */
function expectedElsewhere(w: World, first: KeyDocument): number {
  return w.clock.now() < Date.parse(first.refresh_at) ? first.generation : first.generation + 1;
}

/** The safe state after a crash: old key current, live, served; nothing untracked. */
async function expectSafe(w: World, first: KeyDocument) {
  expect((await currentRow("demo"))?.generation).toBe(first.generation);
  w.clock.advance(10_000);
  const doc = await servedLive(w);
  expect(doc.api_key).toBe(first.api_key);
  await expectNoUntrackedKeys(w);
}

/**
 * Ticks every 5 minutes until `until`, checking the promise book and tracking after each and
 * reading here and at another location (which did not see the engine's cache write fail).
 */
async function tickUntil(w: World, book: ReturnType<typeof promiseBook>, until: number, other: World["getKey"], set = "demo") {
  const start = w.clock.now();
  while (w.clock.now() < until) {
    // Every 5 minutes while caches settle and the overlap runs, then every 15.
    w.clock.advance(w.clock.now() - start < 30 * MIN || until - w.clock.now() < 90 * MIN ? 5 * MIN : 15 * MIN);
    await w.tick();
    await book.checkRevocations(w);
    await expectNoUntrackedKeys(w);
    await book.read(w, set);
    await book.read(w, set, undefined, other);
  }
}

describe("crash points: the mint's answer is lost", () => {
  for (const kind of ["lost_after_commit", "malformed_after_commit", "empty_after_commit"] as const) {
    it(`${kind}: the key Baseten created is found by name and deleted in the same run; the next tick rotates`, async () => {
      const { w, first } = await dueWorld();
      await w.fake.fault({ op: "mint", kind });
      tally("crash", `mint ${kind}`);
      const run = await demoRun(w);
      expect(run.outcome).toBe("failed");
      expect(run.events.map((e) => e.type)).toEqual(["rotation.failed"]);
      // Baseten did create gen 2; it is gone again and D1 says why.
      const created = (await w.fake.keys()).filter((k) => k.name?.startsWith("bkr-demo-2-"));
      expect(created.length).toBe(1);
      expect(created[0]!.revoked_at).not.toBeNull();
      expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
      await expectSafe(w, first);
      await demoRun(w);
      w.clock.advance(10_000);
      const { doc } = await expectConverged(w, "demo");
      expect(doc.generation).toBe(3);
    });
  }

  it("lost answer and the recovery's list call failing too: the pending row keeps the key tracked until a later run deletes it", async () => {
    const { w, first } = await dueWorld();
    // The tick's sweep lists first (3 attempts), then the failed mint's recovery (3 more).
    await w.fake.fault(
      { op: "list", kind: "503", count: 3 },
      { op: "mint", kind: "lost_after_commit" },
      { op: "list", kind: "503", count: 3 },
    );
    tally("crash", "mint lost_after_commit + list 503");
    expect((await demoRun(w)).outcome).toBe("failed");
    const pending = (await rows("demo")).find((r) => r.generation === 2)!;
    expect(pending.state).toBe("pending");
    // The key is live at Baseten, and D1 knows its name.
    expect((await w.fake.liveKeys()).some((k) => k.name === pending.name)).toBe(true);
    await expectSafe(w, first);
    // Within the lease nothing touches it (its run might still be alive)...
    w.clock.advance(30_000);
    expect((await demoRun(w)).outcome).toBe("noop");
    expect((await w.fake.liveKeys()).some((k) => k.name === pending.name)).toBe(true);
    // ...after it, the next run deletes it, abandons the row and mints afresh.
    w.clock.advance(LEASE_MS);
    expect((await demoRun(w)).outcome).toBe("rotated");
    expect((await w.fake.liveKeys()).some((k) => k.name === pending.name)).toBe(false);
    expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("lost answer and the recovery's revoke answer lost too: the next run finds the key gone and closes the row", async () => {
    const { w, first } = await dueWorld();
    await w.fake.fault({ op: "mint", kind: "lost_after_commit" }, { op: "revoke", kind: "lost_after_commit", count: 3 });
    tally("crash", "mint lost_after_commit + revoke lost_after_commit");
    expect((await demoRun(w)).outcome).toBe("failed");
    await expectSafe(w, first);
    w.clock.advance(LEASE_MS);
    expect((await demoRun(w)).outcome).toBe("rotated");
    expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("a mint that lands at Baseten after its pending was written off is swept", async () => {
    // A run dies (stall) while Baseten is still working; the next run abandons the pending
    // ("never created"), then Baseten's late create shows up: the sweep deletes it.
    const { w, first } = await dueWorld();
    await w.fake.fault({ op: "mint", kind: "stall", stall_ms: 5_000, count: 3 });
    tally("crash", "mint stall x3");
    expect((await demoRun(w)).outcome).toBe("failed");
    const name = (await rows("demo")).find((r) => r.generation === 2)!.name;
    expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
    await w.fake.createKey(name, ["abcd1234"]); // the late create, under our name
    await expectSafe(w, first);
    await w.tick(); // sweep
    expect((await w.fake.liveKeys()).some((k) => k.name === name)).toBe(false);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });
});

describe("crash points: D1 fails after a successful mint", () => {
  it("the promote batch fails before committing: the minted key stays pending-tracked, then is deleted and replaced", async () => {
    const { w, plan, first } = await dueWorld();
    plan.d1({ op: "batch", match: "SET state = 'current'" });
    tally("crash", "d1 promote fails");
    const run = await demoRun(w);
    expect(run.outcome).toBe("failed");
    expect(run.failure?.code).toBe("ledger_failed");
    expect(plan.hits["d1:batch"]).toBe(1);
    const gen2 = (await rows("demo")).find((r) => r.generation === 2)!;
    expect(gen2.state).toBe("pending");
    expect((await w.fake.liveKeys()).some((k) => k.name === gen2.name)).toBe(true);
    await expectSafe(w, first);
    w.clock.advance(LEASE_MS);
    expect((await demoRun(w)).outcome).toBe("rotated");
    expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
    expect((await w.fake.liveKeys()).some((k) => k.name === gen2.name)).toBe(false);
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("the promote batch commits and then fails: the new key is current, the cache is repaired, the old key keeps every promise", async () => {
    const { w, plan, first } = await dueWorld();
    const book = promiseBook();
    const other = elsewhere(w);
    await book.read(w);
    plan.d1({ op: "batch", match: "SET state = 'current'", after: true });
    tally("crash", "d1 promote commits then fails");
    expect((await demoRun(w)).outcome).toBe("failed");
    expect((await currentRow("demo"))?.generation).toBe(2);
    // KV was never written: reads still serve gen 1 from it, and each read is a promise.
    expect(await kvGeneration("demo")).toBe(1);
    w.clock.advance(10_000);
    expect((await book.read(w)).generation).toBe(1);
    expect((await book.read(w, "demo", undefined, other)).generation).toBe(expectedElsewhere(w, first));
    await tickUntil(w, book, Date.parse(first.expires_at) + 3 * 60 * MIN, other);
    expect(await kvGeneration("demo")).toBe(2);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
    await expectConverged(w, "demo");
  });

  it("revoke_previous whose promote commits and then fails: the leaked key is not served here, and the next tick revokes it without extending it", async () => {
    const { w, plan } = await world();
    await w.tick();
    const leaked = await servedLive(w);
    w.clock.advance(MIN);
    // The promote commits and its answer is lost, and the cache entry cannot be dropped either.
    plan.d1({ op: "batch", match: "SET state = 'current'", after: true });
    plan.kv({ op: "delete" });
    tally("crash", "d1 promote commits then fails, revoke_previous");
    const res = await sendWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true });
    expect(res.status).toBe(503);
    // The replacement did commit: gen 2 is current, gen 1 is previous with its promises withdrawn.
    expect((await currentRow("demo"))?.generation).toBe(2);
    expect(await kvGeneration("demo")).toBe(1); // the stale entry survived...
    for (const step of [0, 10_000]) {
      w.clock.advance(step);
      expect((await servedLive(w)).generation).toBe(2); // ...and is not served here
    }
    w.clock.advance(MIN);
    await w.tick();
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(leaked.api_key));
    expect((await rows("demo")).find((r) => r.generation === 1)?.state).toBe("revoked");
    await expectConverged(w, "demo");
  });

  it("the lease batch commits and then fails: the lease and pending it left expire, and the next run converges", async () => {
    const { w, plan, first } = await dueWorld();
    plan.d1({ op: "batch", match: "lease_expires_at = excluded.lease_expires_at", after: true });
    tally("crash", "d1 lease commits then fails");
    expect((await demoRun(w)).outcome).toBe("failed");
    await expectSafe(w, first);
    // Nothing was minted for that pending; the set is still leased to a run that is gone.
    expect((await w.fake.calls()).counts.mint).toBe(1);
    w.clock.advance(LEASE_MS);
    expect((await demoRun(w)).outcome).toBe("rotated");
    expect((await rows("demo")).find((r) => r.generation === 2)?.state).toBe("abandoned");
    w.clock.advance(10_000);
    await expectConverged(w, "demo");
  });

  it("the release fails: the set stays leased until the lease expires, then rotates", async () => {
    const { w, plan, first } = await dueWorld();
    plan.d1({ op: "any", match: "lease_holder = NULL", count: 2 }); // the run's finish batch, and its fallback release
    tally("crash", "d1 release fails");
    expect((await demoRun(w)).outcome).toBe("rotated");
    // An admin rotation now is refused as busy (not run twice).
    const res = await w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });
    expect(res.status).toBe(409);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    w.clock.advance(LEASE_MS);
    expect(
      (await w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } })).status,
    ).toBe(200);
    w.clock.advance(10_000);
    const { doc } = await expectConverged(w, "demo");
    expect(doc.generation).toBe(3);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).toContain(prefixOf(first.api_key));
  });
});

describe("crash points: the cache write fails after the promote", () => {
  for (const count of [1, 4]) {
    it(`KV put fails ${count === 1 ? "once" : "for several runs"}: reads keep getting a live key, the old key outlives every document served for it`, async () => {
      const { w, plan, first } = await dueWorld();
      const book = promiseBook();
      const other = elsewhere(w);
      await book.read(w);
      plan.kv({ op: "put", count });
      tally("crash", `kv put fails x${count}`);
      expect((await demoRun(w)).outcome).toBe("rotated");
      expect((await currentRow("demo"))?.generation).toBe(2);
      expect(await kvGeneration("demo")).toBe(1);
      // This location knows better than its KV now; another one serves gen 1 from KV, overdue.
      w.clock.advance(10_000);
      expect((await book.read(w)).generation).toBe(2);
      expect((await book.read(w, "demo", undefined, other)).generation).toBe(expectedElsewhere(w, first));
      await tickUntil(w, book, Date.parse(first.expires_at) + 4 * 60 * MIN, other);
      expect(plan.pending()).toBe(0);
      expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
      await expectConverged(w, "demo");
    });
  }

  it("KV put fails with the minimum overlap: the run that repairs the cache does not revoke the key it just found still served", async () => {
    // The contract's minimum overlap: gen 1's own expiry comes before the cache repair.
    const { w, plan } = await world(new FaultPlan(), { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "2m" } });
    const book = promiseBook();
    const other = elsewhere(w);
    await w.tick();
    const first = await book.read(w);
    w.clock.set(Date.parse(first.refresh_at));
    plan.kv({ op: "put" });
    tally("crash", "kv put fails, 2m overlap");
    expect((await demoRun(w)).outcome).toBe("rotated");
    // Elsewhere the stale KV entry (gen 1) is not served once overdue: its promise was never extended.
    for (let i = 0; i < 4; i++) {
      w.clock.advance(MIN);
      expect((await book.read(w, "demo", undefined, other)).generation).toBe(expectedElsewhere(w, first));
    }
    // Gen 1's own expiry has passed; the tick that repairs the cache must keep it for what was served.
    w.clock.advance(MIN);
    await w.tick();
    expect(await kvGeneration("demo")).toBe(2);
    await book.checkRevocations(w);
    await tickUntil(w, book, w.clock.now() + 30 * MIN, other);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
    await expectConverged(w, "demo");
  });

  it("KV put fails, then an early rotation writes the cache: the key the stale cache served still keeps its promises", async () => {
    const { w, plan, first } = await dueWorld();
    const book = promiseBook();
    const other = elsewhere(w);
    plan.kv({ op: "put" });
    tally("crash", "kv put fails, then early rotation");
    expect((await demoRun(w)).outcome).toBe("rotated");
    // Elsewhere the stale cache serves gen 1 while on schedule, then D1's gen 2 (no promise is invented)...
    for (let i = 0; i < 6; i++) {
      w.clock.advance(MIN);
      expect((await book.read(w, "demo", undefined, other)).generation).toBe(expectedElsewhere(w, first));
    }
    // ...until a webhook-like rotation to gen 3 overwrites the cache.
    const res = await w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    await book.checkRevocations(w);
    await tickUntil(w, book, Date.parse(first.expires_at) + 4 * 60 * MIN, other);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
    await expectConverged(w, "demo");
  });
});

describe("crash points: a revoke fails halfway", () => {
  /** gen 1 replaced by gen 2, the clock past every promise of gen 1. */
  async function revokeDue() {
    const { w, plan, first } = await dueWorld();
    await w.tick();
    w.clock.set(Date.parse(first.expires_at) + 5 * MIN);
    return { w, plan, first };
  }

  it("Baseten deletes the key and the answer is lost: the next run gets 404, treats it as done, and closes the row", async () => {
    const { w, first } = await revokeDue();
    await w.fake.fault({ op: "revoke", kind: "lost_after_commit", count: 3 });
    tally("crash", "revoke lost_after_commit");
    expect((await demoRun(w)).revoked).toEqual([]);
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
    expect((await rows("demo")).find((r) => r.generation === 1)?.state).toBe("previous");
    w.clock.advance(MIN);
    expect((await demoRun(w)).revoked).toEqual([1]);
    await expectConverged(w, "demo");
  });

  for (const after of [false, true]) {
    it(`the revoke succeeds and D1's bookkeeping fails ${after ? "after committing" : "before committing"}: the next run converges`, async () => {
      const { w, plan, first } = await revokeDue();
      plan.d1({ op: "batch", match: "SET state = 'revoked'", after });
      tally("crash", `d1 mark-revoked fails${after ? " after commit" : ""}`);
      await demoRun(w);
      expect((await w.fake.liveKeys()).map((k) => k.prefix)).not.toContain(prefixOf(first.api_key));
      w.clock.advance(MIN);
      await w.tick();
      expect((await rows("demo")).find((r) => r.generation === 1)?.state).toBe("revoked");
      await expectConverged(w, "demo");
    });
  }

  it("two keys due, one revoke fails and the other succeeds: one is closed, the other stays live and is retried", async () => {
    const { w } = await world();
    const book = promiseBook();
    await w.tick();
    // Three generations in quick succession (webhook-like), so gens 1 and 2 both wait to be revoked.
    for (let i = 0; i < 2; i++) {
      w.clock.advance(MIN);
      await book.read(w);
      expect(
        (await w.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } })).status,
      ).toBe(200);
    }
    const prev = (await rows("demo")).filter((r) => r.state === "previous");
    expect(prev.map((r) => r.generation)).toEqual([1, 2]);
    w.clock.set(Math.max(...prev.map((r) => r.expires_at!)) + MIN);
    // Revokes go oldest first: gen 1's three attempts fail, gen 2's goes through.
    await w.fake.fault({ op: "revoke", kind: "503", count: 3 });
    tally("crash", "revoke fails for 1 of 2");
    const run = await demoRun(w);
    await w.fake.clearFaults();
    await book.checkRevocations(w);
    expect(run.revoked).toEqual([2]);
    expect((await rows("demo")).find((r) => r.generation === 1)?.state).toBe("previous");
    expect((await w.fake.liveKeys()).map((k) => k.prefix)).toContain(prev[0]!.prefix);
    // By now gen 3 is overdue too: that run replaced it, and it keeps its recorded promise (already
    // reached), so it goes once KV has served gen 4 for longer than any cache lags (65 s).
    w.clock.advance(2 * MIN);
    await w.tick();
    await book.checkRevocations(w);
    expect((await rows("demo")).filter((r) => r.generation <= 2).map((r) => r.state)).toEqual(["revoked", "revoked"]);
    await expectConverged(w, "demo");
  });
});
