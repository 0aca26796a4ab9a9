import { env } from "cloudflare:test";
import { it } from "vitest";
import { fakeTenant } from "./helpers/fake.ts";

it("latencies", async ({ annotate }) => {
  const time = async (name: string, n: number, f: () => Promise<unknown>) => {
    const a = performance.now(); for (let i = 0; i < n; i++) await f();
    const t0 = Date.now(); for (let i = 0; i < n; i++) await f(); const ms = (Date.now() - t0) / n;
    await annotate(`${name}: ${ms.toFixed(2)} ms`, "lat");
  };
  await env.KEYS.put("key:x", "hello", { metadata: { g: 1 } });
  await time("d1 select 1", 100, () => env.DB.prepare("SELECT 1").first());
  await time("d1 batch 3", 100, () => env.DB.batch([env.DB.prepare("SELECT 1"), env.DB.prepare("SELECT 2"), env.DB.prepare("SELECT * FROM keys")]));
  await time("kv get", 100, () => env.KEYS.get("key:x"));
  await time("kv get cacheTtl json", 100, () => env.KEYS.get("key:x", { cacheTtl: 60 }));
  await time("kv getWithMetadata", 100, () => env.KEYS.getWithMetadata("key:x", { type: "stream" }).then(async (r) => { await (r.value as ReadableStream | null)?.cancel(); }));
  await time("kv put", 50, () => env.KEYS.put("key:y", "v" + Math.random(), { metadata: { g: 2 } }));
  await time("kv list", 100, () => env.KEYS.list({ prefix: "key:" }));
  const f = fakeTenant(env.BASETEN_API_BASE);
  await time("fake control", 100, () => f.keys());
  await time("fake api list", 100, () => fetch(`${env.BASETEN_API_BASE}/v1/api_keys`, { headers: { authorization: `Api-Key ${f.key}` } }).then((r) => r.text()));
});
