/**
 * `baseten-key-rotator check` (`npm run check`, `predeploy`): the offline config check agrees with
 * the worker (it runs the worker's own loadConfig), reads a `.dev.vars`-style file too, names the
 * file every problem came from, keeps the TOML parser's line and column, refuses a var over
 * Cloudflare's 5 KB cap naming rotator.config.json as the way out, and refuses the placeholders
 * a deploy must not carry.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "./cli-harness.ts";

const GOOD_SET = { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" };
const HASH = "a".repeat(64);

const TOML = (vars: string, extra = "") => `name = "rotator"
main = "src/index.ts"
compatibility_date = "2026-11-01"
${extra}
[triggers]
crons = ["* * * * *"]

[[d1_databases]]
binding = "DB"
database_name = "rotator"
database_id = "3f1c2a4e-8b7d-4c6e-9a1b-2d3e4f5a6b7c"

[[kv_namespaces]]
binding = "KEYS"
id = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"

[vars]
BASETEN_TEAM_ID = "team-1"
${vars}`;

// Each check loads wrangler (seconds of CPU); the directories go at the end.
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A project directory with these files; `rotator.config.json` defaults to the committed `{}` one. */
function project(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bkr-check-"));
  dirs.push(dir);
  const all = { "rotator.config.json": JSON.stringify({ MODEL_SETS: {}, CONSUMERS: {} }), ...files };
  for (const [name, text] of Object.entries(all)) writeFileSync(path.join(dir, name), text);
  return dir;
}

const check = (dir: string, ...args: string[]) => runCli(["check", ...args], { cwd: dir });

describe("check agrees with the worker", () => {
  // The first-hour report: `npm run check -- --secrets-file .dev.vars` said "config OK" on a
  // .dev.vars whose model sets `npm start` rejected (the file's MODEL_SETS was never looked at).
  it("validates the vars of a .dev.vars file, not only its secrets, and names the file", async () => {
    const devVars = [
      "BASETEN_API_KEY=fake-mgmt-demo",
      `ENCRYPTION_KEY=${Buffer.alloc(32, 7).toString("base64")}`,
      `MODEL_SETS='${JSON.stringify({ demo: { model_ids: ["demo0001"], rotate_every: "10m", overlap: "30s" } })}'`,
      `CONSUMERS='${JSON.stringify({ demo: { token_sha256: HASH, model_sets: ["demo", "nope"] } })}'`,
    ].join("\n");
    const dir = project({ "wrangler.toml": TOML(""), ".dev.vars": devVars });
    for (const flag of ["--vars", "--secrets-file"]) {
      const r = await check(dir, flag, ".dev.vars", "--local");
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^ {2}- \.dev\.vars: MODEL_SETS\.demo: overlap must be at least 2m/m);
      expect(r.stderr).toMatch(/^ {2}- \.dev\.vars: CONSUMERS\.demo: model_sets names "nope", which is not in MODEL_SETS/m);
      expect(r.stderr).not.toContain(Buffer.alloc(32, 7).toString("base64"));
    }
  });

  it("a .dev.vars value overrides wrangler.toml's, as wrangler dev does; each problem names its own file", async () => {
    const dir = project({
      "wrangler.toml": TOML(`MODEL_SETS = '${JSON.stringify({ chat: { ...GOOD_SET, overlap: "1m" } })}'\nBASETEN_TIMEOUT_MS = "5"`),
      ".dev.vars": `MODEL_SETS='${JSON.stringify({ chat: GOOD_SET })}'\nBASETEN_TEAM_ID=bad team`,
    });
    const r = await check(dir, "--vars", ".dev.vars", "--local", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as { ok: boolean; problems: { file: string; problem: string }[] };
    expect(j.ok).toBe(false);
    expect(j.problems).toEqual([
      { file: ".dev.vars", problem: "BASETEN_TEAM_ID: must be letters, digits, - or _" },
      { file: "wrangler.toml", problem: "BASETEN_TIMEOUT_MS: must be a whole number from 50 to 30000" },
    ]);
  });

  it("passes a valid config with a one-line summary (exit 0)", async () => {
    const dir = project({
      "wrangler.toml": TOML(
        `[vars.MODEL_SETS.chat]\nmodel_ids = ["abcd1234"]\nrotate_every = "24h"\noverlap = "1h"\n\n[vars.CONSUMERS.billing]\ntoken_sha256 = "${HASH}"\nmodel_sets = ["chat"]\n`,
      ),
    });
    const r = await check(dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^config OK \(wrangler\.toml \+ rotator\.config\.json\): 1 set, 1 consumer; secrets not checked here/);
  });
});

