/**
 * Changing ENCRYPTION_KEY without an outage (DESIGN §4.9): the new key seals, the old one listed in
 * ENCRYPTION_KEY_PREVIOUS still opens, every tick re-seals a bounded number of stored keys (D1 rows
 * of enabled, disabled and removed sets; KV entries), `encryption.sealed_by` shows when only the
 * primary is left, and then the old key can go. A stored key no configured key opens is named
 * (/healthz and the read path: 503 undecryptable_keys), never a bare 500.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type CacheMetadata, kvKey } from "../src/cache.ts";
import { fromBase64, seal as sealRaw, sha256HexSync } from "../src/crypto.ts";
import type { KeyDocument } from "../src/document.ts";
import { UndecryptableError, createKeyring, keyId, open, openWithId, seal, sealedBy } from "../src/keyring.ts";
import { resealBatch } from "../src/reseal.ts";
import { redeploy } from "./helpers/secrets.ts";
import { HOUR, MIN, type World, makeWorld, randomB64 } from "./helpers/world.ts";

const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");

describe("keyring", () => {
  it("the synchronous SHA-256 agrees with WebCrypto", async () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 1000]) {
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      expect(sha256HexSync(bytes), `${n} bytes`).toBe(hex(await crypto.subtle.digest("SHA-256", bytes)));
    }
  });

  it("a key id is the first 8 hex of SHA-256 of the raw key; ciphertexts record it; the keyring shows ids only", async () => {
    const a = randomB64(32);
    const b = randomB64(32);
    expect(keyId(a)).toBe(hex(await crypto.subtle.digest("SHA-256", fromBase64(a))).slice(0, 8));
    const ring = createKeyring(a, [b]);
    expect(ring).toEqual({ primaryId: keyId(a), ids: [keyId(a), keyId(b)] });
    expect(JSON.stringify(ring)).not.toContain(a);
    const sealed = await seal(ring, "abcd1234.secret-part", "demo:1");
    expect(sealed).toMatch(new RegExp(`^k1:${keyId(a)}:[A-Za-z0-9+/]+=*$`));
    expect(sealedBy(sealed)).toBe(keyId(a));
    expect(await open(ring, sealed, "demo:1")).toBe("abcd1234.secret-part");
    // Bound to its place: another set's AAD does not open it.
    await expect(open(ring, sealed, "other:1")).rejects.toBeInstanceOf(UndecryptableError);
  });

  it("today's format (no key id) opens with any configured key, the primary tried first", async () => {
    const oldKey = randomB64(32);
    const newKey = randomB64(32);
    const legacy = await sealRaw(oldKey, "abcd1234.secret-part", "demo:1");
    expect(sealedBy(legacy)).toBeNull();
    expect(await openWithId(createKeyring(newKey, [oldKey]), legacy, "demo:1")).toEqual({
      plaintext: "abcd1234.secret-part",
      keyId: keyId(oldKey),
    });
    expect(await openWithId(createKeyring(oldKey), legacy, "demo:1")).toEqual({ plaintext: "abcd1234.secret-part", keyId: keyId(oldKey) });
    const err = await openWithId(createKeyring(newKey), legacy, "demo:1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UndecryptableError);
    expect(String((err as Error).message)).not.toContain(oldKey);
  });

  it("a ciphertext sealed under a key that is not configured names that key id, nothing else", async () => {
    const gone = randomB64(32);
    const sealed = await seal(createKeyring(gone), "k.v", "demo:1");
    const err = (await open(createKeyring(randomB64(32)), sealed, "demo:1").catch((e: unknown) => e)) as UndecryptableError;
    expect(err).toBeInstanceOf(UndecryptableError);
    expect(err.sealedBy).toBe(keyId(gone));
    expect(err.message).toContain(keyId(gone));
    expect(err.message).not.toContain(gone);
  });
});

async function doc(res: Response): Promise<KeyDocument> {
  if (res.status !== 200) throw new Error(`expected 200, got ${res.status}: ${await res.text()}`);
  return (await res.json()) as KeyDocument;
}

async function storedSealers(): Promise<{ d1: Record<string, (string | null)[]>; kv: Record<string, string | undefined> }> {
  const { results } = await env.DB.prepare(
    "SELECT model_set, ciphertext FROM keys WHERE ciphertext IS NOT NULL ORDER BY model_set, generation",
  ).all<{ model_set: string; ciphertext: string }>();
  const d1: Record<string, (string | null)[]> = {};
  for (const r of results) (d1[r.model_set] ??= []).push(sealedBy(r.ciphertext));
  const kv: Record<string, string | undefined> = {};
  for (const k of (await env.KEYS.list<CacheMetadata>()).keys) kv[k.name] = k.metadata?.s;
  return { d1, kv };
}

/** Rewrites every stored ciphertext into today's format (no key id) under `keyB64`: rows written before this version. */
async function makeLegacy(keyB64: string, ring: ReturnType<typeof createKeyring>) {
  const { results } = await env.DB.prepare("SELECT model_set, generation, ciphertext FROM keys WHERE ciphertext IS NOT NULL").all<{
    model_set: string;
    generation: number;
    ciphertext: string;
  }>();
  for (const r of results) {
    const aad = `${r.model_set}:${r.generation}`;
    const legacy = await sealRaw(keyB64, await open(ring, r.ciphertext, aad), aad);
    await env.DB.prepare("UPDATE keys SET ciphertext = ?1 WHERE model_set = ?2 AND generation = ?3")
      .bind(legacy, r.model_set, r.generation)
      .run();
    // KV (engine v2): the whole entry sealed as one ciphertext, AAD = the KV key; before key ids, without one.
    const { value, metadata } = await env.KEYS.getWithMetadata<CacheMetadata>(kvKey(r.model_set), { type: "text" });
    if (value !== null && metadata?.g === r.generation) {
      const whole = await open(ring, value, kvKey(r.model_set));
      await env.KEYS.put(kvKey(r.model_set), await sealRaw(keyB64, whole, kvKey(r.model_set)), { metadata: { g: metadata.g } });
    }
  }
}

