var __defProp = Object.defineProperty;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });

// node_modules/itty-router/index.mjs
var t = /* @__PURE__ */ __name(({ base: e = "", routes: t2 = [], ...o2 } = {}) => ({ __proto__: new Proxy({}, { get: /* @__PURE__ */ __name((o3, r2, a, s) => (o4, ...n) => t2.push([r2.toUpperCase?.(), RegExp(`^${(s = (e + o4).replace(/\/+(\/|$)/g, "$1")).replace(/(\/?\.?):(\w+)\+/g, "($1(?<$2>[^]+))").replace(/(\/?\.?):(\w+)/g, "($1(?<$2>[^$1/]+?))").replace(/\./g, "\\.").replace(/(\/?)\*/g, "($1.*)?")}/*$`), n, s]) && a, "get") }), routes: t2, ...o2, async fetch(e2, ...r2) {
  let a, s, n = new URL(e2.url), c = e2.query = { __proto__: null };
  for (let [e3, t3] of n.searchParams) c[e3] = c[e3] ? [].concat(c[e3], t3) : t3;
  e: try {
    for (let t3 of o2.before || []) if (null != (a = await t3(e2.proxy ?? e2, ...r2))) break e;
    t: for (let [o3, c2, l2, i] of t2) if ((o3 == e2.method || "ALL" == o3) && (s = n.pathname.match(c2))) {
      e2.params = s.groups || {}, e2.route = i;
      for (let t3 of l2) if (null != (a = await t3(e2.proxy ?? e2, ...r2))) break t;
    }
  } catch (t3) {
    if (!o2.catch) throw t3;
    a = await o2.catch(t3, e2.proxy ?? e2, ...r2);
  }
  try {
    for (let t3 of o2.finally || []) a = await t3(a, e2.proxy ?? e2, ...r2) ?? a;
  } catch (t3) {
    if (!o2.catch) throw t3;
    a = await o2.catch(t3, e2.proxy ?? e2, ...r2);
  }
  return a;
} }), "t");
var o = /* @__PURE__ */ __name((e = "text/plain; charset=utf-8", t2) => (o2, r2 = {}) => {
  if (void 0 === o2 || o2 instanceof Response) return o2;
  const a = new Response(t2?.(o2) ?? o2, r2.url ? void 0 : r2);
  return a.headers.set("content-type", e), a;
}, "o");
var r = o("application/json; charset=utf-8", JSON.stringify);
var l = class extends Error {
  static {
    __name(this, "l");
  }
  status;
  constructor(e = 500, t2) {
    super("object" == typeof t2 ? t2.error : t2), "object" == typeof t2 && Object.assign(this, t2), this.status = e;
  }
};
var p = o("text/plain; charset=utf-8", String);
var f = o("text/html");
var u = o("image/jpeg");
var h = o("image/png");
var g = o("image/webp");

// src/config.ts
var SET_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
var MODEL_ID = /^[A-Za-z0-9_-]{1,64}$/;
var CONSUMER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
var SHA256_HEX = /^[0-9a-f]{64}$/;
var MIN_OVERLAP_MS = 12e4;
var EVENT_TYPES = ["key.rotated", "key.revoked", "rotation.failed"];
var SET_FIELDS = /* @__PURE__ */ new Set(["model_ids", "rotate_every", "overlap", "enabled"]);
var CONSUMER_FIELDS = /* @__PURE__ */ new Set(["token_sha256", "model_sets"]);
var DURATION_UNITS = { s: 1e3, m: 6e4, h: 36e5, d: 864e5 };
function parseDuration(value) {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value * 1e3 : null;
  if (typeof value !== "string") return null;
  const m = /^(\d{1,9})([smhd]?)$/.exec(value.trim());
  if (!m) return null;
  const n = Number(m[1]);
  if (n <= 0) return null;
  return n * (DURATION_UNITS[m[2] || "s"] ?? 1e3);
}
__name(parseDuration, "parseDuration");
function parseObjectVar(name, value, problems, required) {
  if (value === void 0 || value === null || value === "") {
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
  return parsed;
}
__name(parseObjectVar, "parseObjectVar");
function parseSets(raw, problems) {
  const sets = /* @__PURE__ */ new Map();
  for (const [id, entry] of Object.entries(raw)) {
    const where = `MODEL_SETS.${id}`;
    let ok = true;
    const bad = /* @__PURE__ */ __name((msg) => {
      problems.push(`${where}: ${msg}`);
      ok = false;
    }, "bad");
    if (!SET_ID.test(id)) bad("set id must match ^[a-z0-9][a-z0-9-]{0,31}$");
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      bad("must be an object");
      continue;
    }
    const e = entry;
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
    if (e.enabled !== void 0 && typeof e.enabled !== "boolean") bad("enabled must be true or false");
    if (ok) {
      sets.set(id, {
        id,
        modelIds: [...modelIds],
        rotateEveryMs,
        overlapMs,
        enabled: e.enabled !== false
      });
    }
  }
  return sets;
}
__name(parseSets, "parseSets");
function parseConsumers(raw, setIds, problems) {
  const consumers = [];
  const seenHashes = /* @__PURE__ */ new Map();
  for (const [name, entry] of Object.entries(raw)) {
    const where = `CONSUMERS.${name}`;
    let ok = true;
    const bad = /* @__PURE__ */ __name((msg) => {
      problems.push(`${where}: ${msg}`);
      ok = false;
    }, "bad");
    if (!CONSUMER_NAME.test(name)) bad("consumer name must be 1-64 letters, digits, '.', '_' or '-'");
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      bad("must be an object");
      continue;
    }
    const e = entry;
    for (const field of Object.keys(e)) if (!CONSUMER_FIELDS.has(field)) bad(`unknown field "${field}"`);
    const hash = e.token_sha256;
    if (typeof hash !== "string" || !SHA256_HEX.test(hash)) bad("token_sha256 must be the lowercase hex SHA-256 of the token (64 characters)");
    else if (seenHashes.has(hash)) bad(`token_sha256 is the same as CONSUMERS.${seenHashes.get(hash)}`);
    else seenHashes.set(hash, name);
    const grants = e.model_sets;
    if (!Array.isArray(grants) || !grants.every((s) => typeof s === "string")) bad("model_sets must be an array of set ids");
    else if (setIds) {
      for (const s of grants) if (!setIds.has(s)) bad(`model_sets names "${s}", which is not in MODEL_SETS`);
    }
    if (ok) consumers.push({ name, tokenSha256: hash, modelSets: [...new Set(grants)] });
  }
  return consumers;
}
__name(parseConsumers, "parseConsumers");
function parseEvents(value, problems) {
  if (value === void 0 || value === null || value === "") return [];
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
  const out = [];
  parsed.forEach((entry, i) => {
    const where = `EVENT_WEBHOOKS[${i}]`;
    if (typeof entry !== "object" || entry === null) return void problems.push(`${where}: must be an object`);
    const e = entry;
    let ok = true;
    let url = null;
    try {
      url = new URL(String(e.url));
    } catch {
    }
    if (!url || url.protocol !== "https:" && url.protocol !== "http:") {
      problems.push(`${where}: url must be an http(s) URL`);
      ok = false;
    }
    if (!isWebhookSecret(e.secret)) {
      problems.push(`${where}: secret must be whsec_<base64>`);
      ok = false;
    }
    const events = e.events ?? [];
    if (!Array.isArray(events) || !events.every((t2) => EVENT_TYPES.includes(t2))) {
      problems.push(`${where}: events must be a list of ${EVENT_TYPES.join(", ")}`);
      ok = false;
    }
    if (ok) out.push({ url: url.toString(), secret: e.secret, events });
  });
  return out;
}
__name(parseEvents, "parseEvents");
function isWebhookSecret(value) {
  if (typeof value !== "string" || !value.startsWith("whsec_")) return false;
  const b64 = value.slice(6);
  if (b64.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  try {
    return atob(b64).length > 0;
  } catch {
    return false;
  }
}
__name(isWebhookSecret, "isWebhookSecret");
function decodedLength(b64) {
  try {
    return atob(b64).length;
  } catch {
    return -1;
  }
}
__name(decodedLength, "decodedLength");
function intVar(name, value, fallback, min, max, problems) {
  if (value === void 0 || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${name}: must be a whole number from ${min} to ${max}`);
    return fallback;
  }
  return n;
}
__name(intVar, "intVar");
function parseConfig(env) {
  const problems = [];
  const apiBase = (env.BASETEN_API_BASE || "https://api.baseten.co").replace(/\/+$/, "");
  try {
    const u2 = new URL(apiBase);
    if (u2.protocol !== "https:" && u2.protocol !== "http:") throw new Error();
  } catch {
    problems.push("BASETEN_API_BASE: must be an http(s) URL");
  }
  const teamId = typeof env.BASETEN_TEAM_ID === "string" ? env.BASETEN_TEAM_ID.trim() : "";
  if (!teamId) problems.push("BASETEN_TEAM_ID: missing");
  else if (!/^[A-Za-z0-9_-]{1,64}$/.test(teamId)) problems.push("BASETEN_TEAM_ID: must be letters, digits, - or _");
  const rawSets = parseObjectVar("MODEL_SETS", env.MODEL_SETS, problems, true);
  const sets = rawSets ? parseSets(rawSets, problems) : /* @__PURE__ */ new Map();
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
  const timeoutMs = intVar("BASETEN_TIMEOUT_MS", env.BASETEN_TIMEOUT_MS, 1e4, 50, 3e4, problems);
  const maxAttempts = intVar("BASETEN_MAX_ATTEMPTS", env.BASETEN_MAX_ATTEMPTS, 3, 1, 5, problems);
  const concurrency = intVar("BASETEN_CONCURRENCY", env.BASETEN_CONCURRENCY, 6, 1, 6, problems);
  const inlineBudget = intVar("INLINE_ROTATION_BUDGET", env.INLINE_ROTATION_BUDGET, 20, 0, 1e4, problems);
  if (timeoutMs * maxAttempts > 6e4) problems.push("BASETEN_TIMEOUT_MS x BASETEN_MAX_ATTEMPTS: must stay within 60 s so one rotation fits its 90 s lease");
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: { apiBase, teamId, sets, consumers, basetenApiKey, encryptionKey, webhookSecret, adminToken, events, timeoutMs, maxAttempts, concurrency, inlineBudget }
  };
}
__name(parseConfig, "parseConfig");
var cache = /* @__PURE__ */ new WeakMap();
function loadConfig(env) {
  let result = cache.get(env);
  if (!result) {
    result = parseConfig(env);
    cache.set(env, result);
  }
  return result;
}
__name(loadConfig, "loadConfig");

// src/http.ts
function fail(status, code, message, headers) {
  throw new l(status, { error: code, message, headers });
}
__name(fail, "fail");
function json(body, status = 200, headers) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}
__name(json, "json");
var NO_STORE = { "cache-control": "no-store" };
function errorResponse(err) {
  if (err instanceof l) {
    const e = err;
    return json({ error: e.error ?? "error", message: e.message }, e.status, e.headers);
  }
  console.error(JSON.stringify({ level: "error", event: "http.unhandled", error: err instanceof Error ? err.name : "unknown" }));
  return json({ error: "internal", message: "internal error" }, 500);
}
__name(errorResponse, "errorResponse");
function bearerToken(request) {
  const header = request.headers.get("authorization");
  if (!header) return null;
  const m = /^Bearer +([A-Za-z0-9._~+/=-]{1,512})$/i.exec(header);
  return m ? m[1] : null;
}
__name(bearerToken, "bearerToken");

// src/crypto.ts
var encoder = new TextEncoder();
var decoder = new TextDecoder();
function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}
__name(toBase64, "toBase64");
function fromBase64(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
__name(fromBase64, "fromBase64");
function toHex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
__name(toHex, "toHex");
async function sha256Hex(text) {
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}
__name(sha256Hex, "sha256Hex");
function timingSafeEqual(a, b) {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}
__name(timingSafeEqual, "timingSafeEqual");
function randomId(length) {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let s = "";
  for (const b of bytes) s += alphabet[b % 36];
  return s;
}
__name(randomId, "randomId");
var aesKeys = /* @__PURE__ */ new Map();
function aesKey(secretB64) {
  let key = aesKeys.get(secretB64);
  if (!key) {
    key = crypto.subtle.importKey("raw", fromBase64(secretB64), "AES-GCM", false, ["encrypt", "decrypt"]);
    aesKeys.set(secretB64, key);
  }
  return key;
}
__name(aesKey, "aesKey");
async function seal(secretB64, plaintext, aad) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(aad) }, await aesKey(secretB64), encoder.encode(plaintext));
  const out = new Uint8Array(12 + ct.byteLength);
  out.set(iv, 0);
  out.set(new Uint8Array(ct), 12);
  return toBase64(out);
}
__name(seal, "seal");
async function open(secretB64, sealed, aad) {
  const bytes = fromBase64(sealed);
  const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.subarray(0, 12), additionalData: encoder.encode(aad) }, await aesKey(secretB64), bytes.subarray(12));
  return decoder.decode(pt);
}
__name(open, "open");
var hmacKeys = /* @__PURE__ */ new Map();
function hmacKey(secret) {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", fromBase64(secret.slice("whsec_".length)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    hmacKeys.set(secret, key);
  }
  return key;
}
__name(hmacKey, "hmacKey");
async function signWebhook(secret, id, timestamp, body) {
  const raw = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${id}.${timestamp}.`);
  const data = new Uint8Array(prefix.length + raw.length);
  data.set(prefix, 0);
  data.set(raw, prefix.length);
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), data);
  return `v1,${toBase64(new Uint8Array(mac))}`;
}
__name(signWebhook, "signWebhook");

