/**
 * A model of the Cloudflare platform that is not kinder than Cloudflare (issue #9 item 7,
 * DESIGN §4 "These hold in a test model of the platform that is not kinder than the platform").
 *
 *   locations  Each simulated location has its own isolate memory (its own KV binding object:
 *              src/cache.ts keys its memory by the binding, so a new object is a new isolate) and
 *              its own edge cache of KV reads. A read is served from that edge cache while the
 *              entry the location fetched is younger than the read's `cacheTtl` (at least 30 s,
 *              60 s when none is given, as on Cloudflare), so a location can lag the origin by up
 *              to 60 s, negative lookups included. Writes go to the origin; the writer's own edge
 *              copy is NOT refreshed (Cloudflare says changes are "usually" visible at once where
 *              they were made: the model takes the worst case). `list` results lag the same way.
 *              Several locations read at once (`readEverywhere`).
 *   time       Every D1 statement/batch, KV call and Baseten call advances the simulated clock by a
 *              seeded random latency: the write lands halfway through, the answer comes back at
 *              the end, so the engine's view of `now` moves while it runs.
 *   holds      A hook per operation (`d1:batch|run|first|all|raw`, `d1:write` = any write,
 *              `kv:get|getWithMetadata|put|delete|list`, `baseten:mint|list|revoke`) can stall
 *              (advance the clock before or after the operation applies), run something else while
 *              the caller is held (`during`: another trigger, reads at other locations), fail
 *              before applying, or apply and then throw (the answer is lost). `afterPromote(set)`
 *              is the KV write of a set's cache entry; a run outlives its lease by stalling one of
 *              its steps past 90 s while `during` runs another trigger.
 *   bookkeeping Every document served at any location is recorded with the simulated time and
 *              location, every Baseten call with its simulated send and answer times, so tests
 *              assert what users see: promises kept, keys live, what each location serves.
 *
 * The D1 and KV fault catalogue of test/helpers/faulty-bindings.ts (`FaultPlan`) is honoured by
 * these bindings too (pass `faults`), so the soak's catalogue runs unchanged through the model.
 *
 * Only public surfaces are used: createApp (the worker's fetch), createEngine/tick/runSet,
 * consumeRotations with a batch built from what a tick enqueued, the fake Baseten, D1 and KV.
 */