describe("changing ENCRYPTION_KEY", () => {
  /** demo (enabled, two generations), other (enabled, then disabled), gone (then removed from MODEL_SETS). */
  async function worldWithHistory(): Promise<{ w: World; oldKey: string; sets: Record<string, Record<string, unknown>> }> {
    const sets = {
      demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
      other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
      gone: { model_ids: ["zxcv5555"], rotate_every: "24h", overlap: "1h" },
    };
    const w = await makeWorld({ sets, consumers: { "demo-svc": ["demo"], "other-svc": ["other"], "gone-svc": ["gone"] } });
    await w.tick();
    w.clock.advance(24 * HOUR);
    await w.tick(); // generation 2 of each; generation 1 previous
    w.clock.advance(2 * HOUR);
    await w.tick(); // generation 1 revoked (its ciphertext stays in D1)
    return { w, oldKey: w.env.ENCRYPTION_KEY!, sets };
  }

  it("new key with the old one listed: no 5xx, a few ticks re-seal everything (a disabled and a removed set too), then the old key can go", async () => {
    const { w, oldKey, sets } = await worldWithHistory();
    // Rows and entries written by the version before key ids: the format without an id.
    await makeLegacy(oldKey, createKeyring(oldKey));
    const before = await Promise.all(["demo", "other"].map(async (s) => (await doc(await w.getKey(s, `${s}-svc`))).api_key));

    const newKey = randomB64(32);
    const changedSets = { ...sets, other: { ...sets.other, enabled: false } } as Record<string, unknown>;
    delete changedSets.gone;
    const consumers = JSON.parse(String(w.env.CONSUMERS)) as Record<string, unknown>;
    delete consumers["gone-svc"];
    const CONSUMERS = JSON.stringify(consumers);
    const rolled = redeploy(w, {
      ENCRYPTION_KEY: newKey,
      ENCRYPTION_KEY_PREVIOUS: oldKey,
      MODEL_SETS: JSON.stringify(changedSets),
      CONSUMERS,
    });

    // Right after the restart: every read works, health is fine, status shows the old key still in use.
    const health = await rolled.request("/healthz");
    expect(health.status, await health.clone().text()).toBe(200);
    expect((await doc(await rolled.getKey("demo", "demo-svc"))).api_key).toBe(before[0]);
    expect((await doc(await rolled.getKey("other", "other-svc"))).api_key).toBe(before[1]);
    const first = await rolled.status();
    expect(first.encryption!.primary).toBe(keyId(newKey));
    expect(first.encryption!.configured).toEqual([keyId(newKey), keyId(oldKey)]);
    expect(first.encryption!.sealed_by).toEqual({ [keyId(oldKey)]: 6 + 3 }); // 2 rows per set in D1, 3 KV entries
    expect(first.encryption!.undecryptable).toEqual({ count: 0, model_sets: [] });

    // A few ticks (each re-seals a bounded batch): then only the primary is left, D1 and KV.
    for (let i = 0; i < 3; i++) {
      w.clock.advance(MIN);
      await rolled.tick();
      expect((await rolled.getKey("demo", "demo-svc")).status).toBe(200);
    }
    const after = await rolled.status();
    expect(after.encryption!.sealed_by).toEqual({ [keyId(newKey)]: expect.any(Number) });
    expect(after.encryption!.unattributed).toBe(0);
    const stored = await storedSealers();
    expect(stored.d1).toEqual({
      demo: Array(2).fill(keyId(newKey)),
      other: Array(2).fill(keyId(newKey)),
      gone: Array(2).fill(keyId(newKey)),
    });
    expect(Object.values(stored.kv).every((s) => s === keyId(newKey))).toBe(true);
    const audit = await env.DB.prepare(
      "SELECT model_set, COUNT(*) AS n FROM audit WHERE action = 'resealed' GROUP BY model_set ORDER BY model_set",
    ).all<{ model_set: string; n: number }>();
    expect(audit.results).toEqual([
      { model_set: "demo", n: 2 },
      { model_set: "gone", n: 2 },
      { model_set: "other", n: 2 },
    ]);

    // The old key removed: still the same keys, still healthy, no 5xx anywhere.
    const done = redeploy(w, {
      ENCRYPTION_KEY: newKey,
      ENCRYPTION_KEY_PREVIOUS: undefined,
      MODEL_SETS: JSON.stringify(changedSets),
      CONSUMERS,
    });
    expect((await done.request("/healthz")).status).toBe(200);
    expect((await doc(await done.getKey("demo", "demo-svc"))).api_key).toBe(before[0]);
    expect((await doc(await done.getKey("other", "other-svc"))).api_key).toBe(before[1]);
    w.clock.advance(MIN);
    const summary = await done.tick();
    expect(summary.results.every((r) => r.outcome !== "failed")).toBe(true);
    // The next rotation seals with the new key, the disabled set keeps its key.
    w.clock.advance(24 * HOUR);
    await done.tick();
    const rotated = await doc(await done.getKey("demo", "demo-svc"));
    expect(rotated.generation).toBe(3);
    expect((await doc(await done.getKey("other", "other-svc"))).api_key).toBe(before[1]);
  });

  it("a disabled set whose key was sealed under the old key is re-sealed (it used to stay broken for good)", async () => {
    const sets = { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h", enabled: true } };
    const w = await makeWorld({ sets, consumers: { "demo-svc": ["demo"] } });
    await w.tick();
    const key = (await doc(await w.getKey("demo"))).api_key;
    const disabled = JSON.stringify({ demo: { ...sets.demo, enabled: false } });
    const newKey = randomB64(32);
    const rolled = redeploy(w, { ENCRYPTION_KEY: newKey, ENCRYPTION_KEY_PREVIOUS: w.env.ENCRYPTION_KEY, MODEL_SETS: disabled });
    // Admin rotate refuses a disabled set (409): only re-sealing can move its key to the new key.
    const rotate = await rolled.request("/v1/admin/rotate/demo", {
      method: "POST",
      headers: { authorization: `Bearer ${w.env.ADMIN_TOKEN}` },
    });
    expect(rotate.status).toBe(409);
    w.clock.advance(MIN);
    await rolled.tick();
    expect((await storedSealers()).d1.demo).toEqual([keyId(newKey)]);
    expect((await storedSealers()).kv[kvKey("demo")]).toBe(keyId(newKey));
    const done = redeploy(w, { ENCRYPTION_KEY: newKey, MODEL_SETS: disabled });
    expect((await doc(await done.getKey("demo"))).api_key).toBe(key);
    expect((await done.request("/healthz")).status).toBe(200);
  });

  it("the old key removed too early: /healthz 503 undecryptable_keys naming the sets, the read path 503 for that set, never a 500; putting it back heals", async () => {
    const w = await makeWorld();
    await w.tick();
    const oldKey = w.env.ENCRYPTION_KEY!;
    await makeLegacy(oldKey, createKeyring(oldKey)); // "demo" in today's format, "other" with a key id
    await env.DB.prepare("UPDATE keys SET ciphertext = ?1 WHERE model_set = 'other'")
      .bind(await seal(createKeyring(oldKey), (await doc(await w.getKey("other", "other-svc"))).api_key, "other:1"))
      .run();

    const broken = redeploy(w, { ENCRYPTION_KEY: randomB64(32) });
    for (const set of ["demo", "other"]) {
      const res = await broken.getKey(set, `${set}-svc`);
      expect(res.status, set).toBe(503);
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe("undecryptable_keys");
      expect(body.message).toContain(`"${set}"`);
      expect(body.message).not.toContain(oldKey);
    }
    // /healthz knows "other" at once (its key id is not configured); "demo" once a tick has tried it.
    let health = await broken.request("/healthz");
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ error: "undecryptable_keys", model_sets: ["other"] });
    w.clock.advance(MIN);
    await broken.tick();
    const brokenAgain = redeploy(w, { ENCRYPTION_KEY: broken.env.ENCRYPTION_KEY });
    health = await brokenAgain.request("/healthz");
    expect(await health.json()).toMatchObject({ error: "undecryptable_keys", model_sets: ["demo", "other"] });
    const status = await brokenAgain.status();
    // Two D1 rows and their two KV entries.
    expect(status.encryption!.undecryptable).toEqual({ count: 4, model_sets: ["demo", "other"] });
    expect(JSON.stringify(status)).not.toContain(oldKey);

    // The operator puts the old key back in ENCRYPTION_KEY_PREVIOUS: readable again, re-sealed by the next tick.
    const healed = redeploy(w, { ENCRYPTION_KEY: broken.env.ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS: oldKey });
    expect((await healed.getKey("demo", "demo-svc")).status).toBe(200);
    expect((await healed.request("/healthz")).status).toBe(200);
    w.clock.advance(MIN);
    await healed.tick();
    expect((await healed.status()).encryption!.sealed_by).toEqual({ [keyId(broken.env.ENCRYPTION_KEY!)]: 4 });
  });

  it("a KV entry is re-sealed whole, only under the set's lease, and only over D1's current generation (engine v2's fencing)", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick();
    const oldRing = createKeyring(w.env.ENCRYPTION_KEY!);
    const newRing = createKeyring(randomB64(32), [w.env.ENCRYPTION_KEY!]);
    const read = () => env.KEYS.getWithMetadata<CacheMetadata>(kvKey("demo"), { type: "text" });
    const before = await read();
    expect(before.metadata?.s).toBe(oldRing.primaryId);

    // A run holds the set's lease: the entry is left alone (the D1 rows are re-sealed, they need no lease).
    await env.DB.prepare("UPDATE sets SET lease_holder = 'a-run', lease_expires_at = ?1 WHERE model_set = 'demo'")
      .bind(w.clock.now() + 60_000)
      .run();
    const held = await resealBatch(env.DB, env.KEYS, newRing, undefined, w.clock.now());
    expect(held).toMatchObject({ resealed: 1, kvResealed: 0 });
    expect((await read()).value).toBe(before.value);
    expect(
      (await env.DB.prepare("SELECT lease_holder FROM sets WHERE model_set = 'demo'").first<{ lease_holder: string }>())?.lease_holder,
    ).toBe("a-run");

    // The lease free: the whole entry (every field, AAD = the KV key) is sealed again under the new primary, unchanged.
    await env.DB.prepare("UPDATE sets SET lease_holder = NULL, lease_expires_at = 0 WHERE model_set = 'demo'").run();
    expect(await resealBatch(env.DB, env.KEYS, newRing, undefined, w.clock.now())).toMatchObject({ kvResealed: 1 });
    const after = await read();
    expect(after.metadata).toEqual({ g: before.metadata!.g, s: newRing.primaryId });
    expect(sealedBy(after.value!)).toBe(newRing.primaryId);
    expect(JSON.parse(await open(newRing, after.value!, kvKey("demo")))).toEqual(
      JSON.parse(await open(oldRing, before.value!, kvKey("demo"))),
    );
    await expect(open(newRing, after.value!, kvKey("other"))).rejects.toThrow(UndecryptableError);

    // An entry older than D1's current generation (a stale cache) is not rewritten: never over a newer key,
    // never a regression; the engine's own repair rewrites it from D1.
    w.clock.advance(24 * HOUR);
    await w.tick(); // generation 2, KV written under the tick's keyring (the old key)
    await env.KEYS.put(kvKey("demo"), before.value!, { metadata: before.metadata! }); // generation 1 back in KV
    const stale = await resealBatch(env.DB, env.KEYS, newRing, undefined, w.clock.now());
    expect(stale.kvResealed).toBe(0);
    expect((await read()).value).toBe(before.value);
  });

  it("re-sealing is bounded per call and skips keys it cannot open (they never starve the rest)", async () => {
    const w = await makeWorld();
    await w.tick();
    const oldKey = w.env.ENCRYPTION_KEY!;
    const ring = createKeyring(oldKey);
    // 30 revoked rows of history under the old key, and one row sealed by a key nobody has.
    const stmts = Array.from({ length: 30 }, (_, i) =>
      env.DB.prepare(
        "INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, prefix, ciphertext, created_at) VALUES ('demo', ?1, 'revoked', ?2, '[]', 3600000, 'p', ?3, 0)",
      ),
    );
    const bound = await Promise.all(
      stmts.map(async (s, i) => s.bind(100 + i, `bkr-demo-${100 + i}-x`, await seal(ring, `pfx.secret-${i}`, `demo:${100 + i}`))),
    );
    const lost = await seal(createKeyring(randomB64(32)), "pfx.lost", "demo:99");
    await env.DB.batch([
      ...bound,
      env.DB.prepare(
        "INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, prefix, ciphertext, created_at) VALUES ('demo', 99, 'revoked', 'bkr-demo-99-x', '[]', 3600000, 'p', ?1, 0)",
      ).bind(lost),
    ]);

    const newRing = createKeyring(randomB64(32), [oldKey]);
    const first = await resealBatch(env.DB, env.KEYS, newRing, 10, w.clock.now());
    expect(first).toMatchObject({ resealed: expect.any(Number), more: true });
    expect(first.resealed + first.undecryptable).toBe(10);
    let total = first.resealed;
    for (let i = 0; i < 5; i++) total += (await resealBatch(env.DB, env.KEYS, newRing, 10, w.clock.now())).resealed;
    expect(total).toBe(32); // 30 + demo's and other's current rows
    const left = await env.DB.prepare("SELECT generation FROM keys WHERE substr(ciphertext, 1, 12) <> ?1")
      .bind(`k1:${newRing.primaryId}:`)
      .all<{ generation: number }>();
    expect(left.results).toEqual([{ generation: 99 }]);
    const last = await resealBatch(env.DB, env.KEYS, newRing, 10, w.clock.now());
    expect(last).toEqual({ resealed: 0, kvResealed: 0, undecryptable: 0, more: false });
    // Nothing left: later ticks cost one indexed D1 read and no KV list (billed per call).
    let lists = 0;
    const counting = new Proxy(env.KEYS, {
      get: (target, prop) =>
        prop === "list"
          ? (...a: unknown[]) => (lists++, (target.list as (...x: unknown[]) => unknown)(...a))
          : (Reflect.get(target, prop) as (...x: unknown[]) => unknown).bind(target),
    });
    expect(await resealBatch(env.DB, counting, newRing, 10, w.clock.now())).toEqual({
      resealed: 0,
      kvResealed: 0,
      undecryptable: 0,
      more: false,
    });
    expect(lists).toBe(0);
  });
});
