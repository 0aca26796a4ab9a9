/**
 * The admin routes an operator relies on: who gets in (ADMIN_TOKEN only, compared properly),
 * POST /v1/admin/rotate/{set} with the webhook's options, and GET /v1/admin/status telling
 * the state of every set (and the config problems) without a byte of key material.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import type { KeyDocument } from "../src/document.ts";
import type { Env } from "../src/env.ts";
import type { Status } from "../src/status.ts";
import { sendWebhook } from "./helpers/webhooks.ts";
import { HOUR, type World, makeWorld, prefixOf } from "./helpers/world.ts";

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const status = (w: World, headers: Record<string, string> = bearer(w.env.ADMIN_TOKEN!)) => w.request("/v1/admin/status", { headers });
const rotate = (w: World, set: string, body?: unknown, headers: Record<string, string> = bearer(w.env.ADMIN_TOKEN!)) =>
  w.request(`/v1/admin/rotate/${set}`, {
    method: "POST",
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

/** The same storage and clock as `w`, through an env with other vars (a config change). */
async function requestWithVars(w: World, vars: Partial<Record<keyof Env, unknown>>, path: string, init: RequestInit = {}) {
  const app = createApp({ clock: w.clock.now });
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`https://rotator.test${path}`, init), { ...w.env, ...vars } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe("admin authentication", () => {
  const cases: [string, (w: World) => Record<string, string>][] = [
    ["no Authorization header", () => ({})],
    ["wrong token", () => bearer("adm_not-the-right-token-at-all")],
    ["the right token with one character changed", (w) => bearer(`${w.env.ADMIN_TOKEN!.slice(0, -1)}x`)],
    ["a prefix of the right token", (w) => bearer(w.env.ADMIN_TOKEN!.slice(0, 20))],
    ["a consumer token", (w) => bearer(w.tokens["demo-svc"]!)],
    ["Basic scheme", (w) => ({ authorization: `Basic ${btoa(`admin:${w.env.ADMIN_TOKEN}`)}` })],
    ["Bearer without a token", () => ({ authorization: "Bearer" })],
    ["two tokens", (w) => ({ authorization: `Bearer ${w.env.ADMIN_TOKEN} ${w.env.ADMIN_TOKEN}` })],
    ["the token without a scheme", (w) => ({ authorization: w.env.ADMIN_TOKEN! })],
  ];
  for (const [name, headers] of cases) {
    it(`${name}: 401 with a Bearer challenge on both routes, nothing minted`, async () => {
      const w = await makeWorld();
      for (const res of [await status(w, headers(w)), await rotate(w, "demo", undefined, headers(w))]) {
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer realm="/);
        expect(await res.json()).toMatchObject({ error: "unauthorized" });
      }
      expect((await w.fake.calls()).counts.mint ?? 0).toBe(0);
    });
  }

  it("the right token gets in (scheme case-insensitive)", async () => {
    const w = await makeWorld();
    expect((await status(w)).status).toBe(200);
    expect((await status(w, { authorization: `bearer ${w.env.ADMIN_TOKEN}` })).status).toBe(200);
    expect((await rotate(w, "demo")).status).toBe(200);
  });

  it("no ADMIN_TOKEN: both routes answer 503 not_configured", async () => {
    const w = await makeWorld({ vars: { ADMIN_TOKEN: undefined } });
    for (const res of [
      await status(w, bearer("anything-at-all-long-enough")),
      await rotate(w, "demo", undefined, bearer("anything-at-all-long-enough")),
    ]) {
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: "not_configured" });
    }
  });
});

