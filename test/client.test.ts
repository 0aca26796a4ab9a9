/**
 * The consumer library (src/client/index.ts) against a stub rotator and a stub Baseten,
 * with a fake clock: caching by refresh_at, early-refresh jitter bounds, single flight,
 * rotator outages before and after expires_at, hard 401/403/404 failures, malformed
 * documents, the fetchWithKey 401 -> refetch -> retry-once path, and that no error
 * message ever carries the token or a key. No bindings needed.
 */
import { describe, expect, it } from "vitest";
import { createKeyClient, KeyClientError, type FetchFunction, type KeyClientOptions, type KeyDocument } from "../src/client/index.ts";

const T0 = Date.parse("2026-11-27T15:00:00.000Z");
const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const TOKEN = "bkr-consumer-TOKEN-5ecret";
const URL_BASE = "https://rotator.example.com";
const BASETEN = "https://model-abcd1234.api.baseten.co/production/predict";

const iso = (ms: number) => new Date(ms).toISOString();

/** A key document: generation n, refresh `refreshIn` after T0, expiring `overlap` later. */
function keyDoc(n: number, opts: { refreshAt?: number; expiresAt?: number; set?: string } = {}): KeyDocument {
  const refreshAt = opts.refreshAt ?? T0 + 24 * HOUR;
  return {
    model_set: opts.set ?? "chat",
    model_ids: ["abcd1234"],
    api_key: `pfx${n}.KEY-secret-${n}`,
    generation: n,
    created_at: iso(T0 - HOUR),
    refresh_at: iso(refreshAt),
    expires_at: iso(opts.expiresAt ?? refreshAt + HOUR),
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

type Handler = (n: number, call: Call) => Response | Promise<Response>;

interface Call {
  url: string;
  method: string;
  headers: Headers;
  body: string;
  at: number;
}

/** A stub endpoint: records every call and answers with `handler` (settable). */
function stub(time: { now: number }, handler: Handler) {
  const calls: Call[] = [];
  const s = {
    calls,
    handler,
    fetch: (async (input: Request | string | URL, init?: RequestInit) => {
      const req = new Request(input, init);
      const body = req.body === null ? "" : await req.text();
      const call = { url: req.url, method: req.method, headers: req.headers, body, at: time.now };
      calls.push(call);
      return s.handler(calls.length, call);
    }) as FetchFunction,
  };
  return s;
}

/** A client on a fake clock with a stub rotator (answering `first`) and a stub Baseten. */
function setup(first: Handler | KeyDocument = keyDoc(1), options: Partial<KeyClientOptions> = {}) {
  const time = { now: T0 };
  const rotator = stub(time, typeof first === "function" ? first : () => json(first));
  const baseten = stub(time, () => json({ ok: true }));
  const errors: unknown[] = [];
  const client = createKeyClient({
    url: URL_BASE,
    token: TOKEN,
    modelSet: "chat",
    fetch: rotator.fetch,
    basetenFetch: baseten.fetch,
    clock: () => time.now,
    random: () => 0,
    ...options,
  });
  /** getKey() that records the error (for the no-secrets sweep) and rethrows it. */
  const getKey = async () => {
    try {
      return await client.getKey();
    } catch (err) {
      errors.push(err);
      throw err;
    }
  };
  return { client, rotator, baseten, time, errors, getKey };
}

async function rejection(p: Promise<unknown>): Promise<KeyClientError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KeyClientError);
    return err as KeyClientError;
  }
  throw new Error("expected a rejection");
}

function expectNoSecrets(err: unknown, secrets: string[]) {
  const e = err as Error;
  for (const text of [e.message, String(e), e.stack ?? ""]) {
    for (const secret of secrets) expect(text).not.toContain(secret);
  }
}

