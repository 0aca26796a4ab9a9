/**
 * An OIDC issuer on loopback for the tests (Node, started by test/global-setup.ts): discovery,
 * a JWKS with an RS256 and an ES256 key, and a control API the tests (inside workerd) drive
 * over HTTP. State is per *tenant* (`/t/{tenant}`), so test files running side by side never
 * see each other's keys or modes. The issuer of a tenant is `{url}/t/{tenant}`.
 *
 *   GET  /t/{t}/.well-known/openid-configuration   {issuer, jwks_uri}
 *   GET  /t/{t}/jwks                               the public keys (or a fault, see mode)
 *   POST /t/{t}/__sign    {alg?: "RS256"|"ES256"|"HS256-public"|"none", kid?, unpublished?, claims, header?}
 *                         -> {token}; HS256-public signs with the RSA public key as HMAC secret
 *   POST /t/{t}/__rotate  {alg}  a new key (new kid) replaces the old one of that algorithm
 *   POST /t/{t}/__mode    {jwks?: "ok"|"500"|"garbage"|"not_jwks"|"down", discovery?: same}
 *   GET  /t/{t}/__stats   {discovery, jwks}: requests served
 */
/// <reference types="node" />
import { createServer } from "node:http";
import type { Socket } from "node:net";
import { type CryptoKey, type JWK, SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";

type Mode = "ok" | "500" | "garbage" | "not_jwks" | "down";
interface Key {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  publicJwk: JWK;
  spki: string;
}
interface Tenant {
  keys: Map<"RS256" | "ES256", Key>;
  /** Keys that sign but are never published (an unknown kid). */
  unpublished: Map<"RS256" | "ES256", Key>;
  mode: { jwks: Mode; discovery: Mode };
  stats: { discovery: number; jwks: number };
  serial: number;
}

export interface OidcIssuer {
  url: string;
  close(): Promise<void>;
}

async function newKey(alg: "RS256" | "ES256", kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk, spki: await exportSPKI(publicKey) };
}

async function makeTenant(name: string): Promise<Tenant> {
  return {
    keys: new Map([
      ["RS256", await newKey("RS256", `${name}-rs-1`)],
      ["ES256", await newKey("ES256", `${name}-es-1`)],
    ]),
    unpublished: new Map([
      ["RS256", await newKey("RS256", `${name}-rs-unpublished`)],
      ["ES256", await newKey("ES256", `${name}-es-unpublished`)],
    ]),
    mode: { jwks: "ok", discovery: "ok" },
    stats: { discovery: 0, jwks: 0 },
    serial: 1,
  };
}

const b64url = (s: string | Uint8Array) => Buffer.from(s).toString("base64url");

export async function startOidcIssuer(port = 0): Promise<OidcIssuer> {
  const tenants = new Map<string, Promise<Tenant>>();
  const tenant = (name: string): Promise<Tenant> => {
    let t = tenants.get(name);
    if (!t) tenants.set(name, (t = makeTenant(name)));
    return t;
  };
  const sockets = new Set<Socket>();
  let base = "";

  const server = createServer(async (req, res) => {
    const send = (status: number, body: unknown, raw = false) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(raw ? String(body) : JSON.stringify(body));
    };
    try {
      const url = new URL(req.url ?? "/", base);
      const m = /^\/t\/([a-z0-9-]{1,64})(\/.*)$/.exec(url.pathname);
      if (!m) return send(404, { error: "not_found" });
      const t = await tenant(m[1]!);
      const issuer = `${base}/t/${m[1]}`;
      const path = m[2]!;
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>) : {};
      const fault = (mode: Mode): boolean => {
        if (mode === "ok") return false;
        if (mode === "down") req.socket.destroy();
        else if (mode === "500") send(500, { error: "boom" });
        else if (mode === "garbage") send(200, "<html>not json", true);
        else send(200, { keys: "nope" });
        return true;
      };
      if (req.method === "GET" && path === "/.well-known/openid-configuration") {
        t.stats.discovery++;
        if (fault(t.mode.discovery)) return;
        return send(200, { issuer, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ["RS256", "ES256"] });
      }
      if (req.method === "GET" && path === "/jwks") {
        t.stats.jwks++;
        if (fault(t.mode.jwks)) return;
        return send(200, { keys: [...t.keys.values()].map((k) => k.publicJwk) });
      }
      if (req.method === "GET" && path === "/__stats") return send(200, t.stats);
      if (req.method === "POST" && path === "/__mode") {
        Object.assign(t.mode, body);
        return send(200, t.mode);
      }
      if (req.method === "POST" && path === "/__rotate") {
        const alg = (body.alg as "RS256" | "ES256") ?? "RS256";
        t.serial++;
        const key = await newKey(alg, `${m[1]}-${alg === "RS256" ? "rs" : "es"}-${t.serial}`);
        t.keys.set(alg, key);
        return send(200, { kid: key.kid });
      }
      if (req.method === "POST" && path === "/__sign") {
        const alg = (body.alg as string) ?? "RS256";
        const claims: Record<string, unknown> = { iss: issuer, ...(body.claims as Record<string, unknown>) };
        for (const k of Object.keys(claims)) if (claims[k] === null) delete claims[k];
        if (alg === "none") {
          const token = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}.`;
          return send(200, { token });
        }
        if (alg === "HS256-public") {
          const rs = t.keys.get("RS256")!;
          const token = await new SignJWT(claims)
            .setProtectedHeader({ alg: "HS256", kid: rs.kid, typ: "JWT" })
            .sign(new TextEncoder().encode(rs.spki));
          return send(200, { token });
        }
        const a = alg as "RS256" | "ES256";
        const key = body.unpublished ? t.unpublished.get(a)! : t.keys.get(a)!;
        const header = {
          alg: a,
          kid: (body.kid as string | undefined) ?? key.kid,
          typ: "JWT",
          ...(body.header as Record<string, unknown>),
        };
        const token = await new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
        return send(200, { token });
      }
      send(404, { error: "not_found" });
    } catch (err) {
      if (!res.headersSent) send(500, { error: String(err) });
    }
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    // A dropped socket ("down" mode) is on purpose.
    s.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === "object" && address ? address.port : port}`;
  return {
    url: base,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
