/**
 * Verification of inbound Standard Webhooks (https://www.standardwebhooks.com/):
 * headers `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`
 * (space-separated `v1,<base64>` entries), HMAC-SHA256 over `{id}.{timestamp}.{raw body}`
 * keyed with the base64-decoded part of the secret after `whsec_`.
 *
 * Pure: the caller hands in the raw bytes it read and the time, so nothing is parsed
 * before it is authenticated and tests can move the clock.
 */
import { signWebhook, timingSafeEqual } from "./crypto.ts";

/** Senders and receivers disagree on the time by at most this, either way. */
export const TOLERANCE_S = 5 * 60;
const MAX_ID_LENGTH = 256;
/** Printable ASCII without spaces: ids are echoed into the signed string and stored. */
const ID_RE = /^[\x21-\x7e]+$/;
/** Whole seconds without leading zeros, so the number signs back to the exact header text. */
const TIMESTAMP_RE = /^(0|[1-9]\d{0,11})$/;
const ENTRY_RE = /^v1,([A-Za-z0-9+/]+={0,2})$/;
/** Senders rolling their secret send two or three; more is a malformed header, not work to do. */
const MAX_ENTRIES = 16;

export type Verification = { ok: true; id: string; timestamp: number } | { ok: false; reason: string };

/** `secrets`: every configured WEBHOOK_SECRET; a signature by any one of them verifies. */
export async function verifyWebhook(
  secrets: string | readonly string[],
  headers: Headers,
  body: Uint8Array,
  nowMs: number,
): Promise<Verification> {
  const id = headers.get("webhook-id");
  const ts = headers.get("webhook-timestamp");
  const sig = headers.get("webhook-signature");
  if (!id || !ts || !sig) return { ok: false, reason: "missing webhook-id, webhook-timestamp or webhook-signature header" };
  if (id.length > MAX_ID_LENGTH || !ID_RE.test(id)) return { ok: false, reason: "malformed webhook-id header" };
  if (!TIMESTAMP_RE.test(ts)) return { ok: false, reason: "malformed webhook-timestamp header: expected unix seconds" };
  const timestamp = Number(ts);
  const skew = timestamp - Math.floor(nowMs / 1000);
  if (skew < -TOLERANCE_S) return { ok: false, reason: "webhook-timestamp is too old (more than 5 minutes)" };
  if (skew > TOLERANCE_S) return { ok: false, reason: "webhook-timestamp is in the future (more than 5 minutes)" };

  // Entries are space-separated; a sender that sent the header twice gets them joined with ", ".
  const entries = sig
    .split(/\s+/)
    .map((e) => e.replace(/,$/, ""))
    .filter((e) => e !== "");
  if (entries.length > MAX_ENTRIES) return { ok: false, reason: "malformed webhook-signature header: too many entries" };
  const candidates = entries.filter((e) => ENTRY_RE.test(e));
  if (candidates.length === 0)
    return { ok: false, reason: "malformed webhook-signature header: expected one or more 'v1,<base64>' entries" };

  const expected = await Promise.all((typeof secrets === "string" ? [secrets] : secrets).map((s) => signWebhook(s, id, timestamp, body)));
  let match = false;
  // No early exit: every entry is compared with every secret, so timing says nothing about which matched.
  for (const c of candidates) for (const e of expected) if (timingSafeEqual(c, e)) match = true;
  if (!match) return { ok: false, reason: "no matching signature in webhook-signature" };
  return { ok: true, id, timestamp };
}