describe("createKeyClient: options", () => {
  const base = { url: URL_BASE, token: TOKEN, modelSet: "chat", fetch: async () => json(keyDoc(1)) };
  const cases: [string, Record<string, unknown>][] = [
    ["options.url", { url: "" }],
    ["options.url", { url: "not a url" }],
    ["options.url", { url: "ftp://rotator.example.com" }],
    ["options.url", { url: "https://rotator.example.com/?x=1" }],
    ["options.url", { url: 42 }],
    ["options.token", { token: "" }],
    ["options.token", { token: "has space-SECRETPART" }],
    ["options.token", { token: undefined }],
    ["options.modelSet", { modelSet: "" }],
    ["options.modelSet", { modelSet: 7 }],
    ["options.fetch", { fetch: "https://x" }],
    ["options.fetch", { fetch: { fetch: 1 } }],
    ["options.basetenFetch", { basetenFetch: 1 }],
    ["options.clock", { clock: 5 }],
    ["options.random", { random: "r" }],
    ["options.earlyRefresh", { earlyRefresh: -0.1 }],
    ["options.earlyRefresh", { earlyRefresh: 1.5 }],
    ["options.earlyRefresh", { earlyRefresh: Number.NaN }],
    ["options.timeoutMs", { timeoutMs: -1 }],
    ["options.timeoutMs", { timeoutMs: Number.POSITIVE_INFINITY }],
  ];
  for (const [name, patch] of cases) {
    it(`rejects a bad ${name} (${JSON.stringify(patch)}) with a TypeError naming it`, () => {
      let thrown: unknown;
      try {
        createKeyClient({ ...base, ...patch } as unknown as KeyClientOptions);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(TypeError);
      expect((thrown as Error).message).toContain(name);
      expect((thrown as Error).message).not.toContain("SECRETPART");
      expect((thrown as Error).message).not.toContain(TOKEN);
    });
  }

  it("rejects a missing options object", () => {
    expect(() => createKeyClient(undefined as unknown as KeyClientOptions)).toThrow(TypeError);
  });

  it("accepts the defaults for everything optional", () => {
    const client = createKeyClient({ url: URL_BASE, token: TOKEN, modelSet: "chat" });
    expect(typeof client.getKey).toBe("function");
    expect(typeof client.invalidate).toBe("function");
    expect(typeof client.fetchWithKey).toBe("function");
  });
});

describe("the request to the rotator", () => {
  it("GETs {url}/v1/keys/{set} with the bearer token", async () => {
    const { rotator, getKey } = setup();
    const doc = await getKey();
    expect(doc).toEqual(keyDoc(1));
    expect(rotator.calls).toHaveLength(1);
    const call = rotator.calls[0]!;
    expect(call.method).toBe("GET");
    expect(call.url).toBe(`${URL_BASE}/v1/keys/chat`);
    expect(call.headers.get("authorization")).toBe(`Bearer ${TOKEN}`);
  });

  it("keeps a path prefix, drops trailing slashes and encodes the set", async () => {
    const time = { now: T0 };
    const rotator = stub(time, () => json(keyDoc(1, { set: "a b/c" })));
    const client = createKeyClient({
      url: "https://gw.example.com/rotator///",
      token: TOKEN,
      modelSet: "a b/c",
      fetch: rotator.fetch,
      clock: () => time.now,
    });
    await client.getKey();
    expect(rotator.calls[0]!.url).toBe("https://gw.example.com/rotator/v1/keys/a%20b%2Fc");
  });

  it("accepts a service binding (an object with fetch) and calls it as a method", async () => {
    const time = { now: T0 };
    const seen: string[] = [];
    class Binding {
      private readonly secret = "bound";
      async fetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
        if (this?.secret !== "bound") throw new TypeError("Illegal invocation");
        seen.push(new Request(input, init).url);
        return json(keyDoc(1));
      }
    }
    const client = createKeyClient({ url: "https://rotator", token: TOKEN, modelSet: "chat", fetch: new Binding(), clock: () => time.now });
    expect((await client.getKey()).generation).toBe(1);
    expect(seen).toEqual(["https://rotator/v1/keys/chat"]);
  });

  it("uses the global fetch by default, called on globalThis and looked up at call time", async () => {
    const original = globalThis.fetch;
    const seen: string[] = [];
    try {
      const client = createKeyClient({ url: URL_BASE, token: TOKEN, modelSet: "chat" });
      globalThis.fetch = async function (this: unknown, input: Request | string | URL, init?: RequestInit) {
        if (this !== globalThis) throw new TypeError("Illegal invocation");
        seen.push(new Request(input, init).url);
        return json(keyDoc(1));
      } as typeof fetch;
      expect((await client.getKey()).generation).toBe(1);
    } finally {
      globalThis.fetch = original;
    }
    expect(seen).toEqual([`${URL_BASE}/v1/keys/chat`]);
  });

  it("passes an abort signal (timeoutMs) and reports a timeout as unavailable", async () => {
    let signal: AbortSignal | null | undefined;
    const hanging = ((_input: Request | string | URL, init?: RequestInit) => {
      signal = init?.signal;
      return new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    }) as FetchFunction;
    const { getKey } = setup(keyDoc(1), { fetch: hanging, timeoutMs: 30 });
    const err = await rejection(getKey());
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(err.code).toBe("unavailable");
    expect(err.message).toContain("no answer within 30 ms");
  });
});

