#!/usr/bin/env node
/**
 * Packaging smoke test for `baseten-key-rotator/client`, run by plain Node (20+), outside vitest.
 *
 *   npm pack                                                  # builds dist/client via prepack
 *   node test/pack/smoke.mjs ./baseten-key-rotator-0.1.0.tgz  # installs the tarball into a temp dir
 *   node test/pack/smoke.mjs                                  # or: resolve the package from here
 *                                                             # (self-reference in the repo after
 *                                                             # `npm run build:client`, or wherever installed)
 *
 * It starts its own stub rotator + stub Baseten on 127.0.0.1 (port 0) and proves, through the
 * package's `exports` map and the real global fetch: the key is fetched with the bearer token,
 * served from cache, replaced after a rotation without restarting, kept through an outage,
 * fetchWithKey recovers from a revoked key, and a wrong token fails with `unauthorized`.
 * Exit code 0 on success.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

const TOKEN = "smoke-consumer-token";
const tarball = process.argv[2];
let tempDir;

async function loadClient() {
  if (!tarball) return import("baseten-key-rotator/client");
  tempDir = mkdtempSync(path.join(tmpdir(), "bkr-smoke-"));
  const npm = (...args) => execFileSync("npm", args, { cwd: tempDir, stdio: ["ignore", "ignore", "inherit"] });
  npm("init", "-y");
  npm("install", "--no-audit", "--no-fund", path.resolve(tarball));
  // Resolve the bare specifier from inside the temp project, through its node_modules and exports map.
  const entry = path.join(tempDir, "entry.mjs");
  writeFileSync(entry, 'export * from "baseten-key-rotator/client";\n');
  return import(pathToFileURL(entry).href);
}

/** Stub rotator (GET /v1/keys/chat) and stub Baseten (POST /predict accepts live keys only). */
function startStub() {
  const state = { generation: 0, doc: null, live: new Set(), down: false, rotatorCalls: [], predictCalls: [] };
  state.rotate = ({ revokePrevious = false, refreshIn = 60_000 } = {}) => {
    if (revokePrevious && state.doc) state.live.delete(state.doc.api_key);
    state.generation += 1;
    const now = Date.now();
    const api_key = `smk${state.generation}.secret-${Math.random().toString(36).slice(2)}-${state.generation}`;
    state.live.add(api_key);
    state.doc = {
      model_set: "chat",
      model_ids: ["abcd1234"],
      api_key,
      generation: state.generation,
      created_at: new Date(now).toISOString(),
      refresh_at: new Date(now + refreshIn).toISOString(),
      expires_at: new Date(now + refreshIn + 3_600_000).toISOString(),
    };
  };
  const server = http.createServer((req, res) => {
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      if (req.url === "/predict") {
        const key = (req.headers.authorization ?? "").replace(/^Api-Key /, "");
        state.predictCalls.push({ key, body });
        return state.live.has(key) ? send(200, { ok: true, echo: body }) : send(401, { error: "unauthorized" });
      }
      state.rotatorCalls.push({ method: req.method, url: req.url, auth: req.headers.authorization });
      if (state.down) return send(503, { error: "internal", message: "down for the smoke test" });
      if (req.headers.authorization !== `Bearer ${TOKEN}`)
        return send(401, { error: "unauthorized", message: "bad token" }, { "www-authenticate": "Bearer" });
      if (req.url !== "/v1/keys/chat") return send(404, { error: "unknown_model_set", message: "no such model set" });
      if (!state.doc) return send(503, { error: "no_key_yet", message: "no key yet" }, { "retry-after": "30" });
      return send(200, state.doc, { "cache-control": "no-store" });
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, state, url: `http://127.0.0.1:${server.address().port}` })),
  );
}