// src/ledger.ts
var ROW_COLUMNS = "model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at";
var LEASE_HELD = "EXISTS (SELECT 1 FROM sets WHERE model_set = ?1 AND lease_holder = ?2)";
async function acquire(db, set, holder, now, leaseMs, mint) {
  const statements = [
    db.prepare(
      `INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (model_set) DO UPDATE SET lease_holder = excluded.lease_holder, lease_expires_at = excluded.lease_expires_at
         WHERE sets.lease_holder IS NULL OR sets.lease_expires_at <= ?4`
    ).bind(set, holder, now + leaseMs, now),
    db.prepare("SELECT lease_holder, lease_expires_at FROM sets WHERE model_set = ?1").bind(set)
  ];
  if (mint) {
    statements.push(
      db.prepare(
        `INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, created_at)
           SELECT ?1, g, 'pending', 'bkr-' || ?1 || '-' || g || '-' || ?3, ?4, ?5, ?6
           FROM (SELECT COALESCE(MAX(generation), 0) + 1 AS g FROM keys WHERE model_set = ?1)
           WHERE ${LEASE_HELD}
             AND NOT EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND state = 'pending' AND created_at > ?6 - ?8)
             AND (?7 = 0 OR NOT EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND state = 'current' AND refresh_at > ?6))
           RETURNING generation, name`
      ).bind(set, holder, mint.suffix, JSON.stringify(mint.modelIds), mint.overlapMs, now, mint.onlyIfDue ? 1 : 0, leaseMs)
    );
  }
  statements.push(db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE model_set = ?1 AND state IN ('pending', 'current', 'previous') ORDER BY generation`).bind(set));
  const results = await db.batch(statements);
  const lease = results[1].results[0];
  if (!lease || lease.lease_holder !== holder) return { leased: false, leaseExpiresAt: lease?.lease_expires_at ?? now };
  const pending = mint ? results[2].results[0] ?? null : null;
  return { leased: true, pending, rows: results[results.length - 1].results };
}
__name(acquire, "acquire");
async function promote(db, p2) {
  const stillPending = `EXISTS (SELECT 1 FROM keys WHERE model_set = ?1 AND generation = ?3 AND state = 'pending')`;
  const results = await db.batch([
    db.prepare(
      `UPDATE keys SET state = 'previous', replaced_at = ?4, expires_at = ?5
         WHERE model_set = ?1 AND state = 'current' AND generation = ?6 AND ${LEASE_HELD} AND ${stillPending}`
    ).bind(p2.set, p2.holder, p2.generation, p2.createdAt, p2.replaced?.expiresAt ?? 0, p2.replaced?.generation ?? -1),
    db.prepare(
      `UPDATE keys SET state = 'current', prefix = ?3, ciphertext = ?4, created_at = ?5, refresh_at = ?6, expires_at = ?7
         WHERE model_set = ?1 AND generation = ?8 AND state = 'pending' AND ${LEASE_HELD}`
    ).bind(p2.set, p2.holder, p2.prefix, p2.ciphertext, p2.createdAt, p2.refreshAt, p2.expiresAt, p2.generation),
    db.prepare(
      `INSERT INTO audit (model_set, generation, action, trigger, reason, at)
         SELECT ?1, ?3, 'minted', ?4, ?5, ?6 WHERE changes() > 0`
    ).bind(p2.set, p2.holder, p2.generation, p2.trigger, p2.reason, p2.createdAt)
  ]);
  return (results[1].meta.changes ?? 0) > 0;
}
__name(promote, "promote");
async function currentRow(db, set) {
  return db.prepare(`SELECT ${ROW_COLUMNS}, ciphertext FROM keys WHERE model_set = ?1 AND state = 'current'`).bind(set).first();
}
__name(currentRow, "currentRow");
async function liveRows(db) {
  const { results } = await db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE state IN ('pending', 'current', 'previous')`).all();
  return results;
}
__name(liveRows, "liveRows");
async function rowsByName(db, names) {
  if (names.length === 0) return [];
  const out = [];
  for (let i = 0; i < names.length; i += 90) {
    const chunk = names.slice(i, i + 90);
    const { results } = await db.prepare(`SELECT ${ROW_COLUMNS} FROM keys WHERE name IN (${chunk.map((_, j) => `?${j + 1}`).join(", ")})`).bind(...chunk).all();
    out.push(...results);
  }
  return out;
}
__name(rowsByName, "rowsByName");
async function markRevoked(db, set, generation, now, trigger, reason) {
  await db.batch([
    db.prepare("UPDATE keys SET state = 'revoked', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'previous'").bind(set, generation, now),
    db.prepare("INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'revoked', ?4, ?5, ?3 WHERE changes() > 0").bind(set, generation, now, trigger, reason)
  ]);
}
__name(markRevoked, "markRevoked");
async function markAbandoned(db, set, generation, now, trigger, reason) {
  await db.batch([
    db.prepare("UPDATE keys SET state = 'abandoned', revoked_at = ?3 WHERE model_set = ?1 AND generation = ?2 AND state = 'pending'").bind(set, generation, now),
    db.prepare("INSERT INTO audit (model_set, generation, action, trigger, reason, at) SELECT ?1, ?2, 'abandoned', ?4, ?5, ?3 WHERE changes() > 0").bind(set, generation, now, trigger, reason)
  ]);
}
__name(markAbandoned, "markAbandoned");
async function extendExpiry(db, set, generation, expiresAt) {
  await db.prepare("UPDATE keys SET expires_at = MAX(COALESCE(expires_at, 0), ?3) WHERE model_set = ?1 AND generation = ?2").bind(set, generation, expiresAt).run();
}
__name(extendExpiry, "extendExpiry");
async function retireCurrent(db, set, holder, generation, expiresAt, now) {
  await db.prepare(`UPDATE keys SET state = 'previous', replaced_at = ?4, expires_at = MAX(COALESCE(expires_at, 0), ?5) WHERE model_set = ?1 AND generation = ?3 AND state = 'current' AND ${LEASE_HELD}`).bind(set, holder, generation, now, expiresAt).run();
}
__name(retireCurrent, "retireCurrent");
async function release(db, set, holder, run) {
  await db.prepare(
    `UPDATE sets SET lease_holder = NULL, lease_expires_at = 0, last_trigger = ?3, last_outcome = ?4, last_error = ?5, last_run_at = ?6
       WHERE model_set = ?1 AND lease_holder = ?2`
  ).bind(set, holder, run.trigger, run.outcome, run.error, run.at).run();
}
__name(release, "release");
async function setStatuses(db) {
  const { results } = await db.prepare("SELECT model_set, last_trigger, last_outcome, last_error, last_run_at FROM sets ORDER BY model_set").all();
  return results;
}
__name(setStatuses, "setStatuses");
async function claimReceipt(db, webhookId, now, staleMs) {
  const [claim, read] = await db.batch([
    db.prepare(
      `INSERT INTO webhook_receipts (webhook_id, status, body, received_at) VALUES (?1, 0, '', ?2)
         ON CONFLICT (webhook_id) DO UPDATE SET received_at = excluded.received_at
         WHERE webhook_receipts.status = 0 AND webhook_receipts.received_at <= ?3`
    ).bind(webhookId, now, now - staleMs),
    db.prepare("SELECT status, body, received_at FROM webhook_receipts WHERE webhook_id = ?1").bind(webhookId)
  ]);
  if ((claim.meta.changes ?? 0) > 0) return { kind: "claimed" };
  const row = read.results[0];
  if (row && row.status !== 0) return { kind: "stored", status: row.status, body: row.body };
  return { kind: "in_progress", since: row?.received_at ?? now };
}
__name(claimReceipt, "claimReceipt");
async function storeReceipt(db, webhookId, claimedAt, status, body, pruneBefore) {
  await db.batch([
    db.prepare("UPDATE webhook_receipts SET status = ?2, body = ?3 WHERE webhook_id = ?1 AND status = 0 AND received_at = ?4").bind(webhookId, status, body, claimedAt),
    // Bounded work per insert, and more than one row per insert, so the table drains itself.
    db.prepare("DELETE FROM webhook_receipts WHERE webhook_id IN (SELECT webhook_id FROM webhook_receipts WHERE received_at < ?1 ORDER BY received_at LIMIT 10)").bind(pruneBefore)
  ]);
}
__name(storeReceipt, "storeReceipt");
async function releaseReceipt(db, webhookId, claimedAt) {
  await db.prepare("DELETE FROM webhook_receipts WHERE webhook_id = ?1 AND status = 0 AND received_at = ?2").bind(webhookId, claimedAt).run();
}
__name(releaseReceipt, "releaseReceipt");
async function recordDeliveryFailure(db, f2) {
  await db.prepare(
    `INSERT INTO event_deliveries (subscriber, origin, failed_at, failed_event_id, failed_event_type, failed_model_set, failed_generation, failed_attempts, failed_error)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
       ON CONFLICT (subscriber) DO UPDATE SET origin = excluded.origin, failed_at = excluded.failed_at, failed_event_id = excluded.failed_event_id,
         failed_event_type = excluded.failed_event_type, failed_model_set = excluded.failed_model_set, failed_generation = excluded.failed_generation,
         failed_attempts = excluded.failed_attempts, failed_error = excluded.failed_error`
  ).bind(f2.subscriber, f2.origin, f2.at, f2.eventId, f2.eventType, f2.modelSet, f2.generation, f2.attempts, f2.error).run();
}
__name(recordDeliveryFailure, "recordDeliveryFailure");
async function recordDeliverySuccess(db, subscriber, at) {
  await db.prepare("UPDATE event_deliveries SET last_success_at = MAX(COALESCE(last_success_at, 0), ?2) WHERE subscriber = ?1").bind(subscriber, at).run();
}
__name(recordDeliverySuccess, "recordDeliverySuccess");
async function deliveryFailures(db) {
  const { results } = await db.prepare("SELECT * FROM event_deliveries WHERE failed_at IS NOT NULL ORDER BY failed_at DESC").all();
  return results;
}
__name(deliveryFailures, "deliveryFailures");