describe("caching follows the key document", () => {
  it("reuses the key until refresh_at and refetches exactly at refresh_at (random = 0)", async () => {
    const refreshAt = T0 + 24 * HOUR;
    const { rotator, time, getKey } = setup((n) => json(keyDoc(n, { refreshAt: refreshAt + (n - 1) * 24 * HOUR })));
    expect((await getKey()).generation).toBe(1);
    time.now = T0 + HOUR;
    expect((await getKey()).generation).toBe(1);
    time.now = refreshAt - 1;
    expect((await getKey()).generation).toBe(1);
    expect(rotator.calls).toHaveLength(1);
    time.now = refreshAt;
    expect((await getKey()).generation).toBe(2);
    expect(rotator.calls).toHaveLength(2);
    time.now = refreshAt + HOUR;
    expect((await getKey()).generation).toBe(2);
    expect(rotator.calls).toHaveLength(2);
  });

  it("returns a frozen document", async () => {
    const { getKey } = setup();
    const doc = await getKey();
    expect(Object.isFrozen(doc)).toBe(true);
    expect(Object.isFrozen(doc.model_ids)).toBe(true);
  });

  it("random = 0.999 refreshes 0.999 x min(10% of the lifetime, 5 min) early: 24h key -> capped at 5 min", async () => {
    const refreshAt = T0 + 24 * HOUR;
    const { rotator, time, getKey } = setup(keyDoc(1, { refreshAt }), { random: () => 0.999 });
    await getKey();
    const deadline = refreshAt - Math.floor(0.999 * 5 * MINUTE);
    time.now = deadline - 1;
    await getKey();
    expect(rotator.calls).toHaveLength(1);
    time.now = deadline;
    await getKey();
    expect(rotator.calls).toHaveLength(2);
  });

  it("a 10-minute key refreshes up to 1 minute early (10% of its lifetime)", async () => {
    const refreshAt = T0 + 10 * MINUTE;
    const { rotator, time, getKey } = setup(keyDoc(1, { refreshAt }), { random: () => 0.5 });
    await getKey();
    time.now = refreshAt - 30 * SECOND - 1;
    await getKey();
    expect(rotator.calls).toHaveLength(1);
    time.now = refreshAt - 30 * SECOND;
    await getKey();
    expect(rotator.calls).toHaveLength(2);
  });

  it("earlyRefresh = 0 disables the jitter", async () => {
    const refreshAt = T0 + HOUR;
    const { rotator, time, getKey } = setup(keyDoc(1, { refreshAt }), { random: () => 0.999, earlyRefresh: 0 });
    await getKey();
    time.now = refreshAt - 1;
    await getKey();
    expect(rotator.calls).toHaveLength(1);
    time.now = refreshAt;
    await getKey();
    expect(rotator.calls).toHaveLength(2);
  });

  it("over many random draws the deadline stays within [refresh_at - min(10% lifetime, 5 min), refresh_at]", async () => {
    const lifetimes = [30 * SECOND, 10 * MINUTE, 45 * MINUTE, 24 * HOUR, 7 * 24 * HOUR];
    for (let trial = 0; trial < 250; trial++) {
      const lifetime = lifetimes[trial % lifetimes.length]!;
      const refreshAt = T0 + lifetime;
      const draws: number[] = [];
      const { rotator, time, getKey } = setup(keyDoc(1, { refreshAt }), {
        random: () => {
          const r = Math.random();
          draws.push(r);
          return r;
        },
      });
      await getKey();
      expect(draws).toHaveLength(1); // one draw per document
      const window = Math.min(0.1 * lifetime, 5 * MINUTE);
      const deadline = refreshAt - Math.floor(draws[0]! * window);
      expect(deadline).toBeGreaterThanOrEqual(refreshAt - window);
      expect(deadline).toBeLessThanOrEqual(refreshAt);
      // Behaviour matches: never refreshed before the lower bound, always by refresh_at.
      time.now = refreshAt - window - 1;
      await getKey();
      time.now = deadline - 1;
      await getKey();
      expect(rotator.calls).toHaveLength(1);
      time.now = deadline;
      await getKey();
      expect(rotator.calls).toHaveLength(2);
    }
  });

  it("a document whose refresh_at has already passed is reused for 1 s, not refetched on every call", async () => {
    const { rotator, time, getKey } = setup(keyDoc(1, { refreshAt: T0 - 10 * SECOND, expiresAt: T0 + HOUR }));
    await getKey();
    await getKey();
    time.now = T0 + 999;
    await getKey();
    expect(rotator.calls).toHaveLength(1);
    time.now = T0 + SECOND;
    await getKey();
    expect(rotator.calls).toHaveLength(2);
  });
});

