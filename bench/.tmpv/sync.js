export default { fetch(req, env) { return new Response(env.BODY, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } }); } };
