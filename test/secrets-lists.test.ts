/**
 * Secrets changed without downtime (DESIGN §2): WEBHOOK_SECRET and ADMIN_TOKEN take several
 * space-separated values, any one verifies or admits; and BASETEN_API_KEY (§4.10): status shows
 * whether Baseten last accepted the management key, a refused key gives a clear rotation.failed
 * reason, and Baseten's error text is redacted before it is shortened (no piece of the
 * management key reaches the 502 body, status, logs or events).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { redactText, redactUpstreamText } from "../src/log.ts";
import { redeploy } from "./helpers/secrets.ts";
import { randomSecret, sendWebhook } from "./helpers/webhooks.ts";
import { makeWorld } from "./helpers/world.ts";

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const newToken = () => `adm_${crypto.randomUUID().replaceAll("-", "")}`;

describe("WEBHOOK_SECRET as a list", () => {
  it("either of two listed secrets verifies; a third does not; the old one stops once removed", async () => {
    const [oldSecret, newSecret, other] = [randomSecret(), randomSecret(), randomSecret()];
    const w = await makeWorld({ vars: { WEBHOOK_SECRET: oldSecret } });
    expect((await sendWebhook(w, { model_set: "demo" }, { secret: oldSecret })).status).toBe(200);
    // Step 1 of the procedure: both listed. Senders can switch one by one.
    const both = await makeWorld({ vars: { WEBHOOK_SECRET: `${oldSecret} ${newSecret}` } });
    expect((await sendWebhook(both, { model_set: "demo" }, { secret: oldSecret })).status).toBe(200);
    expect((await sendWebhook(both, { model_set: "demo" }, { secret: newSecret })).status).toBe(200);
    const wrong = await sendWebhook(both, { model_set: "demo" }, { secret: other });
    expect(wrong.status).toBe(401);
    // Step 2: only the new one.
    const after = await makeWorld({ vars: { WEBHOOK_SECRET: newSecret } });
    expect((await sendWebhook(after, { model_set: "demo" }, { secret: oldSecret })).status).toBe(401);
    expect((await sendWebhook(after, { model_set: "demo" }, { secret: newSecret })).status).toBe(200);
  });
});

describe("ADMIN_TOKEN as a list", () => {
  it("either of two tokens admits (status and rotate), another does not; with a broken config status still admits either", async () => {
    const [a, b] = [newToken(), newToken()];
    const w = await makeWorld({ vars: { ADMIN_TOKEN: `${a} ${b}` } });
    for (const t of [a, b]) {
      expect((await w.request("/v1/admin/status", { headers: bearer(t) })).status).toBe(200);
      expect((await w.request("/v1/admin/rotate/demo", { method: "POST", headers: bearer(t) })).status).toBe(200);
    }
    expect((await w.request("/v1/admin/status", { headers: bearer(newToken()) })).status).toBe(401);
    const broken = redeploy(w, { BASETEN_TEAM_ID: "" });
    for (const t of [a, b]) expect((await broken.request("/v1/admin/status", { headers: bearer(t) })).status).toBe(200);
    // A weak token in the list makes the whole list unusable while the config is broken.
    const weak = redeploy(w, { BASETEN_TEAM_ID: "", ADMIN_TOKEN: `${a} short` });
    expect((await weak.request("/v1/admin/status", { headers: bearer(a) })).status).toBe(503);
  });

  it("an admin token that is also a consumer's token is refused as config (the consumer cannot rotate)", async () => {
    const w = await makeWorld();
    const consumerToken = w.tokens["demo-svc"]!;
    const d = redeploy(w, { ADMIN_TOKEN: `${w.env.ADMIN_TOKEN} ${consumerToken}` });
    // tok_<32 hex> is 36 characters: long enough, so only the collision is named.
    const health = (await (await d.request("/healthz")).json()) as { problems: string[] };
    expect(health.problems).toEqual([
      "ADMIN_TOKEN (entry 2 of 2): is the token of CONSUMERS.demo-svc (its SHA-256 equals that consumer's token_sha256); give each its own token",
    ]);
    expect((await d.request("/v1/admin/rotate/other", { method: "POST", headers: bearer(consumerToken) })).status).toBe(503);
    expect((await d.request("/v1/admin/status", { headers: bearer(consumerToken) })).status).toBe(503);
  });
});

describe("BASETEN_API_KEY", () => {
  afterEach(() => vi.restoreAllMocks());

  it("status shows whether the management key was last accepted; a refused key fails with a clear reason", async () => {
    const w = await makeWorld();
    expect((await redeploy(w, {}).status()).management_key).toEqual({ ok: null, checked_at: null, error: null });
    await w.tick();
    const ok = (await redeploy(w, {}).status()).management_key;
    expect(ok).toEqual({ ok: true, checked_at: new Date(w.clock.now()).toISOString(), error: null });

    // The key is revoked at Baseten (or mistyped in `wrangler secret put`): 401 from the fake.
    const refused = redeploy(w, { BASETEN_API_KEY: "revoked-management-key-0123456789" });
    const res = await refused.request("/v1/admin/rotate/demo", { method: "POST", headers: bearer(w.env.ADMIN_TOKEN!) });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.message).toBe(
      'mint: Baseten refused the management key (HTTP 401): check BASETEN_API_KEY (README "Changing BASETEN_API_KEY")',
    );
    const status = await refused.status();
    expect(status.management_key).toMatchObject({
      ok: false,
      error: expect.stringMatching(/^Baseten answered 401 to mint: BASETEN_API_KEY was refused/),
    });
    expect(JSON.stringify(status)).not.toContain("revoked-management-key-0123456789");

    // Back to a good key: the next call is accepted, status says so at once.
    const fixed = redeploy(w, {});
    expect((await fixed.request("/v1/admin/rotate/demo", { method: "POST", headers: bearer(w.env.ADMIN_TOKEN!) })).status).toBe(200);
    expect((await fixed.status()).management_key).toMatchObject({ ok: true, error: null });
  });

  it("Baseten's error text is redacted before it is shortened: no piece of the management key in the 502, status, logs or events", async () => {
    const logs: string[] = [];
    for (const level of ["log", "info", "warn", "error"] as const)
      vi.spyOn(console, level).mockImplementation((...a: unknown[]) => void logs.push(a.map(String).join(" ")));
    const w0 = await makeWorld();
    const sink = w0.fake.sinkUrl();
    const w = redeploy(w0, { EVENT_WEBHOOKS: JSON.stringify([{ url: sink, secret: randomSecret(), events: ["rotation.failed"] }]) });
    // The key lands at characters 280-326 of a 500's error text: cutting first would keep 20 of them.
    await w0.fake.fault({ op: "mint", kind: "500", count: 3, error: `${"upstream trace ".repeat(18)}auth=${"{key}"} end` });
    const res = await w.request("/v1/admin/rotate/demo", { method: "POST", headers: bearer(w0.env.ADMIN_TOKEN!) });
    expect(res.status).toBe(502);
    const text = [await res.text(), JSON.stringify(await w.status()), logs.join("\n"), ...(await w0.fake.sink()).map((d) => d.body)].join(
      "\n",
    );
    expect(text).toContain("upstream trace");
    const key = w0.fake.key;
    for (let i = 0; i + 12 <= key.length; i++) expect(text, key.slice(i, i + 12)).not.toContain(key.slice(i, i + 12));
    expect((await w0.fake.sink()).length).toBe(1);
  });

  it("redaction then shortening, as pure functions", () => {
    const key = "fake-mgmt-0f5e2c1a-9b7d-4c6e-8a1b-2d3e4f5a6b7c";
    const out = redactUpstreamText(`${"x".repeat(290)}${key}`, key, 300);
    expect(out).toBe(`${"x".repeat(290)}[redacted]`);
    // A piece of the key quoted by Baseten is caught too.
    expect(redactUpstreamText(`bad key ${key.slice(5, 30)}...`, key)).toBe("bad key [redacted]...");
    expect(redactText("happened. Unfortunately the alert 123 fired")).toBe("happened. Unfortunately the alert 123 fired");
  });
});
