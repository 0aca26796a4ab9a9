/**
 * Managed consumers (DESIGN §3, §3.1; issue #12 item 4): created, listed and deleted through
 * /v1/admin/consumers without a redeploy. The token is returned once and only its SHA-256 is
 * stored; names never collide with configured consumers; a deleted consumer's token stops
 * working at every location within 60 s; an unknown token costs at most one D1 read per
 * location per 30 s; each change leaves audit rows naming the consumer. Plus the static-token
 * lookup itself: a Map, so 10,000 consumers authenticate like 1.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import type { KeyDocument } from "../src/document.ts";
import type { Env } from "../src/env.ts";
import { managedReads } from "../src/identity/managed.ts";
import { type World, makeWorld, sha256Hex } from "./helpers/world.ts";

let w: World;
const admin = () => ({ authorization: `Bearer ${w.env.ADMIN_TOKEN}`, "content-type": "application/json" });
const create = (body: unknown, headers: Record<string, string> = admin()) =>
  w.request("/v1/admin/consumers", { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
const remove = (name: string) => w.request(`/v1/admin/consumers/${name}`, { method: "DELETE", headers: admin() });

/** Another location: its own env object, so its own config, snapshot and memory. */
function elsewhere() {
  const locEnv = { ...w.env } as Env;
  const app = createApp({ clock: w.clock.now });
  return {
    env: locEnv,
    async get(path: string, token: string) {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request(`https://rotator.test${path}`, { headers: { authorization: `Bearer ${token}` } }),
        locEnv,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    },
  };
}

