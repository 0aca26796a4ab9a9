/**
 * OIDC workload identities (DESIGN §3.1) against a real issuer on loopback
 * (test/helpers/oidc-issuer.ts: discovery + JWKS, RS256 and ES256 keys, rotation, faults):
 * valid JWTs get keys, every bad one gets 401 naming the check (never the token), a valid
 * identity without the grant gets 403, the issuer failing breaks neither static tokens nor an
 * already-cached JWKS, and the JWKS is fetched a bounded number of times.
 */
import { env } from "cloudflare:test";
import { beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import type { KeyDocument } from "../src/document.ts";
import { forgetOidcCaches, setOidcFetchForTests } from "../src/identity/oidc.ts";
import { MIN, type World, makeWorld, sha256Hex } from "./helpers/world.ts";

const BASE = inject("oidcIssuerUrl");
const run = crypto.randomUUID().slice(0, 8);

interface SignOptions {
  alg?: "RS256" | "ES256" | "HS256-public" | "none";
  claims?: Record<string, unknown>;
  unpublished?: boolean;
  kid?: string;
}

class Issuer {
  constructor(readonly tenant: string) {}
  get url() {
    return `${BASE}/t/${this.tenant}`;
  }
  async post(path: string, body: unknown) {
    const res = await fetch(`${this.url}${path}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`issuer ${path}: ${res.status}`);
    return res.json() as Promise<Record<string, unknown>>;
  }
  /** A JWT with sensible defaults at `nowMs` (override or drop claims with null). */
  async sign(nowMs: number, o: SignOptions = {}): Promise<string> {
    const now = Math.floor(nowMs / 1000);
    const claims = {
      aud: "bkr",
      sub: "repo:acme/api:ref:refs/heads/main",
      iat: now,
      exp: now + 600,
      jti: crypto.randomUUID(),
      ...o.claims,
    };
    return (await this.post("/__sign", { alg: o.alg ?? "RS256", claims, unpublished: o.unpublished, kid: o.kid })).token as string;
  }
  mode(mode: { jwks?: string; discovery?: string }) {
    return this.post("/__mode", mode);
  }
  rotate(alg: "RS256" | "ES256") {
    return this.post("/__rotate", { alg });
  }
  async stats(): Promise<{ discovery: number; jwks: number }> {
    return (await fetch(`${this.url}/__stats`)).json() as Promise<{ discovery: number; jwks: number }>;
  }
}

const SETS = {
  demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
  other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
};

async function world(issuer: Issuer, extra: Record<string, unknown> = {}) {
  const staticToken = `tok_${crypto.randomUUID().replaceAll("-", "")}`;
  const consumers = {
    "static-svc": { token_sha256: await sha256Hex(staticToken), model_sets: ["demo"] },
    "gh-main": { oidc: { issuer: issuer.url, audience: "bkr", subject: "repo:acme/*:ref:refs/heads/main" }, model_sets: ["demo"] },
    "gh-prod": {
      oidc: { issuer: issuer.url, audience: "bkr-prod", subject: "repo:acme/*", claims: { environment: "prod" } },
      model_sets: ["other"],
    },
    ...extra,
  };
  const w = await makeWorld({ sets: SETS, consumers: {}, vars: { CONSUMERS: JSON.stringify(consumers) } });
  await w.tick();
  return { w, staticToken };
}

const get = (w: World, path: string, token: string, headers: Record<string, string> = {}) =>
  w.request(path, { headers: { authorization: `Bearer ${token}`, ...headers } });

async function refusal(res: Response): Promise<{ error: string; message: string }> {
  expect(res.status).toBe(401);
  expect(res.headers.get("www-authenticate")).toMatch(/^Bearer\b/);
  return (await res.json()) as { error: string; message: string };
}

describe("OIDC: valid identities", () => {
  const issuer = new Issuer(`ok-${run}`);
  let w: World;
  let staticToken: string;
  beforeAll(async () => {
    forgetOidcCaches();
    ({ w, staticToken } = await world(issuer));
  });

  it("an RS256 and an ES256 JWT each get the key on both key routes", async () => {
    for (const alg of ["RS256", "ES256"] as const) {
      const token = await issuer.sign(w.clock.now(), { alg });
      const one = await get(w, "/v1/keys/demo", token);
      expect(one.status, alg).toBe(200);
      expect(((await one.json()) as KeyDocument).model_set).toBe("demo");
      const all = await get(w, "/v1/keys", token);
      expect(all.status).toBe(200);
      expect(((await all.json()) as { keys: KeyDocument[] }).keys.map((k) => k.model_set)).toEqual(["demo"]);
    }
    const res = await get(w, "/v1/keys/demo", staticToken);
    expect(res.status).toBe(200);
  });

  it("a valid identity without the grant: 403", async () => {
    const res = await get(w, "/v1/keys/other", await issuer.sign(w.clock.now()));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe("forbidden");
  });

  it("a JWT matching several oidc consumers has the union of their grants", async () => {
    const token = await issuer.sign(w.clock.now(), { claims: { aud: ["bkr", "bkr-prod"], environment: "prod" } });
    for (const set of ["demo", "other"]) expect((await get(w, `/v1/keys/${set}`, token)).status, set).toBe(200);
    const all = (await (await get(w, "/v1/keys", token)).json()) as { keys: KeyDocument[] };
    expect(all.keys.map((k) => k.model_set).sort()).toEqual(["demo", "other"]);
  });

  it("subject patterns: * spans any run of characters, / included, anchored at both ends", async () => {
    const ok = ["repo:acme/api:ref:refs/heads/main", "repo:acme/a/b/c:ref:refs/heads/main", "repo:acme/:ref:refs/heads/main"];
    const bad = ["repo:acme/api:ref:refs/heads/main2", "xrepo:acme/api:ref:refs/heads/main", "repo:other/api:ref:refs/heads/main"];
    for (const sub of ok)
      expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { claims: { sub } }))).status, sub).toBe(200);
    for (const sub of bad) {
      const body = await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { claims: { sub } })));
      expect(body.message, sub).toMatch(/^subject\b/);
    }
  });

  it("60 s leeway: expired 30 s ago still works, 90 s ago does not", async () => {
    const now = Math.floor(w.clock.now() / 1000);
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { claims: { exp: now - 30, iat: now - 600 } }))).status).toBe(
      200,
    );
    expect(
      (await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { claims: { exp: now - 90, iat: now - 600 } }))))
        .message,
    ).toMatch(/^expired\b/);
  });
});

describe("OIDC: every bad JWT is a 401 naming the check, with no 5xx, no write, no echo", () => {
  const issuer = new Issuer(`bad-${run}`);
  const stranger = new Issuer(`stranger-${run}`);
  let w: World;
  let staticToken: string;
  beforeAll(async () => {
    forgetOidcCaches();
    ({ w, staticToken } = await world(issuer));
    // Warm the JWKS so the table below tests checks, not the first fetch.
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
  });

  const cases: [string, (now: number) => Promise<string>, string][] = [
    ["malformed: not base64url JSON", async () => "eyJub3QganNvbg.eyJhIjoxfQ.c2ln", "malformed"],
    ["malformed: two segments", async () => "eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ", "malformed"],
    ["truncated inside the signature", async (n) => (await issuer.sign(n)).slice(0, -12), "signature"],
    ["truncated to header and payload", async (n) => (await issuer.sign(n)).split(".").slice(0, 2).join(".") + ".", "signature"],
    ["oversized (> 8 KiB)", async (n) => issuer.sign(n, { claims: { pad: "x".repeat(9000) } }), "malformed"],
    ["wrongly typed exp (a string)", async (n) => issuer.sign(n, { claims: { exp: "tomorrow" } }), "malformed"],
    ["no exp at all", async (n) => issuer.sign(n, { claims: { exp: null } }), "malformed"],
    ["wrongly typed aud (a number)", async (n) => issuer.sign(n, { claims: { aud: 42 } }), "audience"],
    ["alg: none", async (n) => issuer.sign(n, { alg: "none" }), "signature"],
    ["HS256 signed with the issuer's public key", async (n) => issuer.sign(n, { alg: "HS256-public" }), "signature"],
    ["another audience", async (n) => issuer.sign(n, { claims: { aud: "someone-else" } }), "audience"],
    ["another issuer (a real one, not trusted here)", async (n) => stranger.sign(n), "issuer"],
    ["an iss claim naming our issuer, signed by another", async (n) => stranger.sign(n, { claims: { iss: issuer.url } }), "signature"],
    ["expired", async (n) => issuer.sign(n, { claims: { exp: Math.floor(n / 1000) - 3600, iat: Math.floor(n / 1000) - 7200 } }), "expired"],
    ["nbf in the future", async (n) => issuer.sign(n, { claims: { nbf: Math.floor(n / 1000) + 600 } }), "not_yet_valid"],
    [
      "iat in the future",
      async (n) => issuer.sign(n, { claims: { iat: Math.floor(n / 1000) + 600, exp: Math.floor(n / 1000) + 1200 } }),
      "not_yet_valid",
    ],
    ["a kid the issuer does not have", async (n) => issuer.sign(n, { unpublished: true }), "signature"],
    ["a known kid, signed by another key", async (n) => issuer.sign(n, { unpublished: true, kid: `bad-${run}-rs-1` }), "signature"],
    ["a subject no consumer accepts", async (n) => issuer.sign(n, { claims: { sub: "repo:evil/api:ref:refs/heads/main" } }), "subject"],
    [
      "a required claim that does not match",
      async (n) => issuer.sign(n, { claims: { aud: "bkr-prod", sub: "repo:acme/api", environment: "staging" } }),
      "claim",
    ],
  ];

  it.each(cases)("%s", async (_name, make, word) => {
    const token = await make(w.clock.now());
    let d1 = 0;
    let kvWrites = 0;
    const countedEnv = {
      ...w.env,
      DB: new Proxy(w.env.DB, {
        get: (t, p) => (d1++, typeof Reflect.get(t, p) === "function" ? Reflect.get(t, p).bind(t) : Reflect.get(t, p)),
      }),
      KEYS: new Proxy(w.env.KEYS, {
        get: (t, p) => (
          (p === "put" || p === "delete") && kvWrites++,
          typeof Reflect.get(t, p) === "function" ? Reflect.get(t, p).bind(t) : Reflect.get(t, p)
        ),
      }),
    };
    const { createApp } = await import("../src/app.ts");
    const app = createApp({ clock: w.clock.now });
    for (const path of ["/v1/keys/demo", "/v1/keys"]) {
      const res = await app.fetch(
        new Request(`https://rotator.test${path}`, { headers: { authorization: `Bearer ${token}` } }),
        countedEnv as typeof w.env,
        { waitUntil() {}, passThroughOnException() {} } as unknown as ExecutionContext,
      );
      const body = await refusal(res);
      expect(body.error).toBe("unauthorized");
      expect(body.message, path).toMatch(new RegExp(`^${word}\\b`));
      const text = JSON.stringify(body);
      for (const part of token.split(".")) if (part.length >= 8) expect(text).not.toContain(part.slice(0, 40));
    }
    expect(d1, "D1 touched").toBe(0);
    expect(kvWrites, "KV written").toBe(0);
    // Static-token consumers keep working.
    expect((await get(w, "/v1/keys/demo", staticToken)).status).toBe(200);
  });
});