// src/status.ts
var iso = /* @__PURE__ */ __name((ms) => ms === null || ms === void 0 ? null : new Date(ms).toISOString(), "iso");
async function buildStatus(db, config, configProblems) {
  const [rows, runs, failures] = await Promise.all([liveRows(db), setStatuses(db), deliveryFailures(db)]);
  const ids = /* @__PURE__ */ new Set([...config?.sets.keys() ?? [], ...rows.map((r2) => r2.model_set)]);
  const runBySet = new Map(runs.map((r2) => [r2.model_set, r2]));
  const sets = [...ids].sort().map((id) => {
    const cfg = config?.sets.get(id);
    const mine = rows.filter((r2) => r2.model_set === id);
    const current = mine.find((r2) => r2.state === "current");
    const run = runBySet.get(id);
    return {
      model_set: id,
      configured: config ? cfg !== void 0 : null,
      enabled: config ? cfg?.enabled === true : null,
      model_ids: cfg?.modelIds ?? (current ? JSON.parse(current.model_ids) : []),
      generation: current?.generation ?? null,
      prefix: current?.prefix ?? null,
      created_at: iso(current?.created_at),
      refresh_at: iso(current?.refresh_at),
      expires_at: iso(current?.expires_at),
      previous: mine.filter((r2) => r2.state === "previous").sort((a, b) => b.generation - a.generation).map((r2) => ({ generation: r2.generation, prefix: r2.prefix, expires_at: iso(r2.expires_at) })),
      pending: mine.find((r2) => r2.state === "pending")?.generation ?? null,
      last_run: run?.last_outcome ? { trigger: run.last_trigger ?? "", outcome: run.last_outcome, error: run.last_error, at: iso(run.last_run_at) } : null
    };
  });
  return {
    sets,
    config_problems: configProblems,
    event_failures: failures.map((f2) => ({
      subscriber: f2.origin,
      event_id: f2.failed_event_id,
      event_type: f2.failed_event_type,
      model_set: f2.failed_model_set,
      generation: f2.failed_generation,
      attempts: f2.failed_attempts,
      error: f2.failed_error,
      at: iso(f2.failed_at),
      last_success_at: iso(f2.last_success_at)
    }))
  };
}
__name(buildStatus, "buildStatus");

// src/log.ts
function log(level, event, fields = {}) {
  const line = JSON.stringify({ level, event, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}
__name(log, "log");
function redactSecrets(text) {
  return text.replace(/[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{12,}/g, "[redacted]");
}
__name(redactSecrets, "redactSecrets");

// src/events.ts
var DELIVERY_DEFAULTS = {
  attempts: 3,
  backoffMs: 300,
  // 3 x 5 s + backoff stays well inside the 30 s waitUntil grants after the response.
  timeoutMs: 5e3,
  fetch: /* @__PURE__ */ __name((input, init) => fetch(input, init), "fetch"),
  sleep: /* @__PURE__ */ __name((ms) => new Promise((r2) => setTimeout(r2, ms)), "sleep"),
  now: Date.now
};
function eventPayload(event) {
  return {
    type: event.type,
    timestamp: new Date(event.at).toISOString(),
    data: { model_set: event.model_set, generation: event.generation, trigger: event.trigger, ...event.data }
  };
}
__name(eventPayload, "eventPayload");
var wants = /* @__PURE__ */ __name((sub, type) => sub.events.length === 0 || sub.events.includes(type), "wants");
var subscriberOrigin = /* @__PURE__ */ __name((url) => new URL(url).origin, "subscriberOrigin");
function deliverEvents(config, db, events, ctx, options = {}) {
  if (config.events.length === 0 || events.length === 0) return;
  const opts = { ...DELIVERY_DEFAULTS, ...options };
  const jobs = [];
  for (const event of events) {
    const id = `evt_${randomId(24)}`;
    const body = JSON.stringify(eventPayload(event));
    for (const sub of config.events) if (wants(sub, event.type)) jobs.push(deliver(sub, id, event, body, db, opts));
  }
  if (jobs.length > 0) ctx.waitUntil(Promise.allSettled(jobs).then(() => void 0));
}
__name(deliverEvents, "deliverEvents");
function dispatchRunEvents(config, db, results, ctx, options = {}) {
  const events = results.flatMap((r2) => r2.outcome === "busy" ? [] : r2.events);
  deliverEvents(config, db, events, ctx, options);
}
__name(dispatchRunEvents, "dispatchRunEvents");
async function deliver(sub, id, event, body, db, opts) {
  let error = "";
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    if (attempt > 1) await opts.sleep(opts.backoffMs * 2 ** (attempt - 2));
    error = await attemptOnce(sub, id, body, opts);
    if (error === "") {
      if (db) await recordDeliverySuccess(db, await sha256Hex(sub.url), opts.now()).catch(() => {
      });
      return;
    }
  }
  const origin = subscriberOrigin(sub.url);
  log("warn", "event.delivery_failed", { subscriber: origin, event_id: id, event_type: event.type, model_set: event.model_set, generation: event.generation, attempts: opts.attempts, error });
  if (!db) return;
  await recordDeliveryFailure(db, {
    subscriber: await sha256Hex(sub.url),
    origin,
    at: opts.now(),
    eventId: id,
    eventType: event.type,
    modelSet: event.model_set,
    generation: event.generation,
    attempts: opts.attempts,
    error
  }).catch((err) => log("warn", "event.record_failed", { subscriber: origin, error: redactSecrets(String(err)).slice(0, 200) }));
}
__name(deliver, "deliver");
async function attemptOnce(sub, id, body, opts) {
  const timestamp = Math.floor(Date.now() / 1e3);
  try {
    const res = await opts.fetch(sub.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "baseten-key-rotator",
        "webhook-id": id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": await signWebhook(sub.secret, id, timestamp, body)
      },
      body,
      // A redirect would send the signed event somewhere the operator did not configure.
      redirect: "manual",
      signal: AbortSignal.timeout(opts.timeoutMs)
    });
    await res.body?.cancel().catch(() => {
    });
    return res.status >= 200 && res.status < 300 ? "" : `HTTP ${res.status}`;
  } catch (err) {
    if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return `timeout after ${opts.timeoutMs} ms`;
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return redactSecrets(text.replaceAll(sub.url, subscriberOrigin(sub.url))).slice(0, 200);
  }
}
__name(attemptOnce, "attemptOnce");

