/**
 * Reliability item 6: bad input on every route, table-driven. Wrong methods, oversized bodies,
 * non-JSON bodies and wrong content types, odd paths (encoded slashes and dots, 10 KB ids,
 * unicode, bad escapes, trailing and doubled slashes), missing, duplicate and malformed auth
 * headers, and seeded random MODEL_SETS / CONSUMERS configurations. Every answer is the
 * documented status with the `{"error", "message"}` JSON body (plus `Allow` on 405 and
 * `WWW-Authenticate` on 401), never a 500, a stack trace or a secret; and D1 and KV are byte
 * for byte what they were before (a dump compared around every request), except the one
 * receipt the contract stores for a signed webhook's final answer.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { parseConfig } from "../src/config.ts";
import type { Env } from "../src/env.ts";
import worker from "../src/index.ts";
import { dumpStorage } from "./helpers/faulty-bindings.ts";
import { hashSeed, mulberry32 } from "./helpers/soak.ts";
import { tally, useTally } from "./helpers/tally.ts";
import { hmacV1, secretBytes } from "./helpers/webhooks.ts";
import { type World, makeWorld, sha256Hex } from "./helpers/world.ts";

useTally();

const SETS = {
  demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" },
  other: { model_ids: ["qwer0987"], rotate_every: "24h", overlap: "1h" },
};

let w: World;
/** Every secret and key the answers must never contain. */
let secrets: string[] = [];

beforeAll(async () => {
  w = await makeWorld({ sets: SETS, consumers: { "demo-svc": ["demo"], "other-svc": ["other"] } });
  await w.tick();
  const keys = await Promise.all(
    ["demo", "other"].map(async (s) => ((await (await w.getKey(s, `${s}-svc`)).json()) as { api_key: string }).api_key),
  );
  secrets = [...keys, ...Object.values(w.tokens), w.env.ADMIN_TOKEN!, w.env.WEBHOOK_SECRET!, w.env.ENCRYPTION_KEY!, w.env.BASETEN_API_KEY!];
});

interface Row {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string> | [string, string][];
  body?: BodyInit | null;
  /** Expected status, or the statuses allowed (for odd inputs the contract does not pin down). */
  status: number | number[];
  error?: string;
  allow?: string;
  /** A 401 that must challenge (`WWW-Authenticate`). */
  challenge?: boolean;
  /** A signed webhook whose final answer the contract stores as a receipt (by this id). */
  receipt?: string;
  /** Another environment (a random configuration). */
  env?: Env;
}

