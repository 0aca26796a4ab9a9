/**
 * Keys at rest: after mints, a scheduled rotation, an early rotation and a revocation, no issued
 * key is readable anywhere in D1 (every row of every table) or KV (every value and its metadata),
 * neither in plaintext nor base64; every ciphertext has its own IV; and a deployment holding the
 * wrong ENCRYPTION_KEY fails closed (503 undecryptable_keys, no key material) instead of serving garbage.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../src/app.ts";
import { type CacheMetadata, forgetInMemory, kvKey } from "../src/cache.ts";
import { fromBase64 } from "../src/crypto.ts";
import type { KeyDocument } from "../src/document.ts";
import type { Env } from "../src/env.ts";
import { runSet } from "../src/rotation.ts";
import { HOUR, MIN, type World, makeWorld, prefixOf, randomB64 } from "./helpers/world.ts";

/** Every row of every table D1 lets us read, as text. */
async function dumpD1(): Promise<{ tables: string[]; text: string }> {
  const { results } = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all<{ name: string }>();
  const tables: string[] = [];
  let text = "";
  for (const { name } of results) {
    if (name.startsWith("_cf_")) continue; // D1's own metadata: not readable (SQLITE_AUTH), holds nothing of ours
    tables.push(name);
    const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all();
    text += `\n${name}: ${JSON.stringify(rows.results)}`;
  }
  return { tables, text };
}

/** Every KV key, value and metadata, as text. */
async function dumpKV(): Promise<{ count: number; text: string }> {
  const listed = await env.KEYS.list();
  let text = "";
  for (const k of listed.keys) {
    const { value, metadata } = await env.KEYS.getWithMetadata(k.name);
    text += `\n${k.name} ${JSON.stringify(k.metadata)} ${value} ${JSON.stringify(metadata)}`;
  }
  return { count: listed.keys.length, text };
}

async function fetchDoc(w: World): Promise<KeyDocument> {
  w.clock.advance(10_000); // past the isolate's memory cache
  const res = await w.getKey("demo");
  expect(res.status).toBe(200);
  return (await res.json()) as KeyDocument;
}

/** Ways a key could leak into storage: itself, its secret part, their base64 and URL encodings. */
function leakForms(apiKey: string): string[] {
  const secret = apiKey.slice(apiKey.indexOf(".") + 1);
  return [apiKey, secret, btoa(apiKey), btoa(secret), btoa(apiKey).replace(/=+$/, ""), encodeURIComponent(apiKey)];
}