// src/baseten.ts
var UpstreamError = class extends Error {
  constructor(op, kind, status, message, maybeApplied) {
    super(message);
    this.op = op;
    this.kind = kind;
    this.status = status;
    this.maybeApplied = maybeApplied;
  }
  op;
  kind;
  status;
  maybeApplied;
  static {
    __name(this, "UpstreamError");
  }
  name = "UpstreamError";
};
var BASE_DELAY_MS = 200;
var MAX_DELAY_MS = 5e3;
var defaultSleep = /* @__PURE__ */ __name((ms) => new Promise((r2) => setTimeout(r2, ms)), "defaultSleep");
var Semaphore = class {
  constructor(limit) {
    this.limit = limit;
  }
  limit;
  static {
    __name(this, "Semaphore");
  }
  active = 0;
  waiting = [];
  async run(fn) {
    if (this.active >= this.limit) await new Promise((r2) => this.waiting.push(r2));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
};
function redact(text, apiKey) {
  let out = text.slice(0, 300);
  if (apiKey) out = out.split(apiKey).join("[redacted]");
  return redactSecrets(out);
}
__name(redact, "redact");
function retryAfterMs(res, body) {
  const fromBody = body?.retry_after;
  if (typeof fromBody === "number" && Number.isFinite(fromBody) && fromBody >= 0) return fromBody * 1e3;
  const header = res.headers.get("retry-after");
  if (header) {
    const secs = Number(header);
    if (Number.isFinite(secs) && secs >= 0) return secs * 1e3;
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, at - Date.now());
  }
  return null;
}
__name(retryAfterMs, "retryAfterMs");
var BasetenClient = class {
  constructor(opts) {
    this.opts = opts;
    this.gate = new Semaphore(opts.concurrency);
    this.doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
    this.sleep = opts.sleep ?? defaultSleep;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }
  opts;
  static {
    __name(this, "BasetenClient");
  }
  gate;
  doFetch;
  sleep;
  random;
  now;
  /** Mints a WORKSPACE_INVOKE key named `name` for `modelIds`. */
  async mint(name, modelIds, deadline) {
    const url = `${this.opts.apiBase}/v1/teams/${encodeURIComponent(this.opts.teamId)}/api_keys`;
    const body = JSON.stringify({ name, type: "WORKSPACE_INVOKE", model_ids: modelIds });
    const { json: json2 } = await this.call("mint", "POST", url, body, deadline);
    const apiKey = json2?.api_key;
    const dot = typeof apiKey === "string" ? apiKey.indexOf(".") : -1;
    if (typeof apiKey !== "string" || dot <= 0 || dot === apiKey.length - 1) {
      throw new UpstreamError("mint", "malformed", 200, "mint answered 200 without a usable api_key", true);
    }
    return { apiKey, prefix: apiKey.slice(0, dot) };
  }
  /** Every non-revoked key of the management key's user. */
  async list(deadline) {
    const { json: json2 } = await this.call("list", "GET", `${this.opts.apiBase}/v1/api_keys`, void 0, deadline);
    const keys = json2?.keys;
    if (!Array.isArray(keys)) throw new UpstreamError("list", "malformed", 200, "list answered 200 without a keys array", false);
    return keys.filter((k) => typeof k === "object" && k !== null && typeof k.prefix === "string");
  }
  /** Deletes a key by prefix. "gone" when Baseten no longer knows it (404): already deleted. */
  async revoke(prefix, deadline) {
    const url = `${this.opts.apiBase}/v1/api_keys/${encodeURIComponent(prefix)}`;
    const { status } = await this.call("revoke", "DELETE", url, void 0, deadline, [404]);
    return status === 404 ? "gone" : "revoked";
  }
  async call(op, method, url, body, deadline = Infinity, okStatuses = []) {
    let maybeApplied = false;
    let last = null;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      const remaining = deadline - this.now();
      if (remaining <= 0) break;
      let res;
      try {
        this.opts.onAttempt?.(op);
        res = await this.gate.run(
          () => this.doFetch(url, {
            method,
            body,
            headers: { authorization: `Api-Key ${this.opts.apiKey}`, "content-type": "application/json", accept: "application/json" },
            signal: AbortSignal.timeout(Math.min(this.opts.timeoutMs, remaining))
          })
        );
      } catch (err) {
        const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
        maybeApplied = maybeApplied || method !== "GET";
        last = new UpstreamError(op, timedOut ? "timeout" : "network", null, `${op}: ${timedOut ? `no answer within ${this.opts.timeoutMs} ms` : "network error"}`, maybeApplied);
        if (!await this.backoff(attempt, null, deadline)) break;
        continue;
      }
      const text = await res.text().catch(() => "");
      let json2 = null;
      try {
        json2 = text ? JSON.parse(text) : null;
      } catch {
        json2 = void 0;
      }
      if (res.ok || okStatuses.includes(res.status)) {
        if (json2 === void 0 || json2 === null && res.ok) {
          throw new UpstreamError(op, "malformed", res.status, `${op}: answered ${res.status} with a body that is not JSON`, true);
        }
        return { status: res.status, json: json2 };
      }
      const upstreamText = redact(typeof json2?.error === "string" ? json2.error : text, this.opts.apiKey);
      const message = `${op}: Baseten answered ${res.status}${upstreamText ? `: ${upstreamText}` : ""}`;
      if (res.status === 429) {
        last = new UpstreamError(op, "rate_limited", 429, message, maybeApplied);
        if (!await this.backoff(attempt, retryAfterMs(res, json2), deadline)) break;
        continue;
      }
      if (res.status >= 500) {
        maybeApplied = maybeApplied || method !== "GET";
        last = new UpstreamError(op, "server", res.status, message, maybeApplied);
        if (!await this.backoff(attempt, retryAfterMs(res, json2), deadline)) break;
        continue;
      }
      throw new UpstreamError(op, "client", res.status, message, maybeApplied);
    }
    throw last ?? new UpstreamError(op, "timeout", null, `${op}: deadline reached before an attempt could be made`, maybeApplied);
  }
  /**
   * Sleeps before the next attempt. Returns false when there is none: attempts are used
   * up, or the wait (a server's retry hint included) would not fit before the deadline.
   */
  async backoff(attempt, hintMs, deadline) {
    if (attempt >= this.opts.maxAttempts) return false;
    const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
    const jittered = Math.floor(this.random() * cap);
    const wait = hintMs === null ? jittered : Math.max(hintMs, jittered);
    if (this.now() + wait >= deadline) return false;
    await this.sleep(wait);
    return true;
  }
};

// src/document.ts
var TICK_MS = 6e4;
var KV_STALENESS_MS = 6e4;
var MEMORY_TTL_MS = 5e3;
var MAX_STALENESS_MS = KV_STALENESS_MS + MEMORY_TTL_MS;
function nextAttempt(now) {
  return (Math.floor(now / TICK_MS) + 1) * TICK_MS;
}
__name(nextAttempt, "nextAttempt");
function keyDocument(key, now) {
  let refreshAt = key.refresh_at;
  let expiresAt = key.expires_at;
  if (now >= refreshAt) {
    refreshAt = nextAttempt(now);
    expiresAt = Math.max(expiresAt, refreshAt + key.overlap_ms);
  }
  return {
    model_set: key.model_set,
    model_ids: key.model_ids,
    api_key: key.api_key,
    generation: key.generation,
    created_at: new Date(key.created_at).toISOString(),
    refresh_at: new Date(refreshAt).toISOString(),
    expires_at: new Date(expiresAt).toISOString()
  };
}
__name(keyDocument, "keyDocument");
function replacedExpiry(key, replacedAt) {
  const lastServed = replacedAt + MAX_STALENESS_MS;
  const overdueBound = lastServed >= key.refresh_at ? nextAttempt(lastServed) + key.overlap_ms : 0;
  return Math.max(key.expires_at, replacedAt + key.overlap_ms, overdueBound);
}
__name(replacedExpiry, "replacedExpiry");
function staleServedExpiry(key, now) {
  return replacedExpiry(key, now);
}
__name(staleServedExpiry, "staleServedExpiry");

