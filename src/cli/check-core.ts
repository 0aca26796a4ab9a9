/**
 * The offline configuration check behind `baseten-key-rotator check` (`npm run check`, `predeploy`),
 * as a pure function: no Node or Workers imports, so the CLI and the tests (inside workerd) run the
 * very same code. Vars are validated by the worker's own `loadConfig` (src/config.ts), the
 * bundled-file merge included, so the check can never disagree with the worker.
 *
 * Layers, as `wrangler dev` and `wrangler deploy` apply them: the wrangler config's `[vars]`, then a
 * `.dev.vars`-style file (`--vars`; every name in it overrides, as wrangler dev does), then
 * `rotator.config.json` for MODEL_SETS / CONSUMERS where no var is set. Each problem is located:
 * `located[i].file` names the file the offending value came from.
 *
 * Secrets not given (environment or the vars file) are reported as "not checked here", and
 * valid stand-ins let the rest of the config be checked.
 */
import { CONFIG_FILE_NAME, FILE_VARS, readConfigFile } from "../config-file.ts";
import { type Config, loadConfig } from "../config.ts";
import type { Env } from "../env.ts";

export const SECRET_NAMES = ["BASETEN_API_KEY", "ENCRYPTION_KEY", "WEBHOOK_SECRET", "ADMIN_TOKEN"] as const;
export type SecretName = (typeof SECRET_NAMES)[number];
/** Optional secrets: never allowed in [vars] either, not reported as unchecked when absent. */
export const OPTIONAL_SECRET_NAMES = ["ENCRYPTION_KEY_PREVIOUS", "METRICS_TOKEN"] as const;
/** Cloudflare's cap on one var (text binding). `wrangler dev` does not enforce it. */
export const VAR_CAP_BYTES = 5 * 1024;

/** What the check needs from a wrangler config (the shape of wrangler's own parsed Config). */
export interface DeploymentInput {
  /** `[vars]` or `[env.<name>.vars]` (wrangler does not inherit vars into environments). */
  vars: Record<string, unknown>;
  /** Secret values known to the check (from the environment); others are not checked. */
  secrets?: Partial<Record<string, string>>;
  d1_databases?: { binding: string; database_id?: string | undefined }[];
  kv_namespaces?: { binding: string; id?: string | undefined }[];
  crons?: string[];
  /** Also check what only matters for a real deployment (ids, team id, API base). Default true. */
  deployment?: boolean;
  /** How to name the wrangler config in problems (default "wrangler.toml"). */
  configFile?: string;
  /** A `.dev.vars`-style file: its name and values (they override `vars`, secrets included). */
  varsFile?: { name: string; values: Record<string, string> };
  /** rotator.config.json as read from disk: its name and parsed content, or `missing: true`.
   *  Absent: the file bundled with this build. */
  rotatorConfig?: { name: string; content?: unknown; missing?: boolean };
}

export interface LocatedProblem {
  /** The file the offending value came from ("wrangler.toml", ".dev.vars", "rotator.config.json", "environment"). */
  file: string;
  problem: string;
}

export interface CheckReport {
  ok: boolean;
  problems: string[];
  /** The same problems, each with the file it came from. */
  located: LocatedProblem[];
  /** Not problems: a var that hides the file's value, for instance. */
  warnings: string[];
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
const ALL_SECRETS: readonly string[] = [...SECRET_NAMES, ...OPTIONAL_SECRET_NAMES];

const isSet = (v: unknown) => v !== undefined && v !== null && v !== "";
const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** The size Cloudflare counts for a var: the string, or the JSON text of a TOML table. */
export function varBytes(value: unknown): number {
  return utf8Bytes(typeof value === "string" ? value : (JSON.stringify(value) ?? ""));
}

export function checkConfiguration(input: DeploymentInput): CheckReport {
  const located: LocatedProblem[] = [];
  const warnings: string[] = [];
  const deployment = input.deployment !== false;
  const configFile = input.configFile ?? "wrangler.toml";
  const fileName = input.rotatorConfig?.name ?? CONFIG_FILE_NAME;
  const at = (file: string, problem: string) => located.push({ file, problem });

  // Where each name's value comes from: the wrangler config, then the vars file over it.
  const source = new Map<string, string>();
  const env: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(input.vars)) {
    // Secrets committed in wrangler.toml would be public to anyone with the repository.
    if (ALL_SECRETS.includes(name)) {
      at(configFile, `${name}: is set in [vars] (${configFile}); it is a secret: remove it there and use \`wrangler secret put ${name}\``);
      continue;
    }
    env[name] = value;
    source.set(name, configFile);
  }
  for (const [name, value] of Object.entries(input.secrets ?? {})) {
    if (value && ALL_SECRETS.includes(name)) {
      env[name] = value;
      source.set(name, "environment");
    }
  }
  for (const [name, value] of Object.entries(input.varsFile?.values ?? {})) {
    env[name] = value;
    source.set(name, input.varsFile!.name);
  }

