/**
 * POST /v1/admin/revoke/{set}: an operator revokes older live keys of a set at Baseten now (named
 * generations or all previous), never the current one; the audit trail and events say so; every
 * bad request is a 4xx JSON naming the problem and revokes nothing.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { dumpStorage } from "./helpers/faulty-bindings.ts";
import { admin, adminJson, bearer, expectRefused, postJson } from "./helpers/operators.ts";
import { type World, makeWorld, prefixOf } from "./helpers/world.ts";

const revoke = (w: World, set: string, body: unknown, headers?: Record<string, string>) =>
  postJson(w, `/v1/admin/revoke/${set}`, body, headers);

/** demo at generation 4 with generations 1-3 live as previous keys; the api keys by generation. */
async function fourGenerations(vars: Record<string, string> = {}) {
  const w = await makeWorld({ vars });
  const keys: Record<number, string> = {};
  for (let g = 1; g <= 4; g++) {
    w.clock.advance(60_000);
    expect((await w.request("/v1/admin/rotate/demo", { method: "POST", headers: admin(w) })).status).toBe(200);
    keys[g] = ((await (await w.getKey("demo")).json()) as KeyDocument).api_key;
  }
  return { w, keys };
}

const live = async (w: World) => new Set(await w.liveKeyPrefixes());

