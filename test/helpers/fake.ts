/**
 * Typed access to the fake Baseten's control API (dev/fake-baseten.ts) for tests running
 * inside workerd: global `fetch` only, no Node imports.
 *
 *   const fake = fakeTenant(inject("basetenUrl"));
 *   // use fake.key as BASETEN_API_KEY; every tenant has its own keys, faults and calls
 *   await fake.fault({ op: "mint", kind: "503", count: 2 });
 */
export type FakeOp = "mint" | "list" | "revoke" | "predict";
export type FakeKeyType = "PERSONAL" | "WORKSPACE_MANAGE_ALL" | "WORKSPACE_EXPORT_METRICS" | "WORKSPACE_INVOKE";
// The fault kinds are the fake's own (a type-only import: nothing of Node reaches workerd).
export type { FaultKind } from "../../dev/fake-baseten.ts";
import type { FaultKind } from "../../dev/fake-baseten.ts";

export interface Fault {
  op: FakeOp | "any";
  kind: FaultKind;
  /** How many matching requests this fault hits (default 1). */
  count?: number;
  /** For 429: `retry_after` seconds in the body (omitted from the body when not given). */
  retry_after?: number;
  /** For 429: also send a `Retry-After` header (value retry_after, or 1). */
  retry_after_header?: boolean;
  /** For "stall": how long the socket is held before it is dropped (default 60000). */
  stall_ms?: number;
  /** Error text of the answer instead of the default; `{key}` becomes the management key sent. */
  error?: string;
}

/** Every key the tenant ever had, revoked ones included (never the secret). */
export interface FakeKey {
  prefix: string;
  name: string | null;
  type: FakeKeyType;
  model_ids: string[] | null;
  /** Team id from the mint path; "control" for keys made through createKey(). */
  team_id: string | null;
  created_at: string;
  revoked_at: string | null;
}

export interface FakeCall {
  op: FakeOp;
  method: string;
  path: string;
  /** HTTP status answered; 0 while unanswered or when dropped (stall, refuse, lost_after_commit). */
  status: number;
  /** Arrival time, ISO 8601. */
  at: string;
}

/** One delivery attempt received by the event sink (`POST /__sink/{tenant}`). */
export interface SinkDelivery {
  at: string;
  /** What the sink answered. */
  status: number;
  /** Lowercase header names. */
  headers: Record<string, string>;
  /** The raw body, exactly as received. */
  body: string;
}

export interface FakeTenant {
  /** The management key ("fake-mgmt-<random>"); it is also the tenant id. */
  key: string;
  keys(): Promise<FakeKey[]>;
  /** Keys not revoked, i.e. what Baseten's list call would return. */
  liveKeys(): Promise<FakeKey[]>;
  calls(): Promise<{ calls: FakeCall[]; counts: Record<string, number> }>;
  fault(...faults: Fault[]): Promise<void>;
  clearFaults(): Promise<void>;
  latency(ms: number): Promise<void>;
  reset(): Promise<void>;
  /** Only these team ids may mint from now on (others: 404); null accepts any again. */
  setTeams(teams: string[] | null): Promise<void>;
  /** Keys minted under one team (revoked ones included). */
  teamKeys(team: string): Promise<FakeKey[]>;
  /** `POST {base}/model/{model_id}/predict`: 200 for a live key scoped to the model, 401 otherwise. */
  predictUrl(modelId: string): string;
  /** Make a key as if someone else had (default type WORKSPACE_INVOKE); returns "<prefix>.<secret>". */
  createKey(name: string, model_ids: string[], type?: FakeKeyType): Promise<string>;
  /** URL of this tenant's event sink; `status` (default 204), `fail_first` (500 for the first n attempts), `delay_ms`. */
  sinkUrl(query?: { status?: number; fail_first?: number; delay_ms?: number }): string;
  /** Every delivery attempt the sink received, in arrival order. */
  sink(): Promise<SinkDelivery[]>;
}

export function fakeTenant(baseUrl: string, tenant?: string): FakeTenant {
  const key = tenant ?? `fake-mgmt-${crypto.randomUUID()}`;
  const root = baseUrl.replace(/\/+$/, "");
  const base = `${root}/__control/${encodeURIComponent(key)}`;

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${base}/${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`fake-baseten ${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  return {
    key,
    keys: async () => (await call<{ keys: FakeKey[] }>("GET", "keys")).keys,
    liveKeys: async () => (await call<{ keys: FakeKey[] }>("GET", "keys?live=1")).keys.filter((k) => k.revoked_at === null),
    calls: () => call("GET", "calls"),
    fault: async (...faults) => {
      await call("POST", "faults", { faults });
    },
    clearFaults: async () => {
      await call("DELETE", "faults");
    },
    latency: async (ms) => {
      await call("POST", "latency", { ms });
    },
    reset: async () => {
      await call("POST", "reset");
    },
    setTeams: async (teams) => {
      await call("POST", "teams", { teams });
    },
    teamKeys: async (team) => (await call<{ keys: FakeKey[] }>("GET", `keys?team=${encodeURIComponent(team)}`)).keys,
    predictUrl: (modelId) => `${root}/model/${encodeURIComponent(modelId)}/predict`,
    createKey: async (name, model_ids, type = "WORKSPACE_INVOKE") =>
      (await call<{ api_key: string }>("POST", "keys", { name, model_ids, type })).api_key,
    sinkUrl: (query = {}) => {
      const qs = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
      return `${root}/__sink/${encodeURIComponent(key)}${qs ? `?${qs}` : ""}`;
    },
    sink: async () => (await call<{ deliveries: SinkDelivery[] }>("GET", "sink")).deliveries,
  };
}