async function main() {
  const { createKeyClient, KeyClientError } = await loadClient();
  assert.equal(typeof createKeyClient, "function", "createKeyClient is exported");
  const { server, state, url } = await startStub();
  try {
    let skew = 0; // the client's clock runs ahead of the stub's by `skew` ms: time travel without sleeping
    const keys = createKeyClient({ url, token: TOKEN, modelSet: "chat", clock: () => Date.now() + skew });

    // No key yet.
    await assert.rejects(keys.getKey(), (e) => e instanceof KeyClientError && e.code === "no_key_yet" && e.retryAfter === 30);

    // First key, fetched with the bearer token, then served from cache.
    state.rotate();
    skew += 1_000; // past the 1 s spacing after the failed attempt
    const doc1 = await keys.getKey();
    assert.equal(doc1.generation, 1);
    assert.deepEqual(state.rotatorCalls.at(-1), { method: "GET", url: "/v1/keys/chat", auth: `Bearer ${TOKEN}` });
    const callsAfterFirst = state.rotatorCalls.length;
    const many = await Promise.all(Array.from({ length: 100 }, () => keys.getKey()));
    assert.ok(many.every((d) => d === doc1));
    assert.equal(state.rotatorCalls.length, callsAfterFirst, "cached: no more requests");

    // Rotation: still the held key until its refresh_at, then the new one, same process.
    state.rotate({ refreshIn: 3_600_000 });
    assert.equal((await keys.getKey()).generation, 1);
    skew = Date.parse(doc1.refresh_at) - Date.now();
    const doc2 = await keys.getKey();
    assert.equal(doc2.generation, 2, "sees the new key after a rotation without restarting");
    assert.notEqual(doc2.api_key, doc1.api_key);

    // fetchWithKey over real HTTP, with a ReadableStream body (buffered for a possible retry).
    const stream = () =>
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"prompt":"hi"}'));
          c.close();
        },
      });
    let res = await keys.fetchWithKey(`${url}/predict`, { method: "POST", body: stream(), duplex: "half" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, echo: '{"prompt":"hi"}' });

    // Leak response: the key is revoked at once; fetchWithKey gets a 401, refetches, retries.
    state.rotate({ revokePrevious: true, refreshIn: 3_600_000 });
    skew += 2_000; // the held key was fetched more than 1 s ago
    res = await keys.fetchWithKey(`${url}/predict`, { method: "POST", body: stream(), duplex: "half" });
    assert.equal(res.status, 200, "recovered from a revoked key");
    assert.deepEqual(
      state.predictCalls.map((c) => [c.key, c.body]),
      [
        [doc2.api_key, '{"prompt":"hi"}'],
        [doc2.api_key, '{"prompt":"hi"}'],
        [state.doc.api_key, '{"prompt":"hi"}'],
      ],
    );
    const doc3 = await keys.getKey();
    assert.equal(doc3.generation, 3);

    // Outage: the held key is served until its expires_at, then `unavailable`.
    state.down = true;
    skew = Date.parse(doc3.refresh_at) - Date.now();
    assert.equal((await keys.getKey()).generation, 3, "held key served through the outage");
    skew = Date.parse(doc3.expires_at) - Date.now();
    await assert.rejects(
      keys.getKey(),
      (e) => e instanceof KeyClientError && e.code === "unavailable" && !e.message.includes(doc3.api_key),
    );
    state.down = false;

    // A wrong token is not an outage.
    const bad = createKeyClient({ url, token: "wrong-token-value", modelSet: "chat" });
    await assert.rejects(
      bad.getKey(),
      (e) => e instanceof KeyClientError && e.code === "unauthorized" && !e.message.includes("wrong-token-value"),
    );

    console.log(
      `smoke OK: node ${process.version}, ${tarball ? `tarball ${path.basename(tarball)}` : "resolved package"}; ` +
        `generations 1 -> 2 -> 3 seen, ${state.rotatorCalls.length} rotator requests, ${state.predictCalls.length} Baseten requests`,
    );
  } finally {
    server.close();
  }
}

try {
  await main();
} catch (err) {
  console.error("smoke FAILED:", err);
  process.exitCode = 1;
} finally {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
}
