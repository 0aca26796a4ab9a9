// A minimal Baseten management-API stand-in, written from /work/shared/baseten/ and DESIGN §1 only.
//   POST   /v1/teams/{team_id}/api_keys   {"name","type","model_ids"} -> 200 {"api_key":"<prefix>.<secret>"}
//   GET    /v1/api_keys                   -> 200 {"keys":[{prefix,name,type,model_ids,team_name}]}  (live only)
//   DELETE /v1/api_keys/{prefix}          -> 200 {"prefix"} | 404
// Auth: `Authorization: Api-Key <MGMT>` or `Bearer <MGMT>`.
// Script-only (unauthenticated) endpoints:
//   GET /__standin/keys   -> {"keys":[{prefix,name,type,model_ids,team_id,created_at,revoked_at}]} (all, revoked included)
//   GET /__standin/live   -> {"keys":[...]} live only
//   GET /__standin/calls  -> {"calls":[{at,method,path,status}]}
// Usage: node baseten-standin.mjs --port N --mgmt-key K   (prints "LISTENING <port>" when ready)
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const PORT = Number(opt("--port", "0"));
const MGMT = opt("--mgmt-key", process.env.STANDIN_MGMT_KEY || "standin-mgmt-key");
const TYPES = ["PERSONAL", "WORKSPACE_MANAGE_ALL", "WORKSPACE_EXPORT_METRICS", "WORKSPACE_INVOKE"];

const keys = []; // creation order, revoked ones kept with revoked_at
const calls = [];

const rand = (alphabet, n) => Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join("");
const send = (res, status, body) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
const readBody = (req) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
const authorized = (h) => {
  const m = /^(api-key|bearer)\s+(\S+)\s*$/i.exec(h || "");
  return !!m && m[2] === MGMT;
};
const pub = (k) => ({ prefix: k.prefix, name: k.name, type: k.type, model_ids: k.model_ids, team_name: `team-${k.team_id}` });

const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const method = req.method || "GET";
  const rec = { at: new Date().toISOString(), method, path, status: 0 };
  const answer = (status, body) => {
    rec.status = status;
    send(res, status, body);
  };
  try {
    if (path.startsWith("/__standin/")) {
      if (path === "/__standin/keys") return send(res, 200, { keys: keys.map(({ secret, ...k }) => k) });
      if (path === "/__standin/live") return send(res, 200, { keys: keys.filter((k) => !k.revoked_at).map(({ secret, ...k }) => k) });
      if (path === "/__standin/calls") return send(res, 200, { calls });
      return send(res, 404, { error: "not found" });
    }
    calls.push(rec);
    const body = await readBody(req);
    if (!authorized(req.headers.authorization)) return answer(401, { error: "invalid API key" });

    let m = /^\/v1\/teams\/([^/]+)\/api_keys$/.exec(path);
    if (m) {
      if (method !== "POST") return answer(405, { error: "method not allowed" });
      let b;
      try {
        b = JSON.parse(body);
      } catch {
        return answer(400, { error: "body must be JSON" });
      }
      if (!b || typeof b !== "object" || Array.isArray(b)) return answer(400, { error: "body must be an object" });
      const name = b.name ?? null;
      const model_ids = b.model_ids ?? null;
      if (!TYPES.includes(b.type)) return answer(400, { error: "bad type" });
      if (name !== null && (typeof name !== "string" || !/^[a-z0-9-]{1,128}$/.test(name))) return answer(400, { error: "bad name" });
      if (model_ids !== null && !(Array.isArray(model_ids) && model_ids.every((x) => typeof x === "string")))
        return answer(400, { error: "bad model_ids" });
      if (b.type === "WORKSPACE_INVOKE" && (!model_ids || model_ids.length === 0))
        return answer(400, { error: "model_ids required for WORKSPACE_INVOKE" });
      if (name !== null && keys.some((k) => !k.revoked_at && k.name === name))
        return answer(409, { error: "an API key with this name already exists" });
      let prefix;
      do prefix = rand("abcdefghijklmnopqrstuvwxyz0123456789", 8);
      while (keys.some((k) => k.prefix === prefix));
      const secret = rand("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 40);
      keys.push({
        prefix,
        name,
        type: b.type,
        model_ids,
        team_id: decodeURIComponent(m[1]),
        created_at: new Date().toISOString(),
        revoked_at: null,
        secret,
      });
      return answer(200, { api_key: `${prefix}.${secret}` });
    }
    if (path === "/v1/api_keys") {
      if (method !== "GET") return answer(405, { error: "method not allowed" });
      return answer(200, { keys: keys.filter((k) => !k.revoked_at).map(pub) });
    }
    m = /^\/v1\/api_keys\/([^/]+)$/.exec(path);
    if (m) {
      if (method !== "DELETE") return answer(405, { error: "method not allowed" });
      const k = keys.find((x) => x.prefix === decodeURIComponent(m[1]) && !x.revoked_at);
      if (!k) return answer(404, { error: "API key not found" });
      k.revoked_at = new Date().toISOString();
      return answer(200, { prefix: k.prefix });
    }
    return answer(404, { error: "not found" });
  } catch (err) {
    return answer(500, { error: String(err && err.message) });
  }
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`LISTENING ${server.address().port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
