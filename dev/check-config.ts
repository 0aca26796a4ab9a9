/**
 * `npm run check` (also run by `predeploy`): validates the configuration offline, with the
 * worker's own parser, before anything reaches Cloudflare.
 *
 * The wrangler config is read by wrangler itself (its exported `unstable_readConfig`), so the
 * check sees exactly what `wrangler deploy` would: TOML tables or JSON strings, and `--env`
 * semantics (vars are NOT inherited from the top level into `[env.<name>]`).
 *
 * Usage: npm run check -- [--config wrangler.toml] [--env <name>] [--secrets-file .dev.vars] [--local]
 *   --env            the wrangler environment to check (default: $CLOUDFLARE_ENV, else top level)
 *   --secrets-file   a dotenv file (like .dev.vars) to take the secrets from; otherwise only
 *                    secrets present in the process environment are checked
 *   --local          skip deployment-only checks (placeholder ids, team id, local API base)
 * Exit 0 with a one-line summary; exit 1 listing every problem.
 */
/// <reference types="node" />
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import { type SecretName, SECRET_NAMES, checkConfiguration } from "./config-report.ts";

const USAGE = "usage: npm run check -- [--config wrangler.toml] [--env <name>] [--secrets-file .dev.vars] [--local]";

function fail(message: string): never {
  console.error(`config check failed:\n${message}`);
  process.exit(1);
}

function parseArgs(argv: string[]) {
  const out: { config?: string; env?: string; secretsFile?: string; local: boolean } = { local: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (!v) fail(`  - ${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === "--config" || flag === "-c") out.config = value();
    else if (flag === "--env" || flag === "-e") out.env = value();
    else if (flag === "--secrets-file") out.secretsFile = value();
    else if (flag === "--local") out.local = true;
    else if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else fail(`  - unknown argument ${arg}\n${USAGE}`);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const envName = args.env ?? (process.env.CLOUDFLARE_ENV || undefined);

// Secrets: the process environment, then the secrets file (which wins). Only the four names.
const secrets: Partial<Record<SecretName, string>> = {};
for (const name of SECRET_NAMES) if (process.env[name]) secrets[name] = process.env[name];
if (args.secretsFile) {
  let text: string;
  try {
    text = readFileSync(args.secretsFile, "utf8");
  } catch (err) {
    fail(`  - --secrets-file ${args.secretsFile}: ${(err as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
  const values = parseEnv(text);
  for (const name of SECRET_NAMES) if (values[name]) secrets[name] = values[name];
}

// Loading wrangler takes a moment; it is only needed here, never by the worker.
const { unstable_readConfig } = await import("wrangler");
let config: ReturnType<typeof unstable_readConfig>;
try {
  config = unstable_readConfig({ config: args.config, env: envName }, { hideWarnings: false });
} catch (err) {
  fail(`  - ${(err as Error).message.trim().replace(/\n/g, "\n    ")}`);
}

const where = `${path.relative(process.cwd(), config.configPath ?? args.config ?? "wrangler.toml") || "wrangler.toml"}${envName ? ` [env.${envName}]` : ""}`;
const report = checkConfiguration({
  vars: (config.vars ?? {}) as Record<string, unknown>,
  secrets,
  d1_databases: config.d1_databases,
  kv_namespaces: config.kv_namespaces,
  crons: config.triggers?.crons ?? [],
  deployment: !args.local,
});

if (!report.ok) {
  console.error(`config check failed for ${where}: ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"}`);
  for (const p of report.problems) console.error(`  - ${p}`);
  if (report.unchecked.length) console.error(`(secrets not checked here, set with wrangler secret put: ${report.unchecked.join(", ")})`);
  process.exit(1);
}
console.log(`config OK (${where}): ${report.summary}`);