// src/cache.ts
var kvKey = /* @__PURE__ */ __name((set) => `key:${set}`, "kvKey");
var KV_PREFIX = "key:";
async function decryptEntry(encryptionKey, entry) {
  const { ct, v: _v, ...rest } = entry;
  return { ...rest, api_key: await open(encryptionKey, ct, `${entry.model_set}:${entry.generation}`) };
}
__name(decryptEntry, "decryptEntry");
async function writeCache(kv, entry) {
  memoryOf(kv).delete(entry.model_set);
  await kv.put(kvKey(entry.model_set), JSON.stringify(entry), { metadata: { g: entry.generation } });
}
__name(writeCache, "writeCache");
async function dropCache(kv, set) {
  memoryOf(kv).delete(set);
  await kv.delete(kvKey(set));
}
__name(dropCache, "dropCache");
async function cachedGeneration(kv, set) {
  const { metadata } = await kv.getWithMetadata(kvKey(set), { type: "stream" });
  return typeof metadata?.g === "number" ? metadata.g : null;
}
__name(cachedGeneration, "cachedGeneration");
async function cachedGenerations(kv) {
  const out = /* @__PURE__ */ new Map();
  let cursor;
  do {
    const page = await kv.list({ prefix: KV_PREFIX, cursor });
    for (const k of page.keys) if (typeof k.metadata?.g === "number") out.set(k.name.slice(KV_PREFIX.length), k.metadata.g);
    cursor = page.list_complete ? void 0 : page.cursor;
  } while (cursor);
  return out;
}
__name(cachedGenerations, "cachedGenerations");
var memories = /* @__PURE__ */ new WeakMap();
var MEMORY_MAX_ENTRIES = 1e3;
function memoryOf(kv) {
  let m = memories.get(kv);
  if (!m) memories.set(kv, m = /* @__PURE__ */ new Map());
  return m;
}
__name(memoryOf, "memoryOf");
async function readCachedKey(kv, encryptionKey, set, now) {
  const memory = memoryOf(kv);
  const hit = memory.get(set);
  if (hit && hit.until > now) return hit.key;
  const entry = await kv.get(kvKey(set), { type: "json", cacheTtl: KV_STALENESS_MS / 1e3 });
  if (!entry) return null;
  const key = await decryptEntry(encryptionKey, entry);
  remember(kv, key, now);
  return key;
}
__name(readCachedKey, "readCachedKey");
function remember(kv, key, now) {
  const memory = memoryOf(kv);
  if (memory.size >= MEMORY_MAX_ENTRIES) memory.clear();
  memory.set(key.model_set, { key, until: now + MEMORY_TTL_MS });
}
__name(remember, "remember");

// src/rotation.ts
var LEASE_MS = 9e4;
var RUN_BUDGET_MS = 75e3;
function createEngine(config, bindings, clock = Date.now, fetchImpl) {
  const baseten = new BasetenClient({
    apiBase: config.apiBase,
    teamId: config.teamId,
    apiKey: config.basetenApiKey,
    timeoutMs: config.timeoutMs,
    maxAttempts: config.maxAttempts,
    concurrency: config.concurrency,
    now: clock,
    fetch: fetchImpl
  });
  return { db: bindings.DB, kv: bindings.KEYS, baseten, config, clock };
}
__name(createEngine, "createEngine");
async function runSet(engine, set, opts) {
  const { db, config, clock } = engine;
  const startedAt = clock();
  const deadline = startedAt + RUN_BUDGET_MS;
  const holder = randomId(16);
  const setConfig = config.sets.get(set);
  const canMint = opts.mint !== "never" && setConfig !== void 0 && setConfig.enabled;
  let acquired;
  try {
    acquired = await acquire(db, set, holder, startedAt, LEASE_MS, canMint ? { suffix: randomId(8), modelIds: setConfig.modelIds, overlapMs: setConfig.overlapMs, onlyIfDue: opts.mint === "due" } : null);
  } catch (err) {
    log("error", "lease.failed", { model_set: set, trigger: opts.trigger, error: errorText(err) });
    const failure = { code: "ledger_failed", message: "could not take the set's lease in D1", status: null };
    return { outcome: "failed", model_set: set, minted: null, replaced: null, revoked: [], failure, events: [failedEvent(set, opts, failure, startedAt)] };
  }
  if (!acquired.leased) {
    return { outcome: "busy", model_set: set, retryAfterS: Math.min(90, Math.max(1, Math.ceil((acquired.leaseExpiresAt - startedAt) / 1e3))) };
  }
  const result = {
    outcome: "noop",
    model_set: set,
    minted: null,
    replaced: null,
    revoked: [],
    failure: null,
    events: []
  };
  const rows = acquired.rows;
  let current = rows.find((r2) => r2.state === "current");
  const pending = acquired.pending;
  try {
    const stale = rows.filter((r2) => r2.state === "pending" && r2.generation !== pending?.generation && r2.created_at <= startedAt - LEASE_MS);
    if (stale.length > 0) await recoverPendings(engine, stale, opts.trigger, deadline).catch((err) => log("warn", "recover.failed", { model_set: set, error: errorText(err) }));
    if (!setConfig && current) {
      const expiresAt = replacedExpiry(current, startedAt);
      await retireCurrent(db, set, holder, current.generation, expiresAt, startedAt);
      Object.assign(current, { state: "previous", expires_at: expiresAt, replaced_at: startedAt });
      current = void 0;
      await dropCache(engine.kv, set).catch((err) => log("warn", "cache.drop_failed", { model_set: set, error: errorText(err) }));
    }
    let cacheWritten = false;
    let revokeNow = null;
    if (pending && setConfig) {
      const minted = await mintAndPromote(engine, setConfig, holder, pending, current, opts, deadline);
      if ("failure" in minted) {
        result.outcome = "failed";
        result.failure = minted.failure;
        result.events.push(failedEvent(set, opts, minted.failure, clock()));
      } else {
        result.outcome = "rotated";
        result.minted = minted.minted;
        result.replaced = minted.replaced;
        cacheWritten = minted.cacheWritten;
        if (current && minted.replaced) {
          Object.assign(current, { state: "previous", expires_at: minted.replaced.expires_at, replaced_at: minted.minted.created_at });
          if (opts.revokePrevious) revokeNow = current.generation;
        }
        current = void 0;
        result.events.push({
          type: "key.rotated",
          model_set: set,
          generation: minted.minted.generation,
          at: minted.minted.created_at,
          trigger: opts.trigger,
          data: { ...isoTimes(minted.minted), replaced: minted.replaced && { generation: minted.replaced.generation, expires_at: iso2(minted.replaced.expires_at) }, reason: opts.reason ?? null }
        });
      }
    }
    const now = clock();
    const due = rows.filter((r2) => r2.state === "previous" && (r2.generation === revokeNow || (r2.expires_at ?? Infinity) <= now));
    let cacheSafe = cacheWritten;
    if (!cacheSafe && (opts.checkCache || due.some((r2) => r2.generation !== revokeNow))) {
      cacheSafe = await ensureCacheMatches(engine, set, rows);
    }
    for (const row of due) {
      if (row.generation !== revokeNow && !cacheSafe) continue;
      if (clock() >= deadline) break;
      try {
        await engine.baseten.revoke(row.prefix, deadline);
        const at = clock();
        await markRevoked(db, set, row.generation, at, opts.trigger, row.generation === revokeNow ? "revoke_previous" : "promise ended");
        row.state = "revoked";
        result.revoked.push(row.generation);
        result.events.push({ type: "key.revoked", model_set: set, generation: row.generation, at, trigger: opts.trigger, data: { revoked_at: iso2(at), emergency: row.generation === revokeNow } });
      } catch (err) {
        log("warn", "revoke.failed", { model_set: set, generation: row.generation, error: errorText(err) });
      }
    }
  } catch (err) {
    log("error", "run.failed", { model_set: set, trigger: opts.trigger, error: errorText(err) });
    result.outcome = "failed";
    result.failure ??= { code: "internal", message: "the run stopped on an internal error; the next run converges", status: null };
  } finally {
    const record = { trigger: opts.trigger, outcome: result.outcome, error: result.failure?.message ?? null, at: clock() };
    await release(db, set, holder, record).catch((err) => log("warn", "lease.release_failed", { model_set: set, error: errorText(err) }));
  }
  log(result.outcome === "failed" ? "warn" : "info", "run", {
    model_set: set,
    trigger: opts.trigger,
    outcome: result.outcome,
    generation: result.minted?.generation,
    revoked: result.revoked,
    error: result.failure?.message
  });
  return result;
}
__name(runSet, "runSet");
async function mintAndPromote(engine, setConfig, holder, pending, current, opts, deadline) {
  const { db, kv, config, clock } = engine;
  const set = setConfig.id;
  let minted;
  try {
    minted = await engine.baseten.mint(pending.name, setConfig.modelIds, deadline);
  } catch (err) {
    const failure = upstreamFailure(err);
    const row = { model_set: set, generation: pending.generation, name: pending.name };
    if (err instanceof UpstreamError && !err.maybeApplied) {
      await markAbandoned(db, set, pending.generation, clock(), opts.trigger, "mint refused").catch(() => {
      });
    } else {
      await recoverPendings(engine, [row], opts.trigger, deadline).catch((e) => log("warn", "recover.failed", { model_set: set, error: errorText(e) }));
    }
    return { failure };
  }
  const createdAt = clock();
  const refreshAt = createdAt + setConfig.rotateEveryMs;
  const expiresAt = refreshAt + setConfig.overlapMs;
  const ciphertext = await seal(config.encryptionKey, minted.apiKey, `${set}:${pending.generation}`);
  const replaced = current ? { generation: current.generation, expires_at: opts.revokePrevious ? createdAt : replacedExpiry(current, createdAt) } : null;
  let applied;
  try {
    applied = await promote(db, {
      set,
      holder,
      generation: pending.generation,
      prefix: minted.prefix,
      ciphertext,
      createdAt,
      refreshAt,
      expiresAt,
      replaced: replaced && { generation: replaced.generation, expiresAt: replaced.expires_at },
      trigger: opts.trigger,
      reason: opts.reason ?? null
    });
  } catch (err) {
    log("error", "promote.failed", { model_set: set, generation: pending.generation, error: errorText(err) });
    return { failure: { code: "ledger_failed", message: "the key was minted but recording it in D1 failed; a later run cleans it up", status: null } };
  }
  if (!applied) {
    await engine.baseten.revoke(minted.prefix, deadline).catch((e) => log("warn", "revoke.failed", { model_set: set, generation: pending.generation, error: errorText(e) }));
    return { failure: { code: "lease_lost", message: "the run outlived its lease; the minted key was deleted", status: null } };
  }
  let cacheWritten = false;
  const entry = { v: 1, model_set: set, model_ids: setConfig.modelIds, generation: pending.generation, created_at: createdAt, refresh_at: refreshAt, expires_at: expiresAt, overlap_ms: setConfig.overlapMs, ct: ciphertext };
  try {
    await writeCache(kv, entry);
    cacheWritten = true;
  } catch (err) {
    log("warn", "cache.write_failed", { model_set: set, generation: pending.generation, error: errorText(err) });
    if (opts.revokePrevious) await dropCache(kv, set).catch(() => {
    });
  }
  return { minted: { generation: pending.generation, created_at: createdAt, refresh_at: refreshAt, expires_at: expiresAt }, replaced, cacheWritten };
}
__name(mintAndPromote, "mintAndPromote");
async function ensureCacheMatches(engine, set, rows) {
  const { db, kv, config, clock } = engine;
  try {
    const cached = await cachedGeneration(kv, set);
    const current = await currentRow(db, set);
    if (cached === (current?.generation ?? null)) return true;
    if (current) {
      await writeCache(kv, {
        v: 1,
        model_set: set,
        model_ids: JSON.parse(current.model_ids),
        generation: current.generation,
        created_at: current.created_at,
        refresh_at: current.refresh_at,
        expires_at: current.expires_at,
        overlap_ms: current.overlap_ms,
        ct: current.ciphertext
      });
    } else {
      await dropCache(kv, set);
    }
    if (cached === null) return true;
    const now = clock();
    for (const row of rows) {
      if (row.state !== "previous" || row.generation !== cached) continue;
      const expiresAt = staleServedExpiry(row, now);
      await extendExpiry(db, set, row.generation, expiresAt);
      row.expires_at = expiresAt;
    }
    log("warn", "cache.repaired", { model_set: set, cached_generation: cached, current_generation: current?.generation ?? null });
    return true;
  } catch (err) {
    log("warn", "cache.check_failed", { model_set: set, error: errorText(err), ...config ? {} : {} });
    return false;
  }
}
__name(ensureCacheMatches, "ensureCacheMatches");
async function recoverPendings(engine, pendings, trigger, deadline) {
  const listed = await engine.baseten.list(deadline);
  const byName = new Map(listed.map((k) => [k.name, k]));
  for (const p2 of pendings) {
    const found = byName.get(p2.name);
    if (found) await engine.baseten.revoke(found.prefix, deadline);
    await markAbandoned(engine.db, p2.model_set, p2.generation, engine.clock(), trigger, found ? "recovered: deleted at Baseten" : "recovered: never created");
  }
}
__name(recoverPendings, "recoverPendings");
async function sweep(engine, deadline, liveRows2 = []) {
  const listed = (await engine.baseten.list(deadline)).filter((k) => typeof k.name === "string" && k.name.startsWith("bkr-"));
  const live = new Set(liveRows2.map((r2) => r2.name));
  const known2 = new Map((await rowsByName(engine.db, listed.filter((k) => !live.has(k.name)).map((k) => k.name))).map((r2) => [r2.name, r2]));
  for (const r2 of liveRows2) if (!known2.has(r2.name)) known2.set(r2.name, r2);
  let deleted = 0;
  let unknown = 0;
  for (const k of listed) {
    const row = known2.get(k.name);
    if (!row) {
      unknown++;
      continue;
    }
    if (row.state === "abandoned" || row.state === "revoked") {
      await engine.baseten.revoke(k.prefix, deadline);
      deleted++;
      log("warn", "sweep.deleted", { model_set: row.model_set, generation: row.generation, state: row.state });
    }
  }
  if (unknown > 0) log("info", "sweep.unknown_keys", { count: unknown });
  return { deleted, unknown };
}
__name(sweep, "sweep");
function upstreamFailure(err) {
  if (err instanceof UpstreamError) return { code: `upstream_${err.kind}`, message: err.message, status: err.status };
  return { code: "internal", message: errorText(err), status: null };
}
__name(upstreamFailure, "upstreamFailure");
function failedEvent(set, opts, failure, at) {
  return { type: "rotation.failed", model_set: set, generation: null, at, trigger: opts.trigger, data: { error: failure.code, message: failure.message, reason: opts.reason ?? null } };
}
__name(failedEvent, "failedEvent");
function errorText(err) {
  return redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 300);
}
__name(errorText, "errorText");
var iso2 = /* @__PURE__ */ __name((ms) => new Date(ms).toISOString(), "iso");
function isoTimes(m) {
  return { created_at: iso2(m.created_at), refresh_at: iso2(m.refresh_at), expires_at: iso2(m.expires_at) };
}
__name(isoTimes, "isoTimes");

