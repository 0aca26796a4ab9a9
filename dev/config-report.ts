/**
 * The offline configuration check behind `npm run check` (and `predeploy`), as a pure function:
 * no Node or Workers imports, so the CLI (dev/check-config.ts) and the tests (inside workerd)
 * run the very same code. Vars are validated by the worker's own parser (src/config.ts).
 *
 * Secrets are not in wrangler.toml. Those not given (environment or --secrets-file) are
 * reported as "not checked here", and valid stand-ins let the rest of the config be checked.
 */
import { type Config, parseConfig } from "../src/config.ts";
import type { Env } from "../src/env.ts";

export const SECRET_NAMES = ["BASETEN_API_KEY", "ENCRYPTION_KEY", "WEBHOOK_SECRET", "ADMIN_TOKEN"] as const;
export type SecretName = (typeof SECRET_NAMES)[number];

/** What the check needs from a wrangler config (the shape of wrangler's own parsed Config). */
export interface DeploymentInput {
  /** `[vars]` or `[env.<name>.vars]` (wrangler does not inherit vars into environments). */
  vars: Record<string, unknown>;
  /** Secret values known to the check (from the environment or a secrets file); others are not checked. */
  secrets?: Partial<Record<SecretName, string>>;
  d1_databases?: { binding: string; database_id?: string | undefined }[];
  kv_namespaces?: { binding: string; id?: string | undefined }[];
  crons?: string[];
  /** Also check what only matters for a real deployment (ids, team id, API base). Default true. */
  deployment?: boolean;
}

export interface CheckReport {
  ok: boolean;
  problems: string[];
  /** Secrets that were not available to check. */
  unchecked: SecretName[];
  /** One line: "N sets (k disabled), M consumers; ..." */
  summary: string;
  config: Config | null;
}

/** Stand-ins for secrets that are not available: valid, so only real problems are reported. */
const STAND_INS: Record<"BASETEN_API_KEY" | "ENCRYPTION_KEY", string> = {
  BASETEN_API_KEY: "not-checked-here",
  ENCRYPTION_KEY: "A".repeat(43) + "=", // base64 of 32 zero bytes
};
const ALL_ZEROS = /^[0-]+$/;
const LOCAL_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|0\.0\.0\.0)$/;

export function checkConfiguration(input: DeploymentInput): CheckReport {
  const problems: string[] = [];
  const deployment = input.deployment !== false;
  const secrets = input.secrets ?? {};

  // Secrets committed in wrangler.toml would be public to anyone with the repository.
  for (const name of SECRET_NAMES) {
    if (name in input.vars) problems.push(`${name}: is set in [vars] (wrangler.toml); it is a secret: remove it there and use \`wrangler secret put ${name}\``);
  }

  const unchecked: SecretName[] = SECRET_NAMES.filter((name) => !secrets[name]);
  const env: Record<string, unknown> = { ...input.vars };
  for (const name of SECRET_NAMES) delete env[name];
  for (const name of SECRET_NAMES) {
    const value = secrets[name];
    if (value) env[name] = value;
    else if (name === "BASETEN_API_KEY" || name === "ENCRYPTION_KEY") env[name] = STAND_INS[name];
  }
  const parsed = parseConfig(env as unknown as Env);
  if (!parsed.ok) problems.push(...parsed.problems);

  if (deployment) {
    const d1 = (input.d1_databases ?? []).find((d) => d.binding === "DB");
    if (!d1) problems.push('d1_databases: no binding "DB" (the ledger)');
    else if (!d1.database_id || ALL_ZEROS.test(d1.database_id)) problems.push('d1_databases.DB: database_id is a placeholder: use the id printed by `wrangler d1 create`');
    const kv = (input.kv_namespaces ?? []).find((k) => k.binding === "KEYS");
    if (!kv) problems.push('kv_namespaces: no binding "KEYS" (the read cache)');
    else if (!kv.id || ALL_ZEROS.test(kv.id)) problems.push("kv_namespaces.KEYS: id is a placeholder: use the id printed by `wrangler kv namespace create`");
    if ((input.crons ?? []).length === 0) problems.push("triggers.crons: no cron trigger: keys would never be minted, rotated or revoked");
    if (typeof input.vars.BASETEN_TEAM_ID === "string" && input.vars.BASETEN_TEAM_ID.startsWith("replace-with")) problems.push("BASETEN_TEAM_ID: still the placeholder from wrangler.toml");
    if (parsed.ok) {
      const host = new URL(parsed.config.apiBase).hostname;
      if (LOCAL_HOST.test(host)) problems.push(`BASETEN_API_BASE: points at a local address (${host}); a deployed worker cannot reach it`);
    }
  }

  let summary = "";
  if (parsed.ok) {
    const sets = [...parsed.config.sets.values()];
    const disabled = sets.filter((s) => !s.enabled).length;
    summary = `${sets.length} set${sets.length === 1 ? "" : "s"}${disabled ? ` (${disabled} disabled)` : ""}, ${parsed.config.consumers.length} consumer${parsed.config.consumers.length === 1 ? "" : "s"}`;
    if (parsed.config.events.length) summary += `, ${parsed.config.events.length} event webhook${parsed.config.events.length === 1 ? "" : "s"}`;
    summary += unchecked.length ? `; secrets not checked here (set with wrangler secret put): ${unchecked.join(", ")}` : "; all secrets checked";
  }
  return { ok: problems.length === 0, problems, unchecked, summary, config: parsed.ok ? parsed.config : null };
}
