/**
 * Configuration: vars and secrets parsed and validated into one typed Config.
 *
 * Nothing is half-applied: `loadConfig` returns either a complete Config or the full
 * list of problems (each naming the var, the set or consumer, the field and why).
 * The result is cached per `env` object, so the read path parses nothing per request.
 */
import { sha256HexSync } from "./crypto.ts";
import type { Env } from "./env.ts";
import { parseWithConfigFile } from "./config-file.ts";
import { type Keyring, createKeyring, keyId } from "./keyring.ts";
import { scheduleProblem, shortestGapMs } from "./schedule.ts";

export interface ModelSetConfig {
  id: string;
  modelIds: string[];
  /** For a scheduled set: the shortest gap between two schedule times. */
  rotateEveryMs: number;
  overlapMs: number;
  enabled: boolean;
  /** Mint under this Baseten team instead of BASETEN_TEAM_ID (optional). */
  teamId?: string;
  /** 5-field cron expression in UTC (instead of rotate_every); refresh_at follows it (src/schedule.ts). */
  schedule?: string;
  /** Check a new key against this endpoint before promoting it (DESIGN §4.8, src/verify.ts). */
  verify?: VerifyConfig;
}

/** DESIGN §4.8. `body`: an object (or any non-string JSON) is sent as JSON, a string as is. */
export interface VerifyConfig {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: unknown;
  /** Statuses that pass; absent: any 2xx passes. Never 401 or 403. */
  expect?: number[];
}

/** An OIDC workload identity (DESIGN §3.1). */
export interface OidcConsumerConfig {
  /** Exact `iss`; `https:`, or `http:` on 127.0.0.1/localhost with a port. */
  issuer: string;
  /** `aud` must contain this. */
  audience: string;
  /** Exact `sub`, or a pattern where `*` matches any run of characters (anchored at both ends). */
  subject: string;
  /** Claims that must equal these values exactly. */
  claims: Record<string, string>;
}

export interface ConsumerConfig {
  name: string;
  modelSets: string[];
  /** `token`: a static bearer token (`token_sha256`); `oidc`: a JWT from an issuer; `binding`: a Worker over RPC. */
  kind: "token" | "oidc" | "binding";
  /** Lowercase hex SHA-256 of the consumer's bearer token (kind "token"). */
  tokenSha256?: string;
  oidc?: OidcConsumerConfig;
}

export interface EventSubscriber {
  url: string;
  /** `whsec_<base64>` used to sign deliveries (Standard Webhooks). */
  secret: string;
  /** Event types delivered; empty means all. */
  events: string[];
}

export interface Config {
  apiBase: string;
  teamId: string;
  sets: Map<string, ModelSetConfig>;
  consumers: ConsumerConfig[];
  basetenApiKey: string;
  /** ENCRYPTION_KEY seals, ENCRYPTION_KEY_PREVIOUS opens (src/keyring.ts); key ids only, no key bytes. */
  keyring: Keyring;
  /** WEBHOOK_SECRET, space-separated: any one verifies. Empty: rotation webhooks are off. */
  webhookSecrets: string[];
  /** ADMIN_TOKEN, space-separated: any one admits. Empty: admin routes are off. */
  adminTokens: string[];
  /** METRICS_TOKEN (the first listed), for GET /metrics only; null when not set. */
  metricsToken: string | null;
  /** METRICS_TOKEN, space-separated: any one admits GET /metrics (so it can be changed without a gap). */
  metricsTokens: string[];
  events: EventSubscriber[];
  timeoutMs: number;
  maxAttempts: number;
  concurrency: number;
  inlineBudget: number;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

export const SET_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const MODEL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const CONSUMER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** KV may serve a stale value for 60 s; consumers need time to refetch after that. */
export const MIN_OVERLAP_MS = 120_000;
export const EVENT_TYPES = ["key.rotated", "key.revoked", "rotation.failed", "rotation.overdue", "consumer.lagging"] as const;

const SET_FIELDS = new Set(["model_ids", "rotate_every", "overlap", "enabled", "team_id", "schedule", "verify"]);
const CONSUMER_FIELDS = new Set(["token_sha256", "oidc", "binding", "model_sets"]);
const OIDC_FIELDS = new Set(["issuer", "audience", "subject", "claims"]);
const VERIFY_FIELDS = new Set(["url", "method", "headers", "body", "expect"]);
const VERIFY_METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);
/** Team ids go into the mint path `/v1/teams/{team_id}/api_keys`: URL-safe characters only. */
export const TEAM_ID = /^[A-Za-z0-9_-]{1,64}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
/** Printable ASCII without spaces: what a bearer token can carry in an Authorization header. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;
export const MIN_TOKEN_LENGTH = 32;
const MAX_TOKEN_LENGTH = 1024;
export const MIN_WEBHOOK_SECRET_BYTES = 24;
export const MAX_PREVIOUS_KEYS = 8;
/** More entries than this in WEBHOOK_SECRET / ADMIN_TOKEN / METRICS_TOKEN is a mistake, not a rollover. */
const MAX_LIST_ENTRIES = 8;
const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `"90s"`, `"15m"`, `"24h"`, `"7d"` or whole seconds (number or digit string); null if invalid. */
export function parseDuration(value: unknown): number | null {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value * 1000 : null;
  if (typeof value !== "string") return null;
  const m = /^(\d{1,9})([smhd]?)$/.exec(value.trim());
  if (!m) return null;
  const n = Number(m[1]);
  if (n <= 0) return null;
  return n * (DURATION_UNITS[m[2] || "s"] ?? 1000);
}