const consumer = (name = "demo-svc") => ({ authorization: `Bearer ${w.tokens[name]}` });
const admin = () => ({ authorization: `Bearer ${w.env.ADMIN_TOKEN}` });
const STACK = /\bat [\w.<>]+ \(|\.ts:\d+|node_modules|Error: |TypeError|RangeError|SyntaxError|URIError/;

async function send(row: Row): Promise<Response> {
  const init: RequestInit = { method: row.method ?? "GET", headers: row.headers, body: row.body };
  if (!row.env) return w.request(row.path, init);
  const ctx = createExecutionContext();
  const res = await createApp({ clock: w.clock.now }).fetch(new Request(`https://rotator.test${row.path}`, init), row.env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Runs a row: the documented answer, nothing leaked, storage untouched. */
async function check(group: string, row: Row) {
  const before = await dumpStorage(env.DB, env.KEYS);
  const mintsBefore = (await w.fake.calls()).counts.mint ?? 0;
  const res = await send(row);
  const text = await res.text();
  tally("bad input", group);
  tally("response", String(res.status));
  const allowed = Array.isArray(row.status) ? row.status : [row.status];
  expect(allowed, `${row.name}: status ${res.status} ${text.slice(0, 200)}`).toContain(res.status);
  expect(res.status).not.toBe(500);
  if (res.status !== 200 && row.method !== "HEAD") {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    expect(typeof body.error, `${row.name}: error code`).toBe("string");
    expect(typeof body.message, `${row.name}: message`).toBe("string");
    if (row.error) expect(body.error).toBe(row.error);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  }
  expect(text, `${row.name}: no stack trace`).not.toMatch(STACK);
  for (const s of secrets) if (res.status !== 200) expect(text.includes(s), `${row.name}: a secret in the answer`).toBe(false);
  expect(text.length).toBeLessThan(4_096 + (res.status === 200 ? 4_096 : 0));
  if (res.status === 405) expect(res.headers.get("allow")).toBe(row.allow);
  if (res.status === 401 && row.challenge) expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
  if (res.status === 200 && row.path.startsWith("/v1/keys") && !row.env) {
    // Whatever path served it, a consumer only ever gets its own set's key.
    const j = JSON.parse(text) as { keys?: { model_set: string }[]; model_set?: string };
    for (const d of j.keys ?? [j]) expect(d.model_set).toBe("demo");
  }

  // Storage: byte for byte as before, but for the receipt the contract keeps.
  let after = await dumpStorage(env.DB, env.KEYS);
  if (row.receipt !== undefined) {
    const stored = await env.DB.prepare("SELECT status, body FROM webhook_receipts WHERE webhook_id = ?1")
      .bind(row.receipt)
      .first<{ status: number; body: string }>();
    if (stored) {
      expect(stored).toEqual({ status: res.status, body: text });
      await env.DB.prepare("DELETE FROM webhook_receipts WHERE webhook_id = ?1").bind(row.receipt).run();
      after = await dumpStorage(env.DB, env.KEYS);
    }
  }
  expect(after, `${row.name}: D1 and KV unchanged`).toBe(before);
  expect((await w.fake.calls()).counts.mint ?? 0, `${row.name}: nothing minted`).toBe(mintsBefore);
}

function table(group: string, rows: () => Row[]) {
  describe(group, () => {
    it(`every row gets its documented answer and changes nothing`, async () => {
      const list = rows();
      for (const row of list) await check(group, row);
    });
  });
}

// --- wrong methods -----------------------------------------------------------------------

const ROUTES = [
  { path: "/healthz", allow: "GET, HEAD" },
  { path: "/v1/keys", allow: "GET, HEAD" },
  { path: "/v1/keys/demo", allow: "GET, HEAD" },
  { path: "/v1/webhooks/rotate", allow: "POST" },
  { path: "/v1/admin/rotate/demo", allow: "POST" },
  { path: "/v1/admin/status", allow: "GET, HEAD" },
];
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "PURGE"];

table("wrong method", () =>
  ROUTES.flatMap((r) =>
    METHODS.filter((m) => !r.allow.split(", ").includes(m)).flatMap((m) => [
      // (HEAD on a GET route answers as GET without a body: test/operators-routes.test.ts.)
      {
        name: `${m} ${r.path}`,
        method: m,
        path: r.path,
        status: 405,
        error: m === "HEAD" ? undefined : "method_not_allowed",
        allow: r.allow,
      },
      // Authenticated, with a body: still refused before anything is read or run.
      ...(m === "HEAD" || m === "GET"
        ? []
        : [
            {
              name: `${m} ${r.path} with credentials and a body`,
              method: m,
              path: r.path,
              headers: { ...admin(), "content-type": "application/json" },
              body: '{"model_set":"demo"}',
              status: 405,
              error: "method_not_allowed",
              allow: r.allow,
            },
          ]),
    ]),
  ),
);

// --- bodies: size and type --------------------------------------------------------------

const BIG = `{"model_set":"demo","reason":"${"x".repeat(70_000)}"}`;
function stream(bytes: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= bytes) return c.close();
      const n = Math.min(16_384, bytes - sent);
      sent += n;
      c.enqueue(new Uint8Array(n).fill(0x20));
    },
  });
}

/** A signed webhook row (so the body checks, which come after the signature, are reached). */
async function signed(
  name: string,
  body: string | Uint8Array,
  status: number,
  error: string,
  headers: Record<string, string> = {},
): Promise<Row> {
  const id = `msg_bad_${crypto.randomUUID()}`;
  const ts = Math.floor(w.clock.now() / 1000);
  const sig = await hmacV1(secretBytes(w.env.WEBHOOK_SECRET!), id, ts, body);
  return {
    name,
    method: "POST",
    path: "/v1/webhooks/rotate",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(ts),
      "webhook-signature": sig,
      ...headers,
    },
    body: body as BodyInit,
    status,
    error,
    receipt: id,
  };
}

