/**
 * The operator command line against a stub rotator (DESIGN §7): each subcommand calls the route
 * DESIGN §3 names with the body it names, prints a table (or the route's JSON body with --json),
 * exits 0 / 1 / 2, and never prints the admin token or the webhook secret.
 */
import { createHash, createHmac } from "node:crypto";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ADMIN, NODE20, type Run, type Stub, runCli, startStub } from "./cli-harness.ts";

const SECRET = `whsec_${Buffer.from("0123456789abcdef0123456789abcdef").toString("base64")}`;
const OTHER_SECRET = `whsec_${Buffer.from("another-secret-of-32-bytes-long!").toString("base64")}`;
let stub: Stub;
let env: Record<string, string>;

const STATUS = {
  sets: [
    {
      model_set: "chat",
      enabled: true,
      model_ids: ["abcd1234"],
      generation: 7,
      created_at: "2026-11-27T15:00:00.000Z",
      refresh_at: "2099-11-28T15:00:00.000Z",
      expires_at: "2099-11-28T16:00:00.000Z",
      previous: [{ generation: 6, expires_at: "2099-11-27T16:00:00.000Z" }],
      last_run: { trigger: "cron", outcome: "rotated", error: null, at: "2026-11-27T15:00:00.000Z" },
    },
    {
      model_set: "embed",
      enabled: false,
      model_ids: ["qwer0987"],
      generation: null,
      created_at: null,
      refresh_at: null,
      expires_at: null,
      previous: [],
      last_run: null,
    },
  ],
  config_problems: [],
  engine: { last_tick_at: "2026-11-27T15:00:00.000Z", stalled: false },
  encryption: { primary: "1a2b3c4d", sealed_by: { "1a2b3c4d": 4 } },
  consumers: [
    {
      name: "billing-svc",
      kind: "token",
      model_sets: ["chat"],
      seen: [{ model_set: "chat", generation: 6, at: "2026-11-27T15:00:00.000Z", lagging: true }],
    },
  ],
};

/** A port nothing listens on. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** No output ever holds the admin token or the webhook secret (or its key bytes). */
function clean(r: Run) {
  for (const text of [r.stdout, r.stderr]) {
    expect(text).not.toContain(ADMIN);
    expect(text).not.toContain(SECRET.slice(6));
  }
  return r;
}

beforeAll(async () => {
  stub = await startStub();
  env = { BKR_URL: stub.url, BKR_ADMIN_TOKEN: ADMIN };
});
afterAll(() => stub.close());
beforeEach(() => {
  stub.requests.length = 0;
  stub.routes.clear();
});