/** A var that may be a TOML table (object) or a JSON string. */
function parseObjectVar(name: string, value: unknown, problems: string[], required: boolean): Record<string, unknown> | null {
  if (value === undefined || value === null || value === "") {
    if (required) problems.push(`${name}: missing (expected a JSON object or a TOML table)`);
    return null;
  }
  let parsed = value;
  if (typeof value === "string") {
    try {
      parsed = JSON.parse(value);
    } catch {
      problems.push(`${name}: not valid JSON`);
      return null;
    }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    problems.push(`${name}: must be an object`);
    return null;
  }
  return parsed as Record<string, unknown>;
}

function parseSets(raw: Record<string, unknown>, problems: string[]): Map<string, ModelSetConfig> {
  const sets = new Map<string, ModelSetConfig>();
  for (const [id, entry] of Object.entries(raw)) {
    const where = `MODEL_SETS.${id}`;
    let ok = true;
    const bad = (msg: string) => {
      problems.push(`${where}: ${msg}`);
      ok = false;
    };
    if (!SET_ID.test(id)) bad("set id must match ^[a-z0-9][a-z0-9-]{0,31}$");
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      bad("must be an object");
      continue;
    }
    const e = entry as Record<string, unknown>;
    for (const field of Object.keys(e)) if (!SET_FIELDS.has(field)) bad(`unknown field "${field}"`);
    const modelIds = e.model_ids;
    if (!Array.isArray(modelIds) || modelIds.length === 0) bad("model_ids must be a non-empty array of model ids");
    else if (!modelIds.every((m) => typeof m === "string" && MODEL_ID.test(m))) bad("model_ids must be strings of letters, digits, - or _");
    else if (new Set(modelIds).size !== modelIds.length) bad("model_ids has duplicates");
    const hasSchedule = e.schedule !== undefined;
    let rotateEveryMs: number | null = null;
    let schedule: string | undefined;
    if (hasSchedule && e.rotate_every !== undefined) bad("has both rotate_every and schedule: use exactly one");
    else if (hasSchedule) {
      const why = scheduleProblem(e.schedule);
      if (why) bad(`schedule ${why}`);
      else {
        schedule = (e.schedule as string).trim().replace(/\s+/g, " ");
        rotateEveryMs = shortestGapMs(schedule);
        if (rotateEveryMs === null) bad("schedule has fewer than two times in 9 years");
      }
    } else {
      rotateEveryMs = parseDuration(e.rotate_every);
      if (rotateEveryMs === null) bad('rotate_every must be a duration like "24h", "7d", "15m", "90s" or whole seconds');
    }
    const overlapMs = parseDuration(e.overlap);
    if (overlapMs === null) bad('overlap must be a duration like "1h", "2m" or whole seconds');
    if (overlapMs !== null && overlapMs < MIN_OVERLAP_MS)
      bad("overlap must be at least 2m (KV serves stale values for up to 60 s and consumers need time to refetch)");
    if (overlapMs !== null && rotateEveryMs !== null && overlapMs >= rotateEveryMs) {
      bad(
        schedule
          ? `overlap must be shorter than the shortest gap between two schedule times (${formatMs(rotateEveryMs)})`
          : "overlap must be shorter than rotate_every",
      );
    }
    if (e.enabled !== undefined && typeof e.enabled !== "boolean") bad("enabled must be true or false");
    let teamId: string | undefined;
    if (e.team_id !== undefined) {
      if (typeof e.team_id !== "string" || !TEAM_ID.test(e.team_id))
        bad("team_id must be 1-64 letters, digits, - or _ (it goes into the mint path /v1/teams/{team_id}/api_keys)");
      else teamId = e.team_id;
    }
    let verify: VerifyConfig | undefined;
    if (e.verify !== undefined) {
      const v = parseVerify(e.verify, (msg) => bad(`verify.${msg}`));
      if (v) verify = v;
    }
    if (ok) {
      const set: ModelSetConfig = {
        id,
        modelIds: [...(modelIds as string[])],
        rotateEveryMs: rotateEveryMs!,
        overlapMs: overlapMs!,
        enabled: e.enabled !== false,
      };
      if (teamId !== undefined) set.teamId = teamId;
      if (schedule !== undefined) set.schedule = schedule;
      if (verify !== undefined) set.verify = verify;
      sets.set(id, set);
    }
  }
  return sets;
}

