/**
 * The promise rule as engine v2 keeps it (DESIGN §3): every expires_at a document carries is in
 * D1 first; scheduled rotations run ahead of refresh_at so a replaced key is revoked by the first
 * tick after the expires_at it was served with; an overdue set's extension is recorded by the
 * tick that finds it; a change of model_ids re-mints with the new scope; a change of overlap or
 * rotate_every never shortens a served promise; a cron that stops is reported as stalled.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { tick } from "../src/cron.ts";
import type { KeyDocument } from "../src/document.ts";
import type { Env } from "../src/env.ts";
import { engineStatus } from "../src/ledger.ts";
import { RUN_AHEAD_MS, createEngine } from "../src/rotation.ts";
import { currentRow, elsewhere, expectConverged, promiseBook, rows, servedLive } from "./helpers/invariants.ts";
import { HOUR, MIN, type World, makeWorld, prefixOf } from "./helpers/world.ts";

/** The same storage and clock as `w`, under other vars (a config change): its own tick and reads. */
function reconfigured(w: World, vars: Partial<Record<keyof Env, unknown>>) {
  const e = { ...w.env, ...vars } as Env;
  const result = loadConfig(e);
  if (!result.ok) throw new Error(result.problems.join("; "));
  const app = createApp({ clock: w.clock.now });
  return {
    tick: () => tick(createEngine(result.config, e, w.clock.now)),
    async getKey(set = "demo"): Promise<Response> {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request(`https://rotator.test/v1/keys/${set}`, { headers: { authorization: `Bearer ${w.tokens["demo-svc"]}` } }),
        e,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    },
    async status() {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request("https://rotator.test/v1/admin/status", { headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } }),
        e,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return (await res.json()) as { sets: { model_set: string; model_ids: string[]; generation: number }[] };
    },
  };
}

const oneSet = (s: Record<string, unknown>) => ({ sets: { demo: { model_ids: ["abcd1234"], ...s } }, consumers: { "demo-svc": ["demo"] } });

describe("rotation ahead of refresh_at", () => {
  it("a set rotating every 150 s with a 120 s overlap: the cron at refresh_at + 5 s rotates, the cron at expires_at + 5 s deletes the replaced key", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "150s", overlap: "120s" }));
    const book = promiseBook();
    await w.tick();
    const first = await book.read(w);
    w.clock.set(Date.parse(first.refresh_at) + 5_000);
    await w.tick();
    w.clock.advance(1_000);
    expect((await book.read(w)).generation).toBe(2);
    w.clock.set(Date.parse(first.expires_at) + 5_000);
    await w.tick();
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(first.api_key));
    await book.checkRevocations(w);
  });

  it("with the cron every minute, every location serves the next key at refresh_at, and the old key goes at the first tick after its expires_at", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "24h", overlap: "2m" }));
    const book = promiseBook();
    const other = elsewhere(w);
    await w.tick();
    const first = await book.read(w);
    await book.read(w, "demo", undefined, other);
    const R = Date.parse(first.refresh_at);
    const E = Date.parse(first.expires_at);
    // Whole-minute ticks from well before the margin to past expires_at.
    let revokedAt: number | null = null;
    for (let t = R - 5 * MIN; t <= E + 2 * MIN; t += MIN) {
      w.clock.set(t);
      await w.tick();
      await book.checkRevocations(w);
      if (revokedAt === null && !(await w.liveKeyPrefixes()).includes(prefixOf(first.api_key))) revokedAt = t;
      if (t >= R) {
        // At refresh_at and after, both locations (their memory expired) already serve gen 2.
        w.clock.set(t + 6_000);
        expect((await book.read(w)).generation).toBe(2);
        expect((await book.read(w, "demo", undefined, other)).generation).toBe(2);
      }
    }
    const minted2 = (await rows("demo")).find((r) => r.generation === 2)!;
    expect(minted2.created_at).toBeLessThanOrEqual(R - RUN_AHEAD_MS + MIN);
    // The first whole-minute tick after E (E itself is a whole minute: a tick at E already may revoke).
    expect(revokedAt).toBe(Math.floor(E / MIN) * MIN === E ? E : Math.ceil(E / MIN) * MIN);
    // The new key's refresh_at keeps the cadence: the old refresh_at plus rotate_every.
    expect(minted2.refresh_at).toBe(R + 24 * HOUR);
  });
});

