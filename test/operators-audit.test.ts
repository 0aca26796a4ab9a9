/**
 * GET /v1/admin/audit as an outside client pages through it: newest first, the DESIGN §3 entry
 * shape, `limit` 1..500, an opaque `next_cursor` until the last page, a model_set filter; and
 * every bad limit, query or cursor (forged, another query's, stale, another deployment's) is a
 * 400 naming the problem, never a 500 and never a page.
 */
import { describe, expect, it } from "vitest";
import type { AuditEntry } from "../src/routes/audit.ts";
import { METRICS_TOKEN, admin, adminJson, bearer, expectRefused } from "./helpers/operators.ts";
import { HOUR, type World, makeWorld, randomB64 } from "./helpers/world.ts";

interface Page {
  entries: AuditEntry[];
  next_cursor: string | null;
}

const audit = (w: World, query = "") => adminJson<Page>(w, `/v1/admin/audit${query}`);
const rotate = (w: World, set: string, reason?: string) =>
  w.request(`/v1/admin/rotate/${set}`, {
    method: "POST",
    headers: { ...admin(w), "content-type": "application/json" },
    body: JSON.stringify({ reason }),
  });

/** demo: 5 mints and one revoke_previous (which revokes generations 1-4); other: 1 mint and a failed run. */
async function busyWorld() {
  const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "1", METRICS_TOKEN } });
  await w.tick();
  for (let i = 0; i < 3; i++) {
    w.clock.advance(60_000);
    expect((await rotate(w, "demo", `drill ${i}`)).status).toBe(200);
  }
  w.clock.advance(60_000);
  const leak = await w.request("/v1/admin/rotate/demo", {
    method: "POST",
    headers: { ...admin(w), "content-type": "application/json" },
    body: '{"reason":"leak","revoke_previous":true}',
  });
  expect(leak.status).toBe(200);
  await w.fake.fault({ op: "mint", kind: "500" });
  w.clock.advance(60_000);
  expect((await rotate(w, "other")).status).toBe(502);
  return w;
}