/** `https:`, or `http:` on loopback with a port (local runs and tests); no query, fragment or credentials. */
export function isIssuerUrl(value: string): boolean {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return false;
  }
  if (u.search !== "" || u.hash !== "" || u.username !== "" || u.password !== "") return false;
  if (u.protocol === "https:") return true;
  return u.protocol === "http:" && (u.hostname === "127.0.0.1" || u.hostname === "localhost") && u.port !== "";
}

function parseOidc(value: unknown, bad: (msg: string) => void): OidcConsumerConfig | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad("oidc must be an object {issuer, audience, subject, claims}");
    return null;
  }
  const o = value as Record<string, unknown>;
  let ok = true;
  const no = (msg: string) => {
    bad(msg);
    ok = false;
  };
  for (const field of Object.keys(o)) if (!OIDC_FIELDS.has(field)) no(`oidc: unknown field "${field}"`);
  if (typeof o.issuer !== "string" || !isIssuerUrl(o.issuer))
    no("oidc.issuer must be an https: URL (http: only on 127.0.0.1 or localhost with a port), without query or fragment");
  if (typeof o.audience !== "string" || o.audience === "" || o.audience.length > 256)
    no("oidc.audience must be a non-empty string (at most 256 characters)");
  if (typeof o.subject !== "string" || o.subject === "" || o.subject.length > 256)
    no("oidc.subject must be a non-empty string (at most 256 characters; * matches any run of characters)");
  const claims: Record<string, string> = {};
  if (o.claims !== undefined) {
    if (typeof o.claims !== "object" || o.claims === null || Array.isArray(o.claims))
      no("oidc.claims must be an object of claim name -> exact string value");
    else
      for (const [k, v] of Object.entries(o.claims as Record<string, unknown>)) {
        if (typeof v !== "string") no(`oidc.claims.${k} must be a string`);
        else if (["iss", "aud", "sub", "exp", "nbf", "iat"].includes(k))
          no(`oidc.claims.${k}: use issuer, audience or subject (time claims are always checked)`);
        else claims[k] = v;
      }
  }
  return ok ? { issuer: o.issuer as string, audience: o.audience as string, subject: o.subject as string, claims } : null;
}

