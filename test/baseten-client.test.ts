/**
 * The management API client against the fake Baseten: what is retried (429 honouring the
 * server's wait, 5xx, timeouts, network errors), what fails at once (other 4xx), how errors
 * are classified, and that no error text ever carries the management key or an issued key.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BasetenClient, type BasetenOptions, UpstreamError } from "../src/baseten.ts";
import { type FakeTenant, fakeTenant } from "./helpers/fake.ts";

interface Harness {
  client: BasetenClient;
  fake: FakeTenant;
  /** Every wait the client asked for between attempts, in ms. */
  sleeps: number[];
  /** HTTP attempts the client made, by op. */
  attempts: string[];
}

function harness(options: Partial<BasetenOptions> = {}, fake = fakeTenant(env.BASETEN_API_BASE)): Harness {
  const sleeps: number[] = [];
  const attempts: string[] = [];
  const client = new BasetenClient({
    apiBase: env.BASETEN_API_BASE,
    teamId: "team-test",
    apiKey: fake.key,
    timeoutMs: 2_000,
    maxAttempts: 3,
    concurrency: 6,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.999,
    onAttempt: (op) => attempts.push(op),
    ...options,
  });
  return { client, fake, sleeps, attempts };
}

async function upstreamError(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof UpstreamError) return err;
    throw new Error(`expected an UpstreamError, got ${String(err)}`);
  }
  throw new Error("expected the call to fail");
}

/** Every error message seen in this file, checked at the end for secrets. */
const messages: string[] = [];
const issuedKeys: string[] = [];
const managementKeys: string[] = [];
function record(h: Harness, err: UpstreamError): UpstreamError {
  messages.push(err.message, JSON.stringify(err), String(err.stack ?? ""));
  managementKeys.push(h.fake.key);
  return err;
}

