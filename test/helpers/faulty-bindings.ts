/**
 * D1 and KV bindings that fail on demand, for crash-point and cache-fault tests and the soak.
 *
 *   const plan = new FaultPlan();
 *   const w = await makeWorld({ vars: { DB: faultyD1(env.DB, plan), KEYS: faultyKV(env.KEYS, plan) } });
 *   plan.d1({ op: "batch", match: "state = 'current'" });   // the next promote throws, nothing written
 *   plan.d1({ op: "batch", match: "state = 'current'", after: true }); // ...commits, THEN throws
 *   plan.kv({ op: "put" });                                   // the next KV put throws
 *   plan.kv({ op: "get", count: Infinity });                  // KV reads down until plan.clear()
 *
 * Failures throw like the real bindings do (an Error with a D1_ERROR / KV message), before the
 * operation reaches storage, or with `after: true` once it has been applied (the answer is lost).
 * A wrapped binding is its own object, so config and memory caches (WeakMaps) treat it as its
 * own cache domain.
 *
 * `faultyKV(kv, plan, { clock, edgeLagMs })` also simulates KV's edge cache: a `get` with a
 * `cacheTtl` (the read path) sees the value as it stood `edgeLagMs()` ago on the simulated clock,
 * as a location whose edge copy is that old would. Reads without `cacheTtl` (the engine's checks)
 * see the latest value, as the location that wrote it does.
 */

export type D1Op = "batch" | "run" | "first" | "all" | "raw";
export type KVOp = "get" | "getWithMetadata" | "put" | "delete" | "list";

export interface D1Rule {
  op?: D1Op | "any";
  /** Substring (or pattern) of the SQL; for a batch, of any statement in it. */
  match?: string | RegExp;
  /** How many matching calls fail (default 1; Infinity: until cleared). */
  count?: number;
  /** Apply the operation first, then throw: the caller cannot tell whether it committed. */
  after?: boolean;
  /** Not a failure: perform the operation, then hold its answer until this settles (a slow read racing a write). */
  holdUntil?: Promise<unknown>;
}

export interface KVRule {
  op?: KVOp | "any";
  /** Substring of the KV key (list: of the prefix). */
  match?: string;
  count?: number;
  after?: boolean;
  /** Not a failure: perform the operation, then hold its answer until this settles (a slow read racing a write). */
  holdUntil?: Promise<unknown>;
}

interface Armed<R> {
  rule: R;
  left: number;
}

export class FaultPlan {
  private d1Rules: Armed<D1Rule>[] = [];
  private kvRules: Armed<KVRule>[] = [];
  /** Failures actually thrown, by "d1:<op>" / "kv:<op>". */
  readonly hits: Record<string, number> = {};

  d1(...rules: D1Rule[]): this {
    for (const rule of rules) this.d1Rules.push({ rule, left: rule.count ?? 1 });
    return this;
  }

  kv(...rules: KVRule[]): this {
    for (const rule of rules) this.kvRules.push({ rule, left: rule.count ?? 1 });
    return this;
  }

  clear(): void {
    this.d1Rules = [];
    this.kvRules = [];
  }

  /** Rules still armed (not yet used up). */
  pending(): number {
    return this.d1Rules.length + this.kvRules.length;
  }

  get totalHits(): number {
    return Object.values(this.hits).reduce((a, b) => a + b, 0);
  }

  /** @internal the first armed D1 rule matching this call, consumed. */
  takeD1(op: D1Op, sqls: string[]): D1Rule | null {
    const i = this.d1Rules.findIndex(
      ({ rule }) =>
        (rule.op === undefined || rule.op === "any" || rule.op === op) &&
        (rule.match === undefined || sqls.some((s) => matches(s, rule.match!))),
    );
    return this.consume(this.d1Rules, i, `d1:${op}`);
  }

  /** @internal */
  takeKV(op: KVOp, key: string): KVRule | null {
    const i = this.kvRules.findIndex(
      ({ rule }) =>
        (rule.op === undefined || rule.op === "any" || rule.op === op) && (rule.match === undefined || key.includes(rule.match)),
    );
    return this.consume(this.kvRules, i, `kv:${op}`);
  }

  private consume<R>(list: Armed<R>[], i: number, hit: string): R | null {
    if (i < 0) return null;
    const armed = list[i]!;
    if (--armed.left <= 0) list.splice(i, 1);
    this.hits[hit] = (this.hits[hit] ?? 0) + 1;
    return armed.rule;
  }
}

function matches(sql: string, m: string | RegExp): boolean {
  return typeof m === "string" ? sql.includes(m) : m.test(sql);
}

// Messages as the real bindings word them (callers must not depend on the text).
const d1Error = () => new Error("D1_ERROR: Network connection lost.");
const kvError = (op: string) => new Error(`KV ${op} failed: 503 Service Unavailable`);

// --- D1 --------------------------------------------------------------------------------

const REAL = Symbol("real statement");
type Wrapped = D1PreparedStatement & { [REAL]: D1PreparedStatement; sql: string };

async function guarded<T>(plan: FaultPlan, op: D1Op, sqls: string[], run: () => Promise<T>): Promise<T> {
  const rule = plan.takeD1(op, sqls);
  if (!rule) return run();
  if (rule.holdUntil) {
    const result = await run();
    await rule.holdUntil;
    return result;
  }
  if (!rule.after) throw d1Error();
  await run();
  throw d1Error();
}