function formatMs(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${Math.round(ms / 1000)}s`;
}

/** `https:`, or `http:` on a loopback host (local runs and tests). */
export function isHttpsOrLoopback(value: unknown): boolean {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    return false;
  }
  if (url.protocol === "https:") return true;
  return url.protocol === "http:" && isLoopback(url.hostname);
}

export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** DESIGN §4.8: url (https or loopback http), method, headers, body, expect (never 401/403). */
function parseVerify(value: unknown, bad: (msg: string) => void): VerifyConfig | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad("must be an object {url, method, headers, body, expect}");
    return null;
  }
  const v = value as Record<string, unknown>;
  let ok = true;
  const no = (msg: string) => {
    bad(msg);
    ok = false;
  };
  for (const field of Object.keys(v)) if (!VERIFY_FIELDS.has(field)) no(`unknown field "${field}"`);
  if (typeof v.url !== "string" || !isHttpsOrLoopback(v.url)) no("url must be an https: URL (http: only on localhost or 127.0.0.1)");
  const method = v.method === undefined ? "POST" : typeof v.method === "string" ? v.method.toUpperCase() : "";
  if (!VERIFY_METHODS.has(method)) no(`method must be one of ${[...VERIFY_METHODS].join(", ")}`);
  const headers: Record<string, string> = {};
  if (v.headers !== undefined) {
    if (typeof v.headers !== "object" || v.headers === null || Array.isArray(v.headers))
      no("headers must be an object of header names to string values");
    else
      for (const [name, val] of Object.entries(v.headers as Record<string, unknown>)) {
        if (!HEADER_NAME.test(name)) no(`headers: "${name.slice(0, 40)}" is not a header name`);
        else if (name.toLowerCase() === "authorization")
          no("headers must not set authorization (the new key is sent as Authorization: Api-Key <key>)");
        else if (typeof val !== "string" || /[\r\n\0]/.test(val)) no(`headers.${name} must be a string on one line`);
        else headers[name] = val;
      }
  }
  if (v.body !== undefined && (method === "GET" || method === "HEAD")) no(`body cannot be sent with ${method}`);
  let expect: number[] | undefined;
  if (v.expect !== undefined) {
    if (
      !Array.isArray(v.expect) ||
      v.expect.length === 0 ||
      !v.expect.every((n) => Number.isInteger(n) && (n as number) >= 100 && (n as number) <= 599)
    ) {
      no("expect must be a non-empty list of HTTP statuses (100-599)");
    } else if (v.expect.some((n) => n === 401 || n === 403)) {
      no("expect must not include 401 or 403: those mean the new key does not work");
    } else expect = [...new Set(v.expect as number[])];
  }
  if (!ok) return null;
  const out: VerifyConfig = { url: new URL(v.url as string).toString(), method, headers };
  if (v.body !== undefined) out.body = v.body;
  if (expect) out.expect = expect;
  return out;
}

function parseConsumers(raw: Record<string, unknown>, setIds: Set<string> | null, problems: string[]): ConsumerConfig[] {
  const consumers: ConsumerConfig[] = [];
  const seenHashes = new Map<string, string>();
  for (const [name, entry] of Object.entries(raw)) {
    const where = `CONSUMERS.${name}`;
    let ok = true;
    const bad = (msg: string) => {
      problems.push(`${where}: ${msg}`);
      ok = false;
    };
    if (!CONSUMER_NAME.test(name)) bad("consumer name must be 1-64 letters, digits, '.', '_' or '-'");
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      bad("must be an object");
      continue;
    }
    const e = entry as Record<string, unknown>;
    for (const field of Object.keys(e)) if (!CONSUMER_FIELDS.has(field)) bad(`unknown field "${field}"`);
    const kinds = (["token_sha256", "oidc", "binding"] as const).filter((k) => e[k] !== undefined);
    let kind: ConsumerConfig["kind"] | null = null;
    let oidc: OidcConsumerConfig | null = null;
    const hash = e.token_sha256;
    if (kinds.length !== 1)
      bad(`needs exactly one of token_sha256, oidc or "binding": true (found ${kinds.length === 0 ? "none" : kinds.join(" and ")})`);
    else if (kinds[0] === "token_sha256") {
      kind = "token";
      if (typeof hash !== "string" || !SHA256_HEX.test(hash))
        bad("token_sha256 must be the lowercase hex SHA-256 of the token (64 characters)");
      else if (seenHashes.has(hash)) bad(`token_sha256 is the same as CONSUMERS.${seenHashes.get(hash)}`);
      else seenHashes.set(hash, name);
    } else if (kinds[0] === "oidc") {
      kind = "oidc";
      oidc = parseOidc(e.oidc, bad);
    } else {
      kind = "binding";
      if (e.binding !== true)
        bad('binding must be true (a Worker on this account calling over a service binding with props = { consumer = "<name>" })');
    }
    const grants = e.model_sets;
    if (!Array.isArray(grants) || !grants.every((s) => typeof s === "string")) bad("model_sets must be an array of set ids");
    else if (setIds) for (const s of grants as string[]) if (!setIds.has(s)) bad(`model_sets names "${s}", which is not in MODEL_SETS`);
    if (ok && kind) {
      const consumer: ConsumerConfig = { name, kind, modelSets: [...new Set(grants as string[])] };
      if (kind === "token") consumer.tokenSha256 = hash as string;
      if (oidc) consumer.oidc = oidc;
      consumers.push(consumer);
    }
  }
  return consumers;
}

function parseEvents(value: unknown, problems: string[]): EventSubscriber[] {
  if (value === undefined || value === null || value === "") return [];
  let parsed = value;
  if (typeof value === "string") {
    try {
      parsed = JSON.parse(value);
    } catch {
      problems.push("EVENT_WEBHOOKS: not valid JSON");
      return [];
    }
  }
  if (!Array.isArray(parsed)) {
    problems.push("EVENT_WEBHOOKS: must be an array of {url, secret, events}");
    return [];
  }
  const out: EventSubscriber[] = [];
  parsed.forEach((entry: unknown, i: number) => {
    const where = `EVENT_WEBHOOKS[${i}]`;
    if (typeof entry !== "object" || entry === null) return void problems.push(`${where}: must be an object`);
    const e = entry as Record<string, unknown>;
    let ok = true;
    let url: URL | null = null;
    try {
      url = new URL(String(e.url));
    } catch {
      /* reported below */
    }
    if (!url || !isHttpsOrLoopback(url)) {
      problems.push(`${where}: url must be an https: URL (http: only on localhost or 127.0.0.1)`);
      ok = false;
    }
    const secretProblem = webhookSecretProblem(e.secret);
    if (secretProblem) {
      problems.push(`${where}: secret ${secretProblem}`);
      ok = false;
    }
    const events = e.events ?? [];
    if (!Array.isArray(events) || !events.every((t) => (EVENT_TYPES as readonly unknown[]).includes(t))) {
      problems.push(`${where}: events must be a list of ${EVENT_TYPES.join(", ")}`);
      ok = false;
    }
    if (ok) out.push({ url: url!.toString(), secret: e.secret as string, events: events as string[] });
  });
  return out;
}

export function isWebhookSecret(value: unknown): value is string {
  return webhookSecretProblem(value) === null;
}

/** Null for a usable `whsec_<base64>` of at least 24 bytes, else why not (never the value). */
export function webhookSecretProblem(value: unknown): string | null {
  if (typeof value !== "string" || !value.startsWith("whsec_")) return "must be whsec_<base64>";
  const b64 = value.slice(6);
  const n = /^[A-Za-z0-9+/]+={0,2}$/.test(b64) ? decodedLength(b64) : -1;
  if (n < 0 || b64.length % 4 === 1) return "must be whsec_<base64>: the part after whsec_ does not decode as base64";
  if (n < MIN_WEBHOOK_SECRET_BYTES)
    return `is too weak: ${n} bytes after whsec_, at least ${MIN_WEBHOOK_SECRET_BYTES} needed (e.g. whsec_$(openssl rand -base64 32))`;
  return null;
}

/**
 * A space-separated secret list. Leading and trailing whitespace is ignored (a newline from an
 * editor); an empty entry inside (two spaces) is a problem. Entries are named by position only.
 */
function secretList(
  name: string,
  value: string | undefined,
  problems: string[],
  max: number,
  check: (entry: string) => string | null,
): string[] | null {
  if (value === undefined || value.trim() === "") return [];
  const entries = value.trim().split(" ");
  const before = problems.length;
  const label = (i: number) => (entries.length === 1 ? name : `${name} (entry ${i + 1} of ${entries.length})`);
  if (entries.length > max)
    problems.push(`${name}: ${entries.length} entries, at most ${max} (keep the new value and the one being phased out)`);
  const seen = new Map<string, number>();
  entries.forEach((entry, i) => {
    if (entry === "") return void problems.push(`${name} (entry ${i + 1} of ${entries.length}): empty (two spaces in a row)`);
    const why = check(entry);
    if (why) return void problems.push(`${label(i)}: ${why}`);
    if (seen.has(entry)) return void problems.push(`${label(i)}: the same value as entry ${seen.get(entry)! + 1}`);
    seen.set(entry, i);
  });
  return problems.length === before ? entries : null;
}

function tokenProblem(entry: string): string | null {
  if (!TOKEN_CHARS.test(entry)) return "must be printable ASCII without spaces (it is sent as Authorization: Bearer <token>)";
  if (entry.length < MIN_TOKEN_LENGTH) return `must be at least ${MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 32)`;
  if (entry.length > MAX_TOKEN_LENGTH) return `must be at most ${MAX_TOKEN_LENGTH} characters`;
  return null;
}

function encryptionKeyProblem(entry: string): string | null {
  return /^[A-Za-z0-9+/]+={0,2}$/.test(entry) && decodedLength(entry) === 32 ? null : "must be base64 of exactly 32 bytes";
}

/** Tokens whose SHA-256 is a consumer's token_sha256 would let that consumer in as an admin. */
function collidingConsumers(name: string, tokens: string[], hashes: Map<string, string>, problems: string[]): void {
  tokens.forEach((token, i) => {
    const consumer = hashes.get(sha256HexSync(token));
    if (consumer)
      problems.push(
        `${tokens.length === 1 ? name : `${name} (entry ${i + 1} of ${tokens.length})`}: is the token of CONSUMERS.${consumer} (its SHA-256 equals that consumer's token_sha256); give each its own token`,
      );
  });
}

