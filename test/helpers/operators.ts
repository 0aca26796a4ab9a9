/**
 * Shared by test/operators-*.test.ts: admin and metrics requests, and the bad-input check
 * (the documented 4xx JSON naming the problem, nothing written to D1 or KV, nothing minted
 * or revoked at the fake Baseten).
 */
import { env } from "cloudflare:test";
import { expect } from "vitest";
import { dumpStorage } from "./faulty-bindings.ts";
import type { World } from "./world.ts";

export const METRICS_TOKEN = `mt_${"k".repeat(8)}${crypto.randomUUID().replaceAll("-", "")}`;
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
export const admin = (w: World) => bearer(w.env.ADMIN_TOKEN!);

export async function adminJson<T = unknown>(
  w: World,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: T; res: Response }> {
  const res = await w.request(path, { ...init, headers: { ...admin(w), ...(init.headers as Record<string, string> | undefined) } });
  return { status: res.status, body: (await res.json()) as T, res };
}

export const postJson = (w: World, path: string, body: unknown, headers: Record<string, string> = admin(w)) =>
  w.request(path, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

export interface Refusal {
  status: number;
  error?: string;
  /** The message must match (it names the problem). */
  message?: RegExp;
  allow?: string;
  challenge?: boolean;
}

/** `send` is refused as documented and changes nothing anywhere. */
export async function expectRefused(w: World, name: string, send: () => Promise<Response>, want: Refusal): Promise<void> {
  const before = await dumpStorage(env.DB, env.KEYS);
  const fakeBefore = (await w.fake.calls()).counts;
  const res = await send();
  const text = await res.text();
  expect(res.status, `${name}: ${text.slice(0, 300)}`).toBe(want.status);
  expect(res.headers.get("content-type"), name).toMatch(/^application\/json/);
  const body = JSON.parse(text) as { error: unknown; message: unknown };
  expect(typeof body.error, name).toBe("string");
  expect(typeof body.message, name).toBe("string");
  if (want.error) expect(body.error, name).toBe(want.error);
  if (want.message) expect(body.message, name).toMatch(want.message);
  if (want.allow) expect(res.headers.get("allow"), name).toBe(want.allow);
  if (want.challenge) expect(res.headers.get("www-authenticate"), name).toMatch(/^Bearer realm="/);
  expect(text, name).not.toMatch(/\bat [\w.<>]+ \(|\.ts:\d+|TypeError|SyntaxError/);
  expect(await dumpStorage(env.DB, env.KEYS), `${name}: D1 and KV unchanged`).toBe(before);
  const fakeAfter = (await w.fake.calls()).counts;
  for (const op of ["mint", "revoke"]) expect(fakeAfter[op] ?? 0, `${name}: no ${op} at Baseten`).toBe(fakeBefore[op] ?? 0);
}
