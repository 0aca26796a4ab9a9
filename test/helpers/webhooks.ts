/**
 * A Standard Webhooks sender and receiver written from the spec, independent of src/crypto.ts,
 * so the tests check the worker against the spec and not against itself.
 */
import type { World } from "./world.ts";

const enc = new TextEncoder();

function b64(bytes: ArrayBuffer | Uint8Array): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

/** `v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>` keyed with the raw bytes `key`. */
export async function hmacV1(key: Uint8Array, id: string, ts: string | number, body: string | Uint8Array): Promise<string> {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const head = enc.encode(`${id}.${ts}.`);
  const raw = typeof body === "string" ? enc.encode(body) : body;
  const data = new Uint8Array(head.length + raw.length);
  data.set(head);
  data.set(raw, head.length);
  return `v1,${b64(await crypto.subtle.sign("HMAC", k, data))}`;
}

/** The key bytes of a `whsec_<base64>` secret. */
export function secretBytes(secret: string): Uint8Array {
  const s = atob(secret.replace(/^whsec_/, ""));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

export interface SignOptions {
  id?: string;
  /** Unix seconds; defaults to the world's clock. */
  ts?: number;
  secret?: string;
  /** Replace the whole signature header. */
  signature?: string;
}

/** Request init for POST /v1/webhooks/rotate, signed as a Standard Webhooks sender would. */
export async function signedWebhook(
  w: World,
  body: unknown,
  o: SignOptions = {},
): Promise<RequestInit & { headers: Record<string, string> }> {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const id = o.id ?? `msg_${crypto.randomUUID()}`;
  const ts = o.ts ?? Math.floor(w.clock.now() / 1000);
  const signature = o.signature ?? (await hmacV1(secretBytes(o.secret ?? w.env.WEBHOOK_SECRET!), id, ts, raw));
  return {
    method: "POST",
    headers: { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": signature },
    body: raw,
  };
}

export async function sendWebhook(w: World, body: unknown, o: SignOptions = {}): Promise<Response> {
  return w.request("/v1/webhooks/rotate", await signedWebhook(w, body, o));
}

/** A receiver's check of an incoming delivery: true when any v1 entry matches. */
export async function verifyDelivery(secret: string, headers: Record<string, string>, body: string): Promise<boolean> {
  const id = headers["webhook-id"];
  const ts = headers["webhook-timestamp"];
  const sig = headers["webhook-signature"];
  if (!id || !ts || !sig) return false;
  const expected = await hmacV1(secretBytes(secret), id, ts, body);
  return sig.split(" ").includes(expected);
}

export function randomSecret(): string {
  return `whsec_${b64(crypto.getRandomValues(new Uint8Array(24)))}`;
}
