/**
 * The command line from a packed tarball, as an operator outside this repository gets it:
 *   npm pack                                        # prepack builds dist/client and dist/cli
 *   npx ./baseten-key-rotator-0.1.0.tgz --help
 *   BKR_URL=... BKR_ADMIN_TOKEN=... npx ./baseten-key-rotator-0.1.0.tgz status
 * run here with the machine's own npx (Node 20 on this machine), in an empty directory.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADMIN, ROOT, type Stub, startStub } from "./cli-harness.ts";

/** The machine's npx (Node 20 here), not one on node_modules/.bin. */
const NPX = existsSync("/usr/bin/npx") ? "/usr/bin/npx" : "npx";
let dir: string;
let tarball: string;
let stub: Stub;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bkr-pack-"));
  execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  tarball = path.join(
    dir,
    readdirSync(dir).find((f) => f.endsWith(".tgz"))!,
  );
  stub = await startStub();
});
afterAll(async () => {
  await stub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const passThrough = (names: string[]) =>
  Object.fromEntries(names.flatMap((n) => (process.env[n] !== undefined ? [[n, process.env[n]!]] : [])));

/** `npx <tarball> ...args` in the empty directory, with only the given environment. */
function npx(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      NPX,
      ["--yes", `./${path.basename(tarball)}`, ...args],
      {
        cwd: dir,
        encoding: "utf8",
        timeout: 120_000,
        env: {
          // What reaching the npm registry needs on this machine, as an operator's shell has it: a
          // cold npx cache installs the tarball's dependencies, and behind a TLS-inspecting proxy
          // the Node 22 on PATH (node_modules/.bin) trusts its CA only through NODE_EXTRA_CA_CERTS
          // (without it: SELF_SIGNED_CERT_IN_CHAIN, retried until the test's timeout).
          ...passThrough([
            "NODE_EXTRA_CA_CERTS",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "NO_PROXY",
            "https_proxy",
            "http_proxy",
            "no_proxy",
            "npm_config_registry",
          ]),
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "/tmp",
          npm_config_cache: process.env.npm_config_cache ?? path.join(process.env.HOME ?? "/tmp", ".npm"),
          ...env,
        },
      },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

it("the tarball holds the CLI and the client, nothing else of the repository", () => {
  const files = execFileSync("tar", ["tzf", tarball], { encoding: "utf8" }).trim().split("\n").sort();
  expect(files).toEqual([
    "package/README.md",
    "package/dist/cli/baseten-key-rotator.mjs",
    "package/dist/client/index.d.ts",
    "package/dist/client/index.js",
    "package/package.json",
  ]);
});

it("npx ./baseten-key-rotator-*.tgz --help and status against a rotator", async () => {
  const help = await npx(["--help"]);
  expect(help.code, help.stderr).toBe(0);
  expect(help.stdout).toMatch(/Usage: baseten-key-rotator <command>/);

  stub.routes.set("GET /v1/admin/status", {
    status: 200,
    body: {
      sets: [{ model_set: "chat", enabled: true, generation: 3, refresh_at: null, expires_at: null, previous: [], last_run: null }],
      config_problems: [],
    },
  });
  const status = await npx(["status"], { BKR_URL: stub.url, BKR_ADMIN_TOKEN: ADMIN });
  expect(status.code, status.stderr).toBe(0);
  expect(status.stdout).toMatch(/^chat\s+yes\s+3/m);
  expect(status.stdout + status.stderr).not.toContain(ADMIN);
  expect(stub.requests.at(-1)!.headers.authorization).toBe(`Bearer ${ADMIN}`);

  const usage = await npx(["revoke", "chat"], { BKR_URL: stub.url, BKR_ADMIN_TOKEN: ADMIN });
  expect(usage.code).toBe(2);
});