import { createExecutionContext, createMessageBatch, env, waitOnExecutionContext } from "cloudflare:test";
import { onTestFinished } from "vitest";
import { createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { tick } from "../../src/cron.ts";
import type { Env, RotationMessage } from "../../src/env.ts";
import { consumeRotations } from "../../src/queue.ts";
import { type Engine, type RunResult, createEngine } from "../../src/rotation.ts";
import { type D1Op, FaultPlan, type KVOp } from "./faulty-bindings.ts";
import { type SignOptions, signedWebhook } from "./webhooks.ts";
import { Clock, type WorldOptions, makeWorld, prefixOf } from "./world.ts";

export interface KeyRowView {
  model_set: string;
  generation: number;
  state: string;
  prefix: string | null;
}

// --- seeded randomness -----------------------------------------------------------------

export function hashSeed(name: string): number {
  let h = 1779033703 ^ name.length;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  h = Math.imul(h ^ (h >>> 13), 3266489909);
  return (h ^= h >>> 16) >>> 0;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- hooks -----------------------------------------------------------------------------

export type BasetenOp = "mint" | "list" | "revoke";
export type OpName = `d1:${D1Op}` | `kv:${KVOp}` | `baseten:${BasetenOp}`;
export type OpPattern = OpName | "d1:write" | "d1:*" | "kv:*" | "baseten:*" | "any";

export interface OpInfo {
  op: OpName;
  /** SQL statements (D1), the KV key or list prefix, the request path (Baseten). */
  detail: string[];
  /** The location whose binding made the call (KV); null for D1 and Baseten. */
  location: string | null;
}

export interface Hook {
  op: OpPattern;
  /** Substring or pattern of the SQL (any statement of a batch), KV key, or Baseten path. */
  match?: string | RegExp;
  /** Only calls from this location (KV). */
  location?: string;
  /** Matching calls let through before the hook starts taking them (default 0). */
  skip?: number;
  /** How many matching calls the hook takes (default 1; Infinity: until cleared). */
  count?: number;
  /** The hook is inert until an operation matching this has completed (after the hook was added). */
  armedBy?: { op: OpPattern; match?: string | RegExp; location?: string };
  /** Hold the caller this long (simulated) before the operation applies. */
  stallBeforeMs?: number;
  /** Apply, then hold the answer this long (simulated). */
  stallAfterMs?: number;
  /** Runs while the caller is held before the operation applies (after stallBeforeMs): other triggers, reads. */
  during?: (info: OpInfo) => Promise<unknown>;
  /** Runs after the operation applied, before its answer reaches the caller (after stallAfterMs). */
  duringAfter?: (info: OpInfo) => Promise<unknown>;
  /** "before": throw without applying; "after": apply, then throw (the caller cannot tell it applied). */
  fail?: "before" | "after";
  /** A label for the hit counts (default: the op). */
  label?: string;
}

interface ArmedHook {
  hook: Hook;
  skipLeft: number;
  left: number;
  armed: boolean;
}

function opMatches(pattern: OpPattern, info: OpInfo): boolean {
  if (pattern === "any" || pattern === info.op) return true;
  if (pattern.endsWith(":*")) return info.op.startsWith(pattern.slice(0, -1));
  if (pattern === "d1:write")
    return (
      info.op.startsWith("d1:") && info.detail.some((s) => /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i.test(s) || /\bRETURNING\b/i.test(s))
    );
  return false;
}

function textMatches(m: string | RegExp | undefined, detail: string[]): boolean {
  if (m === undefined) return true;
  return detail.some((d) => (typeof m === "string" ? d.includes(m) : m.test(d)));
}

/** The cache write that follows a promote: the engine's KV put of the set's entry. */
export function afterPromote(set: string, rest: Omit<Hook, "op" | "match"> = {}): Hook {
  return { op: "kv:put", match: new RegExp(`(^|[^a-z0-9-])${set}$`), ...rest };
}

// --- the platform ----------------------------------------------------------------------

export interface Latency {
  d1: [number, number];
  kv: [number, number];
  baseten: [number, number];
}

export interface PlatformOptions extends WorldOptions {
  seed?: string;
  /** Location names (default three: "cron", "east", "west"). The first runs the engine by default. */
  locations?: string[];
  /** Simulated latency ranges per call, ms (defaults: D1 5-40, KV 2-25, Baseten 40-400). */
  latency?: Partial<Latency>;
  /** KV's default edge cache time when a read gives no cacheTtl (Cloudflare: 60 s). */
  kvDefaultTtlMs?: number;
  /** How long a location's list result is reused (default 60 s). */
  listLagMs?: number;
  /** Make a location's own writes visible to its next read (default false: the worst case). */
  localWritesVisible?: boolean;
  /** The existing D1/KV fault catalogue, honoured by every binding here. */
  faults?: FaultPlan;
}

export interface ServedDocument {
  location: string;
  at: number;
  model_set: string;
  generation: number;
  prefix: string;
  model_ids: string[];
  refresh_at: number;
  expires_at: number;
  /** Whether the key was live at the fake when served (checked at serve time when asked). */
  live?: boolean;
}

export interface BasetenCall {
  op: BasetenOp;
  path: string;
  /** Simulated time the engine issued the request (before any hold the model puts on it). */
  sentAt: number;
  /** Issued by a trigger that ran inside a hook's `during` (another run, while the first is held). */
  nested: boolean;
  /** Simulated time the answer arrived (or the failure surfaced). */
  answeredAt: number;
  status: number | null;
  /** For revoke: the prefix. For mint: the minted prefix when answered. */
  prefix: string | null;
}

export interface Location {
  name: string;
  kv: KVNamespace;
  env: Env;
  /** A request through this location's worker fetch at the simulated time. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** GET /v1/keys/{set} as a consumer; a 200's document is recorded in the platform's book. */
  getKey(set: string, consumer?: string, init?: RequestInit): Promise<Response>;
  /** A rotation engine whose bindings are this location's. */
  engine(): Engine;
}

type RealFetch = typeof fetch;
let pristineFetch: RealFetch | null = null;

export async function makePlatform(options: PlatformOptions = {}) {
  const seed = options.seed ?? "platform";
  const random = mulberry32(hashSeed(seed));
  const latency: Latency = { d1: [5, 40], kv: [2, 25], baseten: [40, 400], ...options.latency };
  const kvDefaultTtl = options.kvDefaultTtlMs ?? 60_000;
  const listLag = options.listLagMs ?? 60_000;
  const plan = options.faults ?? new FaultPlan();
  const hooks: ArmedHook[] = [];
  /** How many hook callbacks (`during`) are running: calls made meanwhile are "nested". */
  let depth = 0;
  const hits: Record<string, number> = {};
  const served: ServedDocument[] = [];
  const basetenCalls: BasetenCall[] = [];
  /** prefix -> simulated time a DELETE for it applied at the fake. */
  const revokedAt = new Map<string, number>();
  let clock = new Clock();
  const names = options.locations ?? ["cron", "east", "west"];

  const draw = ([lo, hi]: [number, number]) => lo + Math.floor(random() * (hi - lo + 1));

  // --- hook engine ---
  function takeHook(info: OpInfo): Hook | null {
    for (let i = 0; i < hooks.length; i++) {
      const h = hooks[i]!;
      if (!h.armed) continue;
      if (!opMatches(h.hook.op, info) || !textMatches(h.hook.match, info.detail)) continue;
      if (h.hook.location !== undefined && h.hook.location !== info.location) continue;
      if (h.skipLeft > 0) {
        h.skipLeft--;
        continue;
      }
      if (--h.left <= 0) hooks.splice(i, 1);
      const label = h.hook.label ?? info.op;
      hits[label] = (hits[label] ?? 0) + 1;
      return h.hook;
    }
    return null;
  }

  function completed(info: OpInfo) {
    for (const h of hooks) {
      const a = h.hook.armedBy;
      if (h.armed || !a) continue;
      if (opMatches(a.op, info) && textMatches(a.match, info.detail) && (a.location === undefined || a.location === info.location))
        h.armed = true;
    }
  }

  /**
   * Runs one I/O call through the model: hook (hold/fail), latency (half before the call applies,
   * half after), then the answer. `apply` performs the call against real storage.
   */
  async function io<T>(info: OpInfo, range: [number, number], apply: () => Promise<T>, failure: () => Error): Promise<T> {
    const hook = takeHook(info);
    if (hook?.stallBeforeMs) clock.advance(hook.stallBeforeMs);
    if (hook?.during) {
      depth++;
      try {
        await hook.during(info);
      } finally {
        depth--;
      }
    }
    const lat = draw(range);
    const t0 = clock.now();
    if (hook?.fail === "before") {
      clock.set(Math.max(clock.now(), t0 + lat));
      throw failure();
    }
    clock.set(Math.max(clock.now(), t0 + Math.floor(lat / 2)));
    const result = await apply();
    if (hook?.stallAfterMs) clock.advance(hook.stallAfterMs);
    if (hook?.duringAfter) {
      depth++;
      try {
        await hook.duringAfter(info);
      } finally {
        depth--;
      }
    }
    clock.set(Math.max(clock.now(), t0 + lat));
    completed(info);
    if (hook?.fail === "after") throw failure();
    return result;
  }

  // --- D1 ---
  const REAL = Symbol("real");
  type Stmt = D1PreparedStatement & { [REAL]: D1PreparedStatement; sql: string };
  const d1Error = () => new Error("D1_ERROR: Network connection lost.");

  async function d1Call<T>(op: D1Op, sqls: string[], run: () => Promise<T>): Promise<T> {
    return io(
      { op: `d1:${op}`, detail: sqls, location: null },
      latency.d1,
      async () => {
        const rule = plan.takeD1(op, sqls);
        if (!rule) return run();
        if (rule.holdUntil) {
          const r = await run();
          await rule.holdUntil;
          return r;
        }
        if (!rule.after) throw d1Error();
        await run();
        throw d1Error();
      },
      d1Error,
    );
  }

  function wrapStatement(real: D1PreparedStatement, sql: string): Stmt {
    return {
      [REAL]: real,
      sql,
      bind: (...values: unknown[]) => wrapStatement(real.bind(...values), sql),
      first: (col?: string) => d1Call("first", [sql], () => (col === undefined ? real.first() : real.first(col))),
      run: () => d1Call("run", [sql], () => real.run()),
      all: () => d1Call("all", [sql], () => real.all()),
      raw: (o?: { columnNames?: boolean }) => d1Call("raw", [sql], () => real.raw(o as { columnNames: true })),
    } as unknown as Stmt;
  }

  const realDB: D1Database = env.DB;
  const db = {
    prepare: (sql: string) => wrapStatement(realDB.prepare(sql), sql),
    batch: (statements: Stmt[]) =>
      d1Call(
        "batch",
        statements.map((s) => s.sql),
        () => realDB.batch(statements.map((s) => s[REAL] ?? s)),
      ),
    exec: (sql: string) => d1Call("run", [sql], () => realDB.exec(sql)),
    dump: () => realDB.dump(),
    withSession: (...args: unknown[]) => (realDB.withSession as (...a: unknown[]) => unknown)(...args),
  } as unknown as D1Database;

  // --- KV: one origin (the real namespace), one edge cache per location ---
  const origin: KVNamespace = env.KEYS;
  const kvError = (op: string) => new Error(`KV ${op} failed: 503 Service Unavailable`);

  interface EdgeEntry {
    value: string | null;
    metadata: unknown;
    until: number;
  }

  function convert(text: string | null, type: string | undefined): unknown {
    if (text === null) return null;
    switch (type ?? "text") {
      case "json":
        return JSON.parse(text);
      case "arrayBuffer":
        return new TextEncoder().encode(text).buffer;
      case "stream":
        return new Response(text).body;
      default:
        return text;
    }
  }

  async function asText(value: unknown): Promise<string> {
    if (typeof value === "string") return value;
    return new Response(value as BodyInit).text();
  }

  function locationKV(name: string): KVNamespace {
    const edge = new Map<string, EdgeEntry>();
    const lists = new Map<string, { result: unknown; until: number }>();

    async function kvCall<T>(op: KVOp, key: string, run: () => Promise<T>): Promise<T> {
      return io(
        { op: `kv:${op}`, detail: [key], location: name },
        latency.kv,
        async () => {
          const rule = plan.takeKV(op, key);
          if (!rule) return run();
          if (rule.holdUntil) {
            const r = await run();
            await rule.holdUntil;
            return r;
          }
          if (!rule.after) throw kvError(op);
          await run();
          throw kvError(op);
        },
        () => kvError(op),
      );
    }

    /** The value and metadata as this location sees them now (its edge copy while fresh). */
    async function read(key: string, cacheTtl: number | undefined): Promise<EdgeEntry> {
      const now = clock.now();
      const hit = edge.get(key);
      if (hit && hit.until > now) return hit;
      const { value, metadata } = await origin.getWithMetadata(key, { type: "text" });
      const ttl = Math.max(30_000, cacheTtl !== undefined ? cacheTtl * 1000 : kvDefaultTtl);
      const entry = { value, metadata: metadata ?? null, until: now + ttl };
      edge.set(key, entry);
      return entry;
    }

    const parse = (opts: unknown): { type?: string; cacheTtl?: number } =>
      typeof opts === "string" ? { type: opts } : ((opts as { type?: string; cacheTtl?: number } | undefined) ?? {});

    return {
      get: (key: string, opts?: unknown) =>
        kvCall("get", key, async () => {
          const o = parse(opts);
          return convert((await read(key, o.cacheTtl)).value, o.type);
        }),
      getWithMetadata: (key: string, opts?: unknown) =>
        kvCall("getWithMetadata", key, async () => {
          const o = parse(opts);
          const e = await read(key, o.cacheTtl);
          return { value: convert(e.value, o.type), metadata: e.value === null ? null : e.metadata, cacheStatus: null };
        }),
      put: (key: string, value: unknown, opts?: KVNamespacePutOptions) =>
        kvCall("put", key, async () => {
          const text = await asText(value);
          await origin.put(key, text, opts);
          if (options.localWritesVisible)
            edge.set(key, { value: text, metadata: opts?.metadata ?? null, until: clock.now() + kvDefaultTtl });
        }),
      delete: (key: string) =>
        kvCall("delete", key, async () => {
          await origin.delete(key);
          if (options.localWritesVisible) edge.set(key, { value: null, metadata: null, until: clock.now() + kvDefaultTtl });
        }),
      list: (opts?: KVNamespaceListOptions) =>
        kvCall("list", opts?.prefix ?? "", async () => {
          const id = JSON.stringify([opts?.prefix ?? null, opts?.cursor ?? null, opts?.limit ?? null]);
          const now = clock.now();
          const hit = lists.get(id);
          if (hit && hit.until > now) return structuredClone(hit.result);
          const result = await origin.list(opts);
          lists.set(id, { result: structuredClone(result), until: now + listLag });
          return result;
        }),
    } as unknown as KVNamespace;
  }

  // --- Baseten: every call to the fake's API paths goes through the model ---
  // The fetch before any platform wrapped it (two platforms in one test must not stack).
  pristineFetch ??= globalThis.fetch;
  const realFetch: RealFetch = pristineFetch;
  let apiBase = "";
  const fetchError = () => new TypeError("Network connection lost.");

  function basetenOp(method: string, path: string): BasetenOp | null {
    if (/^\/v1\/teams\/[^/]+\/api_keys\/?$/.test(path) && method === "POST") return "mint";
    if (/^\/v1\/api_keys\/?$/.test(path) && method === "GET") return "list";
    if (/^\/v1\/api_keys\/[^/]+\/?$/.test(path) && method === "DELETE") return "revoke";
    return null;
  }

  const modelFetch: RealFetch = async (input, init) => {
    const request = new Request(input as RequestInfo, init);
    const url = new URL(request.url);
    const op = apiBase && request.url.startsWith(apiBase) ? basetenOp(request.method, url.pathname) : null;
    if (!op) return realFetch(input, init);
    const call: BasetenCall = {
      op,
      path: url.pathname,
      sentAt: clock.now(),
      nested: depth > 0,
      answeredAt: 0,
      status: null,
      prefix: op === "revoke" ? decodeURIComponent(url.pathname.split("/").pop()!) : null,
    };
    basetenCalls.push(call);
    const body = request.method === "GET" ? undefined : await request.text();
    try {
      const res = await io(
        { op: `baseten:${op}`, detail: [url.pathname], location: null },
        latency.baseten,
        async () => {
          const r = await realFetch(request.url, {
            method: request.method,
            headers: request.headers,
            body,
            signal: init?.signal ?? request.signal,
          });
          const text = await r.text();
          call.status = r.status;
          if (op === "revoke" && (r.status === 200 || r.status === 404) && call.prefix && !revokedAt.has(call.prefix))
            revokedAt.set(call.prefix, clock.now());
          if (op === "mint" && r.status === 200) {
            try {
              const k = (JSON.parse(text) as { api_key?: string }).api_key;
              if (typeof k === "string") call.prefix = prefixOf(k);
            } catch {
              /* malformed answer: the engine sees it too */
            }
          }
          return new Response(text, { status: r.status, headers: r.headers });
        },
        fetchError,
      );
      call.answeredAt = clock.now();
      return res;
    } catch (err) {
      call.answeredAt = clock.now();
      throw err;
    }
  };
  globalThis.fetch = modelFetch;
  try {
    onTestFinished(() => {
      globalThis.fetch = realFetch;
    });
  } catch {
    /* outside a test (a suite hook): the caller restores with dispose() */
  }

  // --- the world: D1 and the first location's KV as the worker's bindings ---
  const kvs = new Map(names.map((n) => [n, locationKV(n)]));
  const w = await makeWorld({ ...options, vars: { BASETEN_TIMEOUT_MS: "1000", ...options.vars, DB: db, KEYS: kvs.get(names[0]!) } });
  clock = w.clock;
  apiBase = w.env.BASETEN_API_BASE ?? "";
  let baseVars: Record<string, unknown> = {};

  function locationEnv(kv: KVNamespace): Env {
    return { ...w.env, ...baseVars, KEYS: kv } as Env;
  }

  const sleep = async (ms: number) => clock.advance(ms);

  function buildLocation(name: string): Location {
    const kv = kvs.get(name)!;
    let locEnv = locationEnv(kv);
    let app = createApp({ clock: clock.now });
    const loc: Location = {
      name,
      kv,
      get env() {
        return locEnv;
      },
      set env(e: Env) {
        locEnv = e;
        app = createApp({ clock: clock.now });
      },
      async request(path, init = {}) {
        const ctx = createExecutionContext();
        const res = await app.fetch(new Request(`https://rotator.test${path}`, init), locEnv, ctx);
        await waitOnExecutionContext(ctx);
        return res;
      },
      async getKey(set, consumer = Object.keys(w.tokens)[0]!, init = {}) {
        const headers = new Headers(init.headers);
        headers.set("authorization", `Bearer ${w.tokens[consumer]}`);
        const at = clock.now();
        const res = await loc.request(`/v1/keys/${set}`, { ...init, headers });
        if (res.status === 200) {
          const doc = (await res.clone().json()) as {
            model_set: string;
            generation: number;
            api_key: string;
            model_ids: string[];
            refresh_at: string;
            expires_at: string;
          };
          served.push({
            location: name,
            at,
            model_set: doc.model_set,
            generation: doc.generation,
            prefix: prefixOf(doc.api_key),
            model_ids: doc.model_ids,
            refresh_at: Date.parse(doc.refresh_at),
            expires_at: Date.parse(doc.expires_at),
          });
        }
        return res;
      },
      engine() {
        const result = loadConfig(locEnv);
        if (!result.ok) throw new Error(`config invalid: ${result.problems.join("; ")}`);
        return createEngine(result.config, { DB: db, KEYS: kv }, clock.now, { fetch: modelFetch, sleep, random });
      },
    };
    return loc;
  }

  const locations = names.map(buildLocation);
  const byName = new Map(locations.map((l) => [l.name, l]));
  /** A new location (its own isolate and an empty edge cache), e.g. a colo that wakes up later. */
  function addLocation(name: string): Location {
    if (byName.has(name)) return byName.get(name)!;
    kvs.set(name, locationKV(name));
    const l = buildLocation(name);
    locations.push(l);
    byName.set(name, l);
    return l;
  }
  let seq = 0;

  const platform = {
    world: w,
    clock,
    random,
    fake: w.fake,
    tokens: w.tokens,
    db,
    plan,
    locations,
    /** Hook hit counts by label. */
    hits,
    served,
    basetenCalls,
    revokedAt,
    location(name: string): Location {
      const l = byName.get(name);
      if (!l) throw new Error(`no location ${name}`);
      return l;
    },
    addLocation,
    /** POST /v1/webhooks/rotate signed with the world's secret, at a location, at the simulated time. */
    async webhook(at: string, body: unknown, o: SignOptions = {}): Promise<Response> {
      return platform.location(at).request("/v1/webhooks/rotate", await signedWebhook(w, body, o));
    },
    /** D1's rows of a set (read outside the model: no simulated time passes). */
    async rows(set: string): Promise<KeyRowView[]> {
      return (
        await realDB
          .prepare("SELECT model_set, generation, state, prefix FROM keys WHERE model_set = ?1 ORDER BY generation")
          .bind(set)
          .all<KeyRowView>()
      ).results;
    },
    /** "demo gen 3" for a prefix, from D1. */
    async nameOf(prefix: string): Promise<string> {
      const r = await realDB
        .prepare("SELECT model_set, generation FROM keys WHERE prefix = ?1")
        .bind(prefix)
        .first<{ model_set: string; generation: number }>();
      return r ? `${r.model_set} gen ${r.generation}` : prefix;
    },
    hook(...hs: Hook[]) {
      for (const hook of hs) hooks.push({ hook, skipLeft: hook.skip ?? 0, left: hook.count ?? 1, armed: hook.armedBy === undefined });
      return platform;
    },
    clearHooks() {
      hooks.length = 0;
    },
    pendingHooks: () => hooks.length,
    /** Replace vars (MODEL_SETS, ...) at every location, as a deploy does: new env objects, new isolates' config. */
    reconfigure(vars: Record<string, unknown>) {
      baseVars = { ...baseVars, ...vars };
      for (const l of locations) l.env = locationEnv(l.kv);
    },
    /** One cron tick at a location (inline path; with `queue`, a fan-out goes there). */
    async tick(at = names[0]!, queue?: Queue<RotationMessage>) {
      return tick(platform.location(at).engine(), queue);
    },
    /**
     * The queue path: a tick that fans out (INLINE_ROTATION_BUDGET small enough), then the
     * consumer run on a batch built from exactly what the tick enqueued.
     */
    async queueTick(at = names[0]!, consumerAt = at): Promise<{ queued: number; results: RunResult[]; acked: number; retried: number }> {
      const sent: RotationMessage[] = [];
      const queue = {
        async send(body: RotationMessage) {
          sent.push(body);
        },
        async sendBatch(messages: Iterable<MessageSendRequest<RotationMessage>>) {
          for (const m of messages) sent.push(m.body);
        },
      } as unknown as Queue<RotationMessage>;
      const summary = await tick(platform.location(at).engine(), queue);
      if (sent.length === 0) return { queued: 0, results: summary.results, acked: 0, retried: 0 };
      const batch = createMessageBatch<RotationMessage>(
        "baseten-key-rotator-rotations",
        sent.map((body) => ({ id: `m-${++seq}`, timestamp: new Date(clock.now()), attempts: 1, body })),
      );
      let acked = 0;
      let retried = 0;
      for (const m of batch.messages) {
        const ack = m.ack.bind(m);
        const retry = m.retry.bind(m);
        m.ack = () => {
          acked++;
          ack();
        };
        m.retry = (o?: QueueRetryOptions) => {
          retried++;
          retry(o);
        };
      }
      const results = await consumeRotations(platform.location(consumerAt).engine(), batch);
      return { queued: sent.length, results: [...summary.results, ...results], acked, retried };
    },
    /** GET /v1/keys/{set} at every location at once (concurrently, as users do). */
    async readEverywhere(set: string, consumer?: string): Promise<Response[]> {
      return Promise.all(locations.map((l) => l.getKey(set, consumer)));
    },
    /** Live keys at the fake (bkr- and others). */
    async livePrefixes(): Promise<Set<string>> {
      return new Set((await w.fake.liveKeys()).map((k) => k.prefix));
    },
    dispose() {
      globalThis.fetch = realFetch;
    },
  };
  return platform;
}

export type Platform = Awaited<ReturnType<typeof makePlatform>>;

// --- what users rely on, checked over the platform's book -------------------------------

export interface PromiseViolation {
  prefix: string;
  promised: number;
  revokedAt: number;
  servedAt: number;
  location: string;
}

/**
 * DESIGN §3: no key is revoked before the latest `expires_at` any location served for it, except
 * the keys an explicit revoke_previous / admin revoke named (`exempt`). Revocation times are the
 * simulated times DELETE calls applied at the fake; a key gone at the fake without one (a lost
 * answer) counts as revoked now.
 */
export async function brokenPromises(p: Platform, exempt: Set<string> = new Set()): Promise<PromiseViolation[]> {
  const live = await p.livePrefixes();
  const now = p.clock.now();
  const latest = new Map<string, ServedDocument>();
  for (const d of p.served) if ((latest.get(d.prefix)?.expires_at ?? -1) < d.expires_at) latest.set(d.prefix, d);
  const out: PromiseViolation[] = [];
  for (const [prefix, d] of latest) {
    if (exempt.has(prefix) || live.has(prefix)) continue;
    const at = p.revokedAt.get(prefix) ?? now;
    if (at < d.expires_at) out.push({ prefix, promised: d.expires_at, revokedAt: at, servedAt: d.at, location: d.location });
  }
  return out;
}

export const iso = (ms: number) => new Date(ms).toISOString();

export function describeViolations(vs: PromiseViolation[], gen: (prefix: string) => string = (p) => p): string[] {
  return vs.map(
    (v) =>
      `key ${gen(v.prefix)} revoked at ${iso(v.revokedAt)} but ${v.location} served it at ${iso(v.servedAt)} promising ${iso(v.promised)}`,
  );
}

export interface StaleServing {
  location: string;
  servedAt: number;
  revokedAt: number;
  prefix: string;
  generation: number;
}

/**
 * Documents served for a key more than `graceMs` after its DELETE applied at the fake (DESIGN §4:
 * no location serves a revoked key for more than 60 s after the engine knew of the revocation;
 * the default grace adds the isolate memory's 5 s to KV's 60 s edge cache).
 */
export function servedAfterRevocation(p: Platform, graceMs = 65_000): StaleServing[] {
  const out: StaleServing[] = [];
  for (const d of p.served) {
    const r = p.revokedAt.get(d.prefix);
    if (r !== undefined && d.at > r + graceMs)
      out.push({ location: d.location, servedAt: d.at, revokedAt: r, prefix: d.prefix, generation: d.generation });
  }
  return out;
}

export function describeStale(vs: StaleServing[]): string[] {
  return vs.map(
    (v) =>
      `${v.location} served gen ${v.generation} at ${iso(v.servedAt)}, ${Math.round((v.servedAt - v.revokedAt) / 1000)} s after it was revoked`,
  );
}
