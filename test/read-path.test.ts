/**
 * The read path's shortcuts (app.ts around the router, documents kept serialized, answers from
 * isolate memory) answer exactly what the router and the promise rule would.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { makeWorld } from "./helpers/world.ts";

describe("read path", () => {
  it("answers GET /v1/keys/{set} the same whichever way the request takes", async () => {
    const w = await makeWorld();
    await w.tick();
    const auth = { authorization: `Bearer ${w.tokens["demo-svc"]}` };
    const first = await w.request("/v1/keys/demo", { headers: auth }); // full path: KV, then memory
    const again = await w.request("/v1/keys/demo", { headers: auth }); // from memory, no promise
    const routed = await w.request("/v1/keys/demo/?via=router", { headers: auth }); // the router
    const bodies = await Promise.all([first, again, routed].map((r) => r.text()));
    expect(new Set(bodies).size).toBe(1);
    for (const r of [first, again, routed]) {
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/json; charset=utf-8");
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
    expect(JSON.parse(bodies[0]!)).toMatchObject({ model_set: "demo", generation: 1 });
  });

  it("keeps every error answer of the router", async () => {
    const w = await makeWorld();
    await w.tick();
    const demo = { authorization: `Bearer ${w.tokens["demo-svc"]}` };
    expect((await w.request("/v1/keys/demo")).status).toBe(401);
    expect((await w.request("/v1/keys/demo", { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await w.request("/v1/keys/other", { headers: demo })).status).toBe(403);
    expect((await w.request("/v1/keys/nosuch", { headers: demo })).status).toBe(404);
    expect((await w.request("/v1/keys/DEMO", { headers: demo })).status).toBe(404);
    // HEAD answers as GET without a body (uptime checkers), errors included.
    const head = await w.request("/v1/keys/demo", { method: "HEAD", headers: demo });
    expect(head.status).toBe(200);
    expect(head.headers.get("cache-control")).toBe("no-store");
    expect(await head.text()).toBe("");
    const headNoAuth = await w.request("/v1/keys/demo", { method: "HEAD" });
    expect(headNoAuth.status).toBe(401);
    expect(headNoAuth.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await headNoAuth.text()).toBe("");
    const post = await w.request("/v1/keys/demo", { method: "POST", headers: demo });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    // A token that matched before is not remembered for a set it is not granted.
    await w.request("/v1/keys/demo", { headers: demo });
    expect((await w.request("/v1/keys/other", { headers: demo })).status).toBe(403);
    // A broken configuration still fails closed on the shortcut.
    const broken = { ...w.env, MODEL_SETS: "{" };
    const { createApp } = await import("../src/app.ts");
    const res = await createApp().fetch(
      new Request("https://rotator.test/v1/keys/demo", { headers: demo }),
      broken,
      {} as ExecutionContext,
    );
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "config_invalid" });
  });

  it("an overdue document served from memory still follows the clock (promise rule)", async () => {
    const w = await makeWorld();
    await w.tick();
    const doc = (await (await w.getKey("demo")).json()) as KeyDocument;
    const refreshAt = Date.parse(doc.refresh_at);

    // The rotation fails (Baseten down): the tick records an extended promise instead. Past
    // refresh_at the document points at the next minute and carries that recorded promise.
    await w.fake.fault({ op: "mint", kind: "500", count: 10 });
    w.clock.set(refreshAt);
    await w.tick();
    w.clock.set(refreshAt + 57_000); // memory expired long ago: read from KV, then remembered for 5 s
    const late1 = (await (await w.getKey("demo")).json()) as KeyDocument;
    w.clock.set(refreshAt + 61_000); // same memory entry, the next minute
    const late2 = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect(Date.parse(late1.refresh_at)).toBe(refreshAt + 60_000);
    expect(Date.parse(late2.refresh_at)).toBe(refreshAt + 120_000);
    expect(Date.parse(late2.expires_at)).toBeGreaterThanOrEqual(refreshAt + 120_000 + 3_600_000);
    expect(late2.api_key).toBe(doc.api_key);
  });

  it("serves from KV without touching D1", async () => {
    const w = await makeWorld();
    await w.tick();
    let d1 = 0;
    const counting = new Proxy(env.DB, {
      get(target, prop, receiver) {
        d1++;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const { createApp } = await import("../src/app.ts");
    const app = createApp({ clock: w.clock.now });
    const countedEnv = { ...w.env, DB: counting };
    for (let i = 0; i < 3; i++) {
      w.clock.advance(10_000); // past the isolate memory each time: KV every time
      const res = await app.fetch(
        new Request("https://rotator.test/v1/keys/demo", { headers: { authorization: `Bearer ${w.tokens["demo-svc"]}` } }),
        countedEnv,
        {} as ExecutionContext,
      );
      expect(res.status).toBe(200);
    }
    expect(d1).toBe(0);
  });
});
