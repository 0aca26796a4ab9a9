/**
 * Configuration validation: every bad config is refused with the exact problems named (var,
 * set or consumer, field, why), nothing is half-applied, and no secret ever appears in a problem.
 * Also the offline check behind `npm run check` (dev/config-report.ts), which uses the same parser.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { checkConfiguration } from "../dev/config-report.ts";
import { parseConfig, parseDuration } from "../src/config.ts";
import type { Env } from "../src/env.ts";
import worker from "../src/index.ts";
import { makeWorld, randomB64 } from "./helpers/world.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const GOOD_SET = { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" };

function baseEnv(): Record<string, unknown> {
  return {
    BASETEN_API_BASE: "https://api.baseten.co",
    BASETEN_TEAM_ID: "team-1",
    MODEL_SETS: JSON.stringify({ chat: GOOD_SET }),
    CONSUMERS: JSON.stringify({ billing: { token_sha256: HASH_A, model_sets: ["chat"] } }),
    BASETEN_API_KEY: "mgmt-key-value-0123456789",
    ENCRYPTION_KEY: randomB64(32),
    WEBHOOK_SECRET: `whsec_${randomB64(24)}`,
    ADMIN_TOKEN: "admin-token-0123456789abcdef-0123456789",
  };
}

const problemsOf = (overrides: Record<string, unknown>) => {
  const result = parseConfig({ ...baseEnv(), ...overrides } as unknown as Env);
  return result.ok ? [] : result.problems;
};
const sets = (s: Record<string, unknown>) => JSON.stringify(s);
const chatWith = (fields: Record<string, unknown>) => sets({ chat: { ...GOOD_SET, ...fields } });
const withoutField = (field: string) => {
  const copy: Record<string, unknown> = { ...GOOD_SET };
  delete copy[field];
  return sets({ chat: copy });
};

const ADMIN_SHORT = "ADMIN_TOKEN: must be at least 32 characters (e.g. openssl rand -hex 32)";
const ROTATE_BAD = 'MODEL_SETS.chat: rotate_every must be a duration like "24h", "7d", "15m", "90s" or whole seconds';
const OVERLAP_BAD = 'MODEL_SETS.chat: overlap must be a duration like "1h", "2m" or whole seconds';
const BAD_HASH = "CONSUMERS.billing: token_sha256 must be the lowercase hex SHA-256 of the token (64 characters)";

describe("durations", () => {
  it.each([
    ["90s", 90_000],
    ["15m", 900_000],
    ["24h", 86_400_000],
    ["7d", 604_800_000],
    [3600, 3_600_000],
    ["3600", 3_600_000],
  ])("%j is %i ms", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(["0s", "1.5h", "-3m", "abc", 0, -5, 1.5, "", "15 m", "2w", null, true])("%j is refused", (input) => {
    expect(parseDuration(input)).toBeNull();
  });
});

describe("parseConfig: each problem is named exactly", () => {
  it("accepts the base configuration", () => {
    const result = parseConfig(baseEnv() as unknown as Env);
    expect(result.ok).toBe(true);
  });

  const cases: [string, Record<string, unknown>, string[]][] = [
    [
      "bad set id",
      { MODEL_SETS: sets({ chat: GOOD_SET, Bad_Set: GOOD_SET }) },
      ["MODEL_SETS.Bad_Set: set id must match ^[a-z0-9][a-z0-9-]{0,31}$"],
    ],
    [
      "set id too long",
      { MODEL_SETS: sets({ chat: GOOD_SET, ["a".repeat(33)]: GOOD_SET }) },
      [`MODEL_SETS.${"a".repeat(33)}: set id must match ^[a-z0-9][a-z0-9-]{0,31}$`],
    ],
    ["missing model_ids", { MODEL_SETS: withoutField("model_ids") }, ["MODEL_SETS.chat: model_ids must be a non-empty array of model ids"]],
    ["empty model_ids", { MODEL_SETS: chatWith({ model_ids: [] }) }, ["MODEL_SETS.chat: model_ids must be a non-empty array of model ids"]],
    [
      "model id not a string",
      { MODEL_SETS: chatWith({ model_ids: [42] }) },
      ["MODEL_SETS.chat: model_ids must be strings of letters, digits, - or _"],
    ],
    [
      "duplicate model ids",
      { MODEL_SETS: chatWith({ model_ids: ["abcd1234", "abcd1234"] }) },
      ["MODEL_SETS.chat: model_ids has duplicates"],
    ],
    ['rotate_every "0s"', { MODEL_SETS: chatWith({ rotate_every: "0s" }) }, [ROTATE_BAD]],
    ['rotate_every "1.5h"', { MODEL_SETS: chatWith({ rotate_every: "1.5h" }) }, [ROTATE_BAD]],
    ['rotate_every "-3m"', { MODEL_SETS: chatWith({ rotate_every: "-3m" }) }, [ROTATE_BAD]],
    ['rotate_every "abc"', { MODEL_SETS: chatWith({ rotate_every: "abc" }) }, [ROTATE_BAD]],
    ["rotate_every 0", { MODEL_SETS: chatWith({ rotate_every: 0 }) }, [ROTATE_BAD]],
    ["missing rotate_every", { MODEL_SETS: withoutField("rotate_every") }, [ROTATE_BAD]],
    ['overlap "abc"', { MODEL_SETS: chatWith({ overlap: "abc" }) }, [OVERLAP_BAD]],
    ["missing overlap", { MODEL_SETS: withoutField("overlap") }, [OVERLAP_BAD]],
    [
      "overlap < 2m",
      { MODEL_SETS: chatWith({ overlap: "119s" }) },
      ["MODEL_SETS.chat: overlap must be at least 2m (KV serves stale values for up to 60 s and consumers need time to refetch)"],
    ],
    [
      "overlap == rotate_every",
      { MODEL_SETS: chatWith({ rotate_every: "1h", overlap: "60m" }) },
      ["MODEL_SETS.chat: overlap must be shorter than rotate_every"],
    ],
    [
      "overlap > rotate_every",
      { MODEL_SETS: chatWith({ rotate_every: "10m", overlap: "1h" }) },
      ["MODEL_SETS.chat: overlap must be shorter than rotate_every"],
    ],
    ["unknown field", { MODEL_SETS: chatWith({ rotate: "24h" }) }, ['MODEL_SETS.chat: unknown field "rotate"']],
    ["enabled not boolean", { MODEL_SETS: chatWith({ enabled: "false" }) }, ["MODEL_SETS.chat: enabled must be true or false"]],
    ["set entry not an object", { MODEL_SETS: sets({ chat: GOOD_SET, embed: ["x"] }) }, ["MODEL_SETS.embed: must be an object"]],
    [
      "consumer granting an unknown set",
      { CONSUMERS: sets({ billing: { token_sha256: HASH_A, model_sets: ["chat", "nope"] } }) },
      ['CONSUMERS.billing: model_sets names "nope", which is not in MODEL_SETS'],
    ],
    ["token_sha256 uppercase", { CONSUMERS: sets({ billing: { token_sha256: HASH_A.toUpperCase(), model_sets: ["chat"] } }) }, [BAD_HASH]],
    ["token_sha256 short", { CONSUMERS: sets({ billing: { token_sha256: "abc123", model_sets: ["chat"] } }) }, [BAD_HASH]],
    [
      "duplicate token hashes",
      {
        CONSUMERS: sets({
          billing: { token_sha256: HASH_A, model_sets: ["chat"] },
          search: { token_sha256: HASH_A, model_sets: ["chat"] },
        }),
      },
      ["CONSUMERS.search: token_sha256 is the same as CONSUMERS.billing"],
    ],
    [
      "consumer unknown field",
      { CONSUMERS: sets({ billing: { token_sha256: HASH_A, model_sets: ["chat"], sets: [] } }) },
      ['CONSUMERS.billing: unknown field "sets"'],
    ],
    [
      "consumer model_sets not a list",
      { CONSUMERS: sets({ billing: { token_sha256: HASH_A, model_sets: "chat" } }) },
      ["CONSUMERS.billing: model_sets must be an array of set ids"],
    ],
    ["MODEL_SETS invalid JSON (grants are not reported against it)", { MODEL_SETS: '{"chat": {' }, ["MODEL_SETS: not valid JSON"]],
    ["CONSUMERS invalid JSON", { CONSUMERS: "{billing}" }, ["CONSUMERS: not valid JSON"]],
    ["MODEL_SETS an array", { MODEL_SETS: "[]", CONSUMERS: "{}" }, ["MODEL_SETS: must be an object"]],
    ["MODEL_SETS missing", { MODEL_SETS: undefined, CONSUMERS: "{}" }, ["MODEL_SETS: missing (expected a JSON object or a TOML table)"]],
    ["CONSUMERS missing", { CONSUMERS: undefined }, ["CONSUMERS: missing (expected a JSON object or a TOML table)"]],
    ["BASETEN_TEAM_ID missing", { BASETEN_TEAM_ID: undefined }, ["BASETEN_TEAM_ID: missing"]],
    ["BASETEN_API_BASE not http(s)", { BASETEN_API_BASE: "ftp://example.com" }, ["BASETEN_API_BASE: must be an http(s) URL"]],
    [
      "missing secrets",
      { BASETEN_API_KEY: undefined, ENCRYPTION_KEY: undefined },
      [
        "BASETEN_API_KEY: missing secret (a WORKSPACE_MANAGE_ALL management key)",
        "ENCRYPTION_KEY: missing secret (base64 of 32 random bytes)",
      ],
    ],
    ["ENCRYPTION_KEY of 16 bytes", { ENCRYPTION_KEY: randomB64(16) }, ["ENCRYPTION_KEY: must be base64 of exactly 32 bytes"]],
    ["ENCRYPTION_KEY not base64", { ENCRYPTION_KEY: "not base64 at all!" }, ["ENCRYPTION_KEY: must be base64 of exactly 32 bytes"]],
    ["WEBHOOK_SECRET without whsec_", { WEBHOOK_SECRET: randomB64(24) }, ["WEBHOOK_SECRET: must be whsec_<base64>"]],
    ["ADMIN_TOKEN too short", { ADMIN_TOKEN: "short-token" }, [ADMIN_SHORT]],
    ["BASETEN_CONCURRENCY above 6", { BASETEN_CONCURRENCY: "7" }, ["BASETEN_CONCURRENCY: must be a whole number from 1 to 6"]],
    [
      "timeout x attempts over 60 s",
      { BASETEN_TIMEOUT_MS: "30000", BASETEN_MAX_ATTEMPTS: "3" },
      ["BASETEN_TIMEOUT_MS x BASETEN_MAX_ATTEMPTS: must stay within 60 s so one rotation fits its 90 s lease"],
    ],
    [
      "several problems at once, all listed",
      {
        MODEL_SETS: sets({ chat: { ...GOOD_SET, overlap: "1m" }, "-bad": GOOD_SET }),
        CONSUMERS: sets({ billing: { token_sha256: "XYZ", model_sets: ["ghost"] } }),
        ENCRYPTION_KEY: undefined,
      },
      [
        "MODEL_SETS.chat: overlap must be at least 2m (KV serves stale values for up to 60 s and consumers need time to refetch)",
        "MODEL_SETS.-bad: set id must match ^[a-z0-9][a-z0-9-]{0,31}$",
        BAD_HASH,
        'CONSUMERS.billing: model_sets names "ghost", which is not in MODEL_SETS',
        "ENCRYPTION_KEY: missing secret (base64 of 32 random bytes)",
      ],
    ],
  ];

  it.each(cases)("%s", (_name, overrides, expected) => {
    expect(problemsOf(overrides)).toEqual(expected);
  });

  it("WEBHOOK_SECRET and ADMIN_TOKEN are optional", () => {
    const result = parseConfig({ ...baseEnv(), WEBHOOK_SECRET: undefined, ADMIN_TOKEN: "" } as unknown as Env);
    expect(result.ok && result.config.webhookSecrets.length === 0 && result.config.adminTokens.length === 0).toBe(true);
  });

  it("tuning knobs default to 10000 ms, 3 attempts, concurrency 6, inline budget 20", () => {
    const result = parseConfig(baseEnv() as unknown as Env);
    if (!result.ok) throw new Error(result.problems.join("; "));
    expect(result.config).toMatchObject({
      timeoutMs: 10_000,
      maxAttempts: 3,
      concurrency: 6,
      inlineBudget: 20,
      apiBase: "https://api.baseten.co",
    });
  });

  it("MODEL_SETS and CONSUMERS as objects (TOML tables) or as JSON strings give the same config", () => {
    const modelSets = {
      chat: { ...GOOD_SET, model_ids: ["abcd1234", "efgh5678"] },
      embed: { model_ids: ["qwer0987"], rotate_every: "7d", overlap: "2h", enabled: false },
    };
    const consumers = {
      billing: { token_sha256: HASH_A, model_sets: ["chat"] },
      search: { token_sha256: HASH_B, model_sets: ["chat", "embed"] },
    };
    const asTables = parseConfig({ ...baseEnv(), MODEL_SETS: modelSets, CONSUMERS: consumers } as unknown as Env);
    const asStrings = parseConfig({
      ...baseEnv(),
      MODEL_SETS: JSON.stringify(modelSets),
      CONSUMERS: JSON.stringify(consumers),
    } as unknown as Env);
    if (!asTables.ok || !asStrings.ok) throw new Error("both forms must be accepted");
    for (const config of [asTables.config, asStrings.config]) {
      expect(config.sets.get("chat")).toEqual({
        id: "chat",
        modelIds: ["abcd1234", "efgh5678"],
        rotateEveryMs: 86_400_000,
        overlapMs: 3_600_000,
        enabled: true,
      });
      expect(config.sets.get("embed")).toEqual({
        id: "embed",
        modelIds: ["qwer0987"],
        rotateEveryMs: 604_800_000,
        overlapMs: 7_200_000,
        enabled: false,
      });
      expect(config.consumers).toEqual([
        { name: "billing", kind: "token", tokenSha256: HASH_A, modelSets: ["chat"] },
        { name: "search", kind: "token", tokenSha256: HASH_B, modelSets: ["chat", "embed"] },
      ]);
    }
  });

  it("no secret value appears in any problem", () => {
    const secrets = {
      BASETEN_API_KEY: "mgmt secret-with-space-0123456789",
      ENCRYPTION_KEY: btoa("sixteen-byte-key"),
      WEBHOOK_SECRET: "nothook_SeCrEtVaLuE0123456789",
      ADMIN_TOKEN: "adm-SeCr3t",
    };
    const problems = problemsOf(secrets);
    expect(problems).toEqual([
      "BASETEN_API_KEY: contains whitespace",
      "ENCRYPTION_KEY: must be base64 of exactly 32 bytes",
      "WEBHOOK_SECRET: must be whsec_<base64>",
      ADMIN_SHORT,
    ]);
    const text = problems.join("\n");
    for (const value of Object.values(secrets)) {
      expect(text).not.toContain(value);
      for (const part of value.split(/[\s_-]/).filter((p) => p.length >= 6)) expect(text).not.toContain(part);
    }
  });
});

describe("an invalid configuration is never half-applied", () => {
  afterEach(() => vi.restoreAllMocks());

  const brokenSets = {
    demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "90s" },
    other: { model_ids: [], rotate_every: "24h", overlap: "1h" },
  };
  const expectedProblems = [
    "MODEL_SETS.demo: overlap must be at least 2m (KV serves stale values for up to 60 s and consumers need time to refetch)",
    "MODEL_SETS.other: model_ids must be a non-empty array of model ids",
    ADMIN_SHORT,
  ];

  it("/healthz answers 503 listing every problem; /v1/keys/* answer 503 config_invalid; no secret in any answer", async () => {
    const w = await makeWorld({ sets: brokenSets, vars: { ADMIN_TOKEN: "tooShortSecret" } });
    const health = await w.request("/healthz");
    expect(health.status).toBe(503);
    const body = (await health.json()) as { error: string; problems: string[] };
    expect(body.error).toBe("config_invalid");
    expect(body.problems).toEqual(expectedProblems);

    let text = JSON.stringify(body);
    for (const path of ["/v1/keys/demo", "/v1/keys", "/v1/keys/other"]) {
      const res = await w.request(path, { headers: { authorization: `Bearer ${w.tokens["demo-svc"]}` } });
      expect(res.status, path).toBe(503);
      const err = (await res.json()) as { error: string; message: string };
      expect(err.error, path).toBe("config_invalid");
      text += err.message;
    }
    for (const secret of [w.env.BASETEN_API_KEY!, w.env.ENCRYPTION_KEY!, w.env.WEBHOOK_SECRET!, "tooShortSecret"])
      expect(text).not.toContain(secret);
  });

  it("a cron tick mints nothing and logs every problem", async () => {
    const w = await makeWorld({ sets: brokenSets, vars: { ADMIN_TOKEN: "tooShortSecret" } });
    const errors = vi.spyOn(console, "error");
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), w.env, ctx);
    await waitOnExecutionContext(ctx);

    const { counts, calls } = await w.fake.calls();
    expect(calls).toEqual([]);
    expect(counts).toEqual({ mint: 0, list: 0, revoke: 0 });
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM keys").first<{ n: number }>();
    expect(rows?.n).toBe(0);

    const logged = errors.mock.calls.map((args) => args.join(" "));
    const line = logged.find((l) => l.includes("config_invalid"));
    expect(line).toBeDefined();
    expect(JSON.parse(line!).problems).toEqual(expectedProblems);
    for (const secret of [w.env.BASETEN_API_KEY!, w.env.ENCRYPTION_KEY!, "tooShortSecret"]) expect(logged.join("\n")).not.toContain(secret);
  });

  it("the same cron tick with a valid configuration does mint (the test above can fail)", async () => {
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), w.env, ctx);
    await waitOnExecutionContext(ctx);
    expect((await w.fake.calls()).counts.mint).toBe(1);
  });
});

describe("npm run check (dev/config-report.ts)", () => {
  const deployable = {
    d1_databases: [{ binding: "DB", database_id: "3f1c2a4e-8b7d-4c6e-9a1b-2d3e4f5a6b7c" }],
    kv_namespaces: [{ binding: "KEYS", id: "9f8e7d6c5b4a39281706f5e4d3c2b1a0" }],
    crons: ["* * * * *"],
  };
  const vars = {
    BASETEN_TEAM_ID: "team-1",
    MODEL_SETS: { chat: GOOD_SET, embed: { ...GOOD_SET, enabled: false } },
    CONSUMERS: JSON.stringify({ billing: { token_sha256: HASH_A, model_sets: ["chat"] } }),
  };

  it("passes vars alone, naming the secrets it could not check", () => {
    const report = checkConfiguration({ vars, ...deployable });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.unchecked).toEqual(["BASETEN_API_KEY", "ENCRYPTION_KEY", "WEBHOOK_SECRET", "ADMIN_TOKEN"]);
    expect(report.summary).toBe(
      "2 sets (1 disabled), 1 consumer; secrets not checked here (set with wrangler secret put): BASETEN_API_KEY, ENCRYPTION_KEY, WEBHOOK_SECRET, ADMIN_TOKEN",
    );
  });

  it("checks the secrets it is given, without echoing them", () => {
    const report = checkConfiguration({
      vars,
      ...deployable,
      secrets: { BASETEN_API_KEY: "mgmt-key", ENCRYPTION_KEY: "c2hvcnQ=", ADMIN_TOKEN: "shortAdm1n" },
    });
    expect(report.problems).toEqual(["ENCRYPTION_KEY: must be base64 of exactly 32 bytes", ADMIN_SHORT]);
    expect(report.unchecked).toEqual(["WEBHOOK_SECRET"]);
    expect(report.problems.join()).not.toMatch(/c2hvcnQ|shortAdm1n/);
  });

  it("lists every var problem, a secret committed in [vars], and what a deployment needs", () => {
    const report = checkConfiguration({
      vars: {
        ...vars,
        BASETEN_TEAM_ID: "replace-with-your-team-id",
        BASETEN_API_BASE: "http://127.0.0.1:8788",
        ADMIN_TOKEN: "committed-admin-token-123",
        MODEL_SETS: { chat: { ...GOOD_SET, overlap: "24h" } },
      },
      d1_databases: [{ binding: "DB", database_id: "00000000-0000-0000-0000-000000000000" }],
      kv_namespaces: [],
      crons: [],
    });
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      "ADMIN_TOKEN: is set in [vars] (wrangler.toml); it is a secret: remove it there and use `wrangler secret put ADMIN_TOKEN`",
      "MODEL_SETS.chat: overlap must be shorter than rotate_every",
      "d1_databases.DB: database_id is a placeholder: use the id printed by `wrangler d1 create`",
      'kv_namespaces: no binding "KEYS" (the read cache)',
      "triggers.crons: no cron trigger: keys would never be minted, rotated or revoked",
      "BASETEN_TEAM_ID: still the placeholder from wrangler.toml",
    ]);
    expect(report.problems.join()).not.toContain("committed-admin-token-123");
  });

  it("--local skips the deployment-only checks", () => {
    const report = checkConfiguration({ vars: { ...vars, BASETEN_API_BASE: "http://127.0.0.1:8788" }, deployment: false });
    expect(report.problems).toEqual([]);
  });
});

// --- Issue #11: the rotator's own secrets and reach -----------------------------------------
describe("secrets, verify, team_id and schedule: every bad input is a named problem", () => {
  const KEY_A = randomB64(32);
  const KEY_B = randomB64(32);
  const TOKEN = "adm_0123456789abcdef0123456789abcdef";
  const VERIFY = { url: "https://model-abcd1234.api.baseten.co/production/predict", body: { prompt: "ping" } };
  const TOKEN_HASH_OF = async (t: string) =>
    [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(t)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");

  const cases: [string, Record<string, unknown>, string[]][] = [
    [
      "a previous key of 16 bytes",
      { ENCRYPTION_KEY_PREVIOUS: randomB64(16) },
      ["ENCRYPTION_KEY_PREVIOUS: must be base64 of exactly 32 bytes"],
    ],
    [
      "a previous key that is not base64",
      { ENCRYPTION_KEY_PREVIOUS: `${KEY_A} not*base64` },
      ["ENCRYPTION_KEY_PREVIOUS (entry 2 of 2): must be base64 of exactly 32 bytes"],
    ],
    [
      "the same previous key listed twice",
      { ENCRYPTION_KEY_PREVIOUS: `${KEY_A} ${KEY_B} ${KEY_A}` },
      ["ENCRYPTION_KEY_PREVIOUS (entry 3 of 3): the same value as entry 1"],
    ],
    [
      "more than 8 previous keys",
      { ENCRYPTION_KEY_PREVIOUS: Array.from({ length: 9 }, () => randomB64(32)).join(" ") },
      ["ENCRYPTION_KEY_PREVIOUS: 9 entries, at most 8 (keep the new value and the one being phased out)"],
    ],
    [
      "an empty entry (two spaces)",
      { ENCRYPTION_KEY_PREVIOUS: `${KEY_A}  ${KEY_B}` },
      ["ENCRYPTION_KEY_PREVIOUS (entry 2 of 3): empty (two spaces in a row)"],
    ],
    [
      "a whsec_ secret that does not decode",
      { WEBHOOK_SECRET: "whsec_AAAAA" },
      ["WEBHOOK_SECRET: must be whsec_<base64>: the part after whsec_ does not decode as base64"],
    ],
    [
      "a whsec_ secret of one byte",
      { WEBHOOK_SECRET: "whsec_AA==" },
      ["WEBHOOK_SECRET: is too weak: 1 bytes after whsec_, at least 24 needed (e.g. whsec_$(openssl rand -base64 32))"],
    ],
    [
      "a whsec_ secret of 23 bytes in a list",
      { WEBHOOK_SECRET: `whsec_${randomB64(24)} whsec_${randomB64(23)}` },
      ["WEBHOOK_SECRET (entry 2 of 2): is too weak: 23 bytes after whsec_, at least 24 needed (e.g. whsec_$(openssl rand -base64 32))"],
    ],
    [
      "an empty WEBHOOK_SECRET entry",
      { WEBHOOK_SECRET: `whsec_${randomB64(24)}  whsec_${randomB64(24)}` },
      ["WEBHOOK_SECRET (entry 2 of 3): empty (two spaces in a row)"],
    ],
    ["an ADMIN_TOKEN of 16 a's", { ADMIN_TOKEN: "aaaaaaaaaaaaaaaa" }, [ADMIN_SHORT]],
    [
      "an ADMIN_TOKEN with a non-ASCII character",
      { ADMIN_TOKEN: `${TOKEN}é` },
      ["ADMIN_TOKEN: must be printable ASCII without spaces (it is sent as Authorization: Bearer <token>)"],
    ],
    [
      "an ADMIN_TOKEN list with a short second token",
      { ADMIN_TOKEN: `${TOKEN} short` },
      ["ADMIN_TOKEN (entry 2 of 2): must be at least 32 characters (e.g. openssl rand -hex 32)"],
    ],
    ["an ADMIN_TOKEN listed twice", { ADMIN_TOKEN: `${TOKEN} ${TOKEN}` }, ["ADMIN_TOKEN (entry 2 of 2): the same value as entry 1"]],
    [
      "a METRICS_TOKEN under 32 characters",
      { METRICS_TOKEN: "metrics-token" },
      ["METRICS_TOKEN: must be at least 32 characters (e.g. openssl rand -hex 32)"],
    ],
    [
      "an http: BASETEN_API_BASE",
      { BASETEN_API_BASE: "http://api.baseten.co" },
      ["BASETEN_API_BASE: must be https: (http: would send the management key in clear text; allowed only on localhost or 127.0.0.1)"],
    ],
    [
      "an http: event URL",
      { EVENT_WEBHOOKS: JSON.stringify([{ url: "http://hooks.example.com/x", secret: `whsec_${randomB64(24)}` }]) },
      ["EVENT_WEBHOOKS[0]: url must be an https: URL (http: only on localhost or 127.0.0.1)"],
    ],
    [
      "an event secret of 8 bytes",
      { EVENT_WEBHOOKS: JSON.stringify([{ url: "https://hooks.example.com/x", secret: `whsec_${randomB64(8)}` }]) },
      ["EVENT_WEBHOOKS[0]: secret is too weak: 8 bytes after whsec_, at least 24 needed (e.g. whsec_$(openssl rand -base64 32))"],
    ],
    [
      "a verify URL on http: (not loopback)",
      { MODEL_SETS: chatWith({ verify: { url: "http://example.com/predict" } }) },
      ["MODEL_SETS.chat: verify.url must be an https: URL (http: only on localhost or 127.0.0.1)"],
    ],
    [
      "a verify.expect with 401",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, expect: [200, 401] } }) },
      ["MODEL_SETS.chat: verify.expect must not include 401 or 403: those mean the new key does not work"],
    ],
    [
      "a verify.expect with 403",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, expect: [403] } }) },
      ["MODEL_SETS.chat: verify.expect must not include 401 or 403: those mean the new key does not work"],
    ],
    [
      "a verify.expect that is not statuses",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, expect: ["200"] } }) },
      ["MODEL_SETS.chat: verify.expect must be a non-empty list of HTTP statuses (100-599)"],
    ],
    [
      "a verify with an unknown field",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, timeout: 5 } }) },
      ['MODEL_SETS.chat: verify.unknown field "timeout"'],
    ],
    [
      "a verify that sets authorization",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, headers: { Authorization: "x" } } }) },
      ["MODEL_SETS.chat: verify.headers must not set authorization (the new key is sent as Authorization: Api-Key <key>)"],
    ],
    [
      "a verify GET with a body",
      { MODEL_SETS: chatWith({ verify: { ...VERIFY, method: "GET" } }) },
      ["MODEL_SETS.chat: verify.body cannot be sent with GET"],
    ],
    [
      "a team_id with a slash",
      { MODEL_SETS: chatWith({ team_id: "team/../admin" }) },
      ["MODEL_SETS.chat: team_id must be 1-64 letters, digits, - or _ (it goes into the mint path /v1/teams/{team_id}/api_keys)"],
    ],
    [
      "a team_id with a space",
      { MODEL_SETS: chatWith({ team_id: "my team" }) },
      ["MODEL_SETS.chat: team_id must be 1-64 letters, digits, - or _ (it goes into the mint path /v1/teams/{team_id}/api_keys)"],
    ],
    [
      "both rotate_every and schedule",
      { MODEL_SETS: chatWith({ schedule: "0 10 * * TUE" }) },
      ["MODEL_SETS.chat: has both rotate_every and schedule: use exactly one"],
    ],
    [
      "a schedule with 6 fields",
      { MODEL_SETS: sets({ chat: { model_ids: ["abcd1234"], schedule: "0 0 10 * * TUE", overlap: "1h" } }) },
      ['MODEL_SETS.chat: schedule must have exactly 5 fields (minute hour day-of-month month day-of-week, UTC); "0 0 10 * * TUE" has 6'],
    ],
    [
      "a schedule on 31 February",
      { MODEL_SETS: sets({ chat: { model_ids: ["abcd1234"], schedule: "0 0 31 2 *", overlap: "1h" } }) },
      ['MODEL_SETS.chat: schedule "0 0 31 2 *" never happens (an impossible date, like 31 February)'],
    ],
    [
      "a schedule that does not parse",
      { MODEL_SETS: sets({ chat: { model_ids: ["abcd1234"], schedule: "61 * * * *", overlap: "1h" } }) },
      ["MODEL_SETS.chat: schedule is not a valid cron expression: Invalid value for minute: 61"],
    ],
    [
      "an overlap not shorter than the shortest gap of the schedule",
      { MODEL_SETS: sets({ chat: { model_ids: ["abcd1234"], schedule: "0 10 * * TUE,WED", overlap: "1d" } }) },
      ["MODEL_SETS.chat: overlap must be shorter than the shortest gap between two schedule times (1d)"],
    ],
  ];

  it.each(cases)("%s", (_name, overrides, expected) => {
    expect(problemsOf(overrides)).toEqual(expected);
  });

  it("an ADMIN_TOKEN (or METRICS_TOKEN) that is a consumer's token is refused, naming the consumer", async () => {
    const consumers = sets({ billing: { token_sha256: await TOKEN_HASH_OF(TOKEN), model_sets: ["chat"] } });
    expect(problemsOf({ CONSUMERS: consumers, ADMIN_TOKEN: `adm_${"x".repeat(40)} ${TOKEN}` })).toEqual([
      "ADMIN_TOKEN (entry 2 of 2): is the token of CONSUMERS.billing (its SHA-256 equals that consumer's token_sha256); give each its own token",
    ]);
    expect(problemsOf({ CONSUMERS: consumers, METRICS_TOKEN: TOKEN })).toEqual([
      "METRICS_TOKEN: is the token of CONSUMERS.billing (its SHA-256 equals that consumer's token_sha256); give each its own token",
    ]);
  });

  it("the previous key equal to ENCRYPTION_KEY is refused, by key id only", () => {
    const problems = problemsOf({ ENCRYPTION_KEY: KEY_A, ENCRYPTION_KEY_PREVIOUS: KEY_A });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^ENCRYPTION_KEY_PREVIOUS: the same key as ENCRYPTION_KEY \(key id [0-9a-f]{8}\)$/);
    expect(problems[0]).not.toContain(KEY_A);
  });

  it("good values parse into lists, the keyring (ids only), team, schedule and verify", () => {
    const result = parseConfig({
      ...baseEnv(),
      ENCRYPTION_KEY: KEY_A,
      ENCRYPTION_KEY_PREVIOUS: ` ${KEY_B}\n`,
      WEBHOOK_SECRET: `whsec_${randomB64(24)} whsec_${randomB64(32)}`,
      ADMIN_TOKEN: `${TOKEN} adm_${"y".repeat(40)}`,
      METRICS_TOKEN: `met_${"z".repeat(40)}`,
      BASETEN_API_BASE: "http://127.0.0.1:8788",
      MODEL_SETS: sets({
        chat: {
          ...GOOD_SET,
          team_id: "team-enterprise_2",
          verify: { url: "http://localhost:9000/model/abcd1234/predict", method: "post", body: "{}", expect: [200, 422] },
        },
        weekly: { model_ids: ["abcd1234"], schedule: "0 10 * * TUE", overlap: "2h" },
      }),
    } as unknown as Env);
    if (!result.ok) throw new Error(result.problems.join("; "));
    const c = result.config;
    expect(c.webhookSecrets).toHaveLength(2);
    expect(c.adminTokens).toEqual([TOKEN, `adm_${"y".repeat(40)}`]);
    expect(c.metricsToken).toBe(`met_${"z".repeat(40)}`);
    expect(c.keyring.ids).toHaveLength(2);
    expect(c.keyring.primaryId).toMatch(/^[0-9a-f]{8}$/);
    // The keyring shows key ids and nothing else.
    const shown = JSON.stringify(c.keyring);
    expect(shown).not.toContain(KEY_A);
    expect(shown).not.toContain(KEY_B);
    expect(c.sets.get("chat")).toMatchObject({
      teamId: "team-enterprise_2",
      verify: { url: "http://localhost:9000/model/abcd1234/predict", method: "POST", body: "{}", expect: [200, 422], headers: {} },
    });
    expect(c.sets.get("weekly")).toMatchObject({ schedule: "0 10 * * TUE", rotateEveryMs: 7 * 86_400_000, overlapMs: 7_200_000 });
    expect(c.sets.get("weekly")!.teamId).toBeUndefined();
  });

  it("a bad input means /healthz 503 naming it, 503 config_invalid elsewhere, and nothing rotated", async () => {
    const w = await makeWorld({
      vars: {
        WEBHOOK_SECRET: "whsec_AA==",
        MODEL_SETS: sets({ demo: { model_ids: ["abcd1234"], schedule: "0 0 31 2 *", overlap: "1h" }, other: GOOD_SET }),
      },
    });
    const health = await w.request("/healthz");
    expect(health.status).toBe(503);
    expect(((await health.json()) as { problems: string[] }).problems).toEqual([
      'MODEL_SETS.demo: schedule "0 0 31 2 *" never happens (an impossible date, like 31 February)',
      "WEBHOOK_SECRET: is too weak: 1 bytes after whsec_, at least 24 needed (e.g. whsec_$(openssl rand -base64 32))",
    ]);
    expect((await w.getKey("other", "other-svc")).status).toBe(503);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), w.env, ctx);
    await waitOnExecutionContext(ctx);
    expect((await w.fake.calls()).calls).toEqual([]);
  });

  it("npm run check refuses a bad schedule offline, naming the set and field", () => {
    const report = checkConfiguration({
      vars: {
        BASETEN_TEAM_ID: "team-1",
        MODEL_SETS: { chat: { model_ids: ["abcd1234"], schedule: "0 0 0 10 * TUE", overlap: "1h" } },
        CONSUMERS: "{}",
      },
      deployment: false,
    });
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      'MODEL_SETS.chat: schedule must have exactly 5 fields (minute hour day-of-month month day-of-week, UTC); "0 0 0 10 * TUE" has 6',
    ]);
  });
});
