/**
 * OIDC workload identities (DESIGN §3.1): `Authorization: Bearer <JWT>` checked with `jose`
 * against the issuer's JWKS, found through `{issuer}/.well-known/openid-configuration`.
 *
 * Per location (isolate) and issuer: the JWKS is kept for up to 10 minutes; a `kid` it does not
 * hold refetches at most once per 30 s (counted from that issuer's last fetch); while the issuer
 * fails, at most one attempt per 5 s. So a flood of JWTs, valid or not, costs the issuer at most
 * a handful of requests, and `alg: none`/HMAC tokens never cost a fetch at all.
 *
 * Every refusal is an `OidcRefusal` whose message starts with one of the contract's words
 * (`expired`, `not_yet_valid`, `audience`, `issuer`, `subject`, `claim`, `signature`,
 * `malformed`) and never quotes the token or any value taken from it.
 */
import { type JSONWebKeySet, type JWTPayload, createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from "jose";
import type { ConsumerConfig, OidcConsumerConfig } from "../config.ts";

export const ALGORITHMS = ["RS256", "ES256"];
export const LEEWAY_S = 60;
export const JWKS_TTL_MS = 10 * 60_000;
export const KID_REFETCH_MS = 30_000;
export const FAILURE_RETRY_MS = 5_000;
const FETCH_TIMEOUT_MS = 3_000;
const MAX_DOCUMENT_BYTES = 64 * 1024;

export type OidcCheck = "expired" | "not_yet_valid" | "audience" | "issuer" | "subject" | "claim" | "signature" | "malformed";

export class OidcRefusal extends Error {
  constructor(
    readonly check: OidcCheck,
    detail: string,
  ) {
    super(`${check}: ${detail}`);
  }
}

const refuse = (check: OidcCheck, detail: string): never => {
  throw new OidcRefusal(check, detail);
};

/** How the JWKS documents are fetched (tests count and break it). */
export type OidcFetch = (url: string, init: RequestInit) => Promise<Response>;
let oidcFetch: OidcFetch = (url, init) => fetch(url, init);
export function setOidcFetchForTests(f: OidcFetch | null): void {
  oidcFetch = f ?? ((url, init) => fetch(url, init));
}

interface IssuerState {
  /** The JWKS in use and when it was fetched (0: never). */
  jwks: ReturnType<typeof createLocalJWKSet> | null;
  fetchedAt: number;
  /** The last attempt (successful or not) and whether it failed. */
  attemptAt: number;
  failure: string | null;
  inflight: Promise<void> | null;
  fetches: number;
}

const issuers = new Map<string, IssuerState>();

/** Tests: forget every cached JWKS. */
export function forgetOidcCaches(): void {
  issuers.clear();
}

/** JWKS fetches made per issuer at this location (tests and the drill read it). */
export function jwksFetchCount(issuer: string): number {
  return issuers.get(issuer)?.fetches ?? 0;
}

function stateOf(issuer: string): IssuerState {
  let s = issuers.get(issuer);
  if (!s) issuers.set(issuer, (s = { jwks: null, fetchedAt: 0, attemptAt: -Infinity, failure: null, inflight: null, fetches: 0 }));
  return s;
}

/** A JSON document of at most 64 KiB from `url`, or a short reason why not. */
async function fetchJson(url: string): Promise<unknown> {
  const res = await oidcFetch(url, {
    headers: { accept: "application/json" },
    redirect: "manual",
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > MAX_DOCUMENT_BYTES) {
    await res.body?.cancel().catch(() => {});
    throw new Error("document too large");
  }
  const text = await res.text();
  if (text.length > MAX_DOCUMENT_BYTES) throw new Error("document too large");
  try {
    return JSON.parse(text);
  } catch {
    throw new Error("not JSON");
  }
}

/** The jwks_uri must live where the issuer does: https:, or http: on loopback for a loopback issuer. */
function acceptableJwksUri(issuer: string, uri: unknown): uri is string {
  if (typeof uri !== "string") return false;
  try {
    const u = new URL(uri);
    if (u.protocol === "https:") return true;
    const i = new URL(issuer);
    return u.protocol === "http:" && i.protocol === "http:" && u.hostname === i.hostname;
  } catch {
    return false;
  }
}

async function refresh(issuer: string, s: IssuerState, now: number): Promise<void> {
  s.attemptAt = now;
  s.fetches++;
  try {
    const discovery = await fetchJson(`${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`);
    const d = discovery as { issuer?: unknown; jwks_uri?: unknown } | null;
    if (d === null || typeof d !== "object") throw new Error("discovery document is not an object");
    if (d.issuer !== issuer) throw new Error("discovery document names another issuer");
    if (!acceptableJwksUri(issuer, d.jwks_uri)) throw new Error("jwks_uri missing or not https:");
    const jwks = (await fetchJson(d.jwks_uri)) as JSONWebKeySet;
    // createLocalJWKSet checks the shape ({keys: [...]}) and throws JWKSInvalid otherwise.
    s.jwks = createLocalJWKSet(jwks);
    s.fetchedAt = now;
    s.failure = null;
  } catch (err) {
    s.failure =
      err instanceof errors.JOSEError
        ? "keys document is not a JWKS"
        : err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")
          ? "timeout"
          : err instanceof Error
            ? err.message.slice(0, 80)
            : "fetch failed";
  }
}

/** Fetch (single flight) unless another attempt is too recent; `force` for an unknown kid. */
async function ensureJwks(issuer: string, now: number, force: boolean): Promise<IssuerState> {
  const s = stateOf(issuer);
  const fresh = s.jwks !== null && now - s.fetchedAt < JWKS_TTL_MS;
  const sinceAttempt = now - s.attemptAt;
  const wanted = !fresh || force;
  const allowed = s.failure !== null ? sinceAttempt >= FAILURE_RETRY_MS : force ? sinceAttempt >= KID_REFETCH_MS : true;
  if (wanted && allowed) {
    s.inflight ??= refresh(issuer, s, now).finally(() => {
      s.inflight = null;
    });
  }
  if (s.inflight) await s.inflight;
  if (s.jwks === null || now - s.fetchedAt >= JWKS_TTL_MS)
    refuse("signature", `could not get the issuer's signing keys (${s.failure ?? "not fetched"})`);
  return s;
}

/** `*` matches any run of characters (`/` included, possibly empty); anchored at both ends. */
export function subjectPattern(subject: string): RegExp {
  return new RegExp(
    `^${subject
      .split("*")
      .map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"))
      .join("[\\s\\S]*")}$`,
  );
}

export interface OidcIndex {
  byIssuer: Map<string, { consumer: ConsumerConfig; oidc: OidcConsumerConfig; subject: RegExp }[]>;
}

export function buildOidcIndex(consumers: ConsumerConfig[]): OidcIndex {
  const byIssuer: OidcIndex["byIssuer"] = new Map();
  for (const consumer of consumers) {
    if (consumer.kind !== "oidc" || !consumer.oidc) continue;
    const list = byIssuer.get(consumer.oidc.issuer) ?? [];
    list.push({ consumer, oidc: consumer.oidc, subject: subjectPattern(consumer.oidc.subject) });
    byIssuer.set(consumer.oidc.issuer, list);
  }
  return { byIssuer };
}

/** A base64url JSON header then a dot: what a JWT looks like (generated tokens never do). */
export function looksLikeJwt(token: string): boolean {
  return token.startsWith("eyJ") && token.includes(".");
}

export interface OidcMatch {
  consumers: ConsumerConfig[];
  /** exp in ms: the verified identity may be remembered until then. */
  expiresAt: number;
}

const CHECK_ORDER: OidcCheck[] = ["audience", "subject", "claim"];

/** Verifies `token` and returns every oidc consumer it matches; throws OidcRefusal otherwise. */
export async function verifyOidc(index: OidcIndex, token: string, now: number): Promise<OidcMatch> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    unverified = decodeJwt(token);
  } catch {
    return refuse("malformed", "the token is not a well-formed JWT");
  }
  if (typeof header.alg !== "string" || !ALGORITHMS.includes(header.alg))
    return refuse("signature", "algorithm not allowed (RS256 and ES256 only)");
  if (typeof unverified.iss !== "string") return refuse("issuer", "the token has no iss claim");
  const candidates = index.byIssuer.get(unverified.iss);
  if (!candidates) return refuse("issuer", "no consumer trusts the token's issuer");
  const issuer = unverified.iss;

  let payload: JWTPayload;
  try {
    let s = await ensureJwks(issuer, now, false);
    const getKey = async (
      h: Parameters<ReturnType<typeof createLocalJWKSet>>[0],
      t: Parameters<ReturnType<typeof createLocalJWKSet>>[1],
    ) => {
      try {
        return await s.jwks!(h, t);
      } catch (err) {
        if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
        // A kid we do not hold: the issuer may have rotated. At most one refetch per 30 s.
        s = await ensureJwks(issuer, now, true);
        return s.jwks!(h, t);
      }
    };
    ({ payload } = await jwtVerify(token, getKey, {
      issuer,
      algorithms: ALGORITHMS,
      clockTolerance: LEEWAY_S,
      currentDate: new Date(now),
      requiredClaims: ["exp"],
    }));
  } catch (err) {
    throw translate(err);
  }
  if (typeof payload.iat === "number" && payload.iat > now / 1000 + LEEWAY_S) refuse("not_yet_valid", "the token's iat is in the future");

  const matched: ConsumerConfig[] = [];
  let furthest = -1;
  for (const c of candidates) {
    const failed = firstFailedCheck(c.oidc, c.subject, payload);
    if (failed === null) matched.push(c.consumer);
    else furthest = Math.max(furthest, CHECK_ORDER.indexOf(failed));
  }
  if (matched.length === 0) {
    const check = CHECK_ORDER[Math.max(0, furthest)]!;
    refuse(
      check,
      check === "audience"
        ? "the token's aud does not contain a configured audience"
        : check === "subject"
          ? "the token's sub matches no configured subject"
          : "a required claim does not match",
    );
  }
  return { consumers: matched, expiresAt: (payload.exp as number) * 1000 };
}