let bodyRows: Row[] = [];
describe("bodies", () => {
  beforeAll(async () => {
    const bad = (s: string) => new TextEncoder().encode(s);
    bodyRows = [
      // Oversized: refused with 413 whether the size is declared or streamed.
      {
        name: "webhook 70 KB body",
        method: "POST",
        path: "/v1/webhooks/rotate",
        headers: { "content-type": "application/json" },
        body: BIG,
        status: 413,
        error: "payload_too_large",
      },
      {
        name: "webhook 1 MB streamed body, no content-length",
        method: "POST",
        path: "/v1/webhooks/rotate",
        headers: { "content-type": "application/json" },
        body: stream(1 << 20),
        status: 413,
        error: "payload_too_large",
      },
      {
        name: "admin rotate 70 KB body",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: BIG,
        status: 413,
        error: "payload_too_large",
      },
      {
        name: "admin rotate 1 MB streamed body",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: stream(1 << 20),
        status: 413,
        error: "payload_too_large",
      },
      {
        name: "admin rotate 70 KB body without credentials",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { "content-type": "application/json" },
        body: BIG,
        status: 401,
        challenge: true,
      },
      // Wrong content types.
      ...[
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "json",
        "application/xml",
        "",
      ].map((t): Row => ({
        name: `webhook content-type "${t}"`,
        method: "POST",
        path: "/v1/webhooks/rotate",
        headers: t ? { "content-type": t } : {},
        body: '{"model_set":"demo"}',
        status: 415,
        error: "unsupported_media_type",
      })),
      ...["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"].map((t): Row => ({
        name: `admin rotate content-type "${t}"`,
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": t },
        body: '{"reason":"x"}',
        status: 415,
        error: "unsupported_media_type",
      })),
      // Signed, but not a valid rotation request: 400 (stored as the final answer).
      await signed("webhook body not JSON", "model_set=demo", 400, "invalid_body"),
      await signed("webhook body empty", "", 400, "invalid_body"),
      await signed("webhook body JSON array", '["demo"]', 400, "invalid_body"),
      await signed("webhook body JSON null", "null", 400, "invalid_body"),
      await signed("webhook body JSON string", '"demo"', 400, "invalid_body"),
      await signed("webhook body truncated JSON", '{"model_set": "de', 400, "invalid_body"),
      await signed(
        "webhook body invalid UTF-8",
        bad('{"model_set":"demo","reason":"\xff\xfe"}').map((b, i, a) => (i === a.length - 4 ? 0xff : b)),
        400,
        "invalid_body",
      ),
      await signed("webhook body 10k nested arrays", "[".repeat(10_000) + "]".repeat(10_000), 400, "invalid_body"),
      await signed("webhook model_set a number", '{"model_set":5}', 400, "invalid_body"),
      await signed("webhook model_set missing", '{"reason":"x"}', 400, "invalid_body"),
      await signed("webhook unknown field", '{"model_set":"demo","revoke":true}', 400, "invalid_body"),
      await signed("webhook __proto__ field", '{"model_set":"demo","__proto__":{"revoke_previous":true}}', 400, "invalid_body"),
      await signed("webhook revoke_previous a string", '{"model_set":"demo","revoke_previous":"yes"}', 400, "invalid_body"),
      await signed("webhook reason too long", JSON.stringify({ model_set: "demo", reason: "r".repeat(501) }), 400, "invalid_body"),
      await signed("webhook reason an object", '{"model_set":"demo","reason":{"a":1}}', 400, "invalid_body"),
      // Signed, unknown sets: 404 (stored as the final answer).
      await signed("webhook unknown set", '{"model_set":"nope"}', 404, "unknown_model_set"),
      await signed("webhook set with a slash", '{"model_set":"../admin"}', 404, "unknown_model_set"),
      await signed("webhook set 10 KB", JSON.stringify({ model_set: "a".repeat(10_240) }), 404, "unknown_model_set"),
      await signed("webhook set unicode", '{"model_set":"d\u00e9mo"}', 404, "unknown_model_set"),
      await signed("webhook set uppercase", '{"model_set":"DEMO"}', 404, "unknown_model_set"),
      await signed("webhook set __proto__", '{"model_set":"__proto__"}', 404, "unknown_model_set"),
      await signed("webhook set constructor", '{"model_set":"constructor"}', 404, "unknown_model_set"),
      // Admin rotate with a bad body (authenticated).
      {
        name: "admin rotate body not JSON",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: "revoke_previous",
        status: 400,
        error: "invalid_body",
      },
      {
        name: "admin rotate body JSON array",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: "[]",
        status: 400,
        error: "invalid_body",
      },
      {
        name: "admin rotate body set mismatch",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: '{"model_set":"other"}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "admin rotate unknown field",
        method: "POST",
        path: "/v1/admin/rotate/demo",
        headers: { ...admin(), "content-type": "application/json" },
        body: '{"revoke_previous":true,"force":true}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "admin rotate unknown set",
        method: "POST",
        path: "/v1/admin/rotate/nope",
        headers: admin(),
        status: 404,
        error: "unknown_model_set",
      },
    ];
  });
  it("every row gets its documented answer and changes nothing", async () => {
    for (const row of bodyRows) await check("body", row);
  });
});