describe("single flight", () => {
  it("100 concurrent getKey() calls make exactly one request and share its result", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { rotator, getKey } = setup(async () => {
      await gate;
      return json(keyDoc(1));
    });
    const pending = Array.from({ length: 100 }, () => getKey());
    expect(rotator.calls).toHaveLength(1);
    release();
    const docs = await Promise.all(pending);
    expect(rotator.calls).toHaveLength(1);
    expect(new Set(docs).size).toBe(1);
    expect(docs[0]!.generation).toBe(1);
  });

  it("100 concurrent calls at refresh time make one request and all see the new key", async () => {
    const refreshAt = T0 + HOUR;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { rotator, time, getKey } = setup(async (n) => {
      if (n === 2) await gate;
      return json(keyDoc(n, { refreshAt: refreshAt + (n - 1) * HOUR }));
    });
    await getKey();
    time.now = refreshAt;
    const pending = Array.from({ length: 100 }, () => getKey());
    release();
    const docs = await Promise.all(pending);
    expect(rotator.calls).toHaveLength(2);
    expect(docs.every((d) => d.generation === 2)).toBe(true);
  });

  it("100 concurrent calls against a failing rotator make one request and share the error", async () => {
    const { rotator, getKey } = setup(() => json({ error: "internal", message: "boom" }, 500));
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => getKey()));
    expect(rotator.calls).toHaveLength(1);
    expect(results.every((r) => r.status === "rejected" && (r.reason as KeyClientError).code === "unavailable")).toBe(true);
  });

  it("a new request can start once the previous one settled", async () => {
    const { rotator, client } = setup();
    await client.getKey();
    client.invalidate();
    await Promise.all([client.getKey(), client.getKey()]);
    expect(rotator.calls).toHaveLength(2);
  });
});

describe("rotator outage", () => {
  const refreshAt = T0 + HOUR;
  const expiresAt = refreshAt + HOUR;

  const downs: [string, () => Response | Promise<Response>][] = [
    ["a network error", () => Promise.reject(new TypeError("fetch failed"))],
    ["HTTP 500", () => json({ error: "internal", message: "x" }, 500)],
    ["HTTP 502 (HTML)", () => new Response("<html>bad gateway</html>", { status: 502 })],
    ["HTTP 503 config_invalid", () => json({ error: "config_invalid", message: "bad config" }, 503)],
    ["HTTP 429", () => json({ error: "rate_limited" }, 429, { "retry-after": "5" })],
  ];
  for (const [what, down] of downs) {
    it(`${what} before expires_at: keeps serving the held key; after expires_at: unavailable`, async () => {
      let up = true;
      const { rotator, time, getKey } = setup(() => (up ? json(keyDoc(1, { refreshAt, expiresAt })) : down()));
      await getKey();
      up = false;
      time.now = refreshAt;
      expect((await getKey()).api_key).toBe(keyDoc(1).api_key);
      expect(rotator.calls).toHaveLength(2);
      time.now = expiresAt - 1;
      expect((await getKey()).generation).toBe(1);
      time.now = expiresAt;
      const err = await rejection(getKey());
      expect(err.code).toBe("unavailable");
      expect(err.message).toContain("expired");
      expectNoSecrets(err, [TOKEN, keyDoc(1).api_key]);
    });
  }

  it("without a held key a down rotator fails with unavailable at once", async () => {
    const { getKey } = setup(() => Promise.reject(new TypeError("connect ECONNREFUSED")));
    const err = await rejection(getKey());
    expect(err.code).toBe("unavailable");
    expect(err.status).toBeUndefined();
    expect(err.message).toContain("could not reach the rotator");
  });

  it("does not hammer a down rotator: at most one attempt per second, backing off 1, 2, 4 s while a key is held", async () => {
    let up = true;
    const { rotator, time, getKey } = setup(() => (up ? json(keyDoc(1, { refreshAt, expiresAt })) : json({}, 502)));
    await getKey();
    up = false;
    time.now = refreshAt; // attempt 1 fails -> next no sooner than +1 s
    await getKey();
    expect(rotator.calls).toHaveLength(2);
    time.now = refreshAt + 999;
    await getKey();
    await getKey();
    expect(rotator.calls).toHaveLength(2);
    time.now = refreshAt + SECOND; // attempt 2 fails -> +2 s
    await getKey();
    expect(rotator.calls).toHaveLength(3);
    time.now = refreshAt + 3 * SECOND - 1;
    await getKey();
    expect(rotator.calls).toHaveLength(3);
    time.now = refreshAt + 3 * SECOND; // attempt 3 fails -> +4 s
    await getKey();
    expect(rotator.calls).toHaveLength(4);
    time.now = refreshAt + 7 * SECOND - 1;
    await getKey();
    expect(rotator.calls).toHaveLength(4);
    time.now = refreshAt + 7 * SECOND;
    await getKey();
    expect(rotator.calls).toHaveLength(5);
  });

  it("the back-off never skips past the held key's expires_at", async () => {
    const exp = refreshAt + 1500;
    let up = true;
    const { rotator, time, getKey } = setup(() => (up ? json(keyDoc(1, { refreshAt, expiresAt: exp })) : json({}, 500)));
    await getKey();
    up = false;
    time.now = refreshAt;
    await getKey();
    time.now = refreshAt + SECOND; // fails again: back-off 2 s, capped at expires_at
    await getKey();
    expect(rotator.calls).toHaveLength(3);
    time.now = exp; // the held key has expired: try again now rather than fail blindly
    up = true;
    rotator.handler = () => json(keyDoc(2, { refreshAt: exp + HOUR }));
    expect((await getKey()).generation).toBe(2);
    expect(rotator.calls).toHaveLength(4);
  });

  it("without a held key, calls within 1 s of a failure get the same error without a request", async () => {
    let up = false;
    const { rotator, time, getKey } = setup(() => (up ? json(keyDoc(1)) : json({}, 503)));
    await rejection(getKey());
    time.now = T0 + 999;
    const again = await rejection(getKey());
    expect(again.code).toBe("unavailable");
    expect(rotator.calls).toHaveLength(1);
    up = true;
    time.now = T0 + SECOND;
    expect((await getKey()).generation).toBe(1);
    expect(rotator.calls).toHaveLength(2);
  });

  it("recovers: the first successful attempt after an outage brings the new key", async () => {
    let up = true;
    const { time, getKey } = setup((n) => (up ? json(keyDoc(n, { refreshAt: refreshAt + (n - 1) * HOUR })) : json({}, 500)));
    await getKey();
    up = false;
    time.now = refreshAt;
    expect((await getKey()).generation).toBe(1);
    up = true;
    time.now = refreshAt + SECOND;
    expect((await getKey()).generation).toBe(3); // calls: 1 ok, 2 failed, 3 ok
  });
});

