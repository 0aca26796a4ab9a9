/**
 * Who is asking (DESIGN §3.1, §5): one entry point for every consumer kind.
 *
 *   static token   SHA-256 of the bearer token looked up in a Map built once per config, then
 *                  compared in constant time with the one candidate: the cost does not grow
 *                  with the number of consumers (10,000 cost what 1 does; bench/drill.ts).
 *   OIDC JWT       verified by ./oidc.ts against the issuer's JWKS; matching several oidc
 *                  consumers gives the union of their grants.
 *   managed token  ./managed.ts, a per-location snapshot of the D1 table.
 *   binding        a Worker over RPC naming itself in the binding's props (src/rpc.ts).
 *
 * Identities that matched are remembered per isolate (and per config) for the hot path, which
 * then hashes nothing: static tokens for the life of the config, managed ones until their
 * snapshot must be reread, JWTs until `exp` and at most 60 s.
 */
import type { Config, ConsumerConfig } from "../config.ts";
import { sha256Hex, timingSafeEqual } from "../crypto.ts";
import { fail } from "../http.ts";
import { managedByHash } from "./managed.ts";
import { type OidcIndex, OidcRefusal, buildOidcIndex, looksLikeJwt, verifyOidc } from "./oidc.ts";

export type ConsumerKind = "token" | "oidc" | "binding" | "managed";

export interface Identity {
  /** The consumer's name (several, joined with "+", for a JWT that matched several oidc consumers). */
  name: string;
  kind: ConsumerKind;
  /** Every set this identity may read (the union over `members`). */
  modelSets: string[];
  /** The consumers this identity is: one, or several oidc consumers. Tracking is per member. */
  members: { name: string; modelSets: string[] }[];
}

/** Longest bearer token accepted (a JWT beyond this is refused as malformed, unread). */
export const MAX_TOKEN_BYTES = 8 * 1024;
const MAX_REMEMBERED = 1_000;
const JWT_REMEMBER_MS = 60_000;

interface Index {
  byHash: Map<string, ConsumerConfig>;
  bindings: Map<string, ConsumerConfig>;
  oidc: OidcIndex;
  names: Set<string>;
  identities: WeakMap<ConsumerConfig, Identity>;
}

const indexes = new WeakMap<Config, Index>();

function indexOf(config: Config): Index {
  let ix = indexes.get(config);
  if (!ix) {
    const byHash = new Map<string, ConsumerConfig>();
    const bindings = new Map<string, ConsumerConfig>();
    for (const c of config.consumers) {
      if (c.kind === "token" && c.tokenSha256) byHash.set(c.tokenSha256, c);
      if (c.kind === "binding") bindings.set(c.name, c);
    }
    ix = {
      byHash,
      bindings,
      oidc: buildOidcIndex(config.consumers),
      names: new Set(config.consumers.map((c) => c.name)),
      identities: new WeakMap(),
    };
    indexes.set(config, ix);
  }
  return ix;
}

/** Names of configured consumers (managed ones may never take them). */
export function configuredNames(config: Config): Set<string> {
  return indexOf(config).names;
}

function identityOf(ix: Index, c: ConsumerConfig): Identity {
  let id = ix.identities.get(c);
  if (!id)
    ix.identities.set(
      c,
      (id = { name: c.name, kind: c.kind, modelSets: c.modelSets, members: [{ name: c.name, modelSets: c.modelSets }] }),
    );
  return id;
}

function union(consumers: ConsumerConfig[]): Identity {
  if (consumers.length === 1) {
    const c = consumers[0]!;
    return { name: c.name, kind: "oidc", modelSets: c.modelSets, members: [{ name: c.name, modelSets: c.modelSets }] };
  }
  const sorted = [...consumers].sort((a, b) => a.name.localeCompare(b.name));
  return {
    name: sorted.map((c) => c.name).join("+"),
    kind: "oidc",
    modelSets: [...new Set(sorted.flatMap((c) => c.modelSets))],
    members: sorted.map((c) => ({ name: c.name, modelSets: c.modelSets })),
  };
}

// --- the hot path's memory ---------------------------------------------------------------
const remembered = new WeakMap<Config, Map<string, { identity: Identity; until: number }>>();