function wrapStatement(real: D1PreparedStatement, sql: string, plan: FaultPlan): Wrapped {
  const s = {
    [REAL]: real,
    sql,
    bind: (...values: unknown[]) => wrapStatement(real.bind(...values), sql, plan),
    first: (col?: string) => guarded(plan, "first", [sql], () => (col === undefined ? real.first() : real.first(col))),
    run: () => guarded(plan, "run", [sql], () => real.run()),
    all: () => guarded(plan, "all", [sql], () => real.all()),
    raw: (opts?: { columnNames?: boolean }) => guarded(plan, "raw", [sql], () => real.raw(opts as { columnNames: true })),
  };
  return s as unknown as Wrapped;
}

export function faultyD1(db: D1Database, plan: FaultPlan): D1Database {
  const wrapped = {
    prepare: (sql: string) => wrapStatement(db.prepare(sql), sql, plan),
    batch: (statements: Wrapped[]) =>
      guarded(
        plan,
        "batch",
        statements.map((s) => s.sql),
        () => db.batch(statements.map((s) => s[REAL] ?? s)),
      ),
    exec: (sql: string) => db.exec(sql),
    dump: () => db.dump(),
    withSession: (...args: unknown[]) => (db.withSession as (...a: unknown[]) => unknown)(...args),
  };
  return wrapped as unknown as D1Database;
}

// --- KV --------------------------------------------------------------------------------

export interface KVOptions {
  /** Simulated time, for edge staleness. */
  clock?: () => number;
  /** How old the edge copy seen by a `get` with `cacheTtl` is, in ms (0: fresh). */
  edgeLagMs?: () => number;
  /** Write history, shared by wrappers of one namespace so every "location" sees the same writes. */
  history?: KVHistory;
}

interface Version {
  at: number;
  value: string | null;
  metadata: unknown;
}

export type KVHistory = Map<string, Version[]>;

export function faultyKV(kv: KVNamespace, plan: FaultPlan, options: KVOptions = {}): KVNamespace {
  const history: KVHistory = options.history ?? new Map();
  const clock = options.clock ?? Date.now;

  async function op<T>(name: KVOp, key: string, run: () => Promise<T>): Promise<T> {
    const rule = plan.takeKV(name, key);
    if (!rule) return run();
    if (rule.holdUntil) {
      const result = await run();
      await rule.holdUntil;
      return result;
    }
    if (!rule.after) throw kvError(name);
    await run();
    throw kvError(name);
  }

  function record(key: string, value: string | null, metadata: unknown) {
    let list = history.get(key);
    if (!list) history.set(key, (list = []));
    list.push({ at: clock(), value, metadata });
    if (list.length > 50) list.splice(0, list.length - 50);
  }

  /** The value an edge copy `lag` ms old holds, or undefined when the history does not reach back. */
  function edgeValue(key: string, lag: number): Version | undefined {
    const list = history.get(key);
    if (!list || lag <= 0) return undefined;
    const t = clock() - lag;
    for (let i = list.length - 1; i >= 0; i--) if (list[i]!.at <= t) return list[i];
    return undefined;
  }

  function decode(text: string | null, type: string | undefined): unknown {
    if (text === null) return null;
    if (type === "json") return JSON.parse(text);
    return text;
  }

  const wrapped = {
    get: (key: string, opts?: { type?: string; cacheTtl?: number } | string) =>
      op("get", key, async () => {
        const o = typeof opts === "string" ? { type: opts } : opts;
        if (o?.cacheTtl && options.edgeLagMs && (o.type === undefined || o.type === "text" || o.type === "json")) {
          const old = edgeValue(key, options.edgeLagMs());
          if (old) return decode(old.value, o.type);
        }
        return (kv.get as (k: string, o?: unknown) => Promise<unknown>)(key, opts);
      }),
    getWithMetadata: (key: string, opts?: unknown) =>
      op("getWithMetadata", key, () => (kv.getWithMetadata as (k: string, o?: unknown) => Promise<unknown>)(key, opts)),
    put: (key: string, value: string, opts?: { metadata?: unknown }) =>
      op("put", key, async () => {
        await kv.put(key, value, opts as KVNamespacePutOptions);
        record(key, typeof value === "string" ? value : null, opts?.metadata ?? null);
      }),
    delete: (key: string) =>
      op("delete", key, async () => {
        await kv.delete(key);
        record(key, null, null);
      }),
    list: (opts?: KVNamespaceListOptions) => op("list", opts?.prefix ?? "", () => kv.list(opts)),
  };
  return wrapped as unknown as KVNamespace;
}

// --- storage dumps ---------------------------------------------------------------------

let tableNames: string[] | undefined;

/** Every row of every table (whatever the migrations created) and every KV entry (value and metadata), as one string. */
export async function dumpStorage(db: D1Database, kv: KVNamespace): Promise<string> {
  const out: Record<string, unknown> = {};
  tableNames ??= (
    await db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' ORDER BY name",
      )
      .all<{ name: string }>()
  ).results.map((r) => r.name);
  const results = await db.batch(tableNames.map((t) => db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`)));
  tableNames.forEach((t, i) => (out[t] = results[i]!.results));
  const entries: unknown[] = [];
  let cursor: string | undefined;
  do {
    const page: KVNamespaceListResult<unknown> = await kv.list({ cursor });
    for (const k of page.keys) {
      const { value, metadata } = await kv.getWithMetadata(k.name, { type: "text" });
      entries.push({ name: k.name, value, metadata, expiration: k.expiration ?? null });
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  out.kv = entries;
  return JSON.stringify(out);
}