function firstFailedCheck(oidc: OidcConsumerConfig, subject: RegExp, payload: JWTPayload): OidcCheck | null {
  const aud = payload.aud;
  const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(oidc.audience)) return "audience";
  if (typeof payload.sub !== "string" || !subject.test(payload.sub)) return "subject";
  for (const [name, value] of Object.entries(oidc.claims)) {
    const got = payload[name];
    if (!((typeof got === "string" || typeof got === "number" || typeof got === "boolean") && String(got) === value)) return "claim";
  }
  return null;
}

function translate(err: unknown): OidcRefusal {
  if (err instanceof OidcRefusal) return err;
  if (err instanceof errors.JWTExpired) return new OidcRefusal("expired", "the token has expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "nbf" || err.claim === "iat") return new OidcRefusal("not_yet_valid", `the token's ${err.claim} is in the future`);
    if (err.claim === "iss") return new OidcRefusal("issuer", "the token's iss does not match");
    if (err.claim === "exp") return new OidcRefusal("malformed", "the token has no valid exp claim");
    return new OidcRefusal("malformed", `the token's ${err.claim} claim is invalid`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new OidcRefusal("signature", "algorithm not allowed (RS256 and ES256 only)");
  if (err instanceof errors.JWKSNoMatchingKey) return new OidcRefusal("signature", "the issuer has no key with the token's kid");
  if (err instanceof errors.JWKSMultipleMatchingKeys)
    return new OidcRefusal("signature", "the issuer's JWKS has several keys for the token's kid");
  if (err instanceof errors.JWSSignatureVerificationFailed) return new OidcRefusal("signature", "the signature does not verify");
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid || err instanceof errors.JOSENotSupported)
    return new OidcRefusal("malformed", "the token is not a well-formed JWT");
  if (err instanceof errors.JWKInvalid || err instanceof errors.JWKSInvalid)
    return new OidcRefusal("signature", "the issuer's key cannot be used");
  return new OidcRefusal("signature", "the token could not be verified");
}