function rememberIdentity(config: Config, token: string, identity: Identity, until: number): void {
  let m = remembered.get(config);
  if (!m) remembered.set(config, (m = new Map()));
  if (m.size >= MAX_REMEMBERED) m.clear();
  m.set(token, { identity, until });
}

/** Tests: forget every remembered token (of a config, or all of them for it). */
export function forgetRemembered(config: Config): void {
  remembered.delete(config);
}

const unauthorized = (message: string): never =>
  fail(401, "unauthorized", message, { "www-authenticate": 'Bearer realm="baseten-key-rotator"' });

/** The token of `Authorization: Bearer <token>`: null if absent; a 401 if malformed or too long. */
function tokenOf(request: Request): string | null {
  const header = request.headers.get("authorization");
  if (header === null) return null;
  if (header.length > MAX_TOKEN_BYTES + 16) unauthorized("malformed: the bearer token is longer than 8 KiB");
  const m = /^Bearer +([A-Za-z0-9._~+/=-]+)$/i.exec(header);
  if (!m) unauthorized("malformed Authorization header: expected one 'Bearer <token>'");
  if (m![1]!.length > MAX_TOKEN_BYTES) unauthorized("malformed: the bearer token is longer than 8 KiB");
  return m![1]!;
}

/** The identity of a token that matched before at this location, without hashing or awaiting. */
export function rememberedIdentity(request: Request, config: Config, now: number): Identity | undefined {
  const header = request.headers.get("authorization");
  if (header === null || header.length < 8) return undefined;
  // "Bearer " in any case, one space: the common form. Anything else takes the full path.
  const token = header.slice(7);
  const hit = remembered.get(config)?.get(token);
  if (!hit || hit.until <= now || !/^bearer $/i.test(header.slice(0, 7))) return undefined;
  return hit.identity;
}

export interface AuthOptions {
  db: D1Database;
  now: number;
  waitUntil?: (p: Promise<unknown>) => void;
}

/**
 * The identity behind the request's bearer token, or a thrown 401 (`unauthorized`, with
 * `WWW-Authenticate: Bearer`) whose message names what failed and never echoes the token.
 */
export async function authenticate(request: Request, config: Config, opts: AuthOptions): Promise<Identity> {
  const token = tokenOf(request);
  if (token === null) return unauthorized("missing bearer token");
  const hit = remembered.get(config)?.get(token);
  if (hit && hit.until > opts.now) return hit.identity;
  const ix = indexOf(config);
  const hash = await sha256Hex(token);
  const candidate = ix.byHash.get(hash);
  // The Map found the one consumer that can match; the comparison itself is constant-time.
  if (candidate && timingSafeEqual(hash, candidate.tokenSha256!)) {
    const id = identityOf(ix, candidate);
    rememberIdentity(config, token, id, Infinity);
    return id;
  }
  if (looksLikeJwt(token)) {
    if (ix.oidc.byIssuer.size === 0) unauthorized("issuer: no OIDC consumer is configured");
    try {
      const match = await verifyOidc(ix.oidc, token, opts.now);
      const id = union(match.consumers);
      rememberIdentity(config, token, id, Math.min(match.expiresAt, opts.now + JWT_REMEMBER_MS));
      return id;
    } catch (err) {
      if (err instanceof OidcRefusal) unauthorized(err.message);
      throw err;
    }
  }
  const managed = await managedByHash(opts.db, config, hash, opts.now, opts.waitUntil);
  if (managed.consumer && timingSafeEqual(hash, managed.consumer.tokenSha256)) {
    const c = managed.consumer;
    const id: Identity = { name: c.name, kind: "managed", modelSets: c.modelSets, members: [{ name: c.name, modelSets: c.modelSets }] };
    rememberIdentity(config, token, id, managed.until);
    return id;
  }
  return unauthorized("invalid bearer token");
}

/** A Worker over a service binding (DESIGN §5): props.consumer must name a `binding: true` consumer. */
export function bindingIdentity(config: Config, props: unknown): Identity {
  const name = props !== null && typeof props === "object" ? (props as { consumer?: unknown }).consumer : undefined;
  if (typeof name !== "string" || name === "") return unauthorized("the service binding has no props.consumer naming this Worker");
  const ix = indexOf(config);
  const c = ix.bindings.get(name);
  if (!c) return unauthorized('props.consumer names no consumer configured with "binding": true');
  return identityOf(ix, c);
}