describe("file, line and column", () => {
  it("a TOML error keeps the parser's line and column and shows the line", async () => {
    // The classic: the placeholder MODEL_SETS = "{}" left in place next to TOML tables.
    const dir = project({ "wrangler.toml": TOML(`MODEL_SETS = "{}"\n\n[vars.MODEL_SETS.chat]\nmodel_ids = ["abcd1234"]\n`) });
    const r = await check(dir);
    expect(r.code).toBe(1);
    const line = TOML("").split("\n").length + 2; // the [vars.MODEL_SETS.chat] line
    expect(r.stderr).toContain(`wrangler.toml:${line}:1: Invalid TOML document`);
    expect(r.stderr).toContain("[vars.MODEL_SETS.chat]\n      ^");
    const j = await check(dir, "--json");
    expect(JSON.parse(j.stdout).problems[0].file).toBe("wrangler.toml");
  });

  it("a JSON error in rotator.config.json gets its line and column", async () => {
    const dir = project({
      "wrangler.toml": TOML(""),
      "rotator.config.json": '{\n  "MODEL_SETS": {\n    "chat": { "model_ids": ["a"], }\n  }\n}\n',
    });
    const r = await check(dir, "--local");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rotator\.config\.json:3:35: not valid JSON/);
  });

  it("problems in rotator.config.json name that file; unknown keys are refused", async () => {
    const dir = project({
      "wrangler.toml": TOML(""),
      "rotator.config.json": JSON.stringify({
        MODEL_SETS: { chat: { ...GOOD_SET, rotate_every: "1h", overlap: "1h" } },
        CONSUMERS: {},
        MODEL_SET: {},
      }),
    });
    const r = await check(dir, "--local", "--json");
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).problems).toEqual([
      { file: "rotator.config.json", problem: 'rotator.config.json: unknown key "MODEL_SET" (expected MODEL_SETS, CONSUMERS)' },
      { file: "rotator.config.json", problem: "MODEL_SETS.chat: overlap must be shorter than rotate_every" },
    ]);
  });

  it("a missing --vars file is named", async () => {
    const dir = project({ "wrangler.toml": TOML("") });
    const r = await check(dir, "--vars", "nope.vars");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.vars: no such file/);
  });
});

