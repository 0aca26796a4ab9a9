/**
 * No key material in any log line or in any response of the rotation routes: every console
 * line written while the cron, webhooks (plain, emergency, failing upstream, replayed), the
 * admin routes and event deliveries (one failing) run is scanned for every key Baseten issued
 * in the run, and for the secrets of the configuration.
 */
import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { fakeTenant } from "./helpers/fake.ts";
import { randomSecret, sendWebhook, signedWebhook } from "./helpers/webhooks.ts";
import { HOUR, makeWorld } from "./helpers/world.ts";

describe("no key material in logs or responses", () => {
  afterEach(() => vi.restoreAllMocks());

  it("holds through a full run of every trigger", async () => {
    const lines: string[] = [];
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
    }
    const sink = fakeTenant(env.BASETEN_API_BASE);
    const subscriberSecret = randomSecret();
    const w = await makeWorld({
      vars: {
        BASETEN_MAX_ATTEMPTS: "1",
        EVENT_WEBHOOKS: JSON.stringify([{ url: sink.sinkUrl({ status: 500 }), secret: subscriberSecret }]),
      },
    });
    const adminHeaders = { authorization: `Bearer ${w.env.ADMIN_TOKEN}` };
    const keys: string[] = [];
    const bodies: string[] = [];
    const readKeys = async () => {
      w.clock.advance(10_000); // past the isolate's memory cache
      for (const set of ["demo", "other"]) {
        const res = await w.getKey(set, set === "demo" ? "demo-svc" : "other-svc");
        if (res.status === 200) keys.push(((await res.json()) as KeyDocument).api_key);
      }
    };
    const keep = async (res: Response) => {
      bodies.push(await res.text());
      return res;
    };

    await w.tick();
    await readKeys();
    const replay = await signedWebhook(w, { model_set: "demo", reason: "scan" }, { id: "msg_scan" });
    await keep(await w.request("/v1/webhooks/rotate", replay));
    await keep(await w.request("/v1/webhooks/rotate", replay));
    await readKeys();
    await keep(await sendWebhook(w, { model_set: "demo", revoke_previous: true }));
    await readKeys();
    await keep(
      await w.request("/v1/admin/rotate/other", {
        method: "POST",
        headers: { ...adminHeaders, "content-type": "application/json" },
        body: '{"revoke_previous": true}',
      }),
    );
    await readKeys();
    await w.fake.fault({ op: "mint", kind: "lost_after_commit" }); // a key minted whose answer is lost
    await keep(await sendWebhook(w, { model_set: "demo" }));
    await w.fake.fault({ op: "mint", kind: "401" });
    await keep(await sendWebhook(w, { model_set: "demo" }));
    w.clock.advance(25 * HOUR);
    await w.tick();
    await readKeys();
    await keep(await w.request("/v1/admin/status", { headers: adminHeaders }));

    expect(new Set(keys).size).toBeGreaterThanOrEqual(5);
    expect(lines.length).toBeGreaterThan(10); // the scan below saw real output
    expect(lines.some((l) => l.includes("event.delivery_failed"))).toBe(true);
    const secrets = [
      ...keys,
      ...keys.map((k) => k.slice(k.indexOf(".") + 1)),
      w.fake.key,
      w.env.ENCRYPTION_KEY!,
      w.env.WEBHOOK_SECRET!,
      w.env.WEBHOOK_SECRET!.slice("whsec_".length),
      w.env.ADMIN_TOKEN!,
      subscriberSecret,
      ...Object.values(w.tokens),
    ];
    for (const s of secrets) {
      for (const l of lines) expect(l, "log line").not.toContain(s);
      for (const b of bodies) expect(b, "response body").not.toContain(s);
    }
    for (const d of await sink.sink()) for (const s of secrets) expect(d.body).not.toContain(s);
  });
});