describe("promises recorded before they are served", () => {
  it("while the mint keeps failing, each tick records the extension first: every document's expires_at is D1's", async () => {
    const w = await makeWorld({ ...oneSet({ rotate_every: "24h", overlap: "2m" }), vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    const book = promiseBook();
    const other = elsewhere(w);
    await w.tick();
    const first = await book.read(w);
    const R = Date.parse(first.refresh_at);
    await w.fake.fault({ op: "mint", kind: "503", count: 100 });
    for (let t = R - 3 * MIN; t <= R + 10 * MIN; t += MIN) {
      w.clock.set(t);
      await w.tick();
      for (const offset of [1_000, 30_000, 59_000]) {
        w.clock.set(t + offset);
        const recorded = (await currentRow("demo"))!.expires_at!;
        for (const doc of [await book.read(w), await book.read(w, "demo", undefined, other)]) {
          expect(doc.generation).toBe(1);
          expect(Date.parse(doc.expires_at)).toBeLessThanOrEqual(recorded);
          // The overdue rule holds with the recorded promise alone.
          if (t + offset >= R) expect(Date.parse(doc.expires_at)).toBeGreaterThanOrEqual(Date.parse(doc.refresh_at) + 2 * MIN);
        }
      }
    }
    await w.fake.clearFaults();
    // Late success: the old key keeps the latest promise served for it, then goes.
    w.clock.set(R + 11 * MIN);
    await w.tick();
    expect((await currentRow("demo"))!.generation).toBeGreaterThan(1); // each failed mint used up a generation
    const promised = book.served.get(prefixOf(first.api_key))!;
    for (let t = R + 12 * MIN; t <= promised + 2 * MIN; t += MIN) {
      w.clock.set(t);
      await w.tick();
      await book.checkRevocations(w);
    }
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(first.api_key));
    await expectConverged(w, "demo");
  });

  it("no tick at all: nothing is extended and the engine reports itself stalled", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "24h", overlap: "1h" }));
    expect(await engineStatus(env.DB, w.clock.now())).toEqual({ last_tick_at: null, stalled: false });
    await w.tick();
    const at = w.clock.now();
    expect(await engineStatus(env.DB, at + 3 * MIN)).toEqual({ last_tick_at: new Date(at).toISOString(), stalled: false });
    expect(await engineStatus(env.DB, at + 3 * MIN + 1)).toEqual({ last_tick_at: new Date(at).toISOString(), stalled: true });
    // A key minted on demand with no tick ever: stalled.
    const v = await makeWorld(oneSet({ rotate_every: "24h", overlap: "1h" }));
    expect(
      (await v.request("/v1/admin/rotate/demo", { method: "POST", headers: { authorization: `Bearer ${v.env.ADMIN_TOKEN}` } })).status,
    ).toBe(200);
    expect((await engineStatus(env.DB, v.clock.now())).stalled).toBe(true);
  });
});

describe("config changes", () => {
  it("model_ids change: the next tick re-mints with the new scope; status, document and the live key agree", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "24h", overlap: "1h" }));
    const book = promiseBook();
    await w.tick();
    const first = await book.read(w);
    const next = reconfigured(w, {
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234", "newm5678"], rotate_every: "24h", overlap: "1h" } }),
    });
    w.clock.advance(HOUR);
    await next.tick();
    w.clock.advance(6_000);
    const res = await next.getKey();
    expect(res.status).toBe(200);
    const doc = (await res.json()) as KeyDocument;
    expect(doc).toMatchObject({ generation: 2, model_ids: ["abcd1234", "newm5678"] });
    const live = (await w.fake.liveKeys()).find((k) => k.prefix === prefixOf(doc.api_key))!;
    expect(live.model_ids).toEqual(["abcd1234", "newm5678"]);
    expect((await next.status()).sets.find((s) => s.model_set === "demo")).toMatchObject({
      generation: 2,
      model_ids: ["abcd1234", "newm5678"],
    });
    // The old key keeps its promise and is not re-minted again.
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(first.api_key));
    w.clock.advance(MIN);
    expect((await next.tick()).planned).toBe(0);
    w.clock.set(Date.parse(first.expires_at) + MIN);
    await next.tick();
    await book.checkRevocations(w);
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(first.api_key));
  });

  it("overlap and rotate_every lowered between runs: no served promise is shortened", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "24h", overlap: "6h" }));
    const book = promiseBook();
    await w.tick();
    const first = await book.read(w);
    const next = reconfigured(w, { MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "1h", overlap: "2m" } }) });
    // The recorded refresh_at still holds (the change applies from the next key on).
    w.clock.advance(2 * HOUR);
    expect((await next.tick()).planned).toBe(0);
    const R = Date.parse(first.refresh_at);
    let gen2AsMinted: { refresh_at: number | null; expires_at: number | null } | undefined;
    for (let t = R - 5 * MIN; t <= Date.parse(first.expires_at) + MIN; t += 5 * MIN) {
      w.clock.set(t);
      await next.tick();
      // (As promoted: with this 5-minute cron, the tick before gen 2's own refresh_at later extends its promise first.)
      gen2AsMinted ??= (await rows("demo")).find((r) => r.generation === 2);
      await book.checkRevocations(w);
      const res = await next.getKey();
      expect(res.status).toBe(200);
    }
    // Gen 1 was promised 6 h past its refresh_at; it lived that long, then went.
    expect(book.served.get(prefixOf(first.api_key))).toBe(Date.parse(first.expires_at));
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(first.api_key));
    expect(gen2AsMinted!.expires_at! - gen2AsMinted!.refresh_at!).toBe(2 * MIN);
  });

  it("overlap raised between runs: the replaced key keeps the promise it was served with, the new key gets the new overlap", async () => {
    const w = await makeWorld(oneSet({ rotate_every: "24h", overlap: "2m" }));
    await w.tick();
    const first = await servedLive(w);
    const next = reconfigured(w, { MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "3h" } }) });
    w.clock.set(Date.parse(first.refresh_at) - RUN_AHEAD_MS);
    await next.tick();
    const [gen1, gen2] = await rows("demo");
    expect(gen1!.state).toBe("previous");
    expect(gen1!.expires_at, "recorded promise kept: not shortened, not moved").toBe(Date.parse(first.expires_at));
    expect(gen2!.state).toBe("current");
    expect(gen2!.expires_at).toBe(gen2!.refresh_at! + 3 * HOUR);
  });
});
