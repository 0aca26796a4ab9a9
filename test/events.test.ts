/**
 * Events out (EVENT_WEBHOOKS), received by the fake's event sink and checked the way a
 * subscriber would: a valid Standard Webhooks signature with its own secret, the payload,
 * the events list as a filter, retries with one webhook-id, and a receiver that keeps failing
 * never holding up or failing a rotation while its failure shows in /v1/admin/status.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../src/config.ts";
import type { Env } from "../src/env.ts";
import { deliverEvents } from "../src/events.ts";
import worker from "../src/index.ts";
import { type SinkDelivery, fakeTenant } from "./helpers/fake.ts";
import { randomSecret, sendWebhook, verifyDelivery } from "./helpers/webhooks.ts";
import { makeWorld } from "./helpers/world.ts";

interface Event {
  type: string;
  timestamp: string;
  data: Record<string, unknown> & { model_set: string; generation: number | null; trigger: string };
}

const ONE_SET = { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" };

/** A world with one set and the given subscribers (each a sink of its own fake tenant). */
async function world(
  subscribers: { query?: Parameters<ReturnType<typeof fakeTenant>["sinkUrl"]>[0]; events?: string[] }[],
  vars: Partial<Record<keyof Env, unknown>> = {},
) {
  const sinks = subscribers.map((s) => ({ tenant: fakeTenant(env.BASETEN_API_BASE), secret: randomSecret(), ...s }));
  const config = sinks.map((s) => ({ url: s.tenant.sinkUrl(s.query), secret: s.secret, events: s.events }));
  const w = await makeWorld({
    sets: { demo: ONE_SET },
    consumers: { "demo-svc": ["demo"] },
    vars: { EVENT_WEBHOOKS: JSON.stringify(config), ...vars },
  });
  return { w, sinks };
}

async function received(sink: {
  tenant: ReturnType<typeof fakeTenant>;
  secret: string;
}): Promise<(SinkDelivery & { event: Event; valid: boolean })[]> {
  return Promise.all(
    (await sink.tenant.sink()).map(async (d) => ({
      ...d,
      event: JSON.parse(d.body) as Event,
      valid: await verifyDelivery(sink.secret, d.headers, d.body),
    })),
  );
}

