/**
 * Configuration: vars and secrets parsed and validated into one typed Config.
 *
 * Nothing is half-applied: `loadConfig` returns either a complete Config or the full
 * list of problems (each naming the var, the set or consumer, the field and why).
 * The result is cached per `env` object, so the read path parses nothing per request.
 */
import type { Env } from "./env.ts";
import { parseWithConfigFile } from "./config-file.ts";

export interface ModelSetConfig {
  id: string;
  modelIds: string[];
  rotateEveryMs: number;
  overlapMs: number;
  enabled: boolean;
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
  /** base64 of 32 bytes (AES-256-GCM). */
  encryptionKey: string;
  webhookSecret: string | null;
  adminToken: string | null;
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

const SET_FIELDS = new Set(["model_ids", "rotate_every", "overlap", "enabled"]);
const CONSUMER_FIELDS = new Set(["token_sha256", "oidc", "binding", "model_sets"]);
const OIDC_FIELDS = new Set(["issuer", "audience", "subject", "claims"]);
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
    const rotateEveryMs = parseDuration(e.rotate_every);
    if (rotateEveryMs === null) bad('rotate_every must be a duration like "24h", "7d", "15m", "90s" or whole seconds');
    const overlapMs = parseDuration(e.overlap);
    if (overlapMs === null) bad('overlap must be a duration like "1h", "2m" or whole seconds');
    if (overlapMs !== null && overlapMs < MIN_OVERLAP_MS) bad("overlap must be at least 2m (KV serves stale values for up to 60 s and consumers need time to refetch)");
    if (overlapMs !== null && rotateEveryMs !== null && overlapMs >= rotateEveryMs) bad("overlap must be shorter than rotate_every");
    if (e.enabled !== undefined && typeof e.enabled !== "boolean") bad("enabled must be true or false");
    if (ok) {
      sets.set(id, {
        id,
        modelIds: [...(modelIds as string[])],
        rotateEveryMs: rotateEveryMs!,
        overlapMs: overlapMs!,
        enabled: e.enabled !== false,
      });
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
  if (typeof o.issuer !== "string" || !isIssuerUrl(o.issuer)) no("oidc.issuer must be an https: URL (http: only on 127.0.0.1 or localhost with a port), without query or fragment");
  if (typeof o.audience !== "string" || o.audience === "" || o.audience.length > 256) no("oidc.audience must be a non-empty string (at most 256 characters)");
  if (typeof o.subject !== "string" || o.subject === "" || o.subject.length > 256) no("oidc.subject must be a non-empty string (at most 256 characters; * matches any run of characters)");
  const claims: Record<string, string> = {};
  if (o.claims !== undefined) {
    if (typeof o.claims !== "object" || o.claims === null || Array.isArray(o.claims)) no("oidc.claims must be an object of claim name -> exact string value");
    else
      for (const [k, v] of Object.entries(o.claims as Record<string, unknown>)) {
        if (typeof v !== "string") no(`oidc.claims.${k} must be a string`);
        else if (["iss", "aud", "sub", "exp", "nbf", "iat"].includes(k)) no(`oidc.claims.${k}: use issuer, audience or subject (time claims are always checked)`);
        else claims[k] = v;
      }
  }
  return ok ? { issuer: o.issuer as string, audience: o.audience as string, subject: o.subject as string, claims } : null;
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
    if (kinds.length !== 1) bad(`needs exactly one of token_sha256, oidc or "binding": true (found ${kinds.length === 0 ? "none" : kinds.join(" and ")})`);
    else if (kinds[0] === "token_sha256") {
      kind = "token";
      if (typeof hash !== "string" || !SHA256_HEX.test(hash)) bad("token_sha256 must be the lowercase hex SHA-256 of the token (64 characters)");
      else if (seenHashes.has(hash)) bad(`token_sha256 is the same as CONSUMERS.${seenHashes.get(hash)}`);
      else seenHashes.set(hash, name);
    } else if (kinds[0] === "oidc") {
      kind = "oidc";
      oidc = parseOidc(e.oidc, bad);
    } else {
      kind = "binding";
      if (e.binding !== true) bad('binding must be true (a Worker on this account calling over a service binding with props = { consumer = "<name>" })');
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
    if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
      problems.push(`${where}: url must be an http(s) URL`);
      ok = false;
    }
    if (!isWebhookSecret(e.secret)) {
      problems.push(`${where}: secret must be whsec_<base64>`);
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
  if (typeof value !== "string" || !value.startsWith("whsec_")) return false;
  const b64 = value.slice(6);
  if (b64.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  try {
    return atob(b64).length > 0;
  } catch {
    return false;
  }
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
  try {
    const u = new URL(apiBase);
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
  } catch {
    problems.push("BASETEN_API_BASE: must be an http(s) URL");
  }
  const teamId = typeof env.BASETEN_TEAM_ID === "string" ? env.BASETEN_TEAM_ID.trim() : "";
  if (!teamId) problems.push("BASETEN_TEAM_ID: missing");
  else if (!/^[A-Za-z0-9_-]{1,64}$/.test(teamId)) problems.push("BASETEN_TEAM_ID: must be letters, digits, - or _");

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
  else if (decodedLength(encryptionKey) !== 32) problems.push("ENCRYPTION_KEY: must be base64 of exactly 32 bytes");
  const webhookSecret = env.WEBHOOK_SECRET || null;
  if (webhookSecret !== null && !isWebhookSecret(webhookSecret)) problems.push("WEBHOOK_SECRET: must be whsec_<base64>");
  const adminToken = env.ADMIN_TOKEN || null;
  if (adminToken !== null && adminToken.length < 16) problems.push("ADMIN_TOKEN: must be at least 16 characters");

  const timeoutMs = intVar("BASETEN_TIMEOUT_MS", env.BASETEN_TIMEOUT_MS, 10_000, 50, 30_000, problems);
  const maxAttempts = intVar("BASETEN_MAX_ATTEMPTS", env.BASETEN_MAX_ATTEMPTS, 3, 1, 5, problems);
  const concurrency = intVar("BASETEN_CONCURRENCY", env.BASETEN_CONCURRENCY, 6, 1, 6, problems);
  const inlineBudget = intVar("INLINE_ROTATION_BUDGET", env.INLINE_ROTATION_BUDGET, 20, 0, 10_000, problems);
  if (timeoutMs * maxAttempts > 60_000) problems.push("BASETEN_TIMEOUT_MS x BASETEN_MAX_ATTEMPTS: must stay within 60 s so one rotation fits its 90 s lease");

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: { apiBase, teamId, sets, consumers, basetenApiKey, encryptionKey, webhookSecret, adminToken, events, timeoutMs, maxAttempts, concurrency, inlineBudget },
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