describe("answers from the rotator that are not an outage", () => {
  it("401 fails at once with unauthorized, even while an unexpired key is held, and keeps that key", async () => {
    const refreshAt = T0 + HOUR;
    let reply: () => Response = () => json(keyDoc(1, { refreshAt }));
    const { rotator, time, getKey } = setup(() => reply());
    await getKey();
    reply = () => json({ error: "unauthorized", message: "bad token" }, 401, { "www-authenticate": "Bearer" });
    time.now = refreshAt;
    const err = await rejection(getKey());
    expect(err.code).toBe("unauthorized");
    expect(err.status).toBe(401);
    expect(err.message).toContain("bad token");
    // Within 1 s: the same error, no request.
    time.now = refreshAt + 500;
    expect((await rejection(getKey())).code).toBe("unauthorized");
    expect(rotator.calls).toHaveLength(2);
    // The held key was not dropped: a later outage still falls back to it.
    reply = () => json({}, 500);
    time.now = refreshAt + SECOND;
    expect((await getKey()).generation).toBe(1);
    expect(rotator.calls).toHaveLength(3);
  });

  it("403 (set not granted) fails with unauthorized", async () => {
    const { getKey } = setup(() => json({ error: "forbidden", message: "this token is not granted that model set" }, 403));
    const err = await rejection(getKey());
    expect(err.code).toBe("unauthorized");
    expect(err.status).toBe(403);
  });

  it("404 fails with unknown_set", async () => {
    const { getKey } = setup(() => json({ error: "unknown_model_set", message: "no such model set" }, 404));
    const err = await rejection(getKey());
    expect(err.code).toBe("unknown_set");
    expect(err.status).toBe(404);
  });

  it("503 no_key_yet fails with no_key_yet and the Retry-After", async () => {
    const { getKey } = setup(() =>
      json({ error: "no_key_yet", message: "no key has been minted for this set yet" }, 503, { "retry-after": "42" }),
    );
    const err = await rejection(getKey());
    expect(err.code).toBe("no_key_yet");
    expect(err.status).toBe(503);
    expect(err.retryAfter).toBe(42);
  });

  it("503 no_key_yet while a key is held is treated as an outage (the held key is served)", async () => {
    const refreshAt = T0 + HOUR;
    let first = true;
    const { time, getKey } = setup(() => {
      if (first) {
        first = false;
        return json(keyDoc(1, { refreshAt }));
      }
      return json({ error: "no_key_yet" }, 503);
    });
    await getKey();
    time.now = refreshAt;
    expect((await getKey()).generation).toBe(1);
  });

  const malformed: [string, () => Response][] = [
    ["a body that is not JSON", () => new Response("<html>ok</html>", { status: 200 })],
    ["a JSON array", () => json([keyDoc(1)])],
    ["JSON null", () => json(null)],
    ["no api_key", () => json({ ...keyDoc(1), api_key: undefined })],
    ["an empty api_key", () => json({ ...keyDoc(1), api_key: "" })],
    ["a non-numeric generation", () => json({ ...keyDoc(1), generation: "7" })],
    ["a refresh_at that is not a date", () => json({ ...keyDoc(1), refresh_at: "tomorrow" })],
    ["an expires_at that is not ISO", () => json({ ...keyDoc(1), expires_at: 1764255600000 })],
    ["an impossible date", () => json({ ...keyDoc(1), refresh_at: "2026-13-45T99:00:00Z" })],
    ["another set's document", () => json(keyDoc(1, { set: "embed" }))],
    ["HTTP 400", () => json({ error: "bad_request" }, 400)],
  ];
  for (const [what, reply] of malformed) {
    it(`${what} fails with bad_response and never echoes the document`, async () => {
      const { getKey } = setup(reply);
      const err = await rejection(getKey());
      expect(err.code).toBe("bad_response");
      expectNoSecrets(err, [TOKEN, keyDoc(1).api_key]);
    });
  }

  it("a malformed document while a key is held: the held key is served until it expires", async () => {
    const refreshAt = T0 + HOUR;
    let first = true;
    const { time, getKey } = setup(() => {
      if (first) {
        first = false;
        return json(keyDoc(1, { refreshAt }));
      }
      return json({ api_key: keyDoc(2).api_key });
    });
    await getKey();
    time.now = refreshAt;
    expect((await getKey()).generation).toBe(1);
    time.now = refreshAt + HOUR;
    expect((await rejection(getKey())).code).toBe("bad_response");
  });
});