describe("OIDC: the issuer failing, rotating and being flooded", () => {
  let issuer: Issuer;
  let w: World;
  let staticToken: string;
  beforeEach(async () => {
    forgetOidcCaches();
    issuer = new Issuer(`f-${crypto.randomUUID().slice(0, 8)}`);
    ({ w, staticToken } = await world(issuer));
  });

  it.each(["500", "garbage", "not_jwks"])(
    "JWKS %s: 401 signature, static tokens keep working, recovers once the issuer does",
    async (mode) => {
      await issuer.mode({ jwks: mode });
      const res = await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()));
      expect((await refusal(res)).message).toMatch(/^signature\b/);
      expect((await get(w, "/v1/keys/demo", staticToken)).status).toBe(200);
      await issuer.mode({ jwks: "ok" });
      w.clock.advance(6_000); // failures are retried at most every 5 s
      expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    },
  );

  it("an issuer that is down (network error): 401 signature, static tokens keep working, recovers", async () => {
    // workerd logs refused loopback connections as uncaught exceptions even when caught, so
    // the network failure is injected at the fetch the OIDC module uses.
    setOidcFetchForTests(async () => {
      throw new TypeError("Network connection lost.");
    });
    try {
      expect((await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now())))).message).toMatch(
        /^signature: could not get the issuer's signing keys/,
      );
      expect((await get(w, "/v1/keys/demo", staticToken)).status).toBe(200);
    } finally {
      setOidcFetchForTests(null);
    }
    w.clock.advance(6_000);
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
  });

  it("discovery answering 500: 401 signature; a flood while failing costs at most one attempt per 5 s", async () => {
    await issuer.mode({ discovery: "500" });
    const before = await issuer.stats();
    for (let i = 0; i < 20; i++)
      expect((await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now())))).message).toMatch(/^signature\b/);
    expect((await issuer.stats()).discovery - before.discovery).toBe(1);
  });

  it("an already-cached JWKS keeps working while the issuer is down, for up to 10 minutes", async () => {
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    await issuer.mode({ jwks: "500", discovery: "500" });
    w.clock.advance(9 * MIN);
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    w.clock.advance(2 * MIN);
    expect((await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now())))).message).toMatch(/^signature\b/);
  });

  it("a key rotated to a new kid: at most one refetch per 30 s, then the new kid works", async () => {
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { alg: "ES256" }))).status).toBe(200);
    const warm = await issuer.stats();
    w.clock.advance(10_000);
    await issuer.rotate("RS256");
    // Within 30 s of the last fetch: the unknown kid is refused, and however many arrive, nothing is fetched.
    for (let i = 0; i < 10; i++)
      expect((await refusal(await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now())))).message).toMatch(/^signature\b/);
    expect((await issuer.stats()).jwks).toBe(warm.jwks);
    // 30 s after the last fetch: one refetch finds the new kid.
    w.clock.advance(21_000);
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    expect((await issuer.stats()).jwks).toBe(warm.jwks + 1);
    // The ES256 key was not rotated and still verifies from the same JWKS.
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { alg: "ES256" }))).status).toBe(200);
  });

  it("a flood of unknown kids costs at most one JWKS fetch per 30 s", async () => {
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    const warm = await issuer.stats();
    for (let round = 0; round < 3; round++) {
      w.clock.advance(30_000);
      for (let i = 0; i < 10; i++) await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now(), { unpublished: true }));
    }
    expect((await issuer.stats()).jwks - warm.jwks).toBe(3);
  });

  it("the JWKS is refetched after 10 minutes", async () => {
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    const warm = await issuer.stats();
    w.clock.advance(9 * MIN);
    await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()));
    expect((await issuer.stats()).jwks).toBe(warm.jwks);
    w.clock.advance(2 * MIN);
    expect((await get(w, "/v1/keys/demo", await issuer.sign(w.clock.now()))).status).toBe(200);
    expect((await issuer.stats()).jwks).toBe(warm.jwks + 1);
  });

  it("an issuer that is not https: is a config problem, loopback http: is not", async () => {
    const { parseConfig } = await import("../src/config.ts");
    const base = { ...w.env };
    const bad = parseConfig({
      ...base,
      CONSUMERS: JSON.stringify({
        x: { oidc: { issuer: "http://issuer.example.com", audience: "a", subject: "*" }, model_sets: ["demo"] },
      }),
    });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.problems.join("\n")).toMatch(/CONSUMERS\.x: oidc\.issuer must be an https: URL/);
    const two = parseConfig({
      ...base,
      CONSUMERS: JSON.stringify({
        x: { oidc: { issuer: "https://a.example", audience: "a", subject: "*" }, binding: true, model_sets: ["demo"] },
      }),
    });
    expect(two.ok).toBe(false);
    if (!two.ok) expect(two.problems.join("\n")).toMatch(/CONSUMERS\.x: needs exactly one of token_sha256, oidc or "binding": true/);
    const none = parseConfig({ ...base, CONSUMERS: JSON.stringify({ x: { model_sets: ["demo"] } }) });
    expect(none.ok).toBe(false);
    expect(
      parseConfig({
        ...base,
        CONSUMERS: JSON.stringify({
          x: { oidc: { issuer: "http://127.0.0.1:9999/t/x", audience: "a", subject: "*" }, model_sets: ["demo"] },
          y: { binding: true, model_sets: ["demo"] },
        }),
      }).ok,
    ).toBe(true);
    expect(env.DB).toBeDefined();
  });
});