describe("help and usage", () => {
  it("prints help and exits 0 for the program and every subcommand", async () => {
    for (const args of [
      ["--help"],
      ["-h"],
      ["help"],
      ["help", "audit"],
      ...["status", "rotate", "revoke", "audit", "consumers", "token", "webhook", "check"].map((c) => [c, "--help"]),
    ]) {
      const r = await runCli(args);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout).toMatch(/Usage: baseten-key-rotator/);
    }
    expect(stub.requests).toHaveLength(0);
  });

  it.each([
    [[], /Usage/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["status", "--bogus"], /Unknown option '--bogus'/],
    [["status", "extra"], /unexpected argument extra/],
    [["rotate"], /give a model set/],
    [["rotate", "Bad_Set"], /must match/],
    [["revoke", "chat"], /--all-previous or at least one --generation/],
    [["revoke", "chat", "--all-previous", "--generation", "3"], /not both/],
    [["revoke", "chat", "--generation", "0"], /whole number >= 1/],
    [["revoke", "chat", "--generation", "abc"], /whole number >= 1/],
    [["audit", "--limit", "0"], /1 to 500/],
    [["audit", "--limit", "501"], /1 to 500/],
    [["audit", "--limit", "abc"], /1 to 500/],
    [["consumers"], /give list, add/],
    [["consumers", "add", "Bad Name", "--sets", "chat"], /must match/],
    [["consumers", "add", "ok-name"], /--sets a,b/],
    [["consumers", "frob"], /unknown action/],
    [["token", "bad name!"], /consumer name/],
    [["webhook", "chat", "--print"], /WEBHOOK_SECRET must be set/],
  ])("%j is bad usage: exit 2, nothing sent", async (args, message) => {
    const r = clean(await runCli(args as string[], { env }));
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toMatch(message as RegExp);
    expect(stub.requests).toHaveLength(0);
  });

  it("without a URL or a token it says which variable to set (exit 2)", async () => {
    let r = await runCli(["status"], { env: { BKR_ADMIN_TOKEN: ADMIN } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/BKR_URL/);
    r = await runCli(["status"], { env: { BKR_URL: stub.url } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/BKR_ADMIN_TOKEN/);
  });
});

describe("status", () => {
  it("prints the sets, consumers and engine as tables, with the admin token sent and never shown", async () => {
    stub.routes.set("GET /v1/admin/status", { status: 200, body: STATUS });
    const r = clean(await runCli(["status"], { env }));
    expect(r.code).toBe(0);
    expect(stub.requests[0]!.headers.authorization).toBe(`Bearer ${ADMIN}`);
    const lines = r.stdout.split("\n");
    expect(lines.find((l) => l.startsWith("SET"))).toMatch(/SET\s+ENABLED\s+GEN\s+REFRESH_AT\s+EXPIRES_AT/);
    expect(lines.find((l) => l.startsWith("chat"))).toMatch(/^chat\s+yes\s+7\s+2099-11-28 15:00:00Z \(in .*\)\s+2099-11-28 16:00:00Z/);
    expect(lines.find((l) => l.startsWith("embed"))).toMatch(/^embed\s+no\s+-/);
    expect(r.stdout).toMatch(/billing-svc\s+token\s+chat\s+chat@6 LAGGING/);
    expect(r.stdout).toMatch(/engine: last tick 2026-11-27 15:00:00Z/);
    expect(r.stdout).toMatch(/config: OK/);
  });

  it("--json prints the route's JSON body, exactly", async () => {
    stub.routes.set("GET /v1/admin/status", { status: 200, body: STATUS });
    const r = clean(await runCli(["status", "--json"], { env }));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(STATUS);
  });

  it("a refused token, a 5xx and a dead server are failed requests (exit 1)", async () => {
    let r = clean(await runCli(["status"], { env: { ...env, BKR_ADMIN_TOKEN: "wrong-token-0123456789abcdef0123" } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 401 unauthorized: invalid admin token.*check BKR_ADMIN_TOKEN/);
    expect(r.stderr).not.toContain("wrong-token-0123456789abcdef0123");
    stub.routes.set("GET /v1/admin/status", { status: 503, body: { error: "config_invalid", message: "2 problems" } });
    r = clean(await runCli(["status", "--json"], { env }));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ error: "config_invalid", message: "2 problems" });
    r = clean(await runCli(["status"], { env: { ...env, BKR_URL: `http://127.0.0.1:${await closedPort()}` } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/request failed: ECONNREFUSED/);
  });

  it("--url and --token override the environment", async () => {
    stub.routes.set("GET /v1/admin/status", { status: 200, body: { sets: [] } });
    const r = clean(
      await runCli(["status", "--url", `${stub.url}/`, "--token", ADMIN], {
        env: { BKR_URL: "http://127.0.0.1:9", BKR_ADMIN_TOKEN: "nope" },
      }),
    );
    expect(r.code).toBe(0);
    expect(stub.requests[0]!.path).toBe("/v1/admin/status");
  });
});

describe("rotate and revoke", () => {
  const rotation = {
    model_set: "chat",
    generation: 8,
    created_at: "2026-11-27T15:00:00.000Z",
    refresh_at: "2099-11-28T15:00:00.000Z",
    expires_at: "2099-11-28T16:00:00.000Z",
    replaced: { generation: 7, expires_at: "2099-11-27T16:00:00.000Z" },
    revoked: [7],
    trigger: "admin",
    reason: "leak",
  };

  it("rotate posts reason and revoke_previous to /v1/admin/rotate/{set}", async () => {
    stub.routes.set("POST /v1/admin/rotate/chat", { status: 200, body: rotation });
    const r = clean(await runCli(["rotate", "chat", "--revoke-previous", "--reason", "leak"], { env }));
    expect(r.code).toBe(0);
    expect(JSON.parse(stub.requests[0]!.body)).toEqual({ reason: "leak", revoke_previous: true });
    expect(stub.requests[0]!.headers["content-type"]).toBe("application/json");
    expect(r.stdout).toMatch(/chat: generation 8 is current/);
    expect(r.stdout).toMatch(/revoked now generation 7/);
    const j = await runCli(["rotate", "chat", "--json"], { env });
    expect(JSON.parse(j.stdout)).toEqual(rotation);
    expect(JSON.parse(stub.requests[1]!.body)).toEqual({});
  });

  it("a 409 or 429 is a failed request naming the code and Retry-After", async () => {
    stub.routes.set("POST /v1/admin/rotate/chat", {
      status: 429,
      body: { error: "rate_limited", message: "10 rotations in 10 minutes" },
      headers: { "retry-after": "42" },
    });
    const r = clean(await runCli(["rotate", "chat"], { env }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 429 rate_limited: 10 rotations in 10 minutes \(retry after 42 s\)/);
  });

  it("revoke sends repeated --generation as a list, or all_previous", async () => {
    stub.routes.set("POST /v1/admin/revoke/chat", { status: 200, body: { model_set: "chat", revoked: [3, 5], reason: "drill" } });
    let r = clean(await runCli(["revoke", "chat", "--generation", "3", "--generation", "5", "--reason", "drill"], { env }));
    expect(r.code).toBe(0);
    expect(JSON.parse(stub.requests[0]!.body)).toEqual({ generations: [3, 5], reason: "drill" });
    expect(r.stdout).toMatch(/chat: revoked generations 3, 5 at Baseten/);
    r = clean(await runCli(["revoke", "chat", "--all-previous", "--json"], { env }));
    expect(JSON.parse(stub.requests[1]!.body)).toEqual({ all_previous: true });
    expect(JSON.parse(r.stdout)).toEqual({ model_set: "chat", revoked: [3, 5], reason: "drill" });
  });

  it("revoking the current generation is refused (409 is_current, exit 1, --json prints the error body)", async () => {
    stub.routes.set("POST /v1/admin/revoke/chat", {
      status: 409,
      body: { error: "is_current", message: "generation 8 is the current key: rotate with revoke_previous instead" },
    });
    const r = clean(await runCli(["revoke", "chat", "--generation", "8", "--json"], { env }));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toBe("is_current");
    expect(r.stderr).toMatch(/HTTP 409 is_current/);
  });
});

describe("audit and consumers", () => {
  it("audit passes --set, --limit and --cursor, prints a table and the next page", async () => {
    const body = {
      entries: [
        {
          id: "a2",
          model_set: "chat",
          generation: 8,
          action: "minted",
          trigger: "admin",
          reason: "leak",
          consumer: null,
          at: "2026-11-27T15:00:01.000Z",
        },
        {
          id: "a1",
          model_set: null,
          generation: null,
          action: "consumer_created",
          trigger: "admin",
          reason: null,
          consumer: "ci-bot",
          at: "2026-11-27T15:00:00.000Z",
        },
      ],
      next_cursor: "opaque123",
    };
    stub.routes.set("GET /v1/admin/audit?model_set=chat&limit=2&cursor=c0", { status: 200, body });
    const r = clean(await runCli(["audit", "--set", "chat", "--limit", "2", "--cursor", "c0"], { env }));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^AT\s+ACTION\s+SET\s+GEN\s+TRIGGER\s+CONSUMER\s+REASON/m);
    expect(r.stdout).toMatch(/2026-11-27 15:00:01Z\s+minted\s+chat\s+8\s+admin\s+-\s+leak/);
    expect(r.stdout).toMatch(/consumer_created\s+-\s+-\s+admin\s+ci-bot/);
    expect(r.stdout).toMatch(/--cursor opaque123/);
    stub.routes.set("GET /v1/admin/audit", { status: 200, body: { entries: [], next_cursor: null } });
    const j = await runCli(["audit", "--json"], { env });
    expect(JSON.parse(j.stdout)).toEqual({ entries: [], next_cursor: null });
  });

  it("consumers list, add (prints the new token once, saying so) and remove", async () => {
    stub.routes.set("GET /v1/admin/consumers", {
      status: 200,
      body: {
        consumers: [
          { name: "billing-svc", kind: "token", model_sets: ["chat"] },
          { name: "ci-bot", kind: "managed", model_sets: ["chat", "embed"] },
        ],
      },
    });
    let r = clean(await runCli(["consumers", "list"], { env }));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ci-bot\s+managed\s+chat,embed/);

    const newToken = "bkr_managed_token_value_shown_once_0123456789";
    stub.routes.set("POST /v1/admin/consumers", { status: 201, body: { name: "ci-bot", model_sets: ["chat", "embed"], token: newToken } });
    r = clean(await runCli(["consumers", "add", "ci-bot", "--sets", "chat,embed"], { env }));
    expect(r.code).toBe(0);
    expect(JSON.parse(stub.requests.at(-1)!.body)).toEqual({ name: "ci-bot", model_sets: ["chat", "embed"] });
    expect(r.stdout).toContain(newToken);
    expect(r.stdout).toMatch(/printed this once/);

    stub.routes.set("POST /v1/admin/consumers", {
      status: 409,
      body: { error: "conflict", message: "a configured consumer has that name" },
    });
    r = clean(await runCli(["consumers", "add", "billing-svc", "--sets", "chat"], { env }));
    expect(r.code).toBe(1);

    stub.routes.set("DELETE /v1/admin/consumers/ci-bot", { status: 200, body: { name: "ci-bot", deleted: true } });
    r = clean(await runCli(["consumers", "remove", "ci-bot", "--json"], { env }));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ name: "ci-bot", deleted: true });
  });
});

