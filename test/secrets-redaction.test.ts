/**
 * A webhook `reason` never carries a live key's secret in any form (DESIGN §4, Redaction): the
 * secret alone, `prefix:secret`, `prefix . secret`, `prefix%2Esecret`, every character
 * percent-encoded, in capitals, or only part of it: none of them reaches the answer, D1 (audit,
 * webhook_receipts), KV, the logs or the events. The rest of the reason is kept.
 */
import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { redactKnown, redactSecrets, redactText } from "../src/log.ts";
import { redeploy } from "./helpers/secrets.ts";
import { randomSecret, signedWebhook } from "./helpers/webhooks.ts";
import { MIN, makeWorld } from "./helpers/world.ts";

const pctAll = (s: string) => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`).join("");

const FORMS: [string, (prefix: string, secret: string) => string][] = [
  ["the secret alone", (_p, s) => `leak-scanner alert 123: found ${s} in a gist`],
  ["prefix:secret", (p, s) => `leak-scanner alert 123: ${p}:${s}`],
  ["prefix . secret", (p, s) => `leak-scanner alert 123: ${p} . ${s}`],
  ["prefix%2Esecret", (p, s) => `leak-scanner alert 123: ${p}%2E${s}`],
  ["the whole key", (p, s) => `leak-scanner alert 123: ${p}.${s}`],
  ["every character percent-encoded", (p, s) => `leak-scanner alert 123: ${pctAll(`${p}.${s}`)}`],
  ["in capitals", (_p, s) => `leak-scanner alert 123: ${s.toUpperCase()}`],
  ["the first 16 characters only", (_p, s) => `leak-scanner alert 123: ${s.slice(0, 16)}...`],
  ["double-encoded separator", (p, s) => `leak-scanner alert 123: ${p}%252E${s}`],
];

describe("a webhook reason never carries a live key's secret", () => {
  afterEach(() => vi.restoreAllMocks());

  it.each(FORMS)("%s", async (_name, form) => {
    const logs: string[] = [];
    for (const level of ["log", "info", "warn", "error"] as const)
      vi.spyOn(console, level).mockImplementation((...a: unknown[]) => void logs.push(a.map(String).join(" ")));
    const w0 = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    const eventSecret = randomSecret();
    const sink = w0.fake.sinkUrl();
    const w = redeploy(w0, { EVENT_WEBHOOKS: JSON.stringify([{ url: sink, secret: eventSecret }]) });
    await w.tick();
    w0.clock.advance(10_000);
    const leaked = (await (await w.getKey("demo")).json()) as KeyDocument;
    const dot = leaked.api_key.indexOf(".");
    const [prefix, secret] = [leaked.api_key.slice(0, dot), leaked.api_key.slice(dot + 1)];

    const res = await w.request(
      "/v1/webhooks/rotate",
      await signedWebhook(w0, { model_set: "demo", reason: form(prefix, secret), revoke_previous: true }),
    );
    expect(res.status).toBe(200);
    const answer = await res.text();
    const reason = (JSON.parse(answer) as { reason: string }).reason;
    expect(reason).toMatch(/^leak-scanner alert 123: /);
    expect(reason).toContain("[redacted]");

    const d1 = JSON.stringify([
      (await env.DB.prepare("SELECT * FROM audit").all()).results,
      (await env.DB.prepare("SELECT * FROM webhook_receipts").all()).results,
      (await env.DB.prepare("SELECT * FROM sets").all()).results,
    ]);
    const kv = JSON.stringify(await Promise.all((await env.KEYS.list()).keys.map((k) => env.KEYS.get(k.name))));
    const events = (await w0.fake.sink()).map((d) => d.body).join("\n");
    expect(events).toContain("leak-scanner alert 123");
    const everywhere = [answer, d1, kv, logs.join("\n"), events].join("\n").toLowerCase();
    for (let i = 0; i + 12 <= secret.length; i++) expect(everywhere).not.toContain(secret.slice(i, i + 12).toLowerCase());
  });

  it("an admin rotation's reason is redacted the same way", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    w.clock.advance(MIN);
    const key = ((await (await w.getKey("demo")).json()) as KeyDocument).api_key;
    const secret = key.slice(key.indexOf(".") + 1);
    const res = await w.request("/v1/admin/rotate/demo", {
      method: "POST",
      headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: `rotating after ${secret} was pasted in chat` }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { reason: string }).reason).toBe("rotating after [redacted] was pasted in chat");
    const audit = await env.DB.prepare("SELECT reason FROM audit WHERE action = 'minted' ORDER BY id DESC LIMIT 1").first<{
      reason: string;
    }>();
    expect(audit!.reason).toBe("rotating after [redacted] was pasted in chat");
  });

  it("the patterns on their own: key-shaped text of keys the rotator does not know, everyday text kept", () => {
    expect(redactSecrets("found abcd1234.Zx9QpL0mN3vR7tY2wK5s in logs")).toBe("found [redacted] in logs");
    expect(redactSecrets("found abcd1234:Zx9QpL0mN3vR7tY2wK5s in logs")).toBe("found [redacted] in logs");
    expect(redactSecrets("found Zx9QpL0mN3vR7tY2wK5sA8bC1dE4f in logs")).toBe("found [redacted] in logs");
    expect(redactText("found abcd1234%2EZx9QpL0mN3vR7tY2wK5s in logs")).toBe("found [redacted] in logs");
    for (const everyday of [
      "leak-scanner alert 123",
      "incident INC-2026-000123: rotate",
      "happened. Unfortunately we rotate",
      "ticket:SEC-4411 follow-up",
    ]) {
      expect(redactText(everyday)).toBe(everyday);
    }
    expect(redactKnown("x ABCDEFGHIJKLmnop y", ["abcdefghijklmnopqrst"])).toBe("x [redacted] y");
    expect(redactKnown("x abcdefghijk y", ["abcdefghijklmnopqrst"])).toBe("x abcdefghijk y"); // 11 characters: not enough to count
  });
});