describe("GET /v1/admin/audit", () => {
  it("pages newest first through every entry, with the DESIGN shape, and ends with next_cursor null", async () => {
    const w = await busyWorld();
    const all = await audit(w, "?limit=500");
    expect(all.status).toBe(200);
    expect(all.res.headers.get("cache-control")).toBe("no-store");
    expect(all.body.next_cursor).toBeNull();
    const entries = all.body.entries;
    const rows = entries.map((e) => [e.model_set, e.action, e.generation, e.trigger]);
    expect(rows.slice(0, -2)).toEqual([
      ["other", "failed", null, "admin"],
      ["other", "abandoned", 2, "admin"],
      // revoke_previous revokes every key of the set other than the new one (DESIGN §3).
      ["demo", "revoked", 4, "admin"],
      ["demo", "revoked", 3, "admin"],
      ["demo", "revoked", 2, "admin"],
      ["demo", "revoked", 1, "admin"],
      ["demo", "minted", 5, "admin"],
      ["demo", "minted", 4, "admin"],
      ["demo", "minted", 3, "admin"],
      ["demo", "minted", 2, "admin"],
    ]);
    // The first tick minted both sets at once (either order).
    expect(rows.slice(-2).sort()).toEqual([
      ["demo", "minted", 1, "cron"],
      ["other", "minted", 1, "cron"],
    ]);
    for (const e of entries) {
      expect(Object.keys(e).sort()).toEqual(["action", "at", "consumer", "generation", "id", "model_set", "reason", "trigger"]);
      expect(e.consumer).toBeNull();
      expect(new Date(e.at).toISOString()).toBe(e.at);
    }
    expect(entries.find((e) => e.action === "failed")!.reason).toMatch(/500/);
    expect(entries.find((e) => e.action === "minted" && e.generation === 3)!.reason).toBe("drill 1");
    // Newest first: ids strictly decreasing.
    expect(entries.map((e) => e.id)).toEqual([...entries.map((e) => e.id)].sort((a, b) => b - a));

    // The same entries, two at a time, through the cursor.
    const paged: AuditEntry[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { status: number; body: Page } = await audit(w, `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      expect(page.status).toBe(200);
      expect(page.body.entries.length).toBeLessThanOrEqual(2);
      paged.push(...page.body.entries);
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    expect(paged).toEqual(entries);
    expect(pages).toBe(Math.ceil(entries.length / 2));
  });

  it("filters by model_set (also when paging); a set with no entries is an empty list; default limit 100", async () => {
    const w = await busyWorld();
    const demo = await audit(w, "?model_set=demo&limit=3");
    expect(demo.body.entries.map((e) => e.model_set)).toEqual(["demo", "demo", "demo"]);
    // demo has 9 entries: 5 mints and 4 revocations (revoke_previous revokes generations 1-4).
    const rest = await audit(w, `?model_set=demo&limit=6&cursor=${demo.body.next_cursor}`);
    expect(rest.body.entries.map((e) => e.model_set)).toEqual(Array(6).fill("demo"));
    expect(rest.body.next_cursor).toBeNull();
    expect((await audit(w, "?model_set=nothing-here")).body).toEqual({ entries: [], next_cursor: null });
    for (let i = 0; i < 110; i++)
      await w.env.DB.prepare(
        "INSERT INTO audit (model_set, generation, action, trigger, reason, at) VALUES ('bulk', ?1, 'minted', 'cron', NULL, ?2)",
      )
        .bind(i + 1, w.clock.now())
        .run();
    const first = await audit(w);
    expect(first.body.entries.length).toBe(100);
    expect(first.body.next_cursor).toEqual(expect.any(String));
  });

  it("refuses bad limits, queries and cursors with 400 naming the problem", async () => {
    const w = await busyWorld();
    const page = await audit(w, "?limit=2");
    const cursor = page.body.next_cursor!;
    const [payload, mac] = cursor.split(".") as [string, string];
    const decoded = JSON.parse(atob(payload.replaceAll("-", "+").replaceAll("_", "/"))) as { id: number };
    const forgedPayload = btoa(JSON.stringify({ ...decoded, id: decoded.id + 1 }))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
    const flipped = `${payload}.${mac.startsWith("A") ? `B${mac.slice(1)}` : `A${mac.slice(1)}`}`;
    const cases: [string, string, RegExp][] = [
      ["limit=0", "invalid_limit", /limit/],
      ["limit=501", "invalid_limit", /limit.*500/],
      ["limit=abc", "invalid_limit", /limit/],
      ["limit=-1", "invalid_limit", /limit/],
      ["limit=1.5", "invalid_limit", /limit/],
      ["limit=", "invalid_limit", /limit/],
      ["limit=99999999999", "invalid_limit", /limit/],
      ["limit=1&limit=2", "invalid_query", /limit.*more than once/],
      ["model_set=DEMO", "invalid_query", /model_set/],
      [`model_set=${"a".repeat(40)}`, "invalid_query", /model_set/],
      ["set=demo", "invalid_query", /unknown query parameter "set"/],
      ["cursor=", "invalid_cursor", /cursor/],
      ["cursor=abc", "invalid_cursor", /cursor/],
      ["cursor=%00%01", "invalid_cursor", /cursor/],
      [`cursor=${"x".repeat(2000)}`, "invalid_cursor", /cursor/],
      [`cursor=${forgedPayload}.${mac}`, "invalid_cursor", /signature/],
      [`cursor=${flipped}`, "invalid_cursor", /signature/],
      [`cursor=${payload}`, "invalid_cursor", /malformed/],
      [`cursor=${cursor}.x`, "invalid_cursor", /malformed/],
      [`cursor=${cursor}&model_set=demo`, "invalid_cursor", /another query/],
    ];
    for (const [query, error, message] of cases) {
      await expectRefused(w, query, () => w.request(`/v1/admin/audit?${query}`, { headers: admin(w) }), { status: 400, error, message });
    }
    // Stale: a cursor older than a day.
    w.clock.advance(25 * HOUR);
    await expectRefused(w, "stale cursor", () => w.request(`/v1/admin/audit?limit=2&cursor=${cursor}`, { headers: admin(w) }), {
      status: 400,
      error: "invalid_cursor",
      message: /stale/,
    });
  });

  it("a cursor from another deployment (another ENCRYPTION_KEY) is refused; no or wrong token is 401", async () => {
    const w = await busyWorld();
    const cursor = (await audit(w, "?limit=2")).body.next_cursor!;
    const other = await makeWorld({ vars: { ENCRYPTION_KEY: randomB64(32) } });
    await expectRefused(
      other,
      "foreign cursor",
      () => other.request(`/v1/admin/audit?limit=2&cursor=${cursor}`, { headers: admin(other) }),
      { status: 400, error: "invalid_cursor", message: /signature/ },
    );
    for (const [name, headers] of [
      ["no token", {}],
      ["wrong token", bearer("adm_wrong-wrong-wrong-wrong-wrong")],
      ["metrics token", bearer(METRICS_TOKEN)],
      ["consumer token", bearer(w.tokens["demo-svc"]!)],
    ] as [string, Record<string, string>][]) {
      await expectRefused(w, name, () => w.request("/v1/admin/audit", { headers }), {
        status: 401,
        error: "unauthorized",
        challenge: true,
      });
    }
    await expectRefused(w, "POST", () => w.request("/v1/admin/audit", { method: "POST", headers: admin(w) }), {
      status: 405,
      allow: "GET, HEAD",
    });
  });
});
