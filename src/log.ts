/**
 * Structured log lines (one JSON object each, for Workers Logs / `wrangler tail`).
 * Callers pass ids, generations, times and error text only, never key material;
 * the redaction below is what stands between free text from outside and every place it goes.
 */
export type LogLevel = "info" | "warn" | "error";

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

export const REDACTED = "[redacted]";

// Key-shaped text: "<prefix>.<secret>" (Baseten's form), the separator changed or spaced
// ("prefix:secret", "prefix . secret", "prefix%2Esecret" before decoding), and long
// high-entropy runs on their own (a secret without its prefix).
const KEY_LIKE = /[A-Za-z0-9_-]{4,}(\s*)(\.|[:;,|]|%2[Ee]|%3[Aa])(\s*)([A-Za-z0-9_-]{12,})/g;
const LONG_RUN = /[A-Za-z0-9]{24,}/g;
/** A known secret counts as present when this many consecutive characters of it appear (any case). */
const KNOWN_MIN_MATCH = 12;

const mixed = (s: string) => /[0-9]/.test(s) && /[A-Za-z]/.test(s);

/** Anything shaped like a Baseten key is cut out of free text. */
export function redactSecrets(text: string): string {
  return text
    .replace(KEY_LIKE, (whole, before: string, sep: string, after: string, secret: string) =>
      // "prefix.secret" as Baseten writes it; any other separator or spacing only when the secret
      // part looks like one (letters and digits), so "happened. Unfortunately" stays readable.
      (sep === "." && before === "" && after === "") || (secret.length >= 16 && mixed(secret)) ? REDACTED : whole,
    )
    .replace(LONG_RUN, (run) => (mixed(run) ? REDACTED : run));
}

/** Percent-escapes decoded (up to three layers: "%252E" is "%2E" is "."); text that is not valid stays as is. */
export function urlDecoded(text: string): string {
  let out = text;
  for (let i = 0; i < 3 && /%[0-9A-Fa-f]{2}/.test(out); i++) {
    try {
      out = decodeURIComponent(out);
    } catch {
      out = out.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
    }
  }
  return out;
}

/**
 * Cuts every run of at least 12 consecutive characters (or the whole secret when shorter) of any
 * known secret out of `text`, ignoring case: the secret alone, with any prefix or separator, or
 * only partly quoted.
 */
export function redactKnown(text: string, secrets: readonly string[]): string {
  const known = secrets.filter((s) => s.length >= 8).map((s) => s.toLowerCase());
  if (known.length === 0 || text.length === 0) return text;
  const lower = text.toLowerCase();
  const hit = new Uint8Array(text.length);
  for (const secret of known) {
    const min = Math.min(KNOWN_MIN_MATCH, secret.length);
    // Longest common substrings, one row at a time: run[j] = length of the match ending at text[i], secret[j].
    let prev = new Uint16Array(secret.length + 1);
    let row = new Uint16Array(secret.length + 1);
    for (let i = 1; i <= lower.length; i++) {
      for (let j = 1; j <= secret.length; j++) {
        row[j] = lower.charCodeAt(i - 1) === secret.charCodeAt(j - 1) ? prev[j - 1]! + 1 : 0;
        if (row[j]! >= min) hit.fill(1, i - row[j]!, i);
      }
      [prev, row] = [row, prev];
      row.fill(0);
    }
  }
  let out = "";
  for (let i = 0; i < text.length; i++) {
    if (!hit[i]) out += text[i];
    else if (i === 0 || !hit[i - 1]) out += REDACTED;
  }
  return out;
}

/**
 * Free text from outside (a webhook `reason`, Baseten's error text) made safe to store, log, send
 * and answer with: URL-decoded first (so an encoded key is seen), known secrets cut out, then
 * anything key-shaped. Redaction always runs on the whole text, BEFORE it is shortened to `max`.
 */
export function redactText(text: string, knownSecrets: readonly string[] = [], max = Infinity): string {
  const decoded = urlDecoded(text);
  const out = redactSecrets(redactKnown(decoded, knownSecrets));
  return out.length > max ? out.slice(0, max) : out;
}

/** Baseten's error text: the management key (and anything key-shaped) cut out, then shortened. */
export function redactUpstreamText(text: string, managementKey: string, max = 300): string {
  const whole = managementKey ? text.split(managementKey).join(REDACTED) : text;
  return redactText(whole, managementKey ? [managementKey] : [], max);
}

/** An error as short, redacted text for logs and run records (never key material). */
export function errorText(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 300);
}
