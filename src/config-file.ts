/**
 * `rotator.config.json`: MODEL_SETS and CONSUMERS bundled with the worker at build time.
 *
 * Cloudflare caps a var at 5 KB, which holds a few dozen sets. The file has no such cap (it is
 * part of the bundle), takes the same shapes as the vars (`{"MODEL_SETS": {...}, "CONSUMERS":
 * {...}}`) and is validated by the same parser, offline by `npm run check` too. A var, when set
 * (present, even as ""), wins over the file for its name.
 *
 * The repository commits a rotator.config.json with empty objects, so the import below always
 * resolves (wrangler, the tests and the CLI bundle it): edit that file in place.
 */
import bundled from "../rotator.config.json";
import type { ConfigResult } from "./config.ts";
import type { Env } from "./env.ts";

export const CONFIG_FILE_NAME = "rotator.config.json";
/** The vars the file may hold. */
export const FILE_VARS = ["MODEL_SETS", "CONSUMERS"] as const;
export type FileVar = (typeof FILE_VARS)[number];

/** A var is set when present: an empty string is a (broken) value, reported by the parser, not a fallback. */
const isSet = (v: unknown) => v !== undefined && v !== null;

/** The file's vars and the problems with its shape (not with its sets or consumers: parseConfig names those). */
export function readConfigFile(file: unknown): { vars: Partial<Record<FileVar, unknown>>; problems: string[] } {
  const problems: string[] = [];
  const vars: Partial<Record<FileVar, unknown>> = {};
  if (file === undefined || file === null) return { vars, problems };
  if (typeof file !== "object" || Array.isArray(file)) {
    problems.push(`${CONFIG_FILE_NAME}: must be a JSON object with the keys ${FILE_VARS.join(", ")}`);
    return { vars, problems };
  }
  for (const [key, value] of Object.entries(file as Record<string, unknown>)) {
    if ((FILE_VARS as readonly string[]).includes(key)) vars[key as FileVar] = value;
    else if (key !== "$schema" && !key.startsWith("//"))
      problems.push(`${CONFIG_FILE_NAME}: unknown key "${key}" (expected ${FILE_VARS.join(", ")})`);
  }
  return { vars, problems };
}

/** `env` with MODEL_SETS / CONSUMERS taken from the file where the var is not set; `from` says which came from the file. */
export function withConfigFile(env: Env, file: unknown = bundled): { env: Env; problems: string[]; from: FileVar[] } {
  const { vars, problems } = readConfigFile(file);
  const merged: Record<string, unknown> = { ...env };
  const from: FileVar[] = [];
  for (const name of FILE_VARS) {
    if (!isSet(merged[name]) && vars[name] !== undefined) {
      merged[name] = vars[name];
      from.push(name);
    }
  }
  return { env: merged as unknown as Env, problems, from };
}

/** What loadConfig runs: the file merged under the vars, parsed by the worker's parser, file problems first. */
export function parseWithConfigFile(env: Env, parse: (env: Env) => ConfigResult, file?: unknown): ConfigResult {
  const merged = withConfigFile(env, file === undefined ? bundled : file);
  const result = parse(merged.env);
  if (merged.problems.length === 0) return result;
  return { ok: false, problems: [...merged.problems, ...(result.ok ? [] : result.problems)] };
}
