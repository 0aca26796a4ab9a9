/**
 * The consumer library against the real worker in workerd.
 *
 * It drives the worker's own HTTP app, D1, KV and rotation engine through
 * test/helpers/world.ts (fake Baseten behind it), with one clock shared by the worker and the
 * client, so time moves without sleeping.
 */
import { describe, expect, it } from "vitest";
import { createKeyClient, type FetchFunction, KeyClientError, type KeyDocument } from "../src/client/index.ts";
import { runSet } from "../src/rotation.ts";
import { HOUR, makeWorld, prefixOf, type World } from "./helpers/world.ts";

const SECOND = 1_000;

/** The client's transport into the world's app; counts requests. */
function transport(w: World) {
  const calls: string[] = [];
  const fetch: FetchFunction = async (input, init) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    calls.push(url.pathname);
    return w.request(url.pathname + url.search, { method: req.method, headers: req.headers });
  };
  return { calls, fetch };
}

function clientFor(w: World, opts: { token?: string; set?: string; basetenFetch?: FetchFunction } = {}) {
  const t = transport(w);
  const client = createKeyClient({
    url: "https://rotator.test",
    token: opts.token ?? w.tokens["demo-svc"]!,
    modelSet: opts.set ?? "demo",
    fetch: t.fetch,
    ...(opts.basetenFetch ? { basetenFetch: opts.basetenFetch } : {}),
    clock: w.clock.now,
    random: () => 0,
  });
  return { client, calls: t.calls };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KeyClientError);
    return (err as KeyClientError).code;
  }
  return "resolved";
}

describe("client against the worker (through the app)", () => {
  it("no key yet, then the first key, reused until refresh_at, then the rotated key without a restart", async () => {
    const w = await makeWorld();
    const { client, calls } = clientFor(w);

    const err = await client.getKey().catch((e: unknown) => e as KeyClientError);
    expect(err).toBeInstanceOf(KeyClientError);
    expect((err as KeyClientError).code).toBe("no_key_yet");
    expect((err as KeyClientError).retryAfter).toBeGreaterThan(0);

    await w.tick();
    w.clock.advance(SECOND); // past the 1 s retry spacing after the failure
    const doc1 = await client.getKey();
    expect(doc1).toMatchObject({ model_set: "demo", generation: 1 });
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(doc1.api_key));

    // Cached until refresh_at: no more requests.
    const before = calls.length;
    w.clock.advance(HOUR);
    expect(await client.getKey()).toBe(doc1);
    w.clock.set(Date.parse(doc1.refresh_at) - 1);
    expect(await client.getKey()).toBe(doc1);
    expect(calls.length).toBe(before);

    // The cron rotates at refresh_at; the client follows the documents it is served. A stale
    // edge/memory cache may still hand out gen 1 as an "overdue" document: its refresh_at then
    // points at the next tick, and the client comes back then.
    w.clock.set(Date.parse(doc1.refresh_at));
    await w.tick();
    let doc: KeyDocument = await client.getKey();
    for (let i = 0; i < 3 && doc.generation === 1; i++) {
      expect(w.clock.now()).toBeLessThan(Date.parse(doc.expires_at)); // never holding a dead promise
      w.clock.set(Math.max(Date.parse(doc.refresh_at), w.clock.now() + SECOND));
      doc = await client.getKey();
    }
    expect(doc.generation).toBe(2);
    expect(doc.api_key).not.toBe(doc1.api_key);
    const live = await w.liveKeyPrefixes();
    expect(live).toContain(prefixOf(doc.api_key));
    expect(live).toContain(prefixOf(doc1.api_key)); // the old key is still in its overlap
  });

  it("wrong token -> unauthorized, set not granted -> unauthorized, unknown set -> unknown_set", async () => {
    const w = await makeWorld();
    await w.tick();
    expect(await codeOf(clientFor(w, { token: "tok_wrong" }).client.getKey())).toBe("unauthorized");
    expect(await codeOf(clientFor(w, { set: "other" }).client.getKey())).toBe("unauthorized");
    expect(await codeOf(clientFor(w, { set: "nope" }).client.getKey())).toBe("unknown_set");
  });

  it("leak response: after revoke_previous, fetchWithKey gets a 401, refetches and retries with the new key", async () => {
    const w = await makeWorld();
    await w.tick();
    // A stand-in for Baseten inference that accepts exactly the keys live at the fake.
    const inference: string[] = [];
    const basetenFetch: FetchFunction = async (input, init) => {
      const auth = new Request(input, init).headers.get("authorization") ?? "";
      const key = auth.replace(/^Api-Key /, "");
      inference.push(key);
      const live = await w.liveKeyPrefixes();
      return live.includes(prefixOf(key)) ? Response.json({ ok: true }) : new Response("unauthorized", { status: 401 });
    };
    const { client, calls } = clientFor(w, { basetenFetch });
    const doc1 = await client.getKey();
    expect((await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" })).status).toBe(200);

    w.clock.advance(10 * SECOND);
    const result = await runSet(w.engine(), "demo", { trigger: "webhook", mint: "now", revokePrevious: true, reason: "leak" });
    expect(result.outcome).toBe("rotated");
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(doc1.api_key));

    w.clock.advance(10 * SECOND); // past the worker's few seconds of memory cache
    const before = calls.length;
    const res = await client.fetchWithKey("https://model.test/predict", { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    expect(calls.length).toBe(before + 1);
    const doc2 = await client.getKey();
    expect(doc2.generation).toBe(2);
    expect(inference.slice(-2)).toEqual([doc1.api_key, doc2.api_key]);
  });

  it("100 concurrent getKey() calls reach the worker once", async () => {
    const w = await makeWorld();
    await w.tick();
    const { client, calls } = clientFor(w);
    const docs = await Promise.all(Array.from({ length: 100 }, () => client.getKey()));
    expect(calls).toHaveLength(1);
    expect(new Set(docs.map((d) => d.api_key)).size).toBe(1);
  });
});
