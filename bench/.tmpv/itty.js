import { Router } from "itty-router";
const router = Router({ catch: (e) => new Response("err", { status: 500 }) });
router.get("/healthz", () => new Response("ok")).get("/v1/keys", () => new Response("ok")).get("/v1/keys/:set", (req, env) => new Response(env.BODY, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } })).all("*", () => new Response("nf", { status: 404 }));
export default { fetch: (req, env, ctx) => router.fetch(req, env, ctx) };
