/**
 * KeyService over real service bindings (DESIGN §5): a consumer Worker running next to the
 * rotator in the pool (vitest.config.ts, "edge-consumer") binds `KeyService` with
 * `props = { consumer = "edge-svc" }` and calls it. Also: no props, a consumer that is not
 * `binding: true`, an unknown one, and bad arguments: each an Error whose message starts with
 * the code, never an uncaught exception.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { type World, makeWorld } from "./helpers/world.ts";

type Answer = { ok: true; result: unknown } | { ok: false; name: string; message: string };

/** Calls env[binding][method](...args) inside the consumer Worker. */
async function call(binding: string, method: string, ...args: unknown[]): Promise<Answer> {
  const res = await env.EDGE_CONSUMER.fetch(`https://edge/${binding}/${method}?args=${encodeURIComponent(JSON.stringify(args))}`);
  expect(res.status).toBe(200);
  return res.json() as Promise<Answer>;
}

async function failure(binding: string, method: string, ...args: unknown[]): Promise<string> {
  const a = await call(binding, method, ...args);
  expect(a.ok, JSON.stringify(a)).toBe(false);
  return (a as { message: string }).message;
}

let w: World;

describe("KeyService over a service binding with props", () => {
  beforeAll(async () => {
    // The pool's env is what KeyService reads: the world stores keys sealed under its key.
    w = await makeWorld({
      consumers: {},
      vars: { ENCRYPTION_KEY: env.ENCRYPTION_KEY, MODEL_SETS: env.MODEL_SETS, CONSUMERS: env.CONSUMERS },
    });
    await w.tick();
  });

  it("getKey(set) returns the key document, the same one the HTTP route serves", async () => {
    const a = await call("KEY_ROTATOR", "getKey", "demo");
    expect(a.ok, JSON.stringify(a)).toBe(true);
    const doc = (a as { result: KeyDocument }).result;
    expect(doc).toMatchObject({ model_set: "demo", model_ids: ["abcd1234"], generation: 1 });
    const live = await w.fake.liveKeys();
    expect(live.map((k) => k.prefix)).toContain(doc.api_key.slice(0, doc.api_key.indexOf(".")));
    expect(Object.keys(doc).sort()).toEqual(["api_key", "created_at", "expires_at", "generation", "model_ids", "model_set", "refresh_at"]);
  });

  it("getKey(set, {fresh: true}) answers D1's current key even when memory and KV hold an older one", async () => {
    expect((await call("KEY_ROTATOR", "getKey", "demo")).ok).toBe(true); // memory and KV warm: generation 1
    const rotated = await w.request("/v1/admin/rotate/demo", {
      method: "POST",
      headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ revoke_previous: true, reason: "rpc test" }),
    });
    expect(rotated.status).toBe(200);
    const fresh = (await call("KEY_ROTATOR", "getKey", "demo", { fresh: true })) as { ok: true; result: KeyDocument };
    expect(fresh.ok).toBe(true);
    expect(fresh.result.generation).toBe(2);
  });

  it("a binding consumer is tracked like any other (the write goes through the RPC call's waitUntil)", async () => {
    expect((await call("KEY_ROTATOR", "getKey", "demo")).ok).toBe(true);
    let row: { consumer: string; generation: number } | null = null;
    for (let i = 0; i < 50 && !row; i++) {
      row = await env.DB.prepare("SELECT consumer, generation FROM consumer_seen WHERE consumer = 'edge-svc'").first();
      if (!row) await new Promise((r) => setTimeout(r, 20));
    }
    expect(row).toMatchObject({ consumer: "edge-svc" });
  });

  it("listKeys() returns every granted set that has a key", async () => {
    const a = (await call("KEY_ROTATOR", "listKeys")) as { ok: true; result: { keys: KeyDocument[] } };
    expect(a.ok).toBe(true);
    expect(a.result.keys.map((k) => k.model_set)).toEqual(["demo"]);
  });

  it("a set the consumer is not granted: forbidden; an unknown one: unknown_model_set", async () => {
    expect(await failure("KEY_ROTATOR", "getKey", "other")).toMatch(/^forbidden: /);
    expect(await failure("KEY_ROTATOR", "getKey", "nope")).toMatch(/^unknown_model_set: /);
    expect(await failure("KEY_ROTATOR", "getKey", "../etc")).toMatch(/^unknown_model_set: /);
  });

  it.each([
    ["no props", "NO_PROPS"],
    ["props naming a token consumer (not binding: true)", "NOT_A_BINDING"],
    ["props naming nobody", "UNKNOWN"],
  ])("%s: unauthorized, on both methods", async (_name, binding) => {
    expect(await failure(binding, "getKey", "demo")).toMatch(/^unauthorized: /);
    expect(await failure(binding, "listKeys")).toMatch(/^unauthorized: /);
  });

  it.each([
    ["a non-string set", [42]],
    ["no set at all", []],
    ["an object as set", [{ set: "demo" }]],
    ["options that are not an object", ["demo", "fresh"]],
    ["an unknown option", ["demo", { stale: true }]],
    ["a non-boolean fresh", ["demo", { fresh: "yes" }]],
    ["an extra argument", ["demo", {}, "extra"]],
  ])("getKey with %s: bad_request", async (_name, args) => {
    expect(await failure("KEY_ROTATOR", "getKey", ...(args as unknown[]))).toMatch(/^bad_request: /);
  });

  it("listKeys with an argument: bad_request", async () => {
    expect(await failure("KEY_ROTATOR", "listKeys", "demo")).toMatch(/^bad_request: /);
  });

  it("a method KeyService does not have is an error, not a crash", async () => {
    const a = await call("KEY_ROTATOR", "deleteEverything");
    expect(a.ok).toBe(false);
  });
});
