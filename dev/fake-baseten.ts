/**
 * A small in-memory fake of Baseten's management API (the API-key endpoints of
 * /work/shared/baseten/management-api-keys.openapi.json) with fault injection.
 * Used by `npm start`, the vitest globalSetup and the benchmarks.
 *
 * All state is per *tenant*, and the tenant is the management key itself: any key
 * starting with `fake-mgmt-` is valid and gets its own state, so tests running in
 * parallel against one shared server never see each other's keys, faults or calls.
 * Tests drive it through the unauthenticated control API under `/__control/{tenant}/`.
 *
 * It also hosts an *event sink* for the worker's outbound event webhooks (EVENT_WEBHOOKS):
 * `POST /__sink/{tenant}` records the raw body and headers of each delivery attempt and answers
 * `?status=` (default 204) after `?delay_ms=` (default 0), or 500 for the first `?fail_first=`
 * attempts; `GET /__control/{tenant}/sink` returns what was recorded. Tests verify signatures
 * themselves: the sink checks nothing.
 *
 * Teams: a mint goes to `POST /v1/teams/{team_id}/api_keys` and the key remembers its team. By
 * default any team id (letters, digits, - and _) is accepted; after `POST /__control/{tenant}/teams`
 * `{"teams": [...]}` only those are, and any other answers 404 (so a client minting under the
 * wrong team fails loudly).
 *
 * Model endpoints: `POST /model/{model_id}/predict` with `Authorization: Api-Key <prefix>.<secret>`
 * (or Bearer) answers 200 for a live (not revoked) key scoped to that model (or unscoped), 401
 * otherwise: what a verify step (DESIGN §4.8) or the consumer client's `fetchWithKey` calls.
 * Faults with `op: "predict"` apply to them (the tenant is the key's); `op: "any"` stays
 * management calls only. A fault's optional `error` replaces the error text of its answer;
 * `{key}` in it becomes the management key that was sent (to test redaction).
 *
 * Run standalone: `npx node dev/fake-baseten.ts [--port 8788] [--host 127.0.0.1] [--latency ms]`.
 */
/// <reference types="node" />
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { randomInt } from "node:crypto";
import { pathToFileURL } from "node:url";

export type Op = "mint" | "list" | "revoke" | "predict";
export type FaultKind =
  | "429"
  | "500"
  | "502"
  | "503"
  | "401"
  | "403"
  | "stall"
  | "refuse"
  | "malformed"
  | "empty"
  | "lost_after_commit"
  | "malformed_after_commit"
  | "empty_after_commit";
export interface Fault {
  op: Op | "any";
  kind: FaultKind;
  count?: number;
  retry_after?: number;
  retry_after_header?: boolean;
  stall_ms?: number;
  /** Error text of the answer instead of the default; `{key}` becomes the management key sent. */
  error?: string;
}
export interface FakeBaseten {
  url: string;
  port: number;
  close(): Promise<void>;
}
export interface FakeBasetenOptions {
  port?: number;
  host?: string;
  latencyMs?: number;
}

interface KeyRecord {
  prefix: string;
  name: string | null;
  type: string;
  model_ids: string[] | null;
  team_id: string | null;
  created_at: string;
  revoked_at: string | null;
  /** The secret part; never shown by the control API. */
  secret: string;
}
interface CallRecord {
  op: Op;
  method: string;
  path: string;
  status: number;
  at: string;
}
interface SinkRecord {
  at: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}
interface Tenant {
  keys: KeyRecord[]; // creation order, revoked ones included
  byPrefix: Map<string, KeyRecord>;
  liveNames: Map<string, KeyRecord>; // names are unique among non-revoked keys only
  faults: Array<Fault & { left: number }>;
  calls: CallRecord[];
  counts: Partial<Record<Op, number>>;
  teams: Set<string> | null; // null: any team id is accepted
  latencyMs: number | null; // null: use the server-wide default
  sink: SinkRecord[]; // event deliveries received, every attempt
}
interface Result {
  status: number;
  body: unknown;
}