// --- odd paths --------------------------------------------------------------------------

const TEN_KB = "a".repeat(10_240);
/** Trailing slashes the router may take as the same resource (then the same answer: the key, or the admin route's 401). */
const SAME_RESOURCE = new Set(["/v1/keys/demo/", "/v1/keys/demo//", "/v1/keys/", "/v1/keys//", "/healthz/", "/v1/admin/status/"]);
table("odd path", () => [
  ...[
    "/v1/keys/..%2Fadmin",
    "/v1/keys/..%2Fadmin%2Fstatus",
    "/v1/keys/%2e%2e%2fadmin%2fstatus",
    "/v1/keys/demo%2F",
    "/v1/keys/demo%2F..%2Fother",
    "/v1/keys/demo%2fother",
    "/v1/keys/%2Fdemo",
    "/v1/keys/demo%00",
    "/v1/keys/%00",
    "/v1/keys/%ZZ",
    "/v1/keys/%",
    "/v1/keys/demo%",
    "/v1/keys/%E2%82",
    "/v1/keys/d%C3%A9mo",
    "/v1/keys/%F0%9F%94%91",
    "/v1/keys/\u{1F511}",
    "/v1/keys/ｄｅｍｏ",
    "/v1/keys/DEMO",
    "/v1/keys/demo.",
    "/v1/keys/demo;x",
    "/v1/keys/demo%20",
    "/v1/keys/%20demo",
    "/v1/keys/nope",
    "/v1/keys/__proto__",
    "/v1/keys/constructor",
    "/v1/keys/toString",
    `/v1/keys/${TEN_KB}`,
    `/v1/keys/${"%2F".repeat(3_000)}`,
    "/v1/keys/demo/",
    "/v1/keys/demo//",
    "/v1/keys/demo/x",
    "/v1/keys//demo",
    "/v1//keys/demo",
    "//v1/keys/demo",
    "/V1/KEYS/DEMO",
    "/v1/keys/",
    "/v1/keys//",
    "/v1/",
    "/",
    "/healthz/",
    "/v1/admin/status/",
    "/v1/admin/status%2F",
    "/v1/admin/statu",
    "/v1/admin/rotate/",
    "/v1/webhooks/rotate/",
    "/v1/webhooks",
  ].map((path): Row => ({
    name: `GET ${path.slice(0, 60)}`,
    path,
    headers: consumer(),
    status: SAME_RESOURCE.has(path) ? [200, 401, 404] : [400, 404, 405],
    allow: /rotate/.test(path) ? "POST" : "GET, HEAD",
  })),
  // A query string does not change which key is served; another consumer's set stays forbidden.
  { name: "GET /v1/keys/demo?set=other", path: "/v1/keys/demo?set=other", headers: consumer(), status: 200 },
  { name: "GET /v1/keys/demo#frag", path: "/v1/keys/demo#other", headers: consumer(), status: 200 },
  { name: "GET /v1/keys/other as demo-svc", path: "/v1/keys/other", headers: consumer(), status: 403, error: "forbidden" },
  { name: "GET /v1/keys/other%2F..%2Fdemo as demo-svc", path: "/v1/keys/other%2F..%2Fdemo", headers: consumer(), status: [400, 404] },
  // Dot segments are resolved by the URL itself: these are the admin route, and need the admin token.
  { name: "GET /v1/keys/../admin/status", path: "/v1/keys/../admin/status", headers: consumer(), status: 401, challenge: true },
  { name: "GET /v1/keys/./demo/.", path: "/v1/keys/./demo/.", headers: consumer(), status: [200, 404] },
  ...[
    "/v1/admin/rotate/..%2Fstatus",
    "/v1/admin/rotate/demo%2F",
    "/v1/admin/rotate/%ZZ",
    `/v1/admin/rotate/${TEN_KB}`,
    "/v1/admin/rotate/d%C3%A9mo",
    "/v1/admin/rotate/__proto__",
    "/v1/admin/rotate/nope/",
  ].map((path): Row => ({ name: `POST ${path.slice(0, 60)}`, method: "POST", path, headers: admin(), status: [400, 404], allow: "POST" })),
  ...["/v1/admin/rotate/..%2Fstatus", "/v1/admin/rotate/demo%2F", "/v1/admin/rotate/demo/", `/v1/admin/rotate/${TEN_KB}`].map(
    (path): Row => ({ name: `POST ${path.slice(0, 60)} without credentials`, method: "POST", path, status: [401, 404], challenge: true }),
  ),
]);

