import { webcrypto as crypto, createHash } from "node:crypto";
const mod = await import(process.argv[2] ?? "../dist/bench-bundle/index.js");
const rotator = mod.default;
const keyBytes = crypto.getRandomValues(new Uint8Array(32));
const b64 = (u) => Buffer.from(u).toString("base64");
const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt"]);
const iv = crypto.getRandomValues(new Uint8Array(12));
const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: new TextEncoder().encode("demo:1") }, key, new TextEncoder().encode("abcd1234.secretsecretsecretsecretsecret")));
const entry = { v: 1, model_set: "demo", model_ids: ["abcd1234"], generation: 1, created_at: Date.now(), refresh_at: Date.now() + 86400000, expires_at: Date.now() + 90000000, overlap_ms: 3600000, ct: b64(Buffer.concat([iv, ct])) };
const token = "bench_token_123";
let kvGets = 0;
const env = {
  BASETEN_API_BASE: "http://127.0.0.1:1", BASETEN_TEAM_ID: "t", BASETEN_API_KEY: "fake-mgmt-x", ENCRYPTION_KEY: b64(keyBytes),
  MODEL_SETS: JSON.stringify({ demo: { model_ids: ["abcd1234"], rotate_every: "24h", overlap: "1h" } }),
  CONSUMERS: JSON.stringify({ bench: { token_sha256: createHash("sha256").update(token).digest("hex"), model_sets: ["demo"] } }),
  KEYS: { async get() { kvGets++; return entry; } },
  DB: {},
};
const ctx = { waitUntil() {}, passThroughOnException() {} };
const headers = { authorization: `Bearer ${token}` };
const BODY = '"' + "x".repeat(240) + '"';
const floor = { fetch: () => new Response(BODY, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } }) };
async function run(name, fn, n) {
  for (let i = 0; i < 20000; i++) await fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  console.log(name.padEnd(28), us.toFixed(2), "µs/req");
}
const N = 200000;
const mkReq = () => new Request("http://rotator.test/v1/keys/demo", { headers });
await run("request construction only", async () => mkReq(), N);
await run("floor", async () => floor.fetch(mkReq()), N);
const r = await rotator.fetch(mkReq(), env, ctx); console.log(r.status, (await r.text()).length);
await run("rotator", async () => rotator.fetch(mkReq(), env, ctx), N);
await run("rotator + body text", async () => (await rotator.fetch(mkReq(), env, ctx)).text(), N);
await run("floor + body text", async () => (await floor.fetch(mkReq())).text(), N);
console.log("kv gets", kvGets);