// src/routes/rotate.ts
var MAX_BODY_BYTES = 64 * 1024;
var MAX_REASON_LENGTH = 500;
var FIELDS = /* @__PURE__ */ new Set(["model_set", "reason", "revoke_previous"]);
function isJson(request) {
  const type = request.headers.get("content-type");
  return type !== null && /^application\/json\s*(;|$)/i.test(type.trim());
}
__name(isJson, "isJson");
function requireJson(request) {
  if (!isJson(request)) fail(415, "unsupported_media_type", "send the body as Content-Type: application/json");
}
__name(requireJson, "requireJson");
async function readBody(request, limit = MAX_BODY_BYTES) {
  const tooLarge = /* @__PURE__ */ __name(() => fail(413, "payload_too_large", `the body must be at most ${limit} bytes`), "tooLarge");
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) tooLarge();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (; ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {
      });
      tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
__name(readBody, "readBody");
var invalid = /* @__PURE__ */ __name((message) => fail(400, "invalid_body", message), "invalid");
function parseRotateBody(bytes) {
  let value;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    invalid("the body must be a JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) invalid("the body must be a JSON object");
  const body = value;
  const unknown = Object.keys(body).filter((k) => !FIELDS.has(k));
  if (unknown.length > 0) invalid(`unknown field(s): ${unknown.slice(0, 5).map((k) => JSON.stringify(k.slice(0, 40))).join(", ")}; allowed: model_set, reason, revoke_previous`);
  if (body.model_set !== void 0 && typeof body.model_set !== "string") invalid("model_set must be a string");
  if (body.reason !== void 0 && body.reason !== null && typeof body.reason !== "string") invalid("reason must be a string");
  if (typeof body.reason === "string" && body.reason.length > MAX_REASON_LENGTH) invalid(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  if (body.revoke_previous !== void 0 && typeof body.revoke_previous !== "boolean") invalid("revoke_previous must be true or false");
  const reason = typeof body.reason === "string" && body.reason.trim() !== "" ? redactSecrets(body.reason) : null;
  return { model_set: body.model_set, reason, revokePrevious: body.revoke_previous === true };
}
__name(parseRotateBody, "parseRotateBody");
async function rotateNow(c, set, trigger, req) {
  const setConfig = SET_ID.test(set) ? c.config.sets.get(set) : void 0;
  if (!setConfig) fail(404, "unknown_model_set", "no such model set");
  if (!setConfig.enabled) fail(409, "set_disabled", "the model set is disabled (enabled: false); enable it in MODEL_SETS to rotate it", { "retry-after": "60" });
  const engine = createEngine(c.config, c.env, c.clock);
  const result = await runSet(engine, set, { trigger, mint: "now", revokePrevious: req.revokePrevious, reason: req.reason });
  if (result.outcome !== "busy") deliverEvents(c.config, c.env.DB, result.events, c.ctx, { now: c.clock });
  return rotationResponse(result, trigger, req);
}
__name(rotateNow, "rotateNow");
var iso3 = /* @__PURE__ */ __name((ms) => new Date(ms).toISOString(), "iso");
function rotationResponse(result, trigger, req) {
  switch (result.outcome) {
    case "busy":
      return fail(409, "rotation_in_progress", "another rotation of this set is running; retry after it", { "retry-after": String(result.retryAfterS) });
    case "failed":
      if (result.failure?.code.startsWith("upstream_")) return fail(502, "upstream_failed", result.failure.message);
      return fail(503, "rotation_failed", result.failure?.message ?? "the rotation failed", { "retry-after": "60" });
    case "noop":
      return fail(409, "rotation_in_progress", "a previous rotation of this set was interrupted; retry in a minute", { "retry-after": "60" });
    case "rotated": {
      const m = result.minted;
      const gone = result.replaced?.generation;
      const revokePending = req.revokePrevious && gone !== void 0 && !result.revoked.includes(gone) ? [gone] : [];
      return json({
        model_set: result.model_set,
        generation: m.generation,
        created_at: iso3(m.created_at),
        refresh_at: iso3(m.refresh_at),
        expires_at: iso3(m.expires_at),
        replaced: result.replaced && { generation: result.replaced.generation, expires_at: iso3(result.replaced.expires_at) },
        revoked: result.revoked,
        revoke_pending: revokePending,
        trigger,
        reason: req.reason
      });
    }
  }
}
__name(rotationResponse, "rotationResponse");

// src/routes/admin.ts
var CHALLENGE = { "www-authenticate": 'Bearer realm="baseten-key-rotator-admin"' };
var MIN_TOKEN_LENGTH = 16;
var notConfigured = /* @__PURE__ */ __name(() => fail(503, "not_configured", "ADMIN_TOKEN is not set: admin routes are turned off"), "notConfigured");
async function authenticateAdmin(request, adminToken) {
  const header = request.headers.get("authorization");
  if (header === null) fail(401, "unauthorized", "missing admin bearer token", CHALLENGE);
  const m = /^Bearer ([\x21-\x7e]{1,1024})$/i.exec(header);
  if (!m) fail(401, "unauthorized", "malformed Authorization header: expected 'Bearer <token>'", CHALLENGE);
  const [given, expected] = await Promise.all([sha256Hex(m[1]), sha256Hex(adminToken)]);
  if (!timingSafeEqual(given, expected)) fail(401, "unauthorized", "invalid admin token", CHALLENGE);
}
__name(authenticateAdmin, "authenticateAdmin");
async function adminRotate(request, c) {
  if (!c.config.adminToken) notConfigured();
  await authenticateAdmin(request, c.config.adminToken);
  const raw = await readBody(request);
  let req = { model_set: void 0, reason: null, revokePrevious: false };
  if (raw.byteLength > 0) {
    requireJson(request);
    req = parseRotateBody(raw);
  }
  const set = request.params.set;
  if (req.model_set !== void 0 && req.model_set !== set) fail(400, "invalid_body", "model_set in the body must match the set in the path");
  return rotateNow(c, set, "admin", req);
}
__name(adminRotate, "adminRotate");
async function adminStatus(request, env) {
  const result = loadConfig(env);
  const token = env.ADMIN_TOKEN || null;
  if (token === null || token.length < MIN_TOKEN_LENGTH) {
    if (!result.ok) fail(503, "config_invalid", `the configuration is invalid: ${result.problems.length} problem(s); see /healthz`);
    notConfigured();
  }
  await authenticateAdmin(request, token);
  const status = await buildStatus(env.DB, result.ok ? result.config : null, result.ok ? [] : result.problems);
  return json(status, 200, NO_STORE);
}
__name(adminStatus, "adminStatus");

// src/routes/health.ts
function health(_request, env) {
  const result = loadConfig(env);
  if (result.ok) return json({ ok: true });
  return json({ ok: false, error: "config_invalid", message: "the configuration is invalid", problems: result.problems }, 503);
}
__name(health, "health");

// src/auth.ts
var known = /* @__PURE__ */ new WeakMap();
var MAX_REMEMBERED = 1e3;
var unauthorized = /* @__PURE__ */ __name((message) => fail(401, "unauthorized", message, { "www-authenticate": 'Bearer realm="baseten-key-rotator"' }), "unauthorized");
async function authenticateConsumer(request, config) {
  const token = bearerToken(request);
  if (token === null) return unauthorized(request.headers.has("authorization") ? "malformed Authorization header: expected one 'Bearer <token>'" : "missing bearer token");
  let remembered = known.get(config);
  if (!remembered) known.set(config, remembered = /* @__PURE__ */ new Map());
  const hit = remembered.get(token);
  if (hit) return hit;
  const hash = await sha256Hex(token);
  let match = null;
  for (const consumer of config.consumers) if (timingSafeEqual(hash, consumer.tokenSha256)) match = consumer;
  if (!match) return unauthorized("invalid bearer token");
  if (remembered.size >= MAX_REMEMBERED) remembered.clear();
  remembered.set(token, match);
  return match;
}
__name(authenticateConsumer, "authenticateConsumer");

// src/routes/keys.ts
async function currentKey(env, config, set, now) {
  try {
    const cached = await readCachedKey(env.KEYS, config.encryptionKey, set, now);
    if (cached) return cached;
  } catch (err) {
    log("warn", "cache.read_failed", { model_set: set, error: errorText(err) });
  }
  const row = await currentRow(env.DB, set);
  if (!row) return null;
  const key = await decryptEntry(config.encryptionKey, {
    v: 1,
    model_set: set,
    model_ids: JSON.parse(row.model_ids),
    generation: row.generation,
    created_at: row.created_at,
    refresh_at: row.refresh_at,
    expires_at: row.expires_at,
    overlap_ms: row.overlap_ms,
    ct: row.ciphertext
  });
  remember(env.KEYS, key, now);
  return key;
}
__name(currentKey, "currentKey");
async function getKey(request, env, config, now, set) {
  const consumer = await authenticateConsumer(request, config);
  if (!config.sets.has(set)) fail(404, "unknown_model_set", "no such model set");
  if (!consumer.modelSets.includes(set)) fail(403, "forbidden", "this token is not granted that model set");
  const key = await currentKey(env, config, set, now);
  if (!key) {
    const retryAfter = Math.max(1, Math.ceil((nextAttempt(now) - now) / 1e3));
    fail(503, "no_key_yet", "no key has been minted for this set yet", { "retry-after": String(retryAfter) });
  }
  return new Response(documentBody(key, now), { status: 200, headers: KEY_HEADERS });
}
__name(getKey, "getKey");
var KEY_HEADERS = { "content-type": "application/json; charset=utf-8", ...NO_STORE };
var bodies = /* @__PURE__ */ new WeakMap();
function documentBody(key, now) {
  if (now >= key.refresh_at) return JSON.stringify(keyDocument(key, now));
  let body = bodies.get(key);
  if (body === void 0) bodies.set(key, body = JSON.stringify(keyDocument(key, now)));
  return body;
}
__name(documentBody, "documentBody");
async function listKeys(request, env, config, now) {
  const consumer = await authenticateConsumer(request, config);
  const keys = await Promise.all(consumer.modelSets.map((set) => currentKey(env, config, set, now)));
  return json({ keys: keys.filter((k) => k !== null).map((k) => keyDocument(k, now)) }, 200, NO_STORE);
}
__name(listKeys, "listKeys");

// src/webhook-signature.ts
var TOLERANCE_S = 5 * 60;
var MAX_ID_LENGTH = 256;
var ID_RE = /^[\x21-\x7e]+$/;
var TIMESTAMP_RE = /^(0|[1-9]\d{0,11})$/;
var ENTRY_RE = /^v1,([A-Za-z0-9+/]+={0,2})$/;
var MAX_ENTRIES = 16;
async function verifyWebhook(secret, headers, body, nowMs) {
  const id = headers.get("webhook-id");
  const ts = headers.get("webhook-timestamp");
  const sig = headers.get("webhook-signature");
  if (!id || !ts || !sig) return { ok: false, reason: "missing webhook-id, webhook-timestamp or webhook-signature header" };
  if (id.length > MAX_ID_LENGTH || !ID_RE.test(id)) return { ok: false, reason: "malformed webhook-id header" };
  if (!TIMESTAMP_RE.test(ts)) return { ok: false, reason: "malformed webhook-timestamp header: expected unix seconds" };
  const timestamp = Number(ts);
  const skew = timestamp - Math.floor(nowMs / 1e3);
  if (skew < -TOLERANCE_S) return { ok: false, reason: "webhook-timestamp is too old (more than 5 minutes)" };
  if (skew > TOLERANCE_S) return { ok: false, reason: "webhook-timestamp is in the future (more than 5 minutes)" };
  const entries = sig.split(/\s+/).map((e) => e.replace(/,$/, "")).filter((e) => e !== "");
  if (entries.length > MAX_ENTRIES) return { ok: false, reason: "malformed webhook-signature header: too many entries" };
  const candidates = entries.filter((e) => ENTRY_RE.test(e));
  if (candidates.length === 0) return { ok: false, reason: "malformed webhook-signature header: expected one or more 'v1,<base64>' entries" };
  const expected = await signWebhook(secret, id, timestamp, body);
  let match = false;
  for (const c of candidates) if (timingSafeEqual(c, expected)) match = true;
  if (!match) return { ok: false, reason: "no matching signature in webhook-signature" };
  return { ok: true, id, timestamp };
}
__name(verifyWebhook, "verifyWebhook");

// src/routes/webhooks.ts
var RECEIPT_RETENTION_MS = 48 * 36e5;
var CLAIM_STALE_MS = 2 * LEASE_MS;
var IN_PROGRESS_RETRY_S = 5;
var isFinal = /* @__PURE__ */ __name((status) => status >= 200 && status < 300 || status === 400 || status === 404, "isFinal");
async function rotationWebhook(request, c) {
  const secret = c.config.webhookSecret;
  if (!secret) fail(503, "not_configured", "WEBHOOK_SECRET is not set: rotation webhooks are turned off");
  requireJson(request);
  const raw = await readBody(request);
  const now = c.clock();
  const verified = await verifyWebhook(secret, request.headers, raw, now);
  if (!verified.ok) fail(401, "invalid_signature", verified.reason);
  const id = verified.id;
  const claim = await claimReceipt(c.env.DB, id, now, CLAIM_STALE_MS);
  if (claim.kind === "stored") {
    return new Response(claim.body, { status: claim.status, headers: { "content-type": "application/json; charset=utf-8", "idempotent-replayed": "true" } });
  }
  if (claim.kind === "in_progress") {
    fail(409, "rotation_in_progress", "a delivery with this webhook-id is being processed; retry to get its answer", { "retry-after": String(IN_PROGRESS_RETRY_S) });
  }
  let response;
  try {
    const req = parseRotateBody(raw);
    if (req.model_set === void 0) fail(400, "invalid_body", "model_set is required");
    response = await rotateNow(c, req.model_set, "webhook", req);
  } catch (err) {
    response = errorResponse(err);
  }
  try {
    if (isFinal(response.status)) await storeReceipt(c.env.DB, id, now, response.status, await response.clone().text(), now - RECEIPT_RETENTION_MS);
    else await releaseReceipt(c.env.DB, id, now);
  } catch (err) {
    log("warn", "webhook.receipt_failed", { webhook_id: id, status: response.status, error: errorText(err) });
  }
  log("info", "webhook.rotate", { webhook_id: id, status: response.status });
  return response;
}
__name(rotationWebhook, "rotationWebhook");

// src/app.ts
var ROUTES = [
  { pattern: /^\/healthz$/, allow: "GET" },
  { pattern: /^\/v1\/keys$/, allow: "GET" },
  { pattern: /^\/v1\/keys\/[^/]+$/, allow: "GET" },
  { pattern: /^\/v1\/webhooks\/rotate$/, allow: "POST" },
  { pattern: /^\/v1\/admin\/rotate\/[^/]+$/, allow: "POST" },
  { pattern: /^\/v1\/admin\/status$/, allow: "GET" }
];
var KEY_URL = /^https?:\/\/[^/?#]+\/v1\/keys\/([a-z0-9][a-z0-9-]{0,31})$/;
function createApp(options = {}) {
  const clock = options.clock ?? Date.now;
  const configOf = /* @__PURE__ */ __name((env) => {
    const result = loadConfig(env);
    if (!result.ok) fail(503, "config_invalid", `the configuration is invalid: ${result.problems.length} problem(s); see /healthz`);
    return result.config;
  }, "configOf");
  const withConfig = /* @__PURE__ */ __name((handler) => (request, env, ctx) => handler(request, env, configOf(env), clock(), ctx), "withConfig");
  const router = t({ catch: errorResponse });
  router.get("/healthz", (request, env) => health(request, env)).get("/v1/keys", withConfig((request, env, config, now) => listKeys(request, env, config, now))).get("/v1/keys/:set", withConfig((request, env, config, now) => getKey(request, env, config, now, request.params.set))).post("/v1/webhooks/rotate", withConfig((request, env, config, _now, ctx) => rotationWebhook(request, { env, config, ctx, clock }))).post("/v1/admin/rotate/:set", withConfig((request, env, config, _now, ctx) => adminRotate(request, { env, config, ctx, clock }))).get("/v1/admin/status", (request, env) => adminStatus(request, env)).all("*", (request) => {
    const path = new URL(request.url).pathname;
    const route = ROUTES.find((r2) => r2.pattern.test(path));
    if (route) fail(405, "method_not_allowed", `use ${route.allow}`, { allow: route.allow });
    fail(404, "not_found", "no such route");
  });
  const keyRoute = /* @__PURE__ */ __name((request, env, set) => {
    try {
      return getKey(request, env, configOf(env), clock(), set).catch(errorResponse);
    } catch (err) {
      return Promise.resolve(errorResponse(err));
    }
  }, "keyRoute");
  return {
    fetch: /* @__PURE__ */ __name((request, env, ctx) => {
      if (request.method === "GET") {
        const m = KEY_URL.exec(request.url);
        if (m) return keyRoute(request, env, m[1]);
      }
      return router.fetch(request, env, ctx);
    }, "fetch")
  };
}
__name(createApp, "createApp");

// src/cron.ts
var CACHE_SETTLE_MS = 12e4;
function planTick(config, rows, cached, now) {
  const bySet = /* @__PURE__ */ new Map();
  for (const r2 of rows) {
    let list = bySet.get(r2.model_set);
    if (!list) bySet.set(r2.model_set, list = []);
    list.push(r2);
  }
  const ids = /* @__PURE__ */ new Set([...config.sets.keys(), ...bySet.keys()]);
  const plan = [];
  for (const id of [...ids].sort()) {
    const cfg = config.sets.get(id);
    const setRows = bySet.get(id) ?? [];
    const current = setRows.find((r2) => r2.state === "current");
    const cacheBehind = cached !== null && current !== void 0 && cached.get(id) !== current.generation && current.created_at <= now - CACHE_SETTLE_MS;
    const needsWork = cfg?.enabled === true && (!current || now >= (current.refresh_at ?? 0)) || setRows.some((r2) => r2.state === "previous" && (r2.expires_at ?? Infinity) <= now) || setRows.some((r2) => r2.state === "pending" && r2.created_at <= now - LEASE_MS) || !cfg && current !== void 0 || cacheBehind;
    if (needsWork) plan.push({ model_set: id, checkCache: cacheBehind });
  }
  return plan;
}
__name(planTick, "planTick");
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  });
  await Promise.all(workers);
  return out;
}
__name(pool, "pool");
async function tick(engine, queue, trigger = "cron") {
  const now = engine.clock();
  const [rows, cached] = await Promise.all([
    liveRows(engine.db),
    cachedGenerations(engine.kv).catch((err) => {
      log("warn", "cache.list_failed", { error: errorText(err) });
      return null;
    })
  ]);
  await sweep(engine, now + RUN_BUDGET_MS, rows).catch((err) => log("warn", "sweep.failed", { error: errorText(err) }));
  const plan = planTick(engine.config, rows, cached, now);
  if (queue && plan.length > engine.config.inlineBudget) {
    for (let i = 0; i < plan.length; i += 100) {
      await queue.sendBatch(plan.slice(i, i + 100).map((p2) => ({ body: { model_set: p2.model_set, tick_at: now } })));
    }
    log("info", "tick", { planned: plan.length, inline: 0, queued: plan.length });
    return { planned: plan.length, inline: 0, queued: plan.length, results: [] };
  }
  const results = await pool(plan, engine.config.concurrency, (p2) => runSet(engine, p2.model_set, { trigger, mint: "due", checkCache: p2.checkCache }));
  for (const r2 of results) if (r2.outcome === "busy") log("info", "run.skipped", { model_set: r2.model_set, reason: "another run holds the lease" });
  log("info", "tick", { planned: plan.length, inline: plan.length, queued: 0, rotated: results.filter((r2) => r2.outcome === "rotated").length, failed: results.filter((r2) => r2.outcome === "failed").length });
  return { planned: plan.length, inline: plan.length, queued: 0, results };
}
__name(tick, "tick");

