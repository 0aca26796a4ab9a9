/**
 * The client's identities and fresh reads (DESIGN §6): `token` as a function (sync or async,
 * called for every request to the rotator), `{binding, modelSet}` inside a Worker (against
 * the rotator's real KeyService over a service binding, and stub bindings for each error
 * code), and the refetch after a Baseten 401 asking for a fresh read.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type KeyDocument, KeyClientError, type KeyServiceBinding, createKeyClient } from "../src/client/index.ts";
import { makeWorld } from "./helpers/world.ts";

const T0 = Date.parse("2026-11-27T15:00:00.000Z");
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

function keyDoc(n: number): KeyDocument {
  return {
    model_set: "chat",
    model_ids: ["abcd1234"],
    api_key: `pfx${n}.KEY-secret-${n}`,
    generation: n,
    created_at: iso(T0 - HOUR),
    refresh_at: iso(T0 + 24 * HOUR),
    expires_at: iso(T0 + 25 * HOUR),
  };
}

/** A rotator stub recording the headers of each request; answers generation `gen.n`. */
function rotator(gen: { n: number }) {
  const calls: Headers[] = [];
  const fetch = async (_input: Request | string | URL, init?: RequestInit) => {
    calls.push(new Headers(init?.headers));
    return Response.json(keyDoc(gen.n));
  };
  return { calls, fetch };
}

/** Baseten stub: accepts only the key of generation `live.n`. */
const baseten = (live: { n: number }) => async (_input: Request | string | URL, init?: RequestInit) => {
  const ok = new Headers(init?.headers).get("authorization") === `Api-Key pfx${live.n}.KEY-secret-${live.n}`;
  return new Response(ok ? "ok" : "revoked", { status: ok ? 200 : 401 });
};

describe("token as a function", () => {
  it("a sync function is called for each request to the rotator, and its token is sent", async () => {
    const time = { now: T0 };
    const gen = { n: 1 };
    const r = rotator(gen);
    let calls = 0;
    const client = createKeyClient({
      url: "https://rotator.test",
      token: () => `jwt-${++calls}`,
      modelSet: "chat",
      fetch: r.fetch,
      clock: () => time.now,
    });
    await client.getKey();
    client.invalidate();
    time.now += 2_000;
    await client.getKey();
    expect(calls).toBe(2);
    expect(r.calls.map((h) => h.get("authorization"))).toEqual(["Bearer jwt-1", "Bearer jwt-2"]);
  });

  it("an async function (a projected token file, a CI OIDC token) works the same", async () => {
    const r = rotator({ n: 1 });
    const client = createKeyClient({
      url: "https://rotator.test",
      token: async () => "eyJhbGciOiJSUzI1NiJ9.e30.sig",
      modelSet: "chat",
      fetch: r.fetch,
    });
    expect((await client.getKey()).generation).toBe(1);
    expect(r.calls[0]!.get("authorization")).toBe("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig");
  });

  it("a token function that throws is a soft failure: the held key is kept; without one, unavailable, token never echoed", async () => {
    const time = { now: T0 };
    const r = rotator({ n: 1 });
    let broken = false;
    const client = createKeyClient({
      url: "https://rotator.test",
      token: () => (broken ? Promise.reject(new Error("ENOENT /var/run/secrets/tokens/bkr")) : "tok-SECRET-1"),
      modelSet: "chat",
      fetch: r.fetch,
      clock: () => time.now,
    });
    await client.getKey();
    broken = true;
    time.now += 25 * HOUR - 1_000; // past refresh, still promised
    expect((await client.getKey()).generation).toBe(1);
    const fresh = createKeyClient({
      url: "https://rotator.test",
      token: () => Promise.reject(new Error("no token")),
      modelSet: "chat",
      fetch: r.fetch,
    });
    const err = await fresh.getKey().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyClientError);
    expect((err as KeyClientError).code).toBe("unavailable");
    expect((err as Error).message).toMatch(/token function failed/);
    expect((err as Error).message).not.toContain("tok-SECRET");
  });

  it("a token function returning a non-string or whitespace: unavailable", async () => {
    const r = rotator({ n: 1 });
    for (const bad of [() => "", () => "a b", () => 42 as unknown as string]) {
      const err = await createKeyClient({ url: "https://rotator.test", token: bad, modelSet: "chat", fetch: r.fetch })
        .getKey()
        .catch((e: unknown) => e);
      expect((err as KeyClientError).code).toBe("unavailable");
    }
    expect(r.calls.length).toBe(0);
  });
});

