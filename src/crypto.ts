/**
 * Cryptography in one place: AES-256-GCM for keys at rest, SHA-256 for consumer tokens,
 * constant-time comparison, and Standard Webhooks HMAC signatures.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return btoa(s);
}

export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function toHex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Constant-time equality of two strings (length is not secret here: hashes, signatures). */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

/** Random lowercase alphanumerics (for key names and lease holders). */
export function randomId(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let s = "";
  for (const b of bytes) s += alphabet[b % 36];
  return s;
}

// Importing a CryptoKey costs more than one encryption; keep it per isolate,
// keyed by the secret's text so a rotated ENCRYPTION_KEY is picked up.
const aesKeys = new Map<string, Promise<CryptoKey>>();

function aesKey(secretB64: string): Promise<CryptoKey> {
  let key = aesKeys.get(secretB64);
  if (!key) {
    key = crypto.subtle.importKey("raw", fromBase64(secretB64), "AES-GCM", false, ["encrypt", "decrypt"]);
    aesKeys.set(secretB64, key);
  }
  return key;
}

/**
 * Encrypts `plaintext` with a fresh 96-bit IV; returns base64(iv || ciphertext+tag).
 * `aad` binds the ciphertext to its place (set and generation): a row copied onto
 * another set fails to decrypt instead of serving the wrong key.
 */
export async function seal(secretB64: string, plaintext: string, aad: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(aad) }, await aesKey(secretB64), encoder.encode(plaintext));
  const out = new Uint8Array(12 + ct.byteLength);
  out.set(iv, 0);
  out.set(new Uint8Array(ct), 12);
  return toBase64(out);
}

export async function open(secretB64: string, sealed: string, aad: string): Promise<string> {
  const bytes = fromBase64(sealed);
  const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.subarray(0, 12), additionalData: encoder.encode(aad) }, await aesKey(secretB64), bytes.subarray(12));
  return decoder.decode(pt);
}

// --- Standard Webhooks (https://www.standardwebhooks.com/) ---------------------------

const hmacKeys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", fromBase64(secret.slice("whsec_".length)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    hmacKeys.set(secret, key);
  }
  return key;
}

/** `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` */
export async function signWebhook(secret: string, id: string, timestamp: number, body: Uint8Array | string): Promise<string> {
  const raw = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${id}.${timestamp}.`);
  const data = new Uint8Array(prefix.length + raw.length);
  data.set(prefix, 0);
  data.set(raw, prefix.length);
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), data);
  return `v1,${toBase64(new Uint8Array(mac))}`;
}
