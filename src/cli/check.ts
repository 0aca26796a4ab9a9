/// <reference types="node" />
/**
 * `check`: the offline config check, Node side. Reads the wrangler config with wrangler's own
 * reader (`unstable_readConfig`: TOML tables or JSON strings, `--env` semantics, and its TOML
 * parser's line and column on a syntax error), a `.dev.vars`-style file, and rotator.config.json,
 * then runs the pure check (check-core.ts), which validates with the worker's loadConfig.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseEnv } from "node:util";
import { CONFIG_FILE_NAME } from "../config-file.ts";
import { type CheckReport, checkConfiguration, OPTIONAL_SECRET_NAMES, SECRET_NAMES } from "./check-core.ts";
import { UsageError } from "./http.ts";

export interface CheckOptions {
  config?: string;
  vars?: string;
  env?: string;
  local: boolean;
  rotatorConfig?: string;
  /** Less output from wrangler (its warnings) for --json. */
  quiet: boolean;
}

/** A problem of a file the check could not read at all (TOML or JSON syntax, missing file). */
export class FileProblem extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

interface WranglerConfig {
  configPath?: string;
  vars?: Record<string, unknown>;
  d1_databases?: { binding: string; database_id?: string }[];
  kv_namespaces?: { binding: string; id?: string }[];
  triggers?: { crons?: string[] };
}
type ReadConfig = (args: { config?: string; env?: string }, opts: { hideWarnings?: boolean }) => WranglerConfig;

const rel = (p: string) => path.relative(process.cwd(), p) || p;

async function wranglerReader(): Promise<ReadConfig> {
  // The project's own wrangler (the one that deploys it), else one installed beside this CLI.
  let entry: string | undefined;
  for (const from of [path.join(process.cwd(), "noop.js"), import.meta.url]) {
    try {
      entry = createRequire(from).resolve("wrangler");
      break;
    } catch {
      /* next */
    }
  }
  if (!entry) {
    throw new UsageError(
      "check reads the wrangler config with wrangler's own reader, and wrangler is not installed here: run it in your worker's project (npm install -D wrangler)",
      "check",
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as { unstable_readConfig?: ReadConfig };
  if (typeof mod.unstable_readConfig !== "function")
    throw new UsageError("this wrangler has no unstable_readConfig (wrangler 3.60 or later is needed)", "check");
  return mod.unstable_readConfig;
}

/** `file:line:column: message`, the line, and a caret under the column: what the TOML parser said. */
function tomlProblem(err: unknown, fallbackFile: string): FileProblem {
  const e = err as { message?: string; text?: string; location?: { file?: string; line?: number; column?: number; lineText?: string } };
  const loc = e.location;
  const file = loc?.file ? rel(loc.file) : fallbackFile;
  const message = (e.text ?? e.message ?? String(err)).trim();
  if (loc?.line) {
    const caret = loc.lineText !== undefined ? `\n    ${loc.lineText}\n    ${" ".repeat(Math.max(0, (loc.column ?? 1) - 1))}^` : "";
    return new FileProblem(file, `${file}:${loc.line}:${loc.column ?? 1}: ${message}${caret}`);
  }
  return new FileProblem(file, `${file}: ${message.replace(/\n/g, "\n    ")}`);
}

function readVarsFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new FileProblem(rel(file), `${rel(file)}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : "unreadable"}`);
  }
  return parseEnv(text) as Record<string, string>;
}

/** The JSON parser's position turned into line and column. */
function jsonProblem(file: string, text: string, err: Error): FileProblem {
  const m = /position (\d+)/.exec(err.message);
  if (m) {
    const pos = Number(m[1]);
    const before = text.slice(0, pos).split("\n");
    const line = before.length;
    const column = before.at(-1)!.length + 1;
    return new FileProblem(file, `${file}:${line}:${column}: not valid JSON: ${err.message.replace(/ in JSON at position \d+.*$/, "")}`);
  }
  return new FileProblem(file, `${file}: not valid JSON: ${err.message}`);
}

export async function runCheck(opts: CheckOptions): Promise<{ report: CheckReport; where: string }> {
  const envName = opts.env ?? (process.env.CLOUDFLARE_ENV || undefined);
  const configArg = opts.config;
  if (configArg && !existsSync(configArg)) throw new FileProblem(configArg, `${configArg}: no such file`);

  // The vars file first: cheap, and a missing one is a usage mistake worth knowing before wrangler loads.
  const varsValues = opts.vars ? readVarsFile(opts.vars) : undefined;

  const readConfig = await wranglerReader();
  let config: WranglerConfig;
  try {
    config = readConfig({ config: configArg, env: envName }, { hideWarnings: opts.quiet });
  } catch (err) {
    throw tomlProblem(err, configArg ?? "wrangler.toml");
  }
  const configPath = config.configPath ?? configArg ?? "wrangler.toml";
  const configFile = rel(configPath);

  // rotator.config.json: beside the wrangler config unless named.
  const filePath = opts.rotatorConfig ?? path.join(path.dirname(path.resolve(configPath)), CONFIG_FILE_NAME);
  const fileName = rel(filePath);
  let rotatorConfig: { name: string; content?: unknown; missing?: boolean };
  if (!existsSync(filePath)) {
    if (opts.rotatorConfig) throw new FileProblem(fileName, `${fileName}: no such file`);
    rotatorConfig = { name: fileName, missing: true };
  } else {
    const text = readFileSync(filePath, "utf8");
    try {
      rotatorConfig = { name: fileName, content: JSON.parse(text) };
    } catch (err) {
      throw jsonProblem(fileName, text, err as Error);
    }
  }

  // Secrets from the process environment (the vars file, when given, wins over them).
  const secrets: Record<string, string> = {};
  for (const name of [...SECRET_NAMES, ...OPTIONAL_SECRET_NAMES]) if (process.env[name]) secrets[name] = process.env[name]!;

  const report = checkConfiguration({
    vars: config.vars ?? {},
    secrets,
    d1_databases: config.d1_databases,
    kv_namespaces: config.kv_namespaces,
    crons: config.triggers?.crons ?? [],
    deployment: !opts.local,
    configFile: `${configFile}${envName ? ` [env.${envName}]` : ""}`,
    ...(varsValues ? { varsFile: { name: rel(opts.vars!), values: varsValues } } : {}),
    rotatorConfig,
  });
  const where = [
    `${configFile}${envName ? ` [env.${envName}]` : ""}`,
    ...(opts.vars ? [rel(opts.vars)] : []),
    ...(rotatorConfig.missing ? [] : [fileName]),
  ].join(" + ");
  return { report, where };
}
