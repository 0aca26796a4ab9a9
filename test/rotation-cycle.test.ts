/**
 * The full cycle over simulated time, checked against the fake Baseten's live keys:
 * first mint, serving, a second rotation with the previous key live through its overlap,
 * revocation by the first tick after its expires_at.
 */
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { HOUR, MIN, makeWorld, prefixOf } from "./helpers/world.ts";

describe("rotation cycle", () => {
  it("mints, serves, rotates with overlap and revokes at the first tick after expires_at", async () => {
    const w = await makeWorld();
    expect((await w.getKey("demo")).status).toBe(503);

    await w.tick();
    const res1 = await w.getKey("demo");
    expect(res1.status).toBe(200);
    expect(res1.headers.get("cache-control")).toBe("no-store");
    const doc1 = (await res1.json()) as KeyDocument;
    expect(doc1).toMatchObject({ model_set: "demo", model_ids: ["abcd1234"], generation: 1 });
    expect(Date.parse(doc1.refresh_at) - Date.parse(doc1.created_at)).toBe(24 * HOUR);
    expect(Date.parse(doc1.expires_at) - Date.parse(doc1.refresh_at)).toBe(HOUR);
    const live1 = await w.fake.liveKeys();
    expect(live1.map((k) => k.prefix).sort()).toEqual(
      [prefixOf(doc1.api_key), ...live1.filter((k) => k.model_ids?.includes("qwer0987")).map((k) => k.prefix)].sort(),
    );
    expect(live1.find((k) => k.prefix === prefixOf(doc1.api_key))).toMatchObject({ type: "WORKSPACE_INVOKE", model_ids: ["abcd1234"] });
    expect(live1.find((k) => k.prefix === prefixOf(doc1.api_key))!.name).toMatch(/^bkr-demo-1-[a-z0-9]+$/);

    // Nothing is due an hour later: no new key.
    w.clock.advance(HOUR);
    await w.tick();
    expect((await w.fake.keys()).length).toBe(2);

    // At refresh_at the next tick rotates.
    w.clock.set(Date.parse(doc1.refresh_at));
    await w.tick();
    w.clock.advance(10_000); // past the isolate's few seconds of memory
    const doc2 = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect(doc2.generation).toBe(2);
    expect(doc2.api_key).not.toBe(doc1.api_key);
    let live = await w.liveKeyPrefixes();
    expect(live).toContain(prefixOf(doc1.api_key));
    expect(live).toContain(prefixOf(doc2.api_key));

    // Through the overlap the previous key stays live…
    w.clock.set(Date.parse(doc1.expires_at) - MIN);
    await w.tick();
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(doc1.api_key));

    // …and the first tick after the expires_at it was served with revokes it (promises are
    // recorded in D1 before they are served: nothing later can have been promised for it).
    w.clock.set(Date.parse(doc1.expires_at) + 1);
    await w.tick();
    live = await w.liveKeyPrefixes();
    expect(live).not.toContain(prefixOf(doc1.api_key));
    expect(live).toContain(prefixOf(doc2.api_key));
    expect((await (await w.getKey("demo")).json()) as KeyDocument).toMatchObject({ generation: 2, api_key: doc2.api_key });
  });
});