const KEY_TYPES = ["PERSONAL", "WORKSPACE_MANAGE_ALL", "WORKSPACE_EXPORT_METRICS", "WORKSPACE_INVOKE"];
const FAULT_KINDS: FaultKind[] = [
  "429",
  "500",
  "502",
  "503",
  "401",
  "403",
  "stall",
  "refuse",
  "malformed",
  "empty",
  "lost_after_commit",
  "malformed_after_commit",
  "empty_after_commit",
];
const NAME_RE = /^[a-z0-9-]{1,128}$/;
const LOWER = "abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM = LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
// Cut-off JSON per op, as a proxy or a crashing server would leave it.
const TRUNCATED: Record<Op, string> = { mint: '{"api_key": ', list: '{"keys": [', revoke: '{"prefix": ', predict: '{"output": ' };
const TEAM_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Every key of every tenant by prefix (prefixes are unique across tenants): the model endpoints find keys here. */
const keyOwners = new Map<string, { tenant: Tenant; rec: KeyRecord }>();
const MAX_BODY = 1 << 20;

const randomString = (alphabet: string, n: number): string =>
  Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join("");
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === "string");
const isCount = (v: unknown) => v === undefined || (Number.isInteger(v) && (v as number) > 0);
const isSeconds = (v: unknown) => v === undefined || (typeof v === "number" && Number.isFinite(v) && v >= 0);
const safeDecode = (s: string): string | null => {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
};
// Timers are unref'd so a closed server never keeps the process alive waiting on them.
const delay = (ms: number) => (ms > 0 ? new Promise<void>((r) => setTimeout(r, ms).unref()) : Promise.resolve());

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendRaw(res, status, JSON.stringify(body), headers);
}
function sendRaw(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.destroyed || res.writableEnded) return; // client gave up or server closed meanwhile
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(text);
}
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error("body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
/** `Authorization: Api-Key <key>` (legacy) or `Bearer <key>`; only fake-mgmt-* keys are management keys. */
function managementKey(header: string | undefined): string | null {
  const m = /^(?:api-key|bearer)\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1]?.startsWith("fake-mgmt-") ? m[1] : null;
}

/** Shared by the API mint and the control API's "someone else made a key". */
function createKey(t: Tenant, body: unknown, teamId: string | null, prefixes: Set<string>): Result {
  if (!isObject(body)) return { status: 400, body: { error: "request body must be a JSON object" } };
  const name = body.name ?? null,
    type = body.type,
    modelIds = body.model_ids ?? null;
  if (typeof type !== "string" || !KEY_TYPES.includes(type))
    return { status: 400, body: { error: `type must be one of ${KEY_TYPES.join(", ")}` } };
  if (name !== null && (typeof name !== "string" || !NAME_RE.test(name)))
    return { status: 400, body: { error: "name must match ^[a-z0-9-]{1,128}$" } };
  if (modelIds !== null && !isStringArray(modelIds))
    return { status: 400, body: { error: "model_ids must be an array of strings or null" } };
  if (type === "WORKSPACE_INVOKE" && (modelIds === null || modelIds.length === 0))
    return { status: 400, body: { error: "model_ids is required for WORKSPACE_INVOKE keys" } };
  if (name !== null && t.liveNames.has(name)) return { status: 409, body: { error: "an API key with this name already exists" } };
  let prefix: string;
  do prefix = randomString(LOWER, 8);
  while (prefixes.has(prefix)); // unique across tenants and resets
  prefixes.add(prefix);
  const secret = randomString(ALNUM, 40);
  const rec: KeyRecord = {
    prefix,
    name,
    type,
    model_ids: modelIds ? [...modelIds] : null,
    team_id: teamId,
    created_at: new Date().toISOString(),
    revoked_at: null,
    secret,
  };
  t.keys.push(rec);
  keyOwners.set(prefix, { tenant: t, rec });
  t.byPrefix.set(prefix, rec);
  if (name !== null) t.liveNames.set(name, rec);
  return { status: 200, body: { api_key: `${prefix}.${secret}` } };
}