describe("encryption at rest", () => {
  afterEach(() => vi.restoreAllMocks());

  it("no issued key appears in D1 or KV in plaintext or base64, in logs either; IVs are never reused", async () => {
    const logs: string[] = [];
    for (const level of ["log", "info", "warn", "error"] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void logs.push(args.map(String).join(" ")));
    }
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    const issued: string[] = [];

    await w.tick(); // gen 1
    issued.push((await fetchDoc(w)).api_key);
    w.clock.advance(24 * HOUR);
    await w.tick(); // gen 2, on schedule
    issued.push((await fetchDoc(w)).api_key);
    const early = await runSet(w.engine(), "demo", { trigger: "admin", mint: "now", reason: "test" }); // gen 3, early
    expect(early).toMatchObject({ outcome: "rotated" });
    issued.push((await fetchDoc(w)).api_key);
    w.clock.advance(2 * HOUR);
    await w.tick(); // gen 1's promise has ended: revoked (gen 2 keeps the promise it was served with)
    expect(new Set(issued).size).toBe(3);
    // The fake confirms these are the keys it issued, and that the old ones were revoked.
    const atFake = await w.fake.keys();
    expect(atFake.map((k) => k.prefix).sort()).toEqual(issued.map(prefixOf).sort());
    expect(atFake.filter((k) => k.revoked_at !== null).map((k) => k.prefix)).toEqual([prefixOf(issued[0]!)]);

    const d1 = await dumpD1();
    expect(d1.tables).toEqual(expect.arrayContaining(["sets", "keys", "audit", "webhook_receipts"]));
    const kv = await dumpKV();
    expect(kv.count).toBe(1);
    for (const key of issued) {
      for (const form of leakForms(key)) {
        expect(d1.text).not.toContain(form);
        expect(kv.text).not.toContain(form);
        expect(logs.join("\n")).not.toContain(form);
      }
    }
    // The management key is not stored either.
    expect(d1.text + kv.text).not.toContain(w.fake.key);

    // Every stored ciphertext has its own 96-bit IV.
    const { results } = await env.DB.prepare("SELECT generation, ciphertext FROM keys WHERE model_set = 'demo' ORDER BY generation").all<{
      generation: number;
      ciphertext: string;
    }>();
    expect(results.map((r) => r.generation)).toEqual([1, 2, 3]);
    // Format k1:<key id>:<base64(iv || ciphertext)> (src/keyring.ts), sealed by ENCRYPTION_KEY.
    for (const r of results) expect(r.ciphertext).toMatch(/^k1:[0-9a-f]{8}:[A-Za-z0-9+/]+=*$/);
    const ivs = results.map((r) => [...fromBase64(r.ciphertext.split(":")[2]!).subarray(0, 12)].join(","));
    expect(new Set(ivs).size).toBe(3);
    // KV holds the current key's whole entry sealed as one ciphertext (AAD: its KV key), not
    // JSON: nothing of it (times, ids, the key) is readable or editable in KV.
    const { value, metadata } = await env.KEYS.getWithMetadata<CacheMetadata>(kvKey("demo"));
    expect(metadata?.g).toBe(3);
    expect(() => JSON.parse(value!)).toThrow();
    expect(value).not.toBe(results[2]!.ciphertext);
    // Sealed by ENCRYPTION_KEY, in the keyring's format; the metadata names the sealing key id (re-sealing reads it from KV's list).
    expect(value).toMatch(/^k1:[0-9a-f]{8}:[A-Za-z0-9+/]+=*$/);
    expect(metadata?.s).toBe(value!.split(":")[1]);
    expect(metadata?.s).toBe(results[2]!.ciphertext.split(":")[1]);
    expect(fromBase64(value!.split(":")[2]!).length).toBeGreaterThan(12 + 16 + 100);
  });

  it("with the wrong ENCRYPTION_KEY the read path fails closed with 503 undecryptable_keys and serves no key", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    const good = await fetchDoc(w);

    // Same storage, another deployment's key (e.g. ENCRYPTION_KEY replaced without re-minting).
    const wrongEnv = { ...w.env, ENCRYPTION_KEY: randomB64(32) } as Env;
    const app = createApp({ clock: w.clock.now });
    const errors = vi.spyOn(console, "error");
    const warns = vi.spyOn(console, "warn");
    forgetInMemory(env.KEYS);
    w.clock.advance(MIN);
    for (const path of ["/v1/keys/demo", "/v1/keys"]) {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request(`https://rotator.test${path}`, { headers: { authorization: `Bearer ${w.tokens["demo-svc"]}` } }),
        wrongEnv,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      expect(res.status, path).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ error: "undecryptable_keys" });
      expect(text).not.toContain(prefixOf(good.api_key));
    }
    // KV's entry failed to decrypt (logged), D1's too (logged, named): both without key material.
    const logged = [...errors.mock.calls, ...warns.mock.calls].map((a) => a.join(" ")).join("\n");
    expect(logged).toContain("cache.read_failed");
    expect(logged).toContain("read.undecryptable");
    expect(logged).not.toContain("http.unhandled");
    for (const form of leakForms(good.api_key)) expect(logged).not.toContain(form);

    // The right key still reads the same storage.
    const again = await fetchDoc(w);
    expect(again.api_key).toBe(good.api_key);
  });
});
