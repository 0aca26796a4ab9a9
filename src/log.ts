/**
 * Structured log lines (one JSON object each, for Workers Logs / `wrangler tail`).
 * Callers pass ids, generations, times and error text only, never key material;
 * `redactSecrets` is a last line of defence for free text from outside.
 */
export type LogLevel = "info" | "warn" | "error";

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/** Anything shaped like a Baseten key ("<prefix>.<secret>") is cut out of free text. */
export function redactSecrets(text: string): string {
  return text.replace(/[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{12,}/g, "[redacted]");
}

/** An error as short, redacted text for logs and run records (never key material). */
export function errorText(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err)).slice(0, 300);
}