describe("invalidate()", () => {
  it("makes the next getKey() refetch before the deadline", async () => {
    const { rotator, client } = setup((n) => json(keyDoc(n)));
    expect((await client.getKey()).generation).toBe(1);
    client.invalidate();
    expect((await client.getKey()).generation).toBe(2);
    expect((await client.getKey()).generation).toBe(2);
    expect(rotator.calls).toHaveLength(2);
  });

  it("an invalidated key is no outage fallback: a down rotator then fails with unavailable", async () => {
    let up = true;
    const { client, getKey } = setup(() => (up ? json(keyDoc(1)) : json({}, 502)));
    await getKey();
    up = false;
    client.invalidate();
    const err = await rejection(getKey());
    expect(err.code).toBe("unavailable");
    expectNoSecrets(err, [TOKEN, keyDoc(1).api_key]);
  });

  it("cuts an outage back-off short but still waits 1 s after the last failure", async () => {
    const refreshAt = T0 + HOUR;
    let up = true;
    const { rotator, client, time, getKey } = setup((n) =>
      up ? json(keyDoc(n, { refreshAt: refreshAt + (n - 1) * HOUR })) : json({}, 500),
    );
    await getKey();
    up = false;
    time.now = refreshAt;
    await getKey(); // fail 1 -> +1 s
    time.now = refreshAt + SECOND;
    await getKey(); // fail 2 -> +2 s
    expect(rotator.calls).toHaveLength(3);
    up = true;
    client.invalidate();
    time.now = refreshAt + SECOND + 999;
    expect((await rejection(getKey())).code).toBe("unavailable");
    expect(rotator.calls).toHaveLength(3);
    time.now = refreshAt + 2 * SECOND; // 1 s after the last failure, not 2 s
    expect((await getKey()).generation).toBe(4);
  });
});