function perform(t: Tenant, op: Op, param: string, raw: string, prefixes: Set<string>): Result {
  if (op === "list") {
    const keys = t.keys
      .filter((k) => k.revoked_at === null)
      .map(({ prefix, name, type, model_ids }) => ({ prefix, name, type, model_ids, team_name: "fake-team" }));
    return { status: 200, body: { keys } };
  }
  if (op === "revoke") {
    const rec = t.byPrefix.get(param);
    if (!rec || rec.revoked_at !== null) return { status: 404, body: { error: "API key not found" } };
    rec.revoked_at = new Date().toISOString();
    if (rec.name !== null) t.liveNames.delete(rec.name);
    return { status: 200, body: { prefix: rec.prefix } };
  }
  if (!TEAM_RE.test(param)) return { status: 400, body: { error: "team_id must be letters, digits, - or _" } };
  if (t.teams !== null && !t.teams.has(param)) return { status: 404, body: { error: `team ${param} not found` } };
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    return { status: 400, body: { error: "request body must be JSON" } };
  }
  return createKey(t, body, param, prefixes);
}

/** Map method + path to an op. Only the team mint endpoint mints, so a client using another path fails loudly. */
function route(method: string, path: string): { op: Op; param: string } | { status: 404 | 405; allow?: string } {
  let m = /^\/v1\/teams\/([^/]+)\/api_keys\/?$/.exec(path);
  if (m) return method === "POST" ? param("mint", m[1]!) : { status: 405, allow: "POST" };
  if (/^\/v1\/api_keys\/?$/.test(path)) return method === "GET" ? { op: "list", param: "" } : { status: 405, allow: "GET" };
  m = /^\/v1\/api_keys\/([^/]+)\/?$/.exec(path);
  if (m) return method === "DELETE" ? param("revoke", m[1]!) : { status: 405, allow: "DELETE" };
  return { status: 404 };
  function param(op: Op, raw: string) {
    const p = safeDecode(raw);
    return p ? { op, param: p } : { status: 404 as const };
  }
}

/** Faults are taken in arrival order: the first queued fault whose op matches ("any": management calls only). */
function takeFault(t: Tenant, op: Op): (Fault & { left: number }) | undefined {
  const i = t.faults.findIndex((f) => f.op === op || (f.op === "any" && op !== "predict"));
  const fault = i < 0 ? undefined : t.faults[i]!;
  if (fault && --fault.left === 0) t.faults.splice(i, 1);
  return fault;
}

function validFault(f: unknown): f is Fault {
  return (
    isObject(f) &&
    ["mint", "list", "revoke", "predict", "any"].includes(f.op as string) &&
    (f.error === undefined || typeof f.error === "string") &&
    FAULT_KINDS.includes(f.kind as FaultKind) &&
    isCount(f.count) &&
    isSeconds(f.retry_after) &&
    isSeconds(f.stall_ms) &&
    (f.retry_after_header === undefined || typeof f.retry_after_header === "boolean")
  );
}