describe("managed consumers", () => {
  beforeEach(async () => {
    w = await makeWorld();
    await w.tick();
  });

  it("create: 201 with the token once (no-store), only its SHA-256 stored; the token gets its key; list shows it without a secret", async () => {
    const res = await create({ name: "batch-jobs", model_sets: ["demo", "other"], reason: "new team" });
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as { name: string; model_sets: string[]; token: string };
    expect(body).toMatchObject({ name: "batch-jobs", model_sets: ["demo", "other"] });
    expect(body.token).toMatch(/^bkr_[A-Za-z0-9_-]{40,}$/);
    const row = await env.DB.prepare("SELECT * FROM managed_consumers").first<Record<string, unknown>>();
    expect(row).toMatchObject({ name: "batch-jobs", token_sha256: await sha256Hex(body.token) });
    expect(JSON.stringify(row)).not.toContain(body.token);

    const key = await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${body.token}` } });
    expect(key.status).toBe(200);
    expect(((await key.json()) as KeyDocument).model_set).toBe("demo");
    expect((await w.request("/v1/keys", { headers: { authorization: `Bearer ${body.token}` } })).status).toBe(200);

    const list = await w.request("/v1/admin/consumers", { headers: admin() });
    expect(list.status).toBe(200);
    const listed = (await list.json()) as { consumers: { name: string; kind: string; model_sets: string[] }[] };
    expect(listed.consumers).toEqual([
      { name: "batch-jobs", kind: "managed", model_sets: ["demo", "other"] },
      { name: "demo-svc", kind: "token", model_sets: ["demo"] },
      { name: "other-svc", kind: "token", model_sets: ["other"] },
    ]);
    expect(JSON.stringify(listed)).not.toMatch(/[0-9a-f]{64}|bkr_/);

    const audit = await env.DB.prepare(
      "SELECT model_set, action, trigger, reason, consumer FROM audit WHERE consumer IS NOT NULL ORDER BY model_set",
    ).all();
    expect(audit.results).toEqual([
      { model_set: "demo", action: "consumer_created", trigger: "admin", reason: "new team", consumer: "batch-jobs" },
      { model_set: "other", action: "consumer_created", trigger: "admin", reason: "new team", consumer: "batch-jobs" },
    ]);
  });

  it("names never collide: a configured name or an existing managed one is 409, nothing written", async () => {
    const taken = await create({ name: "demo-svc", model_sets: ["demo"] });
    expect(taken.status).toBe(409);
    expect(((await taken.json()) as { error: string }).error).toBe("consumer_exists");
    expect((await create({ name: "twice", model_sets: ["demo"] })).status).toBe(201);
    expect((await create({ name: "twice", model_sets: ["other"] })).status).toBe(409);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM managed_consumers").first<{ n: number }>())!.n).toBe(1);
    const del = await remove("demo-svc");
    expect(del.status).toBe(409);
    expect(((await del.json()) as { error: string }).error).toBe("configured_consumer");
  });

  it.each([
    ["malformed JSON", "{nope", 400, "invalid_body"],
    ["not an object", "[1]", 400, "invalid_body"],
    ["an unknown field", { name: "x", model_sets: ["demo"], token: "mine" }, 400, "invalid_body"],
    ["a bad name (upper case)", { name: "Batch", model_sets: ["demo"] }, 400, "invalid_name"],
    ["a bad name (leading dash)", { name: "-x", model_sets: ["demo"] }, 400, "invalid_name"],
    ["a bad name (65 characters)", { name: "a".repeat(65), model_sets: ["demo"] }, 400, "invalid_name"],
    ["<script> as name", { name: "<script>", model_sets: ["demo"] }, 400, "invalid_name"],
    ["an unknown set", { name: "x", model_sets: ["nope"] }, 400, "unknown_model_set"],
    ["no sets", { name: "x", model_sets: [] }, 400, "invalid_body"],
    ["sets not strings", { name: "x", model_sets: [1] }, 400, "invalid_body"],
    ["a 64 KiB body", { name: "x", model_sets: ["demo"], reason: "r".repeat(65536) }, 413, "payload_too_large"],
  ])("create with %s: %i %s, nothing written", async (_name, body, status, code) => {
    const res = await create(body);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: string }).error).toBe(code);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM managed_consumers").first<{ n: number }>())!.n).toBe(0);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM audit WHERE consumer IS NOT NULL").first<{ n: number }>())!.n).toBe(0);
  });

  it("admin token required (401 + WWW-Authenticate); wrong methods 405 + Allow; unknown name 404", async () => {
    for (const headers of [{}, { authorization: `Bearer ${w.tokens["demo-svc"]}` }] as Record<string, string>[]) {
      for (const res of [
        await w.request("/v1/admin/consumers", {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body: JSON.stringify({ name: "x", model_sets: ["demo"] }),
        }),
        await w.request("/v1/admin/consumers", { headers }),
        await w.request("/v1/admin/consumers/x", { method: "DELETE", headers }),
      ]) {
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      }
    }
    const put = await w.request("/v1/admin/consumers", { method: "PUT", headers: admin() });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, HEAD, POST"); // HEAD answers on every GET route (DESIGN §3)
    const get = await w.request("/v1/admin/consumers/x", { headers: admin() });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("DELETE");
    expect((await remove("nobody")).status).toBe(404);
  });

  it("delete: 200; the token stops at once here and within 60 s at another location; audit names the consumer", async () => {
    const { token } = (await (await create({ name: "gone-soon", model_sets: ["demo"] })).json()) as { token: string };
    const far = elsewhere();
    expect((await far.get("/v1/keys/demo", token)).status).toBe(200);
    expect((await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

    const del = await remove("gone-soon");
    expect(del.status).toBe(200);
    expect(await del.json()).toEqual({ name: "gone-soon", deleted: true });
    expect((await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);

    // The other location stops within 60 s of the deletion, whatever its traffic.
    let stoppedAfter = -1;
    for (let s = 0; s <= 61; s += 1) {
      const res = await far.get("/v1/keys/demo", token);
      if (res.status === 401) {
        stoppedAfter = s;
        break;
      }
      w.clock.advance(1_000);
    }
    expect(stoppedAfter).toBeGreaterThanOrEqual(0);
    expect(stoppedAfter).toBeLessThanOrEqual(60);
    // With traffic, the background refresh at 30 s ends it (the 60 s bound is for a location that was idle).
    expect(stoppedAfter).toBeLessThanOrEqual(32);
    expect((await remove("gone-soon")).status).toBe(404);
    const audit = await env.DB.prepare("SELECT action, consumer FROM audit WHERE consumer IS NOT NULL ORDER BY id").all();
    expect(audit.results).toEqual([
      { action: "consumer_created", consumer: "gone-soon" },
      { action: "consumer_deleted", consumer: "gone-soon" },
    ]);
  });

  it("unknown tokens cost at most one D1 read per location per 30 s, however many arrive", async () => {
    const far = elsewhere();
    for (let i = 0; i < 100; i++) {
      expect((await far.get("/v1/keys/demo", `tok_unknown_${i}_${crypto.randomUUID()}`)).status).toBe(401);
      w.clock.advance(250); // 25 s in all
    }
    const config = loadConfig(far.env);
    if (!config.ok) throw new Error("config");
    expect(managedReads(config.config)).toBe(1);
    w.clock.advance(10_000);
    for (let i = 0; i < 20; i++) await far.get("/v1/keys/demo", `tok_unknown_b${i}`);
    expect(managedReads(config.config)).toBe(2);
  });

  it("a managed consumer is tracked and shown in status like any other", async () => {
    const { token } = (await (await create({ name: "tracked", model_sets: ["demo"] })).json()) as { token: string };
    expect((await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const { consumerStatus } = await import("../src/identity/tracking.ts");
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    const status = await consumerStatus(w.env, config.config, w.clock.now());
    expect(status.find((c) => c.name === "tracked")).toMatchObject({
      kind: "managed",
      model_sets: ["demo"],
      seen: [{ model_set: "demo", generation: 1, lagging: false }],
    });
  });
});

describe("static tokens: looked up by hash, not scanned", () => {
  it("with 10,000 consumers the last one and an unknown token are answered like with one", async () => {
    const tokens: string[] = [];
    const consumers: Record<string, unknown> = {};
    for (let i = 0; i < 10_000; i++) {
      const t = `tok_${i}_${crypto.randomUUID()}`;
      tokens.push(t);
      consumers[`svc-${i}`] = { token_sha256: await sha256Hex(t), model_sets: ["demo"] };
    }
    w = await makeWorld({ consumers: {}, vars: { CONSUMERS: JSON.stringify(consumers) } });
    await w.tick();
    expect((await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${tokens[9_999]}` } })).status).toBe(200);
    expect((await w.request("/v1/keys/demo", { headers: { authorization: `Bearer ${tokens[0]}` } })).status).toBe(200);
    expect((await w.request("/v1/keys/demo", { headers: { authorization: "Bearer tok_not_one_of_them" } })).status).toBe(401);
  });
});