describe("token (offline)", () => {
  it("prints a new token and its SHA-256, and the CONSUMERS entry for a name and sets", async () => {
    const r = await runCli(["token", "billing-svc", "chat", "embed", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { token: string; sha256: string; consumers_entry: Record<string, unknown> };
    expect(j.token).toMatch(/^bkr_[A-Za-z0-9_-]{43}$/);
    expect(j.sha256).toBe(createHash("sha256").update(j.token).digest("hex"));
    expect(j.consumers_entry).toEqual({ "billing-svc": { token_sha256: j.sha256, model_sets: ["chat", "embed"] } });
    const h = await runCli(["token"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/printed this once and stored nowhere/);
  });
});

describe("webhook", () => {
  /** What the worker checks (DESIGN §3), computed here independently of the CLI's code. */
  function verify(rec: { headers: Record<string, string | string[] | undefined>; body: string }, secret: string) {
    const key = Buffer.from(secret.slice(6), "base64");
    const expected = createHmac("sha256", key)
      .update(`${rec.headers["webhook-id"]}.${rec.headers["webhook-timestamp"]}.${rec.body}`)
      .digest("base64");
    return (
      rec.headers["webhook-signature"] === `v1,${expected}` && Math.abs(Number(rec.headers["webhook-timestamp"]) - Date.now() / 1000) < 300
    );
  }
  const answer = {
    model_set: "chat",
    generation: 9,
    refresh_at: "2099-11-28T15:00:00.000Z",
    expires_at: "2099-11-28T16:00:00.000Z",
    replaced: null,
    revoked: [],
    trigger: "webhook",
    reason: "scanner",
  };

  it("sends a request signed with the first WEBHOOK_SECRET of the list; the same --id is sent again as is", async () => {
    stub.routes.set("POST /v1/webhooks/rotate", { status: 200, body: answer });
    const r = clean(
      await runCli(["webhook", "chat", "--reason", "scanner", "--revoke-previous", "--id", "msg_fixed1"], {
        env: { BKR_URL: stub.url, WEBHOOK_SECRET: `${SECRET} ${OTHER_SECRET}` },
      }),
    );
    expect(r.code).toBe(0);
    const rec = stub.requests[0]!;
    expect(rec.headers.authorization).toBeUndefined();
    expect(JSON.parse(rec.body)).toEqual({ model_set: "chat", reason: "scanner", revoke_previous: true });
    expect(rec.headers["webhook-id"]).toBe("msg_fixed1");
    expect(verify(rec, SECRET)).toBe(true);
    expect(r.stdout).toMatch(/chat: generation 9 is current/);
    expect(r.stderr).not.toContain(OTHER_SECRET.slice(6));
  });

  it("the old form `webhook <url> <set>` still works (npm run webhook -- <url> <set>)", async () => {
    stub.routes.set("POST /v1/webhooks/rotate", { status: 200, body: answer });
    const r = clean(await runCli(["webhook", stub.url, "chat", "--json"], { env: { WEBHOOK_SECRET: SECRET } }));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(answer);
  });

  it("--print prints a curl command that works as printed", async () => {
    stub.routes.set("POST /v1/webhooks/rotate", (rec) =>
      verify(rec, SECRET) ? { status: 200, body: answer } : { status: 401, body: { error: "unauthorized", message: "bad signature" } },
    );
    const r = clean(
      await runCli(["webhook", "chat", "--reason", "it's a drill", "--print"], { env: { BKR_URL: stub.url, WEBHOOK_SECRET: SECRET } }),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^curl -sS -X POST /);
    expect(stub.requests).toHaveLength(0);
    // Paste it into a shell.
    const out = await new Promise<string>((resolve, reject) =>
      execFile("sh", ["-c", r.stdout], { encoding: "utf8" }, (e, so) => (e ? reject(e) : resolve(so))),
    );
    expect(JSON.parse(out)).toEqual(answer);
    expect(JSON.parse(stub.requests[0]!.body)).toEqual({ model_set: "chat", reason: "it's a drill" });
  });

  it("a refused webhook is a failed request (exit 1)", async () => {
    stub.routes.set("POST /v1/webhooks/rotate", { status: 401, body: { error: "unauthorized", message: "no matching signature" } });
    const r = clean(await runCli(["webhook", "chat"], { env: { BKR_URL: stub.url, WEBHOOK_SECRET: SECRET } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 401 unauthorized/);
  });
});

it("runs under Node 20 here when the machine has it", async () => {
  const r = await runCli(["--version"]);
  expect(r.code).toBe(0);
  expect(NODE20).toBeTruthy();
});