/**
 * ADMIN_TOKEN on its own, for /v1/admin/status while the rest of the configuration is invalid:
 * the tokens when every entry is usable and none is a consumer's token, else none.
 */
export function usableAdminTokens(env: Env): string[] {
  const problems: string[] = [];
  const tokens = secretList("ADMIN_TOKEN", env.ADMIN_TOKEN, problems, MAX_LIST_ENTRIES, tokenProblem);
  if (!tokens || problems.length > 0) return [];
  const raw = parseObjectVar("CONSUMERS", env.CONSUMERS, [], false);
  const hashes = new Map<string, string>();
  for (const [name, entry] of Object.entries(raw ?? {})) {
    const hash = (entry as { token_sha256?: unknown } | null)?.token_sha256;
    if (typeof hash === "string") hashes.set(hash.toLowerCase(), name);
  }
  collidingConsumers("ADMIN_TOKEN", tokens, hashes, problems);
  return problems.length === 0 ? tokens : [];
}

/** METRICS_TOKEN as far as it is sound on its own: GET /metrics answers on an invalid config too. */
export function usableMetricsTokens(env: Env): string[] {
  const problems: string[] = [];
  const tokens = secretList("METRICS_TOKEN", env.METRICS_TOKEN, problems, MAX_LIST_ENTRIES, tokenProblem);
  return tokens && problems.length === 0 ? tokens : [];
}