describe("the refetch after a Baseten 401 asks for a fresh read", () => {
  it("sends Cache-Control: no-cache on that refetch only, and retries with the new key", async () => {
    const time = { now: T0 };
    const gen = { n: 1 };
    const live = { n: 1 };
    const r = rotator(gen);
    const client = createKeyClient({
      url: "https://rotator.test",
      token: "tok",
      modelSet: "chat",
      fetch: r.fetch,
      basetenFetch: baseten(live),
      clock: () => time.now,
      random: () => 0,
    });
    expect((await client.fetchWithKey("https://model.test/predict")).status).toBe(200);
    time.now += 5_000;
    gen.n = 2;
    live.n = 2; // leak response: the old key is dead
    expect((await client.fetchWithKey("https://model.test/predict")).status).toBe(200);
    expect(r.calls.map((h) => h.get("cache-control"))).toEqual([null, "no-cache"]);
    client.invalidate();
    time.now += 2_000;
    await client.getKey();
    expect(r.calls.at(-1)!.get("cache-control")).toBe("no-cache");
    // A successful fresh read ends it: an ordinary refresh is an ordinary read.
    time.now += 25 * HOUR;
    await client.getKey();
    expect(r.calls.at(-1)!.get("cache-control")).toBeNull();
  });
});

describe("{binding, modelSet} inside a Worker", () => {
  it("gets the key over the rotator's real KeyService binding (props: edge-svc)", async () => {
    const w = await makeWorld({
      consumers: {},
      vars: { ENCRYPTION_KEY: env.ENCRYPTION_KEY, MODEL_SETS: env.MODEL_SETS, CONSUMERS: env.CONSUMERS },
    });
    await w.tick();
    const client = createKeyClient({ binding: env.KEY_ROTATOR, modelSet: "demo" });
    const doc = await client.getKey();
    expect(doc).toMatchObject({ model_set: "demo", generation: 1 });
    expect(Object.isFrozen(doc)).toBe(true);
    const other = await createKeyClient({ binding: env.KEY_ROTATOR as unknown as KeyServiceBinding, modelSet: "other" })
      .getKey()
      .catch((e: unknown) => e);
    expect((other as KeyClientError).code).toBe("unauthorized");
  });

  it("maps each coded error, asks for fresh after invalidate, and validates its options", async () => {
    const seen: unknown[] = [];
    const answer = { value: null as unknown, error: null as string | null };
    const stubBinding: KeyServiceBinding = {
      async getKey(set, options) {
        seen.push([set, options]);
        if (answer.error) throw new Error(answer.error);
        return answer.value as KeyDocument;
      },
    };
    const codes: [string, string][] = [
      ["unauthorized: no props", "unauthorized"],
      ["forbidden: not granted", "unauthorized"],
      ["unknown_model_set: no such model set", "unknown_set"],
      ["no_key_yet: not yet", "no_key_yet"],
      ["config_invalid: 3 problems", "unavailable"],
      ["Network connection lost.", "unavailable"],
    ];
    for (const [message, code] of codes) {
      answer.error = message;
      const err = await createKeyClient({ binding: stubBinding, modelSet: "chat" })
        .getKey()
        .catch((e: unknown) => e);
      expect((err as KeyClientError).code, message).toBe(code);
    }
    answer.error = null;
    answer.value = { not: "a document" };
    expect(
      (
        (await createKeyClient({ binding: stubBinding, modelSet: "chat" })
          .getKey()
          .catch((e: unknown) => e)) as KeyClientError
      ).code,
    ).toBe("bad_response");
    const time = { now: T0 };
    answer.value = keyDoc(1);
    const client = createKeyClient({ binding: stubBinding, modelSet: "chat", clock: () => time.now });
    seen.length = 0;
    await client.getKey();
    client.invalidate();
    time.now += 2_000;
    await client.getKey();
    expect(seen).toEqual([
      ["chat", {}],
      ["chat", { fresh: true }],
    ]);

    expect(() => createKeyClient({ binding: stubBinding, url: "https://x.test", modelSet: "chat" })).toThrow(TypeError);
    expect(() => createKeyClient({ binding: {} as KeyServiceBinding, modelSet: "chat" })).toThrow(/binding/);
    expect(() => createKeyClient({ modelSet: "chat" })).toThrow(/url/);
  });
});
