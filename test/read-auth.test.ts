/**
 * The read path's authorization: who gets which key, and the exact refusals (401 with
 * WWW-Authenticate, 403, 404), plus the D1 fallback when the KV entry is missing.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { kvKey } from "../src/cache.ts";
import type { KeyDocument } from "../src/document.ts";
import { MIN, type World, makeWorld } from "./helpers/world.ts";

const SETS = {
  demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
  other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
  // Never minted: a granted set without a key is left out of GET /v1/keys.
  paused: { model_ids: ["zxcv4321"], rotate_every: "24h", overlap: "1h", enabled: false },
};
const CONSUMERS = { "demo-svc": ["demo"], "other-svc": ["other"], "multi-svc": ["demo", "other", "paused"], "paused-svc": ["paused"] };

let w: World;
let demoKey: KeyDocument;
let otherKey: KeyDocument;

const get = (path: string, authorization?: string) => w.request(path, authorization === undefined ? {} : { headers: { authorization } });
const bearer = (consumer: string) => `Bearer ${w.tokens[consumer]}`;

async function expectError(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: string; message: string };
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe("string");
  expect(JSON.stringify(body)).not.toContain(demoKey?.api_key ?? "no key yet");
}

describe("read path authorization", () => {
  beforeAll(async () => {
    w = await makeWorld({ sets: SETS, consumers: CONSUMERS });
    await w.tick();
    w.clock.advance(10_000);
    demoKey = (await (await get("/v1/keys/demo", bearer("demo-svc"))).json()) as KeyDocument;
    otherKey = (await (await get("/v1/keys/other", bearer("other-svc"))).json()) as KeyDocument;
  });

  it("the right token gets its key with Cache-Control: no-store", async () => {
    const res = await get("/v1/keys/demo", bearer("demo-svc"));
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const doc = (await res.json()) as KeyDocument;
    expect(doc).toMatchObject({ model_set: "demo", model_ids: ["abcd1234"], generation: 1 });
    expect(doc.api_key).toMatch(/^[a-z0-9]+\..+/);
    expect(otherKey.api_key).not.toBe(doc.api_key);
  });

  it("no token: 401 with WWW-Authenticate: Bearer", async () => {
    const res = await get("/v1/keys/demo");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer\b/);
    await expectError(res, 401, "unauthorized");
  });

  it.each([
    ["a wrong token", "Bearer tok_thisisnotaconfiguredtoken"],
    ["Basic credentials", `Basic ${btoa("demo-svc:secret")}`],
    ["Bearer with an empty token", "Bearer "],
    ["Bearer and nothing else", "Bearer"],
    ["two tokens", "Bearer a b"],
  ])("%s: 401 with WWW-Authenticate: Bearer", async (_name, authorization) => {
    for (const path of ["/v1/keys/demo", "/v1/keys"]) {
      const res = await get(path, authorization);
      expect(res.headers.get("www-authenticate"), path).toMatch(/^Bearer\b/);
      await expectError(res, 401, "unauthorized");
    }
  });

  it("the scheme is case-insensitive (RFC 9110): 'bearer <token>' works", async () => {
    const res = await get("/v1/keys/demo", `bearer ${w.tokens["demo-svc"]}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as KeyDocument).api_key).toBe(demoKey.api_key);
  });

  it("a token granted another set: 403", async () => {
    await expectError(await get("/v1/keys/demo", bearer("other-svc")), 403, "forbidden");
    await expectError(await get("/v1/keys/other", bearer("demo-svc")), 403, "forbidden");
  });

  it("an unknown set: 404 (after authentication)", async () => {
    await expectError(await get("/v1/keys/nosuchset", bearer("demo-svc")), 404, "unknown_model_set");
    await expectError(await get("/v1/keys/nosuchset"), 401, "unauthorized");
  });

  it("a granted set without a key yet: 503 no_key_yet with Retry-After", async () => {
    const res = await get("/v1/keys/paused", bearer("paused-svc"));
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    await expectError(res, 503, "no_key_yet");
  });

  it("GET /v1/keys returns exactly the granted sets that have a key", async () => {
    const multi = await get("/v1/keys", bearer("multi-svc"));
    expect(multi.status).toBe(200);
    expect(multi.headers.get("cache-control")).toBe("no-store");
    const { keys } = (await multi.json()) as { keys: KeyDocument[] };
    expect(keys.map((k) => [k.model_set, k.api_key]).sort()).toEqual(
      [
        ["demo", demoKey.api_key],
        ["other", otherKey.api_key],
      ].sort(),
    );

    const single = (await (await get("/v1/keys", bearer("demo-svc"))).json()) as { keys: KeyDocument[] };
    expect(single.keys.map((k) => k.model_set)).toEqual(["demo"]);
    const none = await get("/v1/keys", bearer("paused-svc"));
    expect(none.status).toBe(200);
    expect(await none.json()).toEqual({ keys: [] });
  });

  it("other methods on the key routes: 405 with Allow", async () => {
    const res = await w.request("/v1/keys/demo", { method: "POST", headers: { authorization: bearer("demo-svc") } });
    expect(res.headers.get("allow")).toBe("GET, HEAD");
    await expectError(res, 405, "method_not_allowed");
  });

  it("a KV miss falls back to D1 and serves the same key (without writing KV back)", async () => {
    await env.KEYS.delete(kvKey("demo"));
    w.clock.advance(MIN); // past the isolate's memory cache
    const res = await get("/v1/keys/demo", bearer("demo-svc"));
    expect(res.status).toBe(200);
    const doc = (await res.json()) as KeyDocument;
    expect(doc).toEqual(demoKey);
    // Only the rotation engine writes the cache, under the set's lease.
    expect(await env.KEYS.get(kvKey("demo"))).toBeNull();

    // The next cron tick puts the entry back once it has settled (and nothing is rotated).
    w.clock.advance(3 * MIN);
    await w.tick();
    expect(await env.KEYS.get(kvKey("demo"))).not.toBeNull();
    expect((await (await get("/v1/keys/demo", bearer("demo-svc"))).json()) as KeyDocument).toMatchObject({
      generation: 1,
      api_key: demoKey.api_key,
    });
  });
});