describe("fetchWithKey()", () => {
  it("sends Authorization: Api-Key <key>, replacing a given one, and keeps the rest of the request", async () => {
    const { baseten, rotator, client } = setup();
    const res = await client.fetchWithKey(BASETEN, {
      method: "POST",
      headers: { authorization: "Bearer wrong", "content-type": "application/json", "x-trace": "t1" },
      body: '{"prompt":"hi"}',
    });
    expect(res.status).toBe(200);
    expect(rotator.calls).toHaveLength(1);
    expect(baseten.calls).toHaveLength(1);
    const call = baseten.calls[0]!;
    expect(call.url).toBe(BASETEN);
    expect(call.method).toBe("POST");
    expect(call.headers.get("authorization")).toBe(`Api-Key ${keyDoc(1).api_key}`);
    expect(call.headers.get("x-trace")).toBe("t1");
    expect(call.body).toBe('{"prompt":"hi"}');
  });

  it("on a 401 invalidates, refetches once and retries once with the new key", async () => {
    const { baseten, rotator, client, time } = setup((n) => json(keyDoc(n)));
    baseten.handler = (n) => (n === 1 ? new Response("revoked", { status: 401 }) : json({ out: "ok" }));
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const res = await client.fetchWithKey(BASETEN, { method: "POST", body: "payload" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ out: "ok" });
    expect(rotator.calls).toHaveLength(2);
    expect(baseten.calls.map((c) => c.headers.get("authorization"))).toEqual([
      `Api-Key ${keyDoc(1).api_key}`,
      `Api-Key ${keyDoc(2).api_key}`,
    ]);
    expect(baseten.calls.map((c) => c.body)).toEqual(["payload", "payload"]);
    expect((await client.getKey()).generation).toBe(2);
  });

  it("retries at most once: a second 401 is returned as is", async () => {
    const { baseten, rotator, client, time } = setup((n) => json(keyDoc(n)));
    baseten.handler = () => new Response("nope", { status: 401 });
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const res = await client.fetchWithKey(BASETEN);
    expect(res.status).toBe(401);
    expect(await res.text()).toBe("nope");
    expect(baseten.calls).toHaveLength(2);
    expect(rotator.calls).toHaveLength(2);
  });

  it("does not retry when the refetched key is unchanged", async () => {
    const { baseten, rotator, client, time } = setup(() => json(keyDoc(1)));
    baseten.handler = () => new Response("nope", { status: 401 });
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const res = await client.fetchWithKey(BASETEN);
    expect(res.status).toBe(401);
    expect(baseten.calls).toHaveLength(1);
    expect(rotator.calls).toHaveLength(2);
  });

  it("does not refetch for a 401 on a key fetched less than 1 s ago", async () => {
    const { baseten, rotator, client } = setup((n) => json(keyDoc(n)));
    baseten.handler = () => new Response("nope", { status: 401 });
    const res = await client.fetchWithKey(BASETEN);
    expect(res.status).toBe(401);
    expect(rotator.calls).toHaveLength(1);
    expect(baseten.calls).toHaveLength(1);
  });

  it("concurrent 401s on the same key cost one refetch and all retry with the new key", async () => {
    const { baseten, rotator, client, time } = setup((n) => json(keyDoc(n)));
    const refused = `Api-Key ${keyDoc(1).api_key}`;
    baseten.handler = (_n, call) => (call.headers.get("authorization") === refused ? new Response("", { status: 401 }) : json({}));
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const results = await Promise.all(Array.from({ length: 10 }, () => client.fetchWithKey(BASETEN)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(rotator.calls).toHaveLength(2);
    expect(baseten.calls).toHaveLength(20);
  });

  it("a 401 while the rotator is down returns the 401 (the rejected key is not reused)", async () => {
    let up = true;
    const { baseten, client, time } = setup(() => (up ? json(keyDoc(1)) : json({}, 503)));
    baseten.handler = () => new Response("nope", { status: 401 });
    await client.getKey();
    up = false;
    time.now = T0 + 5 * SECOND;
    const res = await client.fetchWithKey(BASETEN);
    expect(res.status).toBe(401);
    expect(baseten.calls).toHaveLength(1);
    // The next call has no usable key: it fails clearly instead of sending a refused key.
    time.now = T0 + 10 * SECOND;
    expect((await rejection(client.fetchWithKey(BASETEN))).code).toBe("unavailable");
  });

  it("other Baseten errors are returned as is, without a refetch", async () => {
    const { baseten, rotator, client, time } = setup();
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    for (const status of [403, 429, 500]) {
      baseten.handler = () => new Response("x", { status });
      expect((await client.fetchWithKey(BASETEN)).status).toBe(status);
    }
    expect(rotator.calls).toHaveLength(1);
  });

  it("replays a ReadableStream body on the retry (it is buffered first)", async () => {
    const { baseten, client, time } = setup((n) => json(keyDoc(n)));
    baseten.handler = (n) => (n === 1 ? new Response("", { status: 401 }) : json({}));
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("streamed "));
        controller.enqueue(new TextEncoder().encode("body"));
        controller.close();
      },
    });
    const res = await client.fetchWithKey(BASETEN, { method: "POST", body });
    expect(res.status).toBe(200);
    expect(baseten.calls.map((c) => c.body)).toEqual(["streamed body", "streamed body"]);
  });

  it("replays an async-iterable body (e.g. a Node stream) on the retry", async () => {
    const { baseten, client, time } = setup((n) => json(keyDoc(n)));
    baseten.handler = (n) => (n === 1 ? new Response("", { status: 401 }) : json({}));
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    async function* chunks() {
      yield "a-";
      yield new TextEncoder().encode("b-");
      yield new TextEncoder().encode("c").buffer;
    }
    const res = await client.fetchWithKey(BASETEN, { method: "POST", body: chunks() as unknown as BodyInit });
    expect(res.status).toBe(200);
    expect(baseten.calls.map((c) => c.body)).toEqual(["a-b-c", "a-b-c"]);
  });

  it("accepts a Request (with a body) and clones it before the first send", async () => {
    const { baseten, client, time } = setup((n) => json(keyDoc(n)));
    baseten.handler = (n) => (n === 1 ? new Response("", { status: 401 }) : json({}));
    await client.getKey();
    time.now = T0 + 5 * SECOND;
    const req = new Request(BASETEN, { method: "PUT", body: "req-body", headers: { "x-a": "1", Authorization: "Api-Key old" } });
    const res = await client.fetchWithKey(req);
    expect(res.status).toBe(200);
    expect(baseten.calls.map((c) => [c.method, c.body, c.headers.get("x-a"), c.headers.get("authorization")])).toEqual([
      ["PUT", "req-body", "1", `Api-Key ${keyDoc(1).api_key}`],
      ["PUT", "req-body", "1", `Api-Key ${keyDoc(2).api_key}`],
    ]);
  });

  it("merges init into a Request input", async () => {
    const { baseten, client } = setup();
    await client.fetchWithKey(new Request(BASETEN, { method: "POST", body: "a" }), { headers: { "x-b": "2" } });
    expect(baseten.calls[0]!.headers.get("x-b")).toBe("2");
    expect(baseten.calls[0]!.body).toBe("a");
  });

  it("fails with the KeyClientError when no key can be had, without calling Baseten", async () => {
    const { baseten, client } = setup(() => json({ error: "unauthorized" }, 401));
    expect((await rejection(client.fetchWithKey(BASETEN))).code).toBe("unauthorized");
    expect(baseten.calls).toHaveLength(0);
  });

  it("uses basetenFetch for Baseten and never the rotator's fetch", async () => {
    const { baseten, rotator, client } = setup();
    await client.fetchWithKey(BASETEN);
    expect(rotator.calls.map((c) => c.url)).toEqual([`${URL_BASE}/v1/keys/chat`]);
    expect(baseten.calls.map((c) => c.url)).toEqual([BASETEN]);
  });
});

