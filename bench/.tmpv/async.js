export default { async fetch(req, env) { await null; return new Response(env.BODY, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } }); } };
