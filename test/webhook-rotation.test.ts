/**
 * What a sender of POST /v1/webhooks/rotate relies on: a rotation per delivery, a redelivery
 * answered from the first answer without a second key, the leak response (revoke_previous)
 * checked against Baseten's live keys, and which answers are final (stored) or retried anew.
 */
import { describe, expect, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { hmacV1, secretBytes, sendWebhook, signedWebhook } from "./helpers/webhooks.ts";
import { HOUR, makeWorld, prefixOf } from "./helpers/world.ts";

interface Rotation {
  model_set: string;
  generation: number;
  created_at: string;
  refresh_at: string;
  expires_at: string;
  replaced: { generation: number; expires_at: string } | null;
  revoked: number[];
  revoke_pending: number[];
  trigger: string;
  reason: string | null;
}

const mintCount = async (w: Awaited<ReturnType<typeof makeWorld>>) => (await w.fake.calls()).counts.mint ?? 0;

describe("webhook rotation", () => {
  it("rotates now, answers the rotation result, and the new key is served at once", async () => {
    const w = await makeWorld();
    const res = await sendWebhook(w, { model_set: "demo", reason: "leak-scanner alert 123" });
    expect(res.status).toBe(200);
    const r1 = (await res.json()) as Rotation;
    expect(r1).toEqual({
      model_set: "demo",
      generation: 1,
      created_at: new Date(w.clock.now()).toISOString(),
      refresh_at: new Date(w.clock.now() + 24 * HOUR).toISOString(),
      expires_at: new Date(w.clock.now() + 25 * HOUR).toISOString(),
      replaced: null,
      revoked: [],
      revoke_pending: [],
      trigger: "webhook",
      reason: "leak-scanner alert 123",
    });
    const doc1 = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect(doc1.generation).toBe(1);

    // Early rotation without revoke_previous: the replaced key keeps its promise.
    w.clock.advance(HOUR);
    const r2 = (await (await sendWebhook(w, { model_set: "demo" })).json()) as Rotation;
    expect(r2).toMatchObject({ generation: 2, replaced: { generation: 1 }, revoked: [], reason: null });
    expect(Date.parse(r2.replaced!.expires_at)).toBeGreaterThanOrEqual(Date.parse(doc1.expires_at));
    const live = await w.liveKeyPrefixes();
    expect(live).toContain(prefixOf(doc1.api_key));
    const doc2 = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect(doc2.generation).toBe(2);
    expect(live).toContain(prefixOf(doc2.api_key));
  });

  it("a redelivered webhook-id gets the first answer and mints nothing, for at least 24 h", async () => {
    const w = await makeWorld();
    const init = await signedWebhook(w, { model_set: "demo", reason: "first" }, { id: "msg_replay_1" });
    const first = await w.request("/v1/webhooks/rotate", init);
    const firstBody = await first.text();
    expect(first.status).toBe(200);
    expect(await mintCount(w)).toBe(1);

    // The identical delivery again.
    const again = await w.request("/v1/webhooks/rotate", init);
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(firstBody);
    expect(again.headers.get("idempotent-replayed")).toBe("true");

    // A sender's retry a day later: same id, a fresh timestamp and signature (per the spec).
    w.clock.advance(23 * HOUR + 59 * 60_000);
    const later = await sendWebhook(w, { model_set: "demo", reason: "first" }, { id: "msg_replay_1" });
    expect(later.status).toBe(200);
    expect(await later.text()).toBe(firstBody);
    expect(await mintCount(w)).toBe(1);
    expect(((await (await w.getKey("demo")).json()) as KeyDocument).generation).toBe(1);
  });

  it("receipts older than 48 h are pruned as new ones arrive", async () => {
    const w = await makeWorld();
    expect((await sendWebhook(w, { model_set: "demo" }, { id: "msg_old" })).status).toBe(200);
    w.clock.advance(49 * HOUR);
    expect((await sendWebhook(w, { model_set: "other" }, { id: "msg_new" })).status).toBe(200);
    const ids = (await w.env.DB.prepare("SELECT webhook_id FROM webhook_receipts").all<{ webhook_id: string }>()).results.map(
      (r) => r.webhook_id,
    );
    expect(ids).toEqual(["msg_new"]);
  });

  it("two deliveries of one id at the same moment mint one key; the loser retries into the stored answer", async () => {
    const w = await makeWorld();
    await w.fake.latency(200);
    const init = await signedWebhook(w, { model_set: "demo" }, { id: "msg_twice" });
    const [a, b] = await Promise.all([w.request("/v1/webhooks/rotate", init), w.request("/v1/webhooks/rotate", init)]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 409]);
    const loser = a.status === 409 ? a : b;
    expect(loser.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await loser.json()).toMatchObject({ error: "rotation_in_progress" });
    const retry = await w.request("/v1/webhooks/rotate", init);
    expect(retry.status).toBe(200);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await mintCount(w)).toBe(1);
  });

  it("a webhook-id is processed once even when two deliveries carry different sets (the id decides, not the lease)", async () => {
    const w = await makeWorld();
    await w.fake.latency(200);
    const [a, b] = await Promise.all([
      sendWebhook(w, { model_set: "demo" }, { id: "msg_reused" }),
      sendWebhook(w, { model_set: "other" }, { id: "msg_reused" }),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    expect(await mintCount(w)).toBe(1);
  });

  it("revoke_previous: the replaced key is revoked at Baseten at once and never served again here", async () => {
    const w = await makeWorld();
    await w.tick();
    const doc1 = (await (await w.getKey("demo")).json()) as KeyDocument; // now in this isolate's memory and KV
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(doc1.api_key));

    const res = await sendWebhook(w, { model_set: "demo", reason: "key posted in a public repo", revoke_previous: true });
    expect(res.status).toBe(200);
    const r = (await res.json()) as Rotation;
    expect(r).toMatchObject({ generation: 2, replaced: { generation: 1, expires_at: r.created_at }, revoked: [1], revoke_pending: [] });
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(doc1.api_key));
    expect((await w.fake.keys()).find((k) => k.prefix === prefixOf(doc1.api_key))!.revoked_at).not.toBeNull();

    // Same clock instant, same isolate: neither memory nor KV may hand out the revoked key.
    const doc2 = (await (await w.getKey("demo")).json()) as KeyDocument;
    expect(doc2.generation).toBe(2);
    expect(doc2.api_key).not.toBe(doc1.api_key);
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(doc2.api_key));
  });

  it("revoke_previous when Baseten refuses the revoke: the answer says the revoke is pending and the next tick does it", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    await w.tick();
    const doc1 = (await (await w.getKey("demo")).json()) as KeyDocument;
    await w.fake.fault({ op: "revoke", kind: "403" });
    const r = (await (await sendWebhook(w, { model_set: "demo", revoke_previous: true })).json()) as Rotation;
    expect(r).toMatchObject({ generation: 2, revoked: [], revoke_pending: [1] });
    expect(await w.liveKeyPrefixes()).toContain(prefixOf(doc1.api_key));
    w.clock.advance(60_000);
    await w.tick();
    expect(await w.liveKeyPrefixes()).not.toContain(prefixOf(doc1.api_key));
  });

  it("a disabled set is 409 set_disabled with Retry-After; the answer is not stored", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h", enabled: false } },
      consumers: { "demo-svc": ["demo"] },
    });
    const init = await signedWebhook(w, { model_set: "demo" }, { id: "msg_disabled" });
    for (let i = 0; i < 2; i++) {
      const res = await w.request("/v1/webhooks/rotate", init);
      expect(res.status).toBe(409);
      expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(res.headers.get("idempotent-replayed")).toBeNull();
      expect(await res.json()).toMatchObject({ error: "set_disabled" });
    }
    expect(await mintCount(w)).toBe(0);
  });

  it("an unknown set is 404 and stores no receipt (a leaked secret cannot fill D1): a redelivery is answered 404 anew", async () => {
    const w = await makeWorld();
    const init = await signedWebhook(w, { model_set: "nope" }, { id: "msg_unknown" });
    const res = await w.request("/v1/webhooks/rotate", init);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: "unknown_model_set" });
    expect((await w.env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_receipts").first<{ n: number }>())?.n).toBe(0);
    const again = await w.request("/v1/webhooks/rotate", init);
    expect(again.status).toBe(404);
    expect(again.headers.get("idempotent-replayed")).toBeNull();
    expect(await mintCount(w)).toBe(0);
  });

  it("Baseten failing is 502 upstream_failed, nothing is stored, and a retry with the same id is processed anew", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "2" } });
    await w.fake.fault({ op: "mint", kind: "503", count: 2 });
    const init = await signedWebhook(w, { model_set: "demo" }, { id: "msg_upstream" });
    const res = await w.request("/v1/webhooks/rotate", init);
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: "upstream_failed", message: expect.stringContaining("503") });
    expect(await w.liveKeyPrefixes()).toEqual([]);

    const retry = await w.request("/v1/webhooks/rotate", init);
    expect(retry.status).toBe(200);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
    expect(((await retry.json()) as Rotation).generation).toBeGreaterThanOrEqual(1);
    expect((await w.liveKeyPrefixes()).length).toBe(1);
  });

  describe("body validation (400 invalid_body, after the signature; stored as final)", () => {
    const cases: [string, unknown][] = [
      ["missing model_set", { reason: "x" }],
      ["unknown field", { model_set: "demo", revoke: true }],
      ["model_set not a string", { model_set: 7 }],
      ["reason not a string", { model_set: "demo", reason: 42 }],
      ["reason too long", { model_set: "demo", reason: "x".repeat(501) }],
      ["revoke_previous not a boolean", { model_set: "demo", revoke_previous: "yes" }],
      ["an array", [{ model_set: "demo" }]],
      ["not JSON", "model_set=demo"],
      ["JSON null", "null"],
    ];
    for (const [name, body] of cases) {
      it(name, async () => {
        const w = await makeWorld();
        const res = await sendWebhook(w, body);
        expect(res.status).toBe(400);
        expect(await res.json()).toMatchObject({ error: "invalid_body" });
        expect(await mintCount(w)).toBe(0);
      });
    }

    it("invalid UTF-8", async () => {
      const w = await makeWorld();
      const bytes = new Uint8Array([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]);
      const init = await signedWebhook(w, "", {});
      init.headers["webhook-signature"] = await hmacV1(
        secretBytes(w.env.WEBHOOK_SECRET!),
        init.headers["webhook-id"]!,
        init.headers["webhook-timestamp"]!,
        bytes,
      );
      const res = await w.request("/v1/webhooks/rotate", { ...init, body: bytes });
      expect(res.status).toBe(400);
    });
  });

  it("a key quoted in the reason is redacted before it is echoed, stored or logged", async () => {
    const w = await makeWorld();
    const leaked = "abcd1234.Zk3JqLw8XyR2mN5pQ7sT9vB1cD4fG6hJ";
    const res = await sendWebhook(w, { model_set: "demo", reason: `found ${leaked} on pastebin` });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain(leaked);
    expect(JSON.parse(text).reason).toBe("found [redacted] on pastebin");
    const audit = await w.env.DB.prepare("SELECT reason FROM audit").all<{ reason: string | null }>();
    expect(JSON.stringify(audit.results)).not.toContain(leaked);
  });
});