// src/queue.ts
var QUEUE_MAX_RETRIES = 3;
var isDeadLetterQueue = /* @__PURE__ */ __name((queueName) => queueName.endsWith("-dlq"), "isDeadLetterQueue");
function retryDelaySeconds(attempts) {
  return Math.min(300, 10 * 2 ** Math.max(0, attempts - 1));
}
__name(retryDelaySeconds, "retryDelaySeconds");
function setOf(body) {
  const set = body?.model_set;
  return typeof set === "string" && SET_ID.test(set) ? set : null;
}
__name(setOf, "setOf");
async function consumeRotations(engine, batch) {
  const bySet = /* @__PURE__ */ new Map();
  for (const msg of batch.messages) {
    const set = setOf(msg.body);
    if (set === null) {
      log("error", "queue.bad_message", { queue: batch.queue, id: msg.id });
      msg.ack();
      continue;
    }
    let list = bySet.get(set);
    if (!list) bySet.set(set, list = []);
    list.push(msg);
  }
  const sets = [...bySet.keys()];
  const results = await pool(sets, engine.config.concurrency, (set) => runSet(engine, set, { trigger: "queue", mint: "due" }));
  results.forEach((result, i) => {
    for (const msg of bySet.get(sets[i])) {
      if (result.outcome !== "failed") {
        if (result.outcome === "busy") log("info", "run.skipped", { model_set: result.model_set, trigger: "queue", reason: "another run holds the lease" });
        msg.ack();
        continue;
      }
      const delaySeconds = retryDelaySeconds(msg.attempts);
      const last = msg.attempts > QUEUE_MAX_RETRIES;
      log(last ? "error" : "warn", last ? "queue.giving_up" : "queue.retry", {
        model_set: result.model_set,
        attempts: msg.attempts,
        error: result.failure?.code,
        ...last ? { next: "dead-letter queue; the next cron tick plans the set again" } : { delay_s: delaySeconds }
      });
      msg.retry({ delaySeconds });
    }
  });
  const count = /* @__PURE__ */ __name((o2) => results.filter((r2) => r2.outcome === o2).length, "count");
  log("info", "queue.batch", { queue: batch.queue, messages: batch.messages.length, sets: sets.length, rotated: count("rotated"), failed: count("failed"), busy: count("busy") });
  return results;
}
__name(consumeRotations, "consumeRotations");
function consumeDeadLetters(batch) {
  for (const msg of batch.messages) {
    const body = msg.body;
    log("error", "queue.dead_letter", {
      queue: batch.queue,
      id: msg.id,
      model_set: setOf(body),
      tick_at: typeof body?.tick_at === "number" ? new Date(body.tick_at).toISOString() : null,
      attempts: msg.attempts,
      note: "rotation failed on every delivery; the set stays due and the next cron tick plans it again"
    });
    msg.ack();
  }
}
__name(consumeDeadLetters, "consumeDeadLetters");

// src/index.ts
var app = createApp();
var index_default = {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    const result = loadConfig(env);
    if (!result.ok) {
      log("error", "config_invalid", { problems: result.problems, cron: controller.cron });
      return;
    }
    const summary = await tick(createEngine(result.config, env), env.ROTATIONS);
    dispatchRunEvents(result.config, env.DB, summary.results, ctx);
  },
  async queue(batch, env, ctx) {
    if (isDeadLetterQueue(batch.queue)) return consumeDeadLetters(batch);
    const result = loadConfig(env);
    if (!result.ok) {
      log("error", "config_invalid", { problems: result.problems, queue: batch.queue });
      return batch.ackAll();
    }
    const results = await consumeRotations(createEngine(result.config, env), batch);
    dispatchRunEvents(result.config, env.DB, results, ctx);
  }
};
export {
  index_default as default
};
//# sourceMappingURL=index.js.map