describe("error messages never carry the token or a key", () => {
  it("across every failure, even when the rotator echoes them back", async () => {
    const echoed = `token ${TOKEN} key ${keyDoc(1).api_key}`;
    const replies: (() => Response | Promise<Response>)[] = [
      () => json({ error: "unauthorized", message: echoed }, 401),
      () => json({ error: "forbidden", message: echoed }, 403),
      () => json({ error: "unknown_model_set", message: echoed }, 404),
      () => json({ error: "no_key_yet", message: echoed }, 503),
      () => json({ error: "internal", message: echoed }, 500),
      () => new Response(echoed, { status: 502 }),
      () => json({ ...keyDoc(1), generation: null }),
      () => new Response(echoed, { status: 200 }),
      () => Promise.reject(new TypeError(`connect failed ${echoed}`)),
    ];
    for (const reply of replies) {
      let first = true;
      const { time, getKey, errors } = setup(() => {
        if (first) {
          first = false;
          return json(keyDoc(1, { refreshAt: T0 + HOUR, expiresAt: T0 + 2 * HOUR }));
        }
        return reply();
      });
      await getKey(); // hold key 1, so its api_key is known to the client
      time.now = T0 + 3 * HOUR; // expired: every failure now throws
      await rejection(getKey());
      const fresh = setup(reply);
      await rejection(fresh.getKey());
      for (const err of [...errors, ...fresh.errors]) expectNoSecrets(err, [TOKEN, keyDoc(1).api_key]);
      expect(errors.length + fresh.errors.length).toBe(2);
    }
  });
});