describe("POST /v1/admin/rotate/{set}", () => {
  it("rotates with the webhook's options and answers the same result shape", async () => {
    const w = await makeWorld();
    const r1 = await rotate(w, "demo");
    expect(r1.status).toBe(200);
    expect(await r1.json()).toMatchObject({
      model_set: "demo",
      generation: 1,
      replaced: null,
      revoked: [],
      trigger: "admin",
      reason: null,
    });
    const doc1 = (await (await w.getKey("demo")).json()) as KeyDocument;

    const r2 = await rotate(w, "demo", { reason: "runbook step 3", revoke_previous: true });
    expect(r2.status).toBe(200);
    expect(await r2.json()).toMatchObject({
      generation: 2,
      replaced: { generation: 1 },
      revoked: [1],
      trigger: "admin",
      reason: "runbook step 3",
    });
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(doc1.api_key));
    // model_set in the body is allowed when it names the same set.
    expect((await rotate(w, "demo", { model_set: "demo" })).status).toBe(200);
  });

  it("refuses what it cannot do: unknown set 404, mismatched or unknown body fields 400, non-JSON 415", async () => {
    const w = await makeWorld();
    expect((await rotate(w, "nope")).status).toBe(404);
    expect((await rotate(w, "demo", { model_set: "other" })).status).toBe(400);
    expect((await rotate(w, "demo", { revoke_previous: "yes" })).status).toBe(400);
    expect((await rotate(w, "demo", { force: true })).status).toBe(400);
    const text = await w.request("/v1/admin/rotate/demo", {
      method: "POST",
      headers: { ...bearer(w.env.ADMIN_TOKEN!), "content-type": "text/plain" },
      body: "go",
    });
    expect(text.status).toBe(415);
    expect((await w.fake.calls()).counts.mint ?? 0).toBe(0);
  });

  it("a disabled set is 409 set_disabled with Retry-After", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h", enabled: false } },
      consumers: { "demo-svc": ["demo"] },
    });
    const res = await rotate(w, "demo");
    expect(res.status).toBe(409);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await res.json()).toMatchObject({ error: "set_disabled" });
  });

  it("Baseten failing is 502 upstream_failed", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    await w.fake.fault({ op: "mint", kind: "500" });
    const res = await rotate(w, "demo");
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: "upstream_failed" });
  });
});