export function startFakeBaseten(opts: FakeBasetenOptions = {}): Promise<FakeBaseten> {
  const host = opts.host ?? "127.0.0.1";
  const defaultLatency = opts.latencyMs ?? 0;
  const tenants = new Map<string, Tenant>();
  const prefixes = new Set<string>();
  const sockets = new Set<Socket>();

  const tenant = (key: string): Tenant => {
    let t = tenants.get(key);
    if (!t) {
      t = {
        keys: [],
        byPrefix: new Map(),
        liveNames: new Map(),
        faults: [],
        calls: [],
        counts: { mint: 0, list: 0, revoke: 0 },
        latencyMs: null,
        sink: [],
        teams: null,
      };
      tenants.set(key, t);
    }
    return t;
  };

  async function handleApi(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const r = route(req.method ?? "GET", path);
    if ("status" in r) {
      return r.status === 405
        ? send(res, 405, { error: "method not allowed" }, { allow: r.allow! })
        : send(res, 404, { error: "not found" });
    }
    const key = managementKey(req.headers.authorization);
    if (!key) {
      await delay(defaultLatency);
      return send(res, 401, { error: "invalid API key" });
    }
    const t = tenant(key);
    // Record on arrival (status 0 until answered) so counts include calls whose answer never came.
    const call: CallRecord = { op: r.op, method: req.method!, path, status: 0, at: new Date().toISOString() };
    t.calls.push(call);
    t.counts[r.op] = (t.counts[r.op] ?? 0) + 1;
    const fault = takeFault(t, r.op);
    const errorText = (fallback: string) => fault?.error?.split("{key}").join(key) ?? fallback;

    if (fault?.kind === "refuse") {
      // connection reset before anything is read or answered
      const s = req.socket;
      return void (typeof s.resetAndDestroy === "function" ? s.resetAndDestroy() : s.destroy());
    }
    const raw = await readBody(req);
    const answer = (status: number, body: unknown, headers?: Record<string, string>) => {
      call.status = status;
      send(res, status, body, headers);
    };
    const answerRaw = (text: string) => {
      call.status = 200;
      sendRaw(res, 200, text);
    };

    if (fault?.kind === "stall") {
      // request accepted; hold the socket open, answer nothing, then drop it
      const timer = setTimeout(() => req.socket.destroy(), fault.stall_ms ?? 60_000).unref();
      req.socket.once("close", () => clearTimeout(timer));
      return;
    }
    await delay(t.latencyMs ?? defaultLatency);
    switch (fault?.kind) {
      case "429": {
        const retry = fault.retry_after;
        const headers: Record<string, string> = fault.retry_after_header ? { "retry-after": String(retry ?? 1) } : {};
        return answer(
          429,
          retry === undefined ? { error: errorText("rate limited") } : { error: errorText("rate limited"), retry_after: retry },
          headers,
        );
      }
      case "500":
      case "502":
      case "503":
        return answer(Number(fault.kind), { error: errorText("internal error") });
      case "401":
        return answer(401, { error: errorText("invalid API key") });
      case "403":
        return answer(403, { error: errorText("permission denied") });
      case "malformed":
        return answerRaw(TRUNCATED[r.op]); // op NOT performed
      case "empty":
        return answerRaw("");
    }
    const result = perform(t, r.op, r.param, raw, prefixes);
    switch (fault?.kind) {
      case "lost_after_commit":
        return void req.socket.destroy();
      case "malformed_after_commit":
        return answerRaw(TRUNCATED[r.op]);
      case "empty_after_commit":
        return answer(200, {});
      default:
        return answer(result.status, result.body);
    }
  }

  /** The model endpoint: 200 for a live key scoped to the model, 401 otherwise; faults of the key's tenant. */
  async function handlePredict(req: IncomingMessage, res: ServerResponse, path: string, modelId: string): Promise<void> {
    if (req.method !== "POST") return send(res, 405, { error: "method not allowed" }, { allow: "POST" });
    const m = /^(?:api-key|bearer)\s+([^.\s]+)\.(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    const owner = m ? keyOwners.get(m[1]!) : undefined;
    const t = owner?.tenant;
    const call: CallRecord = { op: "predict", method: "POST", path, status: 0, at: new Date().toISOString() };
    if (t) {
      t.calls.push(call);
      t.counts.predict = (t.counts.predict ?? 0) + 1;
    }
    const fault = t ? takeFault(t, "predict") : undefined;
    if (fault?.kind === "refuse")
      return void (typeof req.socket.resetAndDestroy === "function" ? req.socket.resetAndDestroy() : req.socket.destroy());
    const raw = await readBody(req).catch(() => "");
    if (fault?.kind === "stall") {
      const timer = setTimeout(() => req.socket.destroy(), fault.stall_ms ?? 60_000).unref();
      req.socket.once("close", () => clearTimeout(timer));
      return;
    }
    await delay(t?.latencyMs ?? defaultLatency);
    const answer = (status: number, body: unknown) => {
      call.status = status;
      send(res, status, body);
    };
    switch (fault?.kind) {
      case "429":
        return answer(429, { error: fault.error ?? "rate limited" });
      case "500":
      case "502":
      case "503":
        return answer(Number(fault.kind), { error: fault.error ?? "internal error" });
      case "401":
        return answer(401, { error: fault.error ?? "invalid API key" });
      case "403":
        return answer(403, { error: fault.error ?? "permission denied" });
      case "malformed":
      case "malformed_after_commit":
        call.status = 200;
        return sendRaw(res, 200, TRUNCATED.predict);
      case "empty":
      case "empty_after_commit":
        call.status = 200;
        return sendRaw(res, 200, "");
      case "lost_after_commit":
        return void req.socket.destroy();
    }
    const rec = owner?.rec;
    const live =
      rec !== undefined &&
      rec.revoked_at === null &&
      rec.secret === m![2] &&
      (rec.model_ids === null || rec.model_ids.includes(modelId)) &&
      rec.type !== "WORKSPACE_EXPORT_METRICS";
    if (!live) return answer(401, { error: "invalid API key" });
    let input: unknown = null;
    try {
      input = raw ? JSON.parse(raw) : null;
    } catch {
      input = raw;
    }
    return answer(200, { model_id: modelId, output: { ok: true, echo: input } });
  }

  async function handleControl(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const parts = path.split("/").slice(2); // ["", "__control", ...]
    const method = req.method ?? "GET";
    if (parts.length === 1 && parts[0] === "health") return send(res, 200, { ok: true });
    const name = parts.length === 2 ? safeDecode(parts[0]!) : null;
    if (!name) return send(res, 404, { error: "not found" });
    const what = parts[1]!;
    const body = method === "POST" ? await readBody(req) : "";
    let json: unknown = {};
    if (body !== "") {
      try {
        json = JSON.parse(body);
      } catch {
        return send(res, 400, { error: "body must be JSON" });
      }
    }
    const t = tenant(name);
    switch (`${method} ${what}`) {
      case "POST faults": {
        const faults = isObject(json) ? json.faults : undefined;
        if (!Array.isArray(faults) || !faults.every(validFault)) return send(res, 400, { error: "invalid faults" });
        for (const f of faults) t.faults.push({ ...f, left: f.count ?? 1 });
        return send(res, 200, { queued: faults.length });
      }
      case "GET faults":
        return send(res, 200, { faults: t.faults.map(({ left, ...f }) => ({ ...f, count: left })) });
      case "DELETE faults": {
        const cleared = t.faults.length;
        t.faults = [];
        return send(res, 200, { cleared });
      }
      case "GET keys": {
        // ?live=1: only keys not revoked (cheap to poll when thousands were revoked); ?team=
        const query = new URL(req.url ?? "/", "http://fake").searchParams;
        const live = query.get("live") === "1";
        const team = query.get("team");
        const keys = t.keys.filter((k) => (!live || k.revoked_at === null) && (team === null || k.team_id === team));
        return send(res, 200, { keys: keys.map(({ secret: _secret, ...k }) => k) });
      }
      case "POST teams": {
        // {"teams": [...]} restricts mints to these team ids; {"teams": null} accepts any again
        const teams = isObject(json) ? json.teams : undefined;
        if (teams !== null && (!isStringArray(teams) || !teams.every((x) => TEAM_RE.test(x))))
          return send(res, 400, { error: "teams must be a list of team ids or null" });
        t.teams = teams === null ? null : new Set(teams);
        return send(res, 200, { teams });
      }
      case "POST keys": {
        const input = isObject(json) ? { type: "WORKSPACE_INVOKE", ...json } : json;
        const result = createKey(t, input, "control", prefixes);
        return send(res, result.status, result.body);
      }
      case "GET calls":
        return send(res, 200, { calls: t.calls, counts: t.counts });
      case "POST latency": {
        const ms = isObject(json) ? json.ms : undefined;
        if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return send(res, 400, { error: "ms must be a number >= 0" });
        t.latencyMs = ms;
        return send(res, 200, { ms });
      }
      case "POST reset":
        for (const k of t.keys) keyOwners.delete(k.prefix);
        tenants.delete(name);
        return send(res, 200, { ok: true });
      case "GET sink":
        return send(res, 200, { deliveries: t.sink });
      case "DELETE sink":
        t.sink = [];
        return send(res, 200, { ok: true });
    }
    const known = ["faults", "keys", "calls", "latency", "reset", "sink", "teams"].includes(what);
    return send(res, known ? 405 : 404, { error: known ? "method not allowed" : "not found" });
  }

  /** The event sink: records the attempt as received, then answers as the query asks. */
  async function handleSink(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const name = safeDecode(path.slice("/__sink/".length));
    if (!name || name.includes("/")) return send(res, 404, { error: "not found" });
    if (req.method !== "POST") return send(res, 405, { error: "method not allowed" }, { allow: "POST" });
    const query = new URL(req.url ?? "/", "http://fake").searchParams;
    const t = tenant(name);
    const body = await readBody(req);
    const failFirst = Number(query.get("fail_first") ?? 0);
    const status = t.sink.length < failFirst ? 500 : Number(query.get("status") ?? 204);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
    t.sink.push({ at: new Date().toISOString(), status, headers, body });
    await delay(Number(query.get("delay_ms") ?? 0));
    if (status === 204) {
      if (!res.destroyed) {
        res.writeHead(204);
        res.end();
      }
      return;
    }
    return send(res, status, { received: status < 300 });
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://fake").pathname;
    const model = /^\/model\/([^/]+)\/predict\/?$/.exec(path);
    const handler = model
      ? (q: IncomingMessage, s: ServerResponse, p: string) => handlePredict(q, s, p, safeDecode(model[1]!) ?? "")
      : path.startsWith("/__control/")
        ? handleControl
        : path.startsWith("/__sink/")
          ? handleSink
          : handleApi;
    handler(req, res, path).catch((err: unknown) => {
      // A body read that failed (client vanished, body too large) or a bug: answer if we still can.
      if (!res.headersSent) send(res, 400, { error: `fake-baseten: ${String(err)}` });
      else res.destroy();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8788, host, () => {
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 8788);
      const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
      resolve({
        url,
        port,
        // Destroy every socket (stalled ones included) so close() never waits on a client.
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(
      "usage: npm run fake-baseten -- [--port 8788] [--host 127.0.0.1] [--latency ms]\n  the fake Baseten management API (keys per fake-mgmt-* key, faults under /__control/{key}/); Ctrl-C stops it",
    );
    process.exit(0);
  }
  const arg = (flag: string): string | undefined => {
    const i = process.argv.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
    if (i < 0) return undefined;
    const a = process.argv[i]!;
    return a.includes("=") ? a.slice(a.indexOf("=") + 1) : process.argv[i + 1];
  };
  const fake = await startFakeBaseten({
    port: Number(arg("--port") ?? 8788),
    host: arg("--host") ?? "127.0.0.1",
    latencyMs: Number(arg("--latency") ?? 0),
  });
  console.log(`fake-baseten listening on ${fake.url}`);
  const stop = () => {
    void fake.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
