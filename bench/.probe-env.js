const seen = new WeakSet(); const seenKv = new WeakSet(); let n = 0, envHits = 0, kvHits = 0;
export default { async fetch(req, env) { n++; if (seen.has(env)) envHits++; else seen.add(env); if (env.KEYS) { if (seenKv.has(env.KEYS)) kvHits++; else seenKv.add(env.KEYS); } return Response.json({ n, envHits, kvHits }); } };
