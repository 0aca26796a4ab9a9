/**
 * First-hour fixes that live outside the worker's routes (issue #12 item 8), checked in Node:
 * log lines carry a timestamp, and the dev tools' --help prints help and exits instead of
 * starting servers.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { log } from "../src/log.ts";
import { ROOT } from "./cli-harness.ts";

afterEach(() => vi.restoreAllMocks());

it("every structured log line starts with an ISO timestamp", () => {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
  vi.spyOn(console, "warn").mockImplementation((line: unknown) => void lines.push(String(line)));
  const before = Date.now();
  log("info", "tick", { planned: 1 });
  log("warn", "queue.retry", { model_set: "chat" });
  for (const line of lines) {
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(entry)[0]).toBe("ts");
    expect(entry.ts).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Date.parse(entry.ts as string)).toBeGreaterThanOrEqual(before - 1);
  }
  expect(JSON.parse(lines[0]!)).toMatchObject({ level: "info", event: "tick", planned: 1 });
});

function run(script: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [path.join(ROOT, script), ...args],
      { cwd: ROOT, encoding: "utf8", timeout: 20_000 },
      (err, stdout) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout }),
    );
    child.stdin?.end();
  });
}

it("dev/fake-baseten.ts --help prints its options and exits 0 (no server)", async () => {
  const r = await run("dev/fake-baseten.ts", ["--help"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/usage: npm run fake-baseten -- \[--port 8788\]/);
  expect(r.stdout).not.toMatch(/listening/);
});

it("dev/start.ts --help prints its options and exits 0 (nothing started)", async () => {
  const r = await run("dev/start.ts", ["--help"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/usage: npm start/);
});
