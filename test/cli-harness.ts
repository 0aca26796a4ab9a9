/**
 * Helpers for the Node-side CLI tests: run the built CLI (dist/cli/baseten-key-rotator.mjs) as a
 * child process, preferably under Node 20 (the oldest Node it promises to run on), and a stub
 * rotator that records each request and answers what the test says.
 */
/// <reference types="node" />
import { execFile } from "node:child_process";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const CLI = path.join(ROOT, "dist", "cli", "baseten-key-rotator.mjs");

/** Node 20 when the machine has it (the system node here), else the Node running the tests. */
export const NODE20 = (() => {
  for (const candidate of ["/usr/bin/node", "/usr/local/bin/node"]) {
    if (!existsSync(candidate)) continue;
    try {
      if (execFileSync(candidate, ["--version"], { encoding: "utf8" }).startsWith("v20.")) return candidate;
    } catch {
      /* next */
    }
  }
  return process.execPath;
})();

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with exactly `env` (plus PATH/HOME), never the test process's BKR_* or secrets. */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; node?: string } = {}): Promise<Run> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
    NO_COLOR: "1",
    ...opts.env,
  };
  return new Promise((resolve) => {
    execFile(
      opts.node ?? NODE20,
      [CLI, ...args],
      { env, cwd: opts.cwd ?? ROOT, encoding: "utf8", timeout: 150_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type Reply = { status: number; body?: unknown; headers?: Record<string, string>; raw?: string };

export interface Stub {
  url: string;
  requests: Recorded[];
  /** The answer for "METHOD /path" (the path with its query), or a function of the request. */
  routes: Map<string, Reply | ((r: Recorded) => Reply)>;
  close(): Promise<void>;
}

export const ADMIN = "adm_test_token_0123456789abcdef0123456789";

/** A stub rotator: admits `Bearer ${ADMIN}` on /v1/admin/*, answers from `routes`, 404 otherwise. */
export function startStub(): Promise<Stub> {
  const requests: Recorded[] = [];
  const routes: Stub["routes"] = new Map();
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const rec: Recorded = { method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, body };
      requests.push(rec);
      let reply: Reply;
      if (rec.path.startsWith("/v1/admin/") && req.headers.authorization !== `Bearer ${ADMIN}`) {
        reply = { status: 401, body: { error: "unauthorized", message: "invalid admin token" }, headers: { "www-authenticate": "Bearer" } };
      } else {
        const r = routes.get(`${rec.method} ${rec.path}`);
        reply =
          r === undefined ? { status: 404, body: { error: "not_found", message: "no such route" } } : typeof r === "function" ? r(rec) : r;
      }
      res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
      res.end(reply.raw ?? (reply.body === undefined ? "" : JSON.stringify(reply.body)));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({ url: `http://127.0.0.1:${port}`, requests, routes, close: () => new Promise<void>((r) => server.close(() => r())) });
    }),
  );
}