// --- auth headers -----------------------------------------------------------------------

table("auth header", () => {
  const t = w.tokens["demo-svc"]!;
  const consumerCases: [string, [string, string][] | Record<string, string>][] = [
    ["missing", {}],
    ["empty", { authorization: "" }],
    ["scheme only", { authorization: "Bearer" }],
    ["scheme and space", { authorization: "Bearer " }],
    ["Basic", { authorization: `Basic ${btoa(`demo-svc:${t}`)}` }],
    ["Token scheme", { authorization: `Token ${t}` }],
    ["no scheme", { authorization: t }],
    ["two tokens", { authorization: `Bearer ${t} ${t}` }],
    ["token + junk", { authorization: `Bearer ${t}x` }],
    ["tab separator", { authorization: `Bearer\t${t}` }],
    ["quoted", { authorization: `Bearer "${t}"` }],
    ["latin-1 token", { authorization: "Bearer t\u00f6k\u00e9n" }],
    ["10 KB token", { authorization: `Bearer ${"a".repeat(10_240)}` }],
    ["admin token", admin()],
    ["other consumer's token for demo", consumer("other-svc")],
    [
      "duplicate header, same token",
      [
        ["authorization", `Bearer ${t}`],
        ["authorization", `Bearer ${t}`],
      ],
    ],
    [
      "duplicate header, two tokens",
      [
        ["authorization", `Bearer ${t}`],
        ["authorization", `Bearer ${w.tokens["other-svc"]}`],
      ],
    ],
    [
      "duplicate header, bad then good",
      [
        ["authorization", "Bearer nope"],
        ["authorization", `Bearer ${t}`],
      ],
    ],
  ];
  const rows: Row[] = [];
  for (const [name, headers] of consumerCases) {
    const expected = name === "other consumer's token for demo" ? 403 : 401;
    rows.push({ name: `GET /v1/keys/demo, ${name}`, path: "/v1/keys/demo", headers, status: expected, challenge: expected === 401 });
    if (expected === 401) rows.push({ name: `GET /v1/keys, ${name}`, path: "/v1/keys", headers, status: 401, challenge: true });
  }
  const adminCases: [string, [string, string][] | Record<string, string>][] = [
    ["missing", {}],
    ["consumer token", consumer()],
    ["lowercase prefix of the token", { authorization: `Bearer ${w.env.ADMIN_TOKEN!.slice(0, -1)}` }],
    ["token + junk", { authorization: `Bearer ${w.env.ADMIN_TOKEN}x` }],
    ["Basic", { authorization: `Basic ${btoa(`admin:${w.env.ADMIN_TOKEN}`)}` }],
    ["10 KB token", { authorization: `Bearer ${"a".repeat(10_240)}` }],
    [
      "duplicate header, same token",
      [
        ["authorization", `Bearer ${w.env.ADMIN_TOKEN}`],
        ["authorization", `Bearer ${w.env.ADMIN_TOKEN}`],
      ],
    ],
  ];
  for (const [name, headers] of adminCases) {
    rows.push({ name: `GET /v1/admin/status, ${name}`, path: "/v1/admin/status", headers, status: 401, challenge: true });
    rows.push({
      name: `POST /v1/admin/rotate/demo, ${name}`,
      method: "POST",
      path: "/v1/admin/rotate/demo",
      headers,
      status: 401,
      challenge: true,
    });
  }
  const sigCases: [string, [string, string][]][] = [
    ["no signature headers", [["content-type", "application/json"]]],
    [
      "duplicate webhook-id",
      [
        ["content-type", "application/json"],
        ["webhook-id", "a"],
        ["webhook-id", "b"],
        ["webhook-timestamp", String(Math.floor(w.clock.now() / 1000))],
        ["webhook-signature", "v1,AAAA"],
      ],
    ],
    [
      "duplicate webhook-timestamp",
      [
        ["content-type", "application/json"],
        ["webhook-id", "a"],
        ["webhook-timestamp", "1"],
        ["webhook-timestamp", "2"],
        ["webhook-signature", "v1,AAAA"],
      ],
    ],
    [
      "signature not v1",
      [
        ["content-type", "application/json"],
        ["webhook-id", "a"],
        ["webhook-timestamp", String(Math.floor(w.clock.now() / 1000))],
        ["webhook-signature", "v2,AAAA"],
      ],
    ],
    [
      "signature of another body",
      [
        ["content-type", "application/json"],
        ["webhook-id", "a"],
        ["webhook-timestamp", String(Math.floor(w.clock.now() / 1000))],
        ["webhook-signature", "v1,dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgb2YgYW55dGhpbmc="],
      ],
    ],
    [
      "admin bearer instead of a signature",
      [
        ["content-type", "application/json"],
        ["authorization", `Bearer ${w.env.ADMIN_TOKEN}`],
      ],
    ],
  ];
  for (const [name, headers] of sigCases)
    rows.push({
      name: `POST /v1/webhooks/rotate, ${name}`,
      method: "POST",
      path: "/v1/webhooks/rotate",
      headers,
      body: '{"model_set":"demo"}',
      status: 401,
      error: "invalid_signature",
    });
  return rows;
});