  // Cloudflare refuses a var over 5 KB at deploy time; nothing local does.
  for (const [name, value] of Object.entries(env)) {
    const bytes = varBytes(value);
    if (bytes > VAR_CAP_BYTES) {
      const wayOut = (FILE_VARS as readonly string[]).includes(name)
        ? `move ${name} into ${fileName} (the same shape, bundled with the worker, no size cap) and delete the var`
        : "shorten it";
      at(
        source.get(name)!,
        `${name}: ${bytes} bytes, over Cloudflare's 5 KB cap for one var (${VAR_CAP_BYTES} bytes; wrangler dev does not enforce it, the deploy would fail): ${wayOut}`,
      );
    }
  }

  // rotator.config.json: what it holds, and which of its names a var hides.
  let fileContent: unknown;
  if (input.rotatorConfig?.missing) {
    at(
      fileName,
      `${fileName}: missing; the worker's build imports it: restore it (\`{"MODEL_SETS": {}, "CONSUMERS": {}}\` when all config is in vars)`,
    );
    fileContent = {};
  } else if (input.rotatorConfig) fileContent = input.rotatorConfig.content;
  const fromFile: string[] = [];
  if (input.rotatorConfig && !input.rotatorConfig.missing) {
    const { vars } = readConfigFile(fileContent);
    for (const name of FILE_VARS) {
      const value = vars[name];
      if (value === undefined) continue;
      if (env[name] === undefined || env[name] === null) {
        fromFile.push(name);
        source.set(name, fileName);
      } else if (typeof value === "object" && value !== null && Object.keys(value).length > 0) {
        warnings.push(
          `${name}: set in ${source.get(name)}, so the ${Object.keys(value).length} entries of ${fileName}'s ${name} are ignored (a var wins over the file); delete the var to use the file`,
        );
      }
    }
  }

  const unchecked: SecretName[] = SECRET_NAMES.filter((name) => !isSet(env[name]));
  for (const name of ["BASETEN_API_KEY", "ENCRYPTION_KEY"] as const) if (!isSet(env[name])) env[name] = STAND_INS[name];

  // The worker's own loader: the same merge of rotator.config.json, the same parser.
  const parsed = loadConfig(env as unknown as Env, input.rotatorConfig ? fileContent : undefined);
  if (!parsed.ok) {
    for (const problem of parsed.problems) {
      const name = /^[A-Z][A-Z0-9_]*/.exec(problem)?.[0];
      const file = problem.startsWith(`${CONFIG_FILE_NAME}:`) ? fileName : (name && source.get(name)) || configFile;
      at(file, problem);
    }
  }

  if (deployment) {
    const d1 = (input.d1_databases ?? []).find((d) => d.binding === "DB");
    if (!d1) at(configFile, 'd1_databases: no binding "DB" (the ledger)');
    else if (!d1.database_id || ALL_ZEROS.test(d1.database_id))
      at(configFile, "d1_databases.DB: database_id is a placeholder: use the id printed by `wrangler d1 create`");
    const kv = (input.kv_namespaces ?? []).find((k) => k.binding === "KEYS");
    if (!kv) at(configFile, 'kv_namespaces: no binding "KEYS" (the read cache)');
    else if (!kv.id || ALL_ZEROS.test(kv.id))
      at(configFile, "kv_namespaces.KEYS: id is a placeholder: use the id printed by `wrangler kv namespace create`");
    if ((input.crons ?? []).length === 0) at(configFile, "triggers.crons: no cron trigger: keys would never be minted, rotated or revoked");
    if (typeof env.BASETEN_TEAM_ID === "string" && env.BASETEN_TEAM_ID.startsWith("replace-with"))
      at(source.get("BASETEN_TEAM_ID") ?? configFile, `BASETEN_TEAM_ID: still the placeholder from wrangler.toml`);
    if (parsed.ok) {
      const host = new URL(parsed.config.apiBase).hostname;
      if (LOCAL_HOST.test(host))
        at(
          source.get("BASETEN_API_BASE") ?? configFile,
          `BASETEN_API_BASE: points at a local address (${host}); a deployed worker cannot reach it`,
        );
    }
  }

  let summary = "";
  if (parsed.ok) {
    const sets = [...parsed.config.sets.values()];
    const disabled = sets.filter((s) => !s.enabled).length;
    summary = `${sets.length} set${sets.length === 1 ? "" : "s"}${disabled ? ` (${disabled} disabled)` : ""}, ${parsed.config.consumers.length} consumer${parsed.config.consumers.length === 1 ? "" : "s"}`;
    if (parsed.config.events.length)
      summary += `, ${parsed.config.events.length} event webhook${parsed.config.events.length === 1 ? "" : "s"}`;
    if (fromFile.length) summary += ` (${fromFile.join(" and ")} from ${fileName})`;
    summary += unchecked.length
      ? `; secrets not checked here (set with wrangler secret put): ${unchecked.join(", ")}`
      : "; all secrets checked";
  }
  return {
    ok: located.length === 0,
    problems: located.map((l) => l.problem),
    located,
    warnings,
    unchecked,
    summary,
    config: parsed.ok ? parsed.config : null,
  };
}
