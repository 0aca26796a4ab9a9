/**
 * Standard Webhooks verification on POST /v1/webhooks/rotate, vector by vector: what a sender
 * gets for each, and that nothing is minted for any request that is refused.
 * Signatures are made by test/helpers/webhooks.ts (written from the spec), not by the worker's code.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { verifyWebhook } from "../src/webhook-signature.ts";
import { hmacV1, sendWebhook, signedWebhook } from "./helpers/webhooks.ts";
import { type World, makeWorld, randomB64 } from "./helpers/world.ts";

// The test vector published with the Standard Webhooks reference libraries.
const SPEC = {
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
  ts: 1614265330,
  body: '{"test": 2432232314}',
  signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
};

describe("verifyWebhook against the Standard Webhooks reference vector", () => {
  const headers = (sig = SPEC.signature, ts = String(SPEC.ts)) =>
    new Headers({ "webhook-id": SPEC.id, "webhook-timestamp": ts, "webhook-signature": sig });
  const body = new TextEncoder().encode(SPEC.body);

  it("accepts the published signature", async () => {
    expect(await verifyWebhook(SPEC.secret, headers(), body, SPEC.ts * 1000)).toEqual({ ok: true, id: SPEC.id, timestamp: SPEC.ts });
  });
  it("accepts it among other entries (a sender rolling its secret)", async () => {
    const v = await verifyWebhook(
      SPEC.secret,
      headers(`v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ${SPEC.signature} v1a,abc=`),
      body,
      SPEC.ts * 1000,
    );
    expect(v.ok).toBe(true);
  });
  it("refuses it one second outside the tolerance, both ways, and accepts it at the edge", async () => {
    expect((await verifyWebhook(SPEC.secret, headers(), body, (SPEC.ts + 300) * 1000)).ok).toBe(true);
    expect((await verifyWebhook(SPEC.secret, headers(), body, (SPEC.ts - 300) * 1000)).ok).toBe(true);
    expect(await verifyWebhook(SPEC.secret, headers(), body, (SPEC.ts + 301) * 1000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/too old/),
    });
    expect(await verifyWebhook(SPEC.secret, headers(), body, (SPEC.ts - 301) * 1000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/future/),
    });
  });
  it("refuses a timestamp with a leading zero (it would not be the text that was signed)", async () => {
    expect((await verifyWebhook(SPEC.secret, headers(SPEC.signature, `0${SPEC.ts}`), body, SPEC.ts * 1000)).ok).toBe(false);
  });
});

describe("POST /v1/webhooks/rotate signature vectors", () => {
  let w: World;
  beforeAll(async () => {
    w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
  });
  const mints = async () => (await w.fake.calls()).counts.mint ?? 0;
  const body = { model_set: "demo", reason: "signature test" };
  const nowS = () => Math.floor(w.clock.now() / 1000);

  type Case = { name: string; init: () => Promise<RequestInit>; status: number; message?: RegExp };
  const valid = (o = {}) => signedWebhook(w, body, o);
  const withHeaders = async (change: (h: Record<string, string>) => void) => {
    const init = await valid();
    change(init.headers);
    return init;
  };
  const cases: Case[] = [
    { name: "valid", init: () => valid(), status: 200 },
    { name: "timestamp exactly 5 minutes old", init: () => valid({ ts: nowS() - 300 }), status: 200 },
    { name: "timestamp exactly 5 minutes ahead", init: () => valid({ ts: nowS() + 300 }), status: 200 },
    {
      name: "several signatures, one valid (secret being rolled), unknown versions ignored",
      init: async () => {
        const init = await valid();
        const good = init.headers["webhook-signature"]!;
        init.headers["webhook-signature"] = `v1,${btoa("x".repeat(32))} v1a,${btoa("y".repeat(64))} ${good}`;
        return init;
      },
      status: 200,
    },
    {
      name: "tampered body",
      init: async () => ({ ...(await valid()), body: JSON.stringify({ ...body, revoke_previous: true }) }),
      status: 401,
      message: /no matching signature/,
    },
    {
      name: "wrong secret",
      init: () => valid({ secret: `whsec_${btoa("another secret entirely..")}` }),
      status: 401,
      message: /no matching signature/,
    },
    {
      name: "HMAC keyed with the secret's text instead of its base64-decoded part after whsec_",
      init: async () => {
        const id = "msg_rawsecret";
        const ts = nowS();
        const raw = JSON.stringify(body);
        return signedWebhook(w, raw, { id, ts, signature: await hmacV1(new TextEncoder().encode(w.env.WEBHOOK_SECRET!), id, ts, raw) });
      },
      status: 401,
    },
    {
      name: "HMAC keyed with the base64 text after whsec_ (not decoded)",
      init: async () => {
        const id = "msg_undecoded";
        const ts = nowS();
        const raw = JSON.stringify(body);
        return signedWebhook(w, raw, {
          id,
          ts,
          signature: await hmacV1(new TextEncoder().encode(w.env.WEBHOOK_SECRET!.slice(6)), id, ts, raw),
        });
      },
      status: 401,
    },
    { name: "stale timestamp (5 min + 1 s)", init: () => valid({ ts: nowS() - 301 }), status: 401, message: /too old/ },
    { name: "future timestamp (5 min + 1 s)", init: () => valid({ ts: nowS() + 301 }), status: 401, message: /future/ },
    { name: "timestamp in milliseconds", init: () => valid({ ts: w.clock.now() }), status: 401 },
    {
      name: "several signatures, none valid",
      init: () => withHeaders((h) => (h["webhook-signature"] = `v1,${btoa("a".repeat(32))} v1,${btoa("b".repeat(32))}`)),
      status: 401,
      message: /no matching signature/,
    },
    { name: "missing webhook-id", init: () => withHeaders((h) => delete h["webhook-id"]), status: 401, message: /missing/ },
    { name: "missing webhook-timestamp", init: () => withHeaders((h) => delete h["webhook-timestamp"]), status: 401, message: /missing/ },
    { name: "missing webhook-signature", init: () => withHeaders((h) => delete h["webhook-signature"]), status: 401, message: /missing/ },
    { name: "empty webhook-id", init: () => withHeaders((h) => (h["webhook-id"] = "")), status: 401 },
    { name: "empty webhook-timestamp", init: () => withHeaders((h) => (h["webhook-timestamp"] = "")), status: 401 },
    { name: "empty webhook-signature", init: () => withHeaders((h) => (h["webhook-signature"] = "")), status: 401 },
    {
      name: "signature without version",
      init: () => withHeaders((h) => (h["webhook-signature"] = h["webhook-signature"]!.slice(3))),
      status: 401,
      message: /malformed/,
    },
    {
      name: "signature with another version",
      init: () => withHeaders((h) => (h["webhook-signature"] = `v2,${h["webhook-signature"]!.slice(3)}`)),
      status: 401,
      message: /malformed/,
    },
    {
      name: "signature 'v1,' with nothing after",
      init: () => withHeaders((h) => (h["webhook-signature"] = "v1,")),
      status: 401,
      message: /malformed/,
    },
    {
      name: "signature not base64",
      init: () => withHeaders((h) => (h["webhook-signature"] = "v1,not*base64!")),
      status: 401,
      message: /malformed/,
    },
    {
      name: "timestamp not a number",
      init: () => withHeaders((h) => (h["webhook-timestamp"] = "yesterday")),
      status: 401,
      message: /malformed webhook-timestamp/,
    },
    {
      name: "timestamp as ISO date",
      init: () => withHeaders((h) => (h["webhook-timestamp"] = new Date(w.clock.now()).toISOString())),
      status: 401,
      message: /malformed webhook-timestamp/,
    },
    {
      name: "webhook-id with a space",
      init: () => withHeaders((h) => (h["webhook-id"] = "msg 1")),
      status: 401,
      message: /malformed webhook-id/,
    },
    {
      name: "webhook-id too long",
      init: () => withHeaders((h) => (h["webhook-id"] = "m".repeat(257))),
      status: 401,
      message: /malformed webhook-id/,
    },
    { name: "no content-type", init: () => withHeaders((h) => delete h["content-type"]), status: 415 },
    {
      name: "form content-type (curl -d without -H)",
      init: () => withHeaders((h) => (h["content-type"] = "application/x-www-form-urlencoded")),
      status: 415,
    },
  ];

  for (const c of cases) {
    it(`${c.name} -> ${c.status}`, async () => {
      const before = await mints();
      const res = await w.request("/v1/webhooks/rotate", await c.init());
      const text = await res.text();
      expect(res.status, text).toBe(c.status);
      if (c.status !== 200) {
        const err = JSON.parse(text) as { error: string; message: string };
        expect(err.error).toBe({ 401: "invalid_signature", 415: "unsupported_media_type" }[c.status]);
        if (c.message) expect(err.message).toMatch(c.message);
        expect(await mints()).toBe(before);
      } else {
        expect(JSON.parse(text)).toMatchObject({ model_set: "demo", trigger: "webhook" });
        expect(await mints()).toBe(before + 1);
      }
    });
  }

  it("a body of exactly 64 KiB is read; one byte more is 413 and nothing is minted", async () => {
    const pad = (n: number) => {
      const base = JSON.stringify(body);
      return `${base.slice(0, -1)}${" ".repeat(n - base.length)}}`;
    };
    const before = await mints();
    const ok = await sendWebhook(w, pad(64 * 1024));
    expect(ok.status).toBe(200);
    const big = await sendWebhook(w, pad(64 * 1024 + 1));
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: "payload_too_large" });
    expect(await mints()).toBe(before + 1);
  });
});

describe("webhook secret configuration", () => {
  it("the Standard Webhooks reference vector passes the route's signature check", async () => {
    const w = await makeWorld({ vars: { WEBHOOK_SECRET: SPEC.secret } });
    w.clock.set(SPEC.ts * 1000);
    const res = await w.request("/v1/webhooks/rotate", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": SPEC.id,
        "webhook-timestamp": String(SPEC.ts),
        "webhook-signature": SPEC.signature,
      },
      body: SPEC.body,
    });
    // Authenticated, then refused for its body: the vector's payload is not a rotation request.
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "invalid_body", message: expect.stringContaining('"test"') });
  });

  it("a WEBHOOK_SECRET without whsec_ is a config problem: the route fails closed", async () => {
    const bare = randomB64(24);
    const broken = await makeWorld({ vars: { WEBHOOK_SECRET: bare } });
    const res = await sendWebhook(broken, { model_set: "demo" }, { secret: `whsec_${bare}` });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "config_invalid" });
    const health = (await (await broken.request("/healthz")).json()) as { problems: string[] };
    expect(health.problems.join("\n")).toMatch(/WEBHOOK_SECRET/);
    expect((await broken.fake.calls()).counts.mint ?? 0).toBe(0);
  });

  it("no WEBHOOK_SECRET: 503 not_configured, nothing minted", async () => {
    const w = await makeWorld({ vars: { WEBHOOK_SECRET: undefined } });
    const res = await sendWebhook(w, { model_set: "demo" }, { secret: `whsec_${btoa("whatever-secret-bytes")}` });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "not_configured" });
    expect((await w.fake.calls()).counts.mint ?? 0).toBe(0);
  });
});