// --- random configurations --------------------------------------------------------------

/** A seeded random MODEL_SETS / CONSUMERS pair: mostly broken in one or more ways, sometimes valid. */
function randomConfig(r: () => number, demoHash: string): { MODEL_SETS: unknown; CONSUMERS: unknown } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const ids = ["demo", "other", "Demo", "-x", "a".repeat(33), "d\u00e9mo", "__proto__", "constructor", "x y", "", "ok-1", "9"];
  const durations = ["24h", "1h", "2m", "90s", "7d", 3600, "0s", "-1h", "1.5h", "1y", "", null, 1e20, "24h ", " 1h", "0", [], {}, true];
  const modelIds = [
    ["abcd1234"],
    [],
    ["a b"],
    [1],
    ["abcd1234", "abcd1234"],
    "abcd1234",
    null,
    Array.from({ length: 200 }, (_, i) => `m${i}`),
  ];
  const setEntry = () => {
    const e: Record<string, unknown> = { model_ids: pick(modelIds), rotate_every: pick(durations), overlap: pick(durations) };
    if (r() < 0.2) e.enabled = pick([true, false, "yes", 0, null]);
    if (r() < 0.15) e[pick(["rotate", "overlap_s", "__proto__", "models"])] = 1;
    if (r() < 0.1) delete e[pick(["model_ids", "rotate_every", "overlap"])];
    return e;
  };
  const sets: Record<string, unknown> = {};
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) sets[pick(ids)] = r() < 0.1 ? pick([null, 5, "x", []]) : setEntry();
  if (r() < 0.4) sets.demo = { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" };
  const consumers: Record<string, unknown> = {};
  const m = Math.floor(r() * 3);
  for (let i = 0; i < m; i++) {
    consumers[pick(["demo-svc", "x y", "", "a".repeat(70), "__proto__", "c"])] =
      r() < 0.1
        ? pick([null, "x", []])
        : {
            token_sha256: pick([demoHash, demoHash.toUpperCase(), "abc", "", null, "g".repeat(64)]),
            model_sets: pick([["demo"], ["nope"], "demo", [], [1], null]),
          };
  }
  const encode = (v: unknown) =>
    pick(["json", "json", "object", "junk"] as const) === "junk"
      ? pick(["{", "[]", "null", "42", '"x"', "", "{}}", "\u0000"])
      : r() < 0.5
        ? JSON.stringify(v)
        : v;
  return { MODEL_SETS: encode(sets), CONSUMERS: encode(consumers) };
}