describe("Cloudflare's 5 KB cap on a var, and rotator.config.json", () => {
  const many = (n: number) =>
    Object.fromEntries(
      Array.from({ length: n }, (_, i) => [
        `set-${String(i).padStart(4, "0")}`,
        { model_ids: [`model${i}`], rotate_every: "24h", overlap: "1h" },
      ]),
    );

  it("refuses a MODEL_SETS var over 5 KB, in wrangler.toml or .dev.vars, naming rotator.config.json", async () => {
    const big = JSON.stringify(many(80));
    expect(big.length).toBeGreaterThan(5 * 1024);
    const dir = project({
      "wrangler.toml": TOML(`MODEL_SETS = '${big}'`),
      ".dev.vars": `CONSUMERS='${JSON.stringify({ x: { token_sha256: HASH, model_sets: ["set-0001"] } })}'`,
    });
    let r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `- wrangler\\.toml: MODEL_SETS: ${big.length} bytes, over Cloudflare's 5 KB cap .*move MODEL_SETS into rotator\\.config\\.json`,
      ),
    );
    // As a TOML table it is just as big once uploaded.
    const table = Object.entries(many(80))
      .map(([id, s]) => `[vars.MODEL_SETS.${id}]\nmodel_ids = ["${s.model_ids[0]}"]\nrotate_every = "24h"\noverlap = "1h"\n`)
      .join("\n");
    r = await check(project({ "wrangler.toml": TOML(table) }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/wrangler\.toml: MODEL_SETS: \d+ bytes, over Cloudflare's 5 KB cap/);
    r = await check(project({ "wrangler.toml": TOML(""), ".dev.vars": `MODEL_SETS='${big}'` }), "--vars", ".dev.vars", "--local");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\.dev\.vars: MODEL_SETS: \d+ bytes, over Cloudflare's 5 KB cap/);
  });

  it("takes 2,000 sets from rotator.config.json", async () => {
    const dir = project({
      "wrangler.toml": TOML(""),
      "rotator.config.json": JSON.stringify({
        MODEL_SETS: many(2000),
        CONSUMERS: { ops: { token_sha256: HASH, model_sets: ["set-1999"] } },
      }),
    });
    const r = await check(dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/2000 sets, 1 consumer \(MODEL_SETS and CONSUMERS from rotator\.config\.json\)/);
  });

  it("a var wins over the file for its name, and the check says the file's entries are ignored", async () => {
    const dir = project({
      "wrangler.toml": TOML(`MODEL_SETS = '${JSON.stringify({ chat: GOOD_SET })}'`),
      "rotator.config.json": JSON.stringify({
        MODEL_SETS: { other: { ...GOOD_SET, overlap: "1s" } },
        CONSUMERS: { billing: { token_sha256: HASH, model_sets: ["chat"] } },
      }),
    });
    const r = await check(dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/1 set, 1 consumer \(CONSUMERS from rotator\.config\.json\)/);
    expect(r.stderr).toMatch(
      /warning: MODEL_SETS: set in wrangler\.toml, so the 1 entries of rotator\.config\.json's MODEL_SETS are ignored/,
    );
  });

  it("a missing rotator.config.json is a problem (the worker's build imports it)", async () => {
    const dir = project({ "wrangler.toml": TOML(`MODEL_SETS = "{}"\nCONSUMERS = "{}"`) });
    rmSync(path.join(dir, "rotator.config.json"));
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rotator\.config\.json: missing; the worker's build imports it/);
  });
});

describe("the deploy path", () => {
  it("refuses the placeholder team id and D1/KV ids of the committed wrangler.toml; --local skips those", async () => {
    const r = await runCli(["check"]); // the repository itself
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/- wrangler\.toml: d1_databases\.DB: database_id is a placeholder/);
    expect(r.stderr).toMatch(/- wrangler\.toml: kv_namespaces\.KEYS: id is a placeholder/);
    expect(r.stderr).toMatch(/- wrangler\.toml: BASETEN_TEAM_ID: still the placeholder/);
    const local = await runCli(["check", "--local"]);
    expect(local.code, local.stderr).toBe(0);
  });

  it("refuses a secret committed in [vars] without echoing it, and a local API base", async () => {
    const dir = project({
      "wrangler.toml": TOML(`ADMIN_TOKEN = "committed-admin-token-0123456789abcdef"\nBASETEN_API_BASE = "http://127.0.0.1:8788"`),
    });
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ADMIN_TOKEN: is set in \[vars\]/);
    expect(r.stderr).toMatch(/BASETEN_API_BASE: points at a local address/);
    expect(r.stderr + r.stdout).not.toContain("committed-admin-token-0123456789abcdef");
  });

  it("checks per-environment vars with --env", async () => {
    const dir = project({
      "wrangler.toml": TOML("", `[env.production]\n[env.production.vars]\nBASETEN_TEAM_ID = "replace-with-your-team-id"\n`),
    });
    const r = await check(dir, "--env", "production", "--local", "--json");
    // vars are not inherited: MODEL_SETS/CONSUMERS come from the file, the team id is the env's.
    expect(JSON.parse(r.stdout).summary).toMatch(/^0 sets, 0 consumers/);
  });
});
