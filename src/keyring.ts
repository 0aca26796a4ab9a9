/**
 * The encryption keyring (DESIGN §4.9): `ENCRYPTION_KEY` seals, `ENCRYPTION_KEY_PREVIOUS`
 * (space-separated) still opens, so the AES key can be changed without an outage.
 *
 * Ciphertext format: `k1:<key id>:<base64(iv || AES-256-GCM(plaintext))>`, the key id being the
 * first 8 hex digits of the SHA-256 of the raw 32-byte key (DESIGN §3). Ciphertexts written before
 * key ids were recorded (plain base64, no id) still open: every configured key is tried, the
 * primary first. The AAD is unchanged (`<set>:<generation>` for stored keys).
 *
 * The keyring object carries key ids only; the key bytes live in a WeakMap next to it, so a
 * keyring that is logged, serialized or returned shows ids and nothing else.
 */
import { fromBase64, open as openRaw, seal as sealRaw, sha256HexSync } from "./crypto.ts";

export interface Keyring {
  /** Key id of ENCRYPTION_KEY: every new ciphertext is sealed with it. */
  readonly primaryId: string;
  /** Every configured key id, the primary first, then ENCRYPTION_KEY_PREVIOUS in order. */
  readonly ids: readonly string[];
}

/** A stored key that no configured key opens (sealed under a removed key, or altered). */
export class UndecryptableError extends Error {
  override name = "UndecryptableError";
  /** The id recorded in the ciphertext; null for the format without an id. */
  readonly sealedBy: string | null;
  // No parameter properties: `npm run check` loads this file with Node's type stripping.
  constructor(sealedBy: string | null, message: string) {
    super(message);
    this.sealedBy = sealedBy;
  }
}

const FORMAT = /^k1:([0-9a-f]{8}):([A-Za-z0-9+/]+={0,2})$/;
export const KEY_ID_LENGTH = 8;

const secrets = new WeakMap<Keyring, Map<string, string>>();

/** The key id of a base64 AES key: first 8 hex of SHA-256 of its raw bytes. */
export function keyId(keyB64: string): string {
  return sha256HexSync(fromBase64(keyB64)).slice(0, KEY_ID_LENGTH);
}

/** Builds a keyring from validated base64 keys (config.ts checks them first). */
export function createKeyring(primaryB64: string, previousB64: readonly string[] = []): Keyring {
  const byId = new Map<string, string>();
  for (const b64 of [primaryB64, ...previousB64]) {
    const id = keyId(b64);
    if (!byId.has(id)) byId.set(id, b64);
  }
  const keyring: Keyring = Object.freeze({ primaryId: keyId(primaryB64), ids: Object.freeze([...byId.keys()]) });
  secrets.set(keyring, byId);
  return keyring;
}

function keysOf(keyring: Keyring): Map<string, string> {
  const keys = secrets.get(keyring);
  if (!keys) throw new Error("not a keyring made by createKeyring");
  return keys;
}

/** The key id a ciphertext records; null for the older format without one. */
export function sealedBy(sealed: string): string | null {
  const m = FORMAT.exec(sealed);
  return m ? m[1]! : null;
}

/** Whether `sealed` is in the current format and sealed by the primary key (nothing to re-seal). */
export function isSealedByPrimary(keyring: Keyring, sealed: string): boolean {
  return sealed.startsWith(`k1:${keyring.primaryId}:`);
}

/** The prefix every ciphertext sealed by the primary starts with (SQL comparisons). */
export const primaryPrefix = (keyring: Keyring) => `k1:${keyring.primaryId}:`;

/** Seals with the primary key; the result records the primary's key id. */
export async function seal(keyring: Keyring, plaintext: string, aad: string): Promise<string> {
  const b64 = keysOf(keyring).get(keyring.primaryId)!;
  return `k1:${keyring.primaryId}:${await sealRaw(b64, plaintext, aad)}`;
}

/** Opens a ciphertext and says which key opened it. Throws UndecryptableError if none does. */
export async function openWithId(keyring: Keyring, sealed: string, aad: string): Promise<{ plaintext: string; keyId: string }> {
  const keys = keysOf(keyring);
  const m = FORMAT.exec(sealed);
  if (m) {
    const id = m[1]!;
    const b64 = keys.get(id);
    if (!b64) throw new UndecryptableError(id, `sealed by key ${id}, which is neither ENCRYPTION_KEY nor in ENCRYPTION_KEY_PREVIOUS`);
    try {
      return { plaintext: await openRaw(b64, m[2]!, aad), keyId: id };
    } catch {
      throw new UndecryptableError(id, `sealed by key ${id} but does not open with it (altered, or stored under another place)`);
    }
  }
  // The format without a key id: try every configured key, the primary first.
  for (const [id, b64] of keys) {
    try {
      return { plaintext: await openRaw(b64, sealed, aad), keyId: id };
    } catch {
      /* the next key */
    }
  }
  throw new UndecryptableError(null, "opens with no configured key (ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS)");
}

export async function open(keyring: Keyring, sealed: string, aad: string): Promise<string> {
  return (await openWithId(keyring, sealed, aad)).plaintext;
}

/** A stable text for "which keys were configured" (sorted ids), to tell when the keyring changed. */
export const keyringFingerprint = (keyring: Keyring) => [...keyring.ids].sort().join(" ");