describe("POST /v1/admin/revoke/{set}", () => {
  it("revokes the named previous generations at Baseten now; the current key and the others stay", async () => {
    const { w, keys } = await fourGenerations();
    const res = await revoke(w, "demo", { generations: [3, 1], reason: "leaked in CI log" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ model_set: "demo", revoked: [1, 3], reason: "leaked in CI log" });
    const now = await live(w);
    expect(now.has(prefixOf(keys[1]!))).toBe(false);
    expect(now.has(prefixOf(keys[3]!))).toBe(false);
    expect(now.has(prefixOf(keys[2]!))).toBe(true);
    expect(now.has(prefixOf(keys[4]!))).toBe(true);
    // The current key is still served.
    expect(((await (await w.getKey("demo")).json()) as KeyDocument).generation).toBe(4);
    const status = await adminJson<{ sets: { model_set: string; generation: number; previous: { generation: number }[] }[] }>(
      w,
      "/v1/admin/status",
    );
    expect(status.body.sets.find((s) => s.model_set === "demo")).toMatchObject({ generation: 4, previous: [{ generation: 2 }] });
    const audit = await adminJson<{ entries: { action: string; generation: number; reason: string; trigger: string }[] }>(
      w,
      "/v1/admin/audit?model_set=demo&limit=2",
    );
    expect(audit.body.entries).toMatchObject([
      { action: "revoked", generation: 3, reason: "leaked in CI log", trigger: "admin" },
      { action: "revoked", generation: 1, reason: "leaked in CI log", trigger: "admin" },
    ]);
    // Already revoked generations are skipped, not an error.
    const again = await revoke(w, "demo", { generations: [1, 3] });
    expect(await again.json()).toEqual({ model_set: "demo", revoked: [], reason: null });
  });

  it("all_previous revokes every previous key; with none left it revokes nothing", async () => {
    const { w, keys } = await fourGenerations();
    const res = await revoke(w, "demo", { all_previous: true });
    expect(await res.json()).toEqual({ model_set: "demo", revoked: [1, 2, 3], reason: null });
    expect([...(await live(w))].filter((p) => Object.values(keys).map(prefixOf).includes(p))).toEqual([prefixOf(keys[4]!)]);
    expect(await (await revoke(w, "demo", { all_previous: true })).json()).toEqual({ model_set: "demo", revoked: [], reason: null });
  });

  it("never the current generation (409 is_current), never an unknown one (404 unknown_generation): nothing revoked", async () => {
    const { w } = await fourGenerations();
    await expectRefused(w, "current", () => revoke(w, "demo", { generations: [4] }), { status: 409, error: "is_current", message: /4/ });
    await expectRefused(w, "current among others", () => revoke(w, "demo", { generations: [1, 4] }), { status: 409, error: "is_current" });
    await expectRefused(w, "unknown", () => revoke(w, "demo", { generations: [9] }), {
      status: 404,
      error: "unknown_generation",
      message: /9/,
    });
    await expectRefused(w, "unknown among known", () => revoke(w, "demo", { generations: [2, 99] }), {
      status: 404,
      error: "unknown_generation",
      message: /99/,
    });
    await expectRefused(w, "unknown set", () => revoke(w, "nope", { generations: [1] }), { status: 404, error: "unknown_model_set" });
    await expectRefused(w, "odd set id", () => revoke(w, "..%2Fstatus", { generations: [1] }), { status: 404, error: "unknown_model_set" });
    await expectRefused(w, "set with no keys yet", () => revoke(w, "other", { generations: [1] }), {
      status: 404,
      error: "unknown_generation",
    });
  });

  it("refuses bad bodies, content types, sizes and credentials with a 4xx naming the problem", async () => {
    const { w } = await fourGenerations();
    const bodies: [string, string, RegExp][] = [
      ["not JSON", "revoke 1", /JSON object/],
      ["truncated", '{"generations": [1', /JSON object/],
      ["array", "[1]", /JSON object/],
      ["null", "null", /JSON object/],
      ["empty object", "{}", /exactly one of/],
      ["both", '{"generations":[1],"all_previous":true}', /exactly one of/],
      ["unknown field", '{"generations":[1],"force":true}', /unknown field.*"force"/],
      ["generation typo", '{"generation":[1]}', /unknown field.*"generation"/],
      ["empty list", '{"generations":[]}', /non-empty list/],
      ["not a list", '{"generations":1}', /non-empty list/],
      ["string generation", '{"generations":["1"]}', /whole numbers/],
      ["zero", '{"generations":[0]}', /whole numbers/],
      ["fraction", '{"generations":[1.5]}', /whole numbers/],
      ["huge", '{"generations":[1e30]}', /whole numbers/],
      ["too many", JSON.stringify({ generations: Array.from({ length: 101 }, (_, i) => i + 1) }), /at most 100/],
      ["all_previous false", '{"all_previous":false}', /all_previous must be true/],
      ["all_previous string", '{"all_previous":"yes"}', /all_previous must be true/],
      ["reason not a string", '{"all_previous":true,"reason":5}', /reason/],
      ["reason too long", JSON.stringify({ all_previous: true, reason: "r".repeat(501) }), /reason.*500/],
      ["64 KiB of JSON junk", `{"generations":[1],"reason":"${"x".repeat(64 * 1024 - 40)}"}`, /reason/],
    ];
    for (const [name, body, message] of bodies)
      await expectRefused(w, name, () => revoke(w, "demo", body), { status: 400, error: "invalid_body", message });
    await expectRefused(w, "over 64 KiB", () => revoke(w, "demo", `{"all_previous":true,"reason":"${"x".repeat(64 * 1024)}"}`), {
      status: 413,
      error: "payload_too_large",
      message: /65536 bytes/,
    });
    await expectRefused(
      w,
      "text/plain",
      () =>
        w.request("/v1/admin/revoke/demo", {
          method: "POST",
          headers: { ...admin(w), "content-type": "text/plain" },
          body: '{"all_previous":true}',
        }),
      {
        status: 415,
        error: "unsupported_media_type",
      },
    );
    await expectRefused(w, "no token", () => revoke(w, "demo", { all_previous: true }, {}), {
      status: 401,
      error: "unauthorized",
      challenge: true,
    });
    await expectRefused(w, "consumer token", () => revoke(w, "demo", { all_previous: true }, bearer(w.tokens["demo-svc"]!)), {
      status: 401,
      challenge: true,
    });
    await expectRefused(w, "GET", () => w.request("/v1/admin/revoke/demo", { headers: admin(w) }), {
      status: 405,
      error: "method_not_allowed",
      allow: "POST",
    });
  });

  it("Baseten refusing the delete is 502 upstream_failed; the key stays live and listed as previous", async () => {
    const { w, keys } = await fourGenerations({ BASETEN_MAX_ATTEMPTS: "1" });
    await w.fake.fault({ op: "revoke", kind: "500" });
    const before = await dumpStorage(env.DB, env.KEYS);
    const res = await revoke(w, "demo", { generations: [2] });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: "upstream_failed", model_set: "demo", revoked: [], revoke_pending: [2] });
    expect((await live(w)).has(prefixOf(keys[2]!))).toBe(true);
    // Engine v2 records the explicit revocation before asking Baseten (so the next tick finishes
    // it): the key is still previous, now with its revoke_at; nothing else in D1 changed state.
    const states = (d: string) =>
      (JSON.parse(d) as { keys: { generation: number; state: string }[] }).keys.map((k) => [k.generation, k.state]);
    expect(states(await dumpStorage(env.DB, env.KEYS))).toEqual(states(before));
    const row = await env.DB.prepare("SELECT state, revoke_at FROM keys WHERE model_set = 'demo' AND generation = 2").first<{
      state: string;
      revoke_at: number | null;
    }>();
    expect(row).toEqual({ state: "previous", revoke_at: expect.any(Number) });
    // Retried once Baseten answers: done.
    expect(await (await revoke(w, "demo", { generations: [2] })).json()).toMatchObject({ revoked: [2] });
  });
});