const CONFIG_SEEDS = Array.from({ length: 60 }, (_, i) => `config-${i}`);

describe("random configurations", () => {
  it(
    "every configuration, valid or not, gets the gate's answer on every route, never a 500, and changes nothing",
    { timeout: 180_000 },
    async () => {
      const demoHash = await sha256Hex(w.tokens["demo-svc"]!);
      let invalid = 0;
      for (const seed of CONFIG_SEEDS) {
        const cfg = randomConfig(mulberry32(hashSeed(seed)), demoHash);
        const e = { ...w.env, ...cfg } as Env;
        const parsed = parseConfig(e);
        if (!parsed.ok) invalid++;
        tally("random configs", parsed.ok ? "valid" : "invalid");
        const gate = parsed.ok ? undefined : 503;
        const rows: Row[] = [
          { name: `${seed} GET /healthz`, path: "/healthz", env: e, status: parsed.ok ? 200 : 503 },
          {
            name: `${seed} GET /v1/keys/demo`,
            path: "/v1/keys/demo",
            headers: consumer(),
            env: e,
            status: gate ?? [200, 401, 403, 404, 503],
          },
          { name: `${seed} GET /v1/keys`, path: "/v1/keys", headers: consumer(), env: e, status: gate ?? [200, 401] },
          {
            name: `${seed} POST /v1/webhooks/rotate unsigned`,
            method: "POST",
            path: "/v1/webhooks/rotate",
            headers: { "content-type": "application/json" },
            body: '{"model_set":"demo"}',
            env: e,
            status: gate ?? 401,
          },
          {
            name: `${seed} POST /v1/admin/rotate/demo wrong token`,
            method: "POST",
            path: "/v1/admin/rotate/demo",
            headers: { authorization: "Bearer wrong-token-wrong-token" },
            env: e,
            status: gate ?? 401,
          },
          { name: `${seed} GET /v1/admin/status`, path: "/v1/admin/status", headers: admin(), env: e, status: 200 },
        ];
        for (const row of rows) {
          await check("random config", row);
          if (!parsed.ok && row.path === "/v1/keys/demo") expect(row.status).toBe(503);
        }
        if (!parsed.ok) {
          // The cron rotates nothing on an invalid configuration.
          const before = await dumpStorage(env.DB, env.KEYS);
          const calls = (await w.fake.calls()).counts;
          const ctx = createExecutionContext();
          await worker.scheduled!(createScheduledController({ scheduledTime: w.clock.now(), cron: "* * * * *" }), e, ctx);
          await waitOnExecutionContext(ctx);
          expect(await dumpStorage(env.DB, env.KEYS)).toBe(before);
          expect((await w.fake.calls()).counts).toEqual(calls);
        }
      }
      // The generator really produced both kinds.
      expect(invalid).toBeGreaterThan(CONFIG_SEEDS.length / 2);
      expect(invalid).toBeLessThan(CONFIG_SEEDS.length);
    },
  );
});