describe("GET /v1/admin/status", () => {
  it("shows per set its generation, times, previous keys, last run and prefix; never key material", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    await w.tick(); // gen 1 of demo and other, by the cron
    const doc1 = (await (await w.getKey("demo")).json()) as KeyDocument;
    w.clock.advance(HOUR);
    expect((await sendWebhook(w, { model_set: "demo", reason: "alert 9" })).status).toBe(200);
    const doc2 = (await (await w.getKey("demo")).json()) as KeyDocument;
    await w.fake.fault({ op: "mint", kind: "500" });
    expect((await rotate(w, "other")).status).toBe(502);

    const res = await status(w);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const text = await res.text();
    const s = JSON.parse(text) as Status;
    expect(s.config_problems).toEqual([]);
    expect(s.event_failures).toEqual([]);
    expect(s.sets.map((x) => x.model_set)).toEqual(["demo", "other"]);
    const demo = s.sets[0]!;
    expect(demo).toEqual({
      model_set: "demo",
      configured: true,
      enabled: true,
      model_ids: ["abcd1234"],
      generation: 2,
      prefix: prefixOf(doc2.api_key),
      created_at: doc2.created_at,
      refresh_at: doc2.refresh_at,
      expires_at: doc2.expires_at,
      team_id: "team-test",
      previous: [{ generation: 1, prefix: prefixOf(doc1.api_key), expires_at: expect.any(String) }],
      pending: null,
      last_run: { trigger: "webhook", outcome: "rotated", error: null, at: new Date(w.clock.now()).toISOString() },
      history: [
        {
          generation: 2,
          state: "current",
          created_at: doc2.created_at,
          refresh_at: doc2.refresh_at,
          replaced_at: null,
          expires_at: doc2.expires_at,
          revoked_at: null,
        },
        {
          generation: 1,
          state: "previous",
          created_at: doc1.created_at,
          refresh_at: doc1.refresh_at,
          replaced_at: doc2.created_at,
          expires_at: demo.previous[0]!.expires_at,
          revoked_at: null,
        },
      ],
      failures: [],
    });
    expect(Date.parse(demo.previous[0]!.expires_at!)).toBeGreaterThanOrEqual(Date.parse(doc1.expires_at));
    const other = s.sets[1]!;
    expect(other).toMatchObject({
      generation: 1,
      previous: [],
      last_run: { trigger: "admin", outcome: "failed", error: expect.stringContaining("500") },
    });
    // The failed run is in the set's timeline data and in the audit trail.
    expect(other.failures).toEqual([
      { at: new Date(w.clock.now()).toISOString(), trigger: "admin", error: expect.stringContaining("500") },
    ]);
    // The cron ticked an hour ago and not since: the engine looks stalled (no promise is extended).
    expect(s.engine).toEqual({ last_tick_at: new Date(w.clock.now() - HOUR).toISOString(), stalled: true });
    // DESIGN's two fields, plus the keyring's own (extension): configured ids, unattributed, undecryptable.
    expect(s.encryption).toMatchObject({
      primary: expect.stringMatching(/^[0-9a-f]{8}$/),
      sealed_by: { [s.encryption!.primary]: expect.any(Number) },
    });
    expect(Object.keys(s.encryption!.sealed_by)).toEqual([s.encryption!.primary]);
    expect(s.consumers).toEqual([
      // demo-svc fetched generation 1, then 2 (tracked: the highest, since its first fetch).
      {
        name: "demo-svc",
        kind: "token",
        model_sets: ["demo"],
        seen: [{ model_set: "demo", generation: 2, at: new Date(w.clock.now()).toISOString(), lagging: false }],
      },
      { name: "other-svc", kind: "token", model_sets: ["other"], seen: [] },
    ]);

    for (const doc of [doc1, doc2]) {
      expect(text).not.toContain(doc.api_key);
      expect(text).not.toContain(doc.api_key.slice(doc.api_key.indexOf(".") + 1));
    }
    const cts = await w.env.DB.prepare("SELECT ciphertext FROM keys WHERE ciphertext IS NOT NULL").all<{ ciphertext: string }>();
    for (const { ciphertext } of cts.results) expect(text).not.toContain(ciphertext);
  });

  it("a set removed from MODEL_SETS still shows while its keys live out their promises", async () => {
    const w = await makeWorld();
    await w.tick();
    const onlyDemo = {
      MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
      CONSUMERS: "{}",
    };
    const res = await requestWithVars(w, onlyDemo, "/v1/admin/status", { headers: bearer(w.env.ADMIN_TOKEN!) });
    const s = (await res.json()) as Status;
    expect(s.sets.find((x) => x.model_set === "other")).toMatchObject({
      configured: false,
      enabled: false,
      model_ids: ["qwer0987"],
      generation: 1,
    });
    expect(s.sets.find((x) => x.model_set === "demo")).toMatchObject({ configured: true, enabled: true });
  });

  it("with an invalid config it still answers (ADMIN_TOKEN alone authenticates): D1's sets and the config problems", async () => {
    const w = await makeWorld();
    await w.tick();
    const broken = { BASETEN_TEAM_ID: "", MODEL_SETS: '{"demo": {"model_ids": [], "rotate_every": "1h", "overlap": "1h"}}' };
    const res = await requestWithVars(w, broken, "/v1/admin/status", { headers: bearer(w.env.ADMIN_TOKEN!) });
    expect(res.status).toBe(200);
    const s = (await res.json()) as Status;
    expect(s.config_problems.join("\n")).toMatch(/BASETEN_TEAM_ID/);
    expect(s.config_problems.join("\n")).toMatch(/MODEL_SETS\.demo/);
    expect(s.sets.map((x) => [x.model_set, x.configured, x.generation])).toEqual([
      ["demo", null, 1],
      ["other", null, 1],
    ]);
    // …and still only for the admin: a wrong token is 401, other routes stay closed.
    expect((await requestWithVars(w, broken, "/v1/admin/status", { headers: bearer("wrong-token-wrong-token") })).status).toBe(401);
    expect(
      (await requestWithVars(w, broken, "/v1/admin/rotate/demo", { method: "POST", headers: bearer(w.env.ADMIN_TOKEN!) })).status,
    ).toBe(503);
    // Without a usable ADMIN_TOKEN an invalid config is just that.
    const noToken = await requestWithVars(w, { ...broken, ADMIN_TOKEN: undefined }, "/v1/admin/status", {
      headers: bearer(w.env.ADMIN_TOKEN!),
    });
    expect(noToken.status).toBe(503);
    expect(await noToken.json()).toMatchObject({ error: "config_invalid" });
  });
});
