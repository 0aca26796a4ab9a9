/**
 * The route table (src/app.ts) is the one description of the routes: every GET row answers HEAD
 * as GET without a body, every path answers other methods with 405 and the table's `Allow`,
 * anything else is 404; METRICS_TOKEN opens /metrics and nothing else; the operator page is
 * served with a strict CSP, nothing inline, and a script that never renders markup from data or
 * stores the token anywhere but sessionStorage.
 */
import { describe, expect, it } from "vitest";
import { ROUTES, createApp } from "../src/app.ts";
import { CSP } from "../src/routes/page.ts";
import { PAGE_SCRIPT } from "../src/routes/page-script.ts";
import { METRICS_TOKEN, admin, bearer, expectRefused } from "./helpers/operators.ts";
import { makeWorld } from "./helpers/world.ts";

const concrete = (path: string) => path.replace(":set", "demo");

describe("the route table", () => {
  it("HEAD on every GET route answers as GET (status and headers), without a body", async () => {
    const w = await makeWorld({ vars: { METRICS_TOKEN } });
    await w.tick();
    const gets = ROUTES.filter((r) => r.method === "GET").map((r) => concrete(r.path));
    expect(gets).toEqual(
      expect.arrayContaining([
        "/healthz",
        "/v1/keys",
        "/v1/keys/demo",
        "/v1/admin/status",
        "/v1/admin/audit",
        "/metrics",
        "/admin",
        "/admin/app.js",
      ]),
    );
    for (const path of gets) {
      for (const headers of [{}, path.startsWith("/v1/keys") ? bearer(w.tokens["demo-svc"]!) : admin(w)]) {
        const get = await w.request(path, { headers });
        await get.arrayBuffer();
        const head = await w.request(path, { method: "HEAD", headers });
        expect(head.status, `HEAD ${path}`).toBe(get.status);
        expect(await head.text(), `HEAD ${path}: no body`).toBe("");
        for (const h of ["content-type", "cache-control", "www-authenticate", "content-security-policy"])
          expect(head.headers.get(h), `HEAD ${path} ${h}`).toBe(get.headers.get(h));
      }
    }
  });

  it("other methods: 405 with the Allow the table gives; unknown paths 404; nothing written", async () => {
    const w = await makeWorld();
    const paths = [...new Set(ROUTES.map((r) => concrete(r.path)))];
    for (const path of paths) {
      const methods = ROUTES.filter((r) => concrete(r.path) === path).map((r) => r.method);
      const allow = methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])).join(", ");
      for (const m of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].filter((x) => !allow.split(", ").includes(x))) {
        await expectRefused(w, `${m} ${path}`, () => w.request(path, { method: m, headers: admin(w) }), {
          status: 405,
          error: "method_not_allowed",
          allow,
        });
      }
    }
    for (const path of ["/v1/admin/audits", "/v1/admin/revoke", "/admin/x.js", "/metrics/x", "/v2/keys/demo"]) {
      await expectRefused(w, `GET ${path}`, () => w.request(path, { headers: admin(w) }), { status: 404, error: "not_found" });
    }
  });

  it("METRICS_TOKEN opens GET /metrics and gets 401 (with a challenge) on every other route", async () => {
    const w = await makeWorld({ vars: { METRICS_TOKEN } });
    await w.tick();
    expect((await w.request("/metrics", { headers: bearer(METRICS_TOKEN) })).status).toBe(200);
    const json = { "content-type": "application/json" };
    const others: [string, RequestInit][] = [
      ["/v1/admin/status", {}],
      ["/v1/admin/audit", {}],
      ["/v1/admin/rotate/demo", { method: "POST" }],
      ["/v1/admin/revoke/demo", { method: "POST", headers: json, body: '{"all_previous":true}' }],
      ["/v1/keys/demo", {}],
      ["/v1/keys", {}],
    ];
    for (const [path, init] of others) {
      await expectRefused(
        w,
        `${init.method ?? "GET"} ${path} with METRICS_TOKEN`,
        () => w.request(path, { ...init, headers: { ...(init.headers as Record<string, string>), ...bearer(METRICS_TOKEN) } }),
        {
          status: 401,
          error: "unauthorized",
          challenge: true,
        },
      );
    }
  });
});

describe("the hot path", () => {
  it("a row's fast answer is taken on the exact raw URL only; anything else runs its handler through the table", async () => {
    const w = await makeWorld();
    const app = createApp({}, [
      {
        method: "GET",
        path: "/v1/keys/:set",
        handler: (_r, c) => new Response(`handler ${c.params.set}`),
        fast: (_r, c) => (c.params.set === "miss" ? null : new Response(`fast ${c.params.set}`)),
      },
    ]);
    const get = async (url: string, method = "GET") =>
      (await app.fetch(new Request(url, { method }), w.env, {} as ExecutionContext)).text();
    expect(await get("https://r.test/v1/keys/demo")).toBe("fast demo");
    expect(await get("https://r.test/v1/keys/miss")).toBe("handler miss");
    expect(await get("https://r.test/v1/keys/demo?x=1")).toBe("handler demo");
    expect(await get("https://r.test/v1/keys/demo/")).toBe("handler demo");
    expect(await get("https://r.test/v1/keys/DEMO")).toBe("handler DEMO");
    expect(await get("https://r.test/v1/keys/demo", "HEAD")).toBe("");
  });
});

describe("the operator page", () => {
  it("is served without a token, with a strict CSP and nothing inline", async () => {
    const w = await makeWorld();
    const res = await w.request("/admin");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toBe(CSP);
    const directives = Object.fromEntries(csp.split("; ").map((d) => [d.split(" ")[0], d.split(" ").slice(1).join(" ")]));
    expect(directives).toMatchObject({
      "default-src": "'none'",
      "script-src": "'self'",
      "style-src": "'self'",
      "connect-src": "'self'",
      "frame-ancestors": "'none'",
      "form-action": "'none'",
    });
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await res.text();
    // Every script and stylesheet is a same-origin file; no inline script, style or handler.
    expect([...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])).toEqual(['<script src="/admin/app.js" defer>']);
    expect(html).not.toMatch(/<script\b[^>]*>[^<]+<\/script>/);
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=|javascript:/i);
    expect([...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])).toEqual([
      "/admin/favicon.svg",
      "/admin/app.css",
      "/admin/app.js",
    ]);
    // The token field is never submitted anywhere (no name, and CSP form-action 'none').
    expect(html).toMatch(/<input id="token" type="password"/);
    expect(html).not.toMatch(/<input id="token"[^>]*\bname=/);

    const js = await w.request("/admin/app.js");
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toBe(PAGE_SCRIPT);
    const css = await w.request("/admin/app.css");
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect(await css.text()).toMatch(/\.tl-served/);
  });

  it("its script renders text only and keeps the token in sessionStorage only", () => {
    expect(PAGE_SCRIPT).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|localStorage|console\./);
    expect(PAGE_SCRIPT).toMatch(/sessionStorage\.setItem\(TOKEN_KEY/);
    // The token goes out in a header only: never into a URL.
    expect(PAGE_SCRIPT).toMatch(/authorization: "Bearer " \+ token\(\)/);
    expect(PAGE_SCRIPT).not.toMatch(/[?&]token=|location\.(search|hash)\s*=/);
  });
});