describe("BasetenClient", () => {
  it("mints, lists and revokes with the documented shapes", async () => {
    const h = harness();
    const a = await h.client.mint("bkr-chat-1-abc", ["abcd1234"]);
    const b = await h.client.mint("bkr-chat-2-def", ["abcd1234", "efgh5678"]);
    issuedKeys.push(a.apiKey, b.apiKey);
    expect(a.prefix).toBe(a.apiKey.slice(0, a.apiKey.indexOf(".")));
    expect(a.apiKey.length).toBeGreaterThan(a.prefix.length + 1);

    const listed = await h.client.list();
    expect(listed).toEqual([
      { prefix: a.prefix, name: "bkr-chat-1-abc", type: "WORKSPACE_INVOKE", model_ids: ["abcd1234"], team_name: "fake-team" },
      { prefix: b.prefix, name: "bkr-chat-2-def", type: "WORKSPACE_INVOKE", model_ids: ["abcd1234", "efgh5678"], team_name: "fake-team" },
    ]);
    const minted = (await h.fake.keys()).find((k) => k.prefix === a.prefix);
    expect(minted).toMatchObject({ team_id: "team-test", type: "WORKSPACE_INVOKE" });

    expect(await h.client.revoke(a.prefix)).toBe("revoked");
    expect((await h.client.list()).map((k) => k.prefix)).toEqual([b.prefix]);
    // 404: already gone counts as done, not as an error.
    expect(await h.client.revoke(a.prefix)).toBe("gone");
    expect(await h.client.revoke("nosuchkey")).toBe("gone");
    expect(h.sleeps).toEqual([]);
  });

  it("a 429 waits at least retry_after seconds from the body, then succeeds", async () => {
    const h = harness();
    await h.fake.fault({ op: "mint", kind: "429", retry_after: 3 });
    const minted = await h.client.mint("bkr-chat-1-rl", ["abcd1234"]);
    issuedKeys.push(minted.apiKey);
    expect(h.sleeps).toHaveLength(1);
    expect(h.sleeps[0]).toBeGreaterThanOrEqual(3_000);
    expect(h.attempts).toEqual(["mint", "mint"]);
    expect((await h.fake.calls()).calls.map((c) => c.status)).toEqual([429, 200]);
  });

  it("a 429 with only a Retry-After header waits at least that long", async () => {
    const h = harness({ random: () => 0 }); // no jitter: the wait comes from the header alone
    await h.fake.fault({ op: "list", kind: "429", retry_after_header: true });
    await h.client.list();
    expect(h.sleeps).toEqual([1_000]);
    expect(h.attempts).toEqual(["list", "list"]);
  });

  it("a 429 whose wait does not fit before the deadline gives up without sleeping", async () => {
    const h = harness();
    await h.fake.fault({ op: "list", kind: "429", retry_after: 120 });
    const err = record(h, await upstreamError(h.client.list(Date.now() + 60_000)));
    expect(err).toMatchObject({ op: "list", kind: "rate_limited", status: 429 });
    expect(h.sleeps).toEqual([]);
    expect(h.attempts).toEqual(["list"]);
  });

  it("a 500 is retried and the next answer is used", async () => {
    const h = harness();
    await h.fake.fault({ op: "mint", kind: "500" });
    const minted = await h.client.mint("bkr-chat-1-five", ["abcd1234"]);
    issuedKeys.push(minted.apiKey);
    expect(h.attempts).toEqual(["mint", "mint"]);
    expect(h.sleeps).toHaveLength(1);
    expect((await h.fake.liveKeys()).map((k) => k.prefix)).toEqual([minted.prefix]);
  });

  it("5xx on every attempt fails as kind server with Baseten's status and error text", async () => {
    const h = harness();
    await h.fake.fault({ op: "mint", kind: "503", count: 3 });
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-down", ["abcd1234"])));
    expect(err).toMatchObject({ op: "mint", kind: "server", status: 503, maybeApplied: true });
    expect(err.message).toBe("mint: Baseten answered 503: internal error");
    expect(h.attempts).toHaveLength(3);
    expect(h.sleeps).toHaveLength(2);
    expect((await h.fake.calls()).counts.mint).toBe(3);

    // A failed GET cannot have changed anything at Baseten.
    const g = harness();
    await g.fake.fault({ op: "list", kind: "500", count: 3 });
    expect(record(g, await upstreamError(g.client.list()))).toMatchObject({ op: "list", kind: "server", status: 500, maybeApplied: false });
  });

  it("a stalled call fails as kind timeout after the timeout, not after the stall", async () => {
    const h = harness({ timeoutMs: 300, maxAttempts: 1 });
    await h.fake.fault({ op: "list", kind: "stall", stall_ms: 20_000 });
    const started = Date.now();
    const err = record(h, await upstreamError(h.client.list()));
    const elapsed = Date.now() - started;
    expect(err).toMatchObject({ op: "list", kind: "timeout", status: null, maybeApplied: false });
    expect(err.message).toBe("list: no answer within 300 ms");
    expect(elapsed).toBeLessThan(10_000);
  });

  it("a stalled mint is retried, and the error says it may have been applied", async () => {
    const h = harness({ timeoutMs: 300, maxAttempts: 2 });
    await h.fake.fault({ op: "mint", kind: "stall", stall_ms: 20_000, count: 2 });
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-slow", ["abcd1234"])));
    expect(err).toMatchObject({ op: "mint", kind: "timeout", maybeApplied: true });
    expect(h.attempts).toEqual(["mint", "mint"]);
  });

  it("a connection reset by the server fails as kind network after the retries", async () => {
    const h = harness();
    await h.fake.fault({ op: "revoke", kind: "refuse", count: 3 });
    const err = record(h, await upstreamError(h.client.revoke("abcd1234")));
    expect(err).toMatchObject({ op: "revoke", kind: "network", status: null, maybeApplied: true });
    expect(h.attempts).toHaveLength(3);
  });

  it("a refused connection (nothing listening) fails as kind network", async () => {
    const h = harness({ apiBase: "http://127.0.0.1:1", maxAttempts: 2 });
    const err = record(h, await upstreamError(h.client.list()));
    expect(err).toMatchObject({ op: "list", kind: "network", status: null, maybeApplied: false });
    expect(err.message).toBe("list: network error");
    expect(h.attempts).toEqual(["list", "list"]);
  });

  it("a connection refused then accepted is retried", async () => {
    const h = harness();
    await h.fake.fault({ op: "list", kind: "refuse" });
    expect(await h.client.list()).toEqual([]);
    expect(h.attempts).toEqual(["list", "list"]);
  });

  it.each([
    ["400 (invalid model ids)", null, 400, "mint: Baseten answered 400: model_ids is required for WORKSPACE_INVOKE keys"],
    ["401 (fault)", "401", 401, "mint: Baseten answered 401: invalid API key"],
    ["403 (fault)", "403", 403, "mint: Baseten answered 403: permission denied"],
  ] as const)("any other 4xx fails at once: %s", async (_name, fault, status, message) => {
    const h = harness();
    if (fault) await h.fake.fault({ op: "mint", kind: fault });
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-no", fault ? ["abcd1234"] : [])));
    expect(err).toMatchObject({ op: "mint", kind: "client", status, maybeApplied: false });
    expect(err.message).toBe(message);
    expect(h.sleeps).toEqual([]);
    expect((await h.fake.calls()).counts).toEqual({ mint: 1, list: 0, revoke: 0 });
  });

  it("a management key the upstream does not know fails at once with 401", async () => {
    const h = harness({ apiKey: "not-a-management-key-0123456789" });
    const err = record(h, await upstreamError(h.client.list()));
    expect(err).toMatchObject({ op: "list", kind: "client", status: 401 });
    expect(h.attempts).toEqual(["list"]);
    expect(err.message).not.toContain("not-a-management-key-0123456789");
  });

  it("a name already in use (409) fails at once", async () => {
    const h = harness();
    issuedKeys.push((await h.client.mint("bkr-chat-1-dup", ["abcd1234"])).apiKey);
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-dup", ["abcd1234"])));
    expect(err).toMatchObject({ kind: "client", status: 409 });
    expect(h.attempts).toEqual(["mint", "mint"]);
  });

  it.each([
    ["malformed", "a truncated body"],
    ["empty", "an empty body"],
    ["empty_after_commit", "200 {} after creating the key"],
    ["malformed_after_commit", "a truncated body after creating the key"],
  ] as const)("a 200 mint with %s (%s) fails as malformed, maybe applied, without retrying", async (kind, _what) => {
    const h = harness();
    await h.fake.fault({ op: "mint", kind });
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-odd", ["abcd1234"])));
    expect(err).toMatchObject({ op: "mint", kind: "malformed", status: 200, maybeApplied: true });
    expect(h.attempts).toEqual(["mint"]);
  });

  it("a malformed list answer is not retried as if it were empty", async () => {
    const h = harness();
    await h.fake.fault({ op: "list", kind: "malformed" });
    const err = record(h, await upstreamError(h.client.list()));
    expect(err).toMatchObject({ op: "list", kind: "malformed" });
  });

  it("upstream error text is cut free of the management key and of anything key-shaped", async () => {
    const fake = fakeTenant(env.BASETEN_API_BASE);
    const leaked = "abcd1234.SuperSecretKeyMaterial0123456789";
    const h = harness(
      {
        fetch: async (_input, init) => {
          const auth = new Headers(init?.headers).get("authorization") ?? "";
          return new Response(JSON.stringify({ error: `rejected ${auth} while handling ${leaked}` }), { status: 400 });
        },
      },
      fake,
    );
    const err = record(h, await upstreamError(h.client.mint("bkr-chat-1-x", ["abcd1234"])));
    expect(err.message).toContain("rejected Api-Key [redacted]");
    expect(err.message).not.toContain(fake.key);
    expect(err.message).not.toContain("SuperSecretKeyMaterial0123456789");
  });

  it("a call waiting for a concurrency slot still ends by the run's deadline (never sent, nothing applied)", async () => {
    const fake = fakeTenant(env.BASETEN_API_BASE);
    // One slot, held by a call the fake stalls for 3 s.
    const h = harness({ concurrency: 1, timeoutMs: 5_000 }, fake);
    await fake.fault({ op: "list", kind: "stall", stall_ms: 3_000 });
    const started = Date.now();
    const holder = h.client.list(started + 10_000).catch(() => null);
    const queued = upstreamError(h.client.mint("bkr-demo-1-slot", ["abcd1234"], started + 400));
    const err = record(h, await queued);
    const waited = Date.now() - started;
    expect(err).toMatchObject({ op: "mint", kind: "timeout", maybeApplied: false });
    expect(waited).toBeLessThan(1_500);
    await holder;
    // The queued mint never reached Baseten.
    expect((await fake.calls()).counts.mint ?? 0).toBe(0);
  });

  it("a slot freed after a waiter gave up goes to the next waiter", async () => {
    const fake = fakeTenant(env.BASETEN_API_BASE);
    const h = harness({ concurrency: 1, timeoutMs: 5_000 }, fake);
    await fake.latency(300);
    const now = Date.now();
    const first = h.client.list(now + 10_000);
    const gaveUp = upstreamError(h.client.list(now + 100));
    const third = h.client.list(now + 10_000);
    expect((await gaveUp).kind).toBe("timeout");
    expect(Array.isArray(await first)).toBe(true);
    expect(Array.isArray(await third)).toBe(true);
    await fake.latency(0);
  });

  it("no error message seen in this file contains the management key or an issued key", () => {
    expect(messages.length).toBeGreaterThan(20);
    expect(issuedKeys.length).toBeGreaterThan(3);
    const text = messages.join("\n");
    for (const secret of [...managementKeys, ...issuedKeys]) expect(text).not.toContain(secret);
    for (const key of issuedKeys) expect(text).not.toContain(key.slice(key.indexOf(".") + 1));
  });
});