describe("events out", () => {
  afterEach(() => vi.restoreAllMocks());

  it("key.rotated reaches the subscriber, signed with its secret, with set, generation and times, and no key", async () => {
    const { w, sinks } = await world([{}]);
    const res = await sendWebhook(w, { model_set: "demo", reason: "drill" });
    expect(res.status).toBe(200);
    const rotation = (await res.json()) as Record<string, string>;
    const got = await received(sinks[0]!);
    expect(got.length).toBe(1);
    const d = got[0]!;
    expect(d.valid).toBe(true);
    expect(d.headers["content-type"]).toMatch(/^application\/json/);
    expect(d.headers["webhook-id"]).toMatch(/^evt_[a-z0-9]+$/);
    // The timestamp header is the wall clock: receivers check it against theirs.
    expect(Math.abs(Number(d.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(300);
    expect(d.event).toEqual({
      type: "key.rotated",
      timestamp: rotation.created_at,
      data: {
        model_set: "demo",
        generation: 1,
        trigger: "webhook",
        created_at: rotation.created_at,
        refresh_at: rotation.refresh_at,
        expires_at: rotation.expires_at,
        replaced: null,
        reason: "drill",
      },
    });
    const key = ((await (await w.getKey("demo")).json()) as { api_key: string }).api_key;
    expect(d.body).not.toContain(key.slice(key.indexOf(".") + 1));
    // Signed with this subscriber's secret and no other.
    expect(await verifyDelivery(randomSecret(), d.headers, d.body)).toBe(false);
  });

  it("an emergency revoke sends key.rotated and key.revoked; each subscriber gets only the types it listed", async () => {
    const { w, sinks } = await world([{ events: ["key.revoked"] }, {}, { events: ["rotation.failed"] }]);
    await sendWebhook(w, { model_set: "demo" });
    expect((await sendWebhook(w, { model_set: "demo", revoke_previous: true })).status).toBe(200);
    const [onlyRevoked, all, onlyFailed] = await Promise.all(sinks.map(received));
    expect(onlyRevoked!.map((d) => d.event.type)).toEqual(["key.revoked"]);
    expect(onlyRevoked![0]!.event.data).toMatchObject({ model_set: "demo", generation: 1, emergency: true, trigger: "webhook" });
    expect(onlyRevoked![0]!.valid).toBe(true);
    expect(all!.map((d) => d.event.type).sort()).toEqual(["key.revoked", "key.rotated", "key.rotated"]);
    expect(all!.every((d) => d.valid)).toBe(true);
    expect(onlyFailed).toEqual([]);
  });

  it("rotation.failed goes out when Baseten fails", async () => {
    const { w, sinks } = await world([{ events: ["rotation.failed"] }], { BASETEN_MAX_ATTEMPTS: "1" });
    await w.fake.fault({ op: "mint", kind: "503" });
    expect((await sendWebhook(w, { model_set: "demo" })).status).toBe(502);
    const got = await received(sinks[0]!);
    expect(got.map((d) => [d.event.type, d.valid])).toEqual([["rotation.failed", true]]);
    expect(got[0]!.event.data).toMatchObject({ model_set: "demo", generation: null, trigger: "webhook", error: "upstream_server" });
  });

  it("a failing receiver: retried with the same webhook-id, then given up; the rotation is unaffected and the failure shows in status", async () => {
    const { w, sinks } = await world([{ query: { status: 500 } }]);
    const warnings: string[] = [];
    vi.spyOn(console, "warn").mockImplementation((line: unknown) => void warnings.push(String(line)));
    const res = await sendWebhook(w, { model_set: "demo" });
    expect(res.status).toBe(200);
    expect(((await (await w.getKey("demo")).json()) as { generation: number }).generation).toBe(1);

    const got = await received(sinks[0]!);
    expect(got.length).toBe(3);
    expect(new Set(got.map((d) => d.headers["webhook-id"])).size).toBe(1);
    expect(got.every((d) => d.valid)).toBe(true);

    const line = warnings.find((l) => l.includes('"event.delivery_failed"'));
    expect(line).toBeDefined();
    expect(line).toContain("HTTP 500");
    expect(line).not.toContain(sinks[0]!.secret);
    expect(line).not.toContain("/__sink/"); // the URL path may hold a credential: only the origin is logged

    const status = (await (await w.request("/v1/admin/status", { headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } })).json()) as {
      event_failures: unknown[];
    };
    expect(status.event_failures).toEqual([
      {
        subscriber: new URL(env.BASETEN_API_BASE).origin,
        event_id: got[0]!.headers["webhook-id"],
        event_type: "key.rotated",
        model_set: "demo",
        generation: 1,
        attempts: 3,
        error: "HTTP 500",
        at: new Date(w.clock.now()).toISOString(),
        last_success_at: null,
      },
    ]);
  });

  it("a receiver that fails once gets the event on the retry; no failure is recorded", async () => {
    const { w, sinks } = await world([{ query: { fail_first: 1 } }]);
    expect((await sendWebhook(w, { model_set: "demo" })).status).toBe(200);
    const got = await received(sinks[0]!);
    expect(got.map((d) => d.status)).toEqual([500, 204]);
    expect(got[0]!.headers["webhook-id"]).toBe(got[1]!.headers["webhook-id"]);
    const status = (await (await w.request("/v1/admin/status", { headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` } })).json()) as {
      event_failures: unknown[];
    };
    expect(status.event_failures).toEqual([]);
  });

  it("each attempt is bounded by a timeout", async () => {
    const { w, sinks } = await world([{ query: { delay_ms: 2_000 } }]);
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error("config");
    const ctx = createExecutionContext();
    deliverEvents(
      config.config,
      w.env.DB,
      [{ type: "key.rotated", model_set: "demo", generation: 1, at: w.clock.now(), trigger: "admin", data: {} }],
      ctx,
      { timeoutMs: 100, backoffMs: 1, attempts: 2 },
    );
    await waitOnExecutionContext(ctx);
    expect((await sinks[0]!.tenant.sink()).length).toBe(2);
    const row = await w.env.DB.prepare("SELECT failed_error, failed_attempts FROM event_deliveries").first<{
      failed_error: string;
      failed_attempts: number;
    }>();
    expect(row).toEqual({ failed_error: "timeout after 100 ms", failed_attempts: 2 });
  });

  it("the cron's rotations send events too (scheduled handler)", async () => {
    const { w, sinks } = await world([{}]);
    const ctx = createExecutionContext();
    await worker.scheduled!(createScheduledController({ scheduledTime: Date.now(), cron: "* * * * *" }), w.env, ctx);
    await waitOnExecutionContext(ctx);
    const got = await received(sinks[0]!);
    expect(got.map((d) => [d.event.type, d.event.data.trigger, d.event.data.generation, d.valid])).toEqual([
      ["key.rotated", "cron", 1, true],
    ]);
  });
});
