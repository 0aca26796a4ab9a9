/**
 * A webhook or admin `reason` never carries a live key's secret in any form (DESIGN §4,
 * Redaction): before it is stored (audit, webhook_receipts), logged, sent in events or answered,
 * the set's live keys are opened and cut out of it (the whole key, the secret part alone, with
 * any separator, URL-encoded, partly quoted), then anything key-shaped (src/log.ts).
 */
import { type Keyring, open } from "./keyring.ts";
import { log, redactText } from "./log.ts";

/** The live keys of a set (current and previous), whole and their secret parts. */
export async function liveSecrets(db: D1Database, keyring: Keyring, set: string): Promise<string[]> {
  const { results } = await db
    .prepare("SELECT generation, ciphertext FROM keys WHERE model_set = ?1 AND state IN ('current', 'previous') AND ciphertext IS NOT NULL")
    .bind(set)
    .all<{ generation: number; ciphertext: string }>();
  const out: string[] = [];
  for (const r of results) {
    try {
      const key = await open(keyring, r.ciphertext, `${set}:${r.generation}`);
      const dot = key.indexOf(".");
      out.push(key);
      if (dot > 0) out.push(key.slice(dot + 1));
    } catch {
      /* an undecryptable key cannot be quoted from here either; the generic patterns still apply */
    }
  }
  return out;
}

/** `reason` with every live secret of `set` and anything key-shaped cut out; null stays null. */
export async function redactReason(
  db: D1Database,
  keyring: Keyring,
  set: string,
  reason: string | null,
  max = 500,
): Promise<string | null> {
  if (reason === null) return null;
  let secrets: string[] = [];
  try {
    secrets = await liveSecrets(db, keyring, set);
  } catch (err) {
    log("warn", "reason.live_secrets_failed", { model_set: set, error: err instanceof Error ? err.name : "unknown" });
  }
  const out = redactText(reason, secrets, max).trim();
  return out === "" ? null : out;
}
