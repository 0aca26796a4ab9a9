/**
 * Bench-only wrapper around the rotator's production bundle (./index.js, built by
 * `wrangler deploy --dry-run`): it hands the rotator an env whose D1, KV and queue bindings
 * count every call, counts every outbound fetch, and serves the counts on /__bench/counters.
 * Nothing of this is in the deployed worker; the read-path throughput run uses the bare bundle.
 *
 * Counted: D1 statements and D1 round trips (a batch is one round trip), KV operations by
 * method (and when the last KV write landed), queue sends and messages, and fetch()
 * subrequests by Baseten operation with their total time.
 */
import rotator from "./index.js";

let counts = fresh();

function fresh() {
  return {
    fetch: { total: 0, mint: 0, list: 0, revoke: 0, other: 0, ms: 0 },
    d1: { statements: 0, roundTrips: 0 },
    kv: { get: 0, getWithMetadata: 0, put: 0, delete: 0, list: 0, lastPutAt: 0 },
    queue: { sends: 0, messages: 0 },
    invocations: { fetch: 0, scheduled: 0, queue: 0 },
  };
}

const realFetch = globalThis.fetch;
globalThis.fetch = function countedFetch(input, init) {
  const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
  const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
  counts.fetch.total++;
  if (method === "POST" && /\/v1\/teams\/[^/]+\/api_keys$/.test(path)) counts.fetch.mint++;
  else if (method === "GET" && path === "/v1/api_keys") counts.fetch.list++;
  else if (method === "DELETE" && path.startsWith("/v1/api_keys/")) counts.fetch.revoke++;
  else counts.fetch.other++;
  // Date.now() in workerd moves with I/O: good enough to time a subrequest end to end.
  const started = Date.now();
  const settle = () => {
    counts.fetch.ms += Date.now() - started;
  };
  const pending = realFetch(input, init);
  pending.then(settle, settle);
  return pending;
};

class CountedStatement {
  constructor(inner) {
    this.inner = inner;
  }
  bind(...args) {
    return new CountedStatement(this.inner.bind(...args));
  }
  #one() {
    counts.d1.statements++;
    counts.d1.roundTrips++;
  }
  first(...args) {
    this.#one();
    return this.inner.first(...args);
  }
  all() {
    this.#one();
    return this.inner.all();
  }
  run() {
    this.#one();
    return this.inner.run();
  }
  raw(...args) {
    this.#one();
    return this.inner.raw(...args);
  }
}

function countedD1(db) {
  return {
    prepare: (sql) => new CountedStatement(db.prepare(sql)),
    batch: (statements) => {
      counts.d1.statements += statements.length;
      counts.d1.roundTrips++;
      return db.batch(statements.map((s) => s.inner));
    },
    exec: (sql) => {
      counts.d1.statements++;
      counts.d1.roundTrips++;
      return db.exec(sql);
    },
  };
}

function countedKV(kv) {
  const wrap =
    (name) =>
    (...args) => {
      counts.kv[name]++;
      const result = kv[name](...args);
      if (name === "put")
        result.then(
          () => (counts.kv.lastPutAt = Date.now()),
          () => {},
        );
      return result;
    };
  return { get: wrap("get"), getWithMetadata: wrap("getWithMetadata"), put: wrap("put"), delete: wrap("delete"), list: wrap("list") };
}

function countedQueue(queue) {
  return {
    send: (body, options) => {
      counts.queue.sends++;
      counts.queue.messages++;
      return queue.send(body, options);
    },
    sendBatch: (messages, options) => {
      const list = [...messages];
      counts.queue.sends++;
      counts.queue.messages += list.length;
      return queue.sendBatch(list, options);
    },
  };
}

// One wrapped env per env object: the rotator caches config, tokens and memory per env/binding.
const wrapped = new WeakMap();
function counted(env) {
  let w = wrapped.get(env);
  if (!w) {
    w = { ...env, DB: countedD1(env.DB), KEYS: countedKV(env.KEYS) };
    if (env.ROTATIONS) w.ROTATIONS = countedQueue(env.ROTATIONS);
    wrapped.set(env, w);
  }
  return w;
}

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/__bench/counters") {
      if (request.method === "POST") counts = fresh();
      return Response.json(counts);
    }
    counts.invocations.fetch++;
    return rotator.fetch(request, counted(env), ctx);
  },
  async scheduled(controller, env, ctx) {
    counts.invocations.scheduled++;
    return rotator.scheduled(controller, counted(env), ctx);
  },
  async queue(batch, env, ctx) {
    counts.invocations.queue++;
    return rotator.queue(batch, counted(env), ctx);
  },
};