function decodedLength(b64: string): number {
  try {
    return atob(b64).length;
  } catch {
    return -1;
  }
}

function intVar(name: string, value: string | undefined, fallback: number, min: number, max: number, problems: string[]): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${name}: must be a whole number from ${min} to ${max}`);
    return fallback;
  }
  return n;
}

/** Parse and validate everything; never throws, never includes a secret in a problem. */
export function parseConfig(env: Env): ConfigResult {
  const problems: string[] = [];

  const apiBase = (env.BASETEN_API_BASE || "https://api.baseten.co").replace(/\/+$/, "");
  let apiUrl: URL | null = null;
  try {
    apiUrl = new URL(apiBase);
  } catch {
    /* reported below */
  }
  if (!apiUrl || (apiUrl.protocol !== "https:" && apiUrl.protocol !== "http:")) problems.push("BASETEN_API_BASE: must be an http(s) URL");
  else if (!isHttpsOrLoopback(apiUrl))
    problems.push(
      "BASETEN_API_BASE: must be https: (http: would send the management key in clear text; allowed only on localhost or 127.0.0.1)",
    );
  const teamId = typeof env.BASETEN_TEAM_ID === "string" ? env.BASETEN_TEAM_ID.trim() : "";
  if (!teamId) problems.push("BASETEN_TEAM_ID: missing");
  else if (!TEAM_ID.test(teamId)) problems.push("BASETEN_TEAM_ID: must be letters, digits, - or _");

  const rawSets = parseObjectVar("MODEL_SETS", env.MODEL_SETS, problems, true);
  const sets = rawSets ? parseSets(rawSets, problems) : new Map<string, ModelSetConfig>();
  // Consumers are checked against every *named* set, valid or not, so one bad set
  // does not also report every consumer that grants it (nor an unreadable MODEL_SETS).
  const namedSets = rawSets ? new Set(Object.keys(rawSets)) : null;
  const rawConsumers = parseObjectVar("CONSUMERS", env.CONSUMERS, problems, true);
  const consumers = rawConsumers ? parseConsumers(rawConsumers, namedSets, problems) : [];
  const events = parseEvents(env.EVENT_WEBHOOKS, problems);

  const basetenApiKey = env.BASETEN_API_KEY ?? "";
  if (!basetenApiKey) problems.push("BASETEN_API_KEY: missing secret (a WORKSPACE_MANAGE_ALL management key)");
  else if (/\s/.test(basetenApiKey)) problems.push("BASETEN_API_KEY: contains whitespace");
  const encryptionKey = env.ENCRYPTION_KEY ?? "";
  if (!encryptionKey) problems.push("ENCRYPTION_KEY: missing secret (base64 of 32 random bytes)");
  else if (encryptionKeyProblem(encryptionKey)) problems.push("ENCRYPTION_KEY: must be base64 of exactly 32 bytes");
  const previousKeys = secretList(
    "ENCRYPTION_KEY_PREVIOUS",
    env.ENCRYPTION_KEY_PREVIOUS,
    problems,
    MAX_PREVIOUS_KEYS,
    encryptionKeyProblem,
  );
  if (previousKeys && encryptionKey && !encryptionKeyProblem(encryptionKey)) {
    const primaryId = keyId(encryptionKey);
    previousKeys.forEach((k, i) => {
      if (keyId(k) === primaryId)
        problems.push(
          `ENCRYPTION_KEY_PREVIOUS${previousKeys.length === 1 ? "" : ` (entry ${i + 1} of ${previousKeys.length})`}: the same key as ENCRYPTION_KEY (key id ${primaryId})`,
        );
    });
  }
  const webhookSecrets = secretList("WEBHOOK_SECRET", env.WEBHOOK_SECRET, problems, MAX_LIST_ENTRIES, webhookSecretProblem);
  const adminTokens = secretList("ADMIN_TOKEN", env.ADMIN_TOKEN, problems, MAX_LIST_ENTRIES, tokenProblem);
  const metricsTokens = secretList("METRICS_TOKEN", env.METRICS_TOKEN, problems, MAX_LIST_ENTRIES, tokenProblem);
  const consumerHashes = new Map<string, string>();
  for (const c of consumers) if (c.tokenSha256) consumerHashes.set(c.tokenSha256, c.name);
  if (adminTokens) collidingConsumers("ADMIN_TOKEN", adminTokens, consumerHashes, problems);
  if (metricsTokens) collidingConsumers("METRICS_TOKEN", metricsTokens, consumerHashes, problems);

  const timeoutMs = intVar("BASETEN_TIMEOUT_MS", env.BASETEN_TIMEOUT_MS, 10_000, 50, 30_000, problems);
  const maxAttempts = intVar("BASETEN_MAX_ATTEMPTS", env.BASETEN_MAX_ATTEMPTS, 3, 1, 5, problems);
  const concurrency = intVar("BASETEN_CONCURRENCY", env.BASETEN_CONCURRENCY, 6, 1, 6, problems);
  const inlineBudget = intVar("INLINE_ROTATION_BUDGET", env.INLINE_ROTATION_BUDGET, 20, 0, 10_000, problems);
  if (timeoutMs * maxAttempts > 60_000)
    problems.push("BASETEN_TIMEOUT_MS x BASETEN_MAX_ATTEMPTS: must stay within 60 s so one rotation fits its 90 s lease");

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: {
      apiBase,
      teamId,
      sets,
      consumers,
      basetenApiKey,
      keyring: createKeyring(encryptionKey, previousKeys ?? []),
      webhookSecrets: webhookSecrets ?? [],
      adminTokens: adminTokens ?? [],
      metricsToken: metricsTokens?.[0] ?? null,
      metricsTokens: metricsTokens ?? [],
      events,
      timeoutMs,
      maxAttempts,
      concurrency,
      inlineBudget,
    },
  };
}

// Workers hand the same `env` object to every request of an isolate; tests build
// their own. A WeakMap keeps one parse per env object without ever going stale.
const cache = new WeakMap<object, ConfigResult>();

/** `file`: a rotator.config.json's content instead of the bundled one (the CLI's check). */
export function loadConfig(env: Env, file?: unknown): ConfigResult {
  let result = cache.get(env);
  if (!result) {
    result = parseWithConfigFile(env, parseConfig, file);
    cache.set(env, result);
  }
  return result;
}
