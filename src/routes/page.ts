/**
 * The operator page (DESIGN §3.2): GET /admin (HTML), /admin/app.js and /admin/app.css.
 *
 * Self-contained: no third-party assets, no build step, nothing inline (the script and the
 * stylesheet are same-origin files), so the Content-Security-Policy allows only 'self' and
 * nothing else: no 'unsafe-inline', no 'unsafe-eval', no framing, no form submission anywhere
 * (the token field is never submitted: the script reads it), no referrer. The page holds no
 * data and needs no token to load; it calls the JSON routes with the admin token the operator
 * types in, kept in sessionStorage only. See page-script.ts.
 */
import type { RequestContext } from "../http.ts";
import { PAGE_SCRIPT } from "./page-script.ts";

export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  // The page holds no data; revalidate so a new deploy's page is picked up at once.
  "cache-control": "no-cache",
};

const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>baseten-key-rotator · operator</title>
<link rel="icon" href="/admin/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/admin/app.css">
<script src="/admin/app.js" defer></script>
</head>
<body>
<header class="top">
  <h1>baseten-key-rotator <span class="muted">operator</span></h1>
  <div id="summary" class="summary" aria-live="polite"></div>
  <div class="top-actions">
    <button id="refresh" type="button" hidden>Refresh</button>
    <button id="signout" type="button" hidden>Sign out</button>
  </div>
</header>
<main>
  <p id="notice" class="notice" role="status" hidden></p>
  <section id="login" class="card login" aria-labelledby="login-h">
    <h2 id="login-h">Sign in</h2>
    <form id="login-form" autocomplete="off">
      <label for="token">Admin token</label>
      <input id="token" type="password" autocomplete="off" spellcheck="false" required>
      <button type="submit" class="primary">Open</button>
      <p class="muted small">The token stays in this tab's session storage only: it is sent as a bearer header to this worker's
      JSON routes, never put in a URL or logged, and forgotten when the tab closes or you sign out.</p>
      <p id="login-error" class="error" role="alert"></p>
    </form>
  </section>
  <div id="app" hidden>
    <div id="alerts"></div>
    <div id="sets"></div>
    <section class="card" aria-labelledby="consumers-h">
      <h2 id="consumers-h">Consumers</h2>
      <div class="scroll">
        <table id="consumers">
          <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Sets</th><th scope="col">Generation held</th></tr></thead>
          <tbody id="consumers-body"></tbody>
        </table>
      </div>
    </section>
  </div>
</main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form id="confirm-form">
    <h2 id="confirm-title"></h2>
    <p id="confirm-text"></p>
    <div id="confirm-extra" class="stack"></div>
    <p id="confirm-error" class="error" role="alert"></p>
    <div class="buttons">
      <button id="confirm-cancel" type="button">Cancel</button>
      <button id="confirm-ok" type="submit" class="danger">Confirm</button>
    </div>
  </form>
</dialog>
</body>
</html>
`;

const PAGE_CSS = `:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2430; --muted: #5d6878; --line: #d9dee6;
  --accent: #2457c5; --ok: #18794e; --warn: #a35200; --bad: #c62a2f;
  --served: #7ea2e8; --current: #2457c5; --promise: #c9d7f5; --overlap: #e4b7b9;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
.top { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; padding: 10px 20px; background: #18202c; color: #fff; }
.top h1 { font-size: 17px; margin: 0; font-weight: 600; }
.top h1 .muted { color: #9fb0c8; font-weight: 400; }
.summary { display: flex; flex-wrap: wrap; gap: 6px; flex: 1; }
.top .pill, .top .pill.ok, .top .pill.warn { background: #2b3646; color: #e7edf6; border-color: #3b4a60; }
.top .pill.ok { color: #9fe3bd; } .top .pill.warn { color: #ffd28a; } .top .pill.bad { background: #5b1d20; color: #ffd6d7; border-color: #8a2d31; }
.top-actions { display: flex; gap: 8px; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 20px 40px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin: 0 0 14px; }
.card h2 { font-size: 16px; margin: 0 0 8px; }
.login { max-width: 520px; margin: 40px auto; }
.login form, .stack { display: grid; gap: 8px; }
label { font-weight: 500; }
label.check { font-weight: 400; display: flex; gap: 8px; align-items: flex-start; }
input[type=text], input[type=password] { font: inherit; padding: 7px 9px; border: 1px solid #aab3c0; border-radius: 6px; width: 100%; }
fieldset { border: 1px solid var(--line); border-radius: 6px; display: grid; gap: 6px; }
button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 1px solid #aab3c0; background: #fff; color: var(--ink); cursor: pointer; }
button:hover { background: #eef2f8; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { background: #fff; border-color: var(--bad); color: var(--bad); }
button.danger[type=submit] { background: var(--bad); color: #fff; }
button:disabled { opacity: .55; cursor: default; }
:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
.muted { color: var(--muted); } .small { font-size: 13px; } .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.error { color: var(--bad); margin: 0; } .error:empty { display: none; }
.notice { background: #e8f1ff; border: 1px solid #b8cff5; border-radius: 6px; padding: 8px 12px; }
.notice.error { background: #fdecec; border-color: #f3b8ba; color: var(--bad); display: block; }
.pill { display: inline-block; font-size: 12px; padding: 1px 8px; border-radius: 999px; border: 1px solid var(--line); background: #f0f2f5; white-space: nowrap; }
.pill.ok { color: var(--ok); border-color: #9ed3b8; background: #eaf7f0; }
.pill.warn { color: var(--warn); border-color: #f0c58f; background: #fff4e5; }
.pill.bad { color: var(--bad); border-color: #f3b8ba; background: #fdecec; }
.alert.bad { border-left: 4px solid var(--bad); } .alert.warn { border-left: 4px solid var(--warn); }
.alert ul { margin: 0; padding-left: 20px; }
.set-head { display: flex; flex-wrap: wrap; gap: 6px 8px; align-items: center; margin-bottom: 6px; }
.set-head h2 { margin: 0 6px 0 0; font-size: 18px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 4px 16px; margin: 0 0 8px; }
.facts dt { font-size: 12px; color: var(--muted); } .facts dd { margin: 0; overflow-wrap: anywhere; }
.facts .generation { font-size: 20px; }
.facts .wide { grid-column: span 2; }
.timeline { margin: 4px 0 8px; }
.tl { display: block; max-width: 100%; height: auto; }
.tl-bg { fill: #f7f9fc; stroke: var(--line); }
.tl-gen-label, .tl-label { font-size: 12px; fill: var(--muted); }
.tl-gen.current .tl-gen-label { fill: var(--current); font-weight: 700; }
.tl-served { fill: var(--served); }
.tl-gen.current .tl-served { fill: var(--current); }
.tl-promise { fill: var(--promise); stroke: var(--served); stroke-dasharray: 4 3; }
.tl-overlap { fill: var(--overlap); }
.tl-revoked, .tl-abandoned { stroke: var(--bad); stroke-width: 2.5; fill: none; }
.tl-failed { fill: var(--bad); }
.tl-now { stroke: var(--ink); stroke-width: 1.5; }
.tl-refresh { stroke: var(--ok); stroke-width: 2; stroke-dasharray: 5 4; }
.tl-axis { font-size: 11px; fill: var(--muted); } .tl-axis.refresh { fill: var(--ok); font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 14px; align-items: center; margin-top: 4px; }
.legend-item { display: inline-flex; gap: 5px; align-items: center; white-space: nowrap; }
.key { display: inline-block; width: 14px; height: 9px; border-radius: 2px; }
.meta { flex-basis: 100%; }
@media (min-width: 900px) { .meta { flex-basis: auto; margin-left: auto; } }
.key.served { background: var(--served); } .key.current { background: var(--current); } .key.promise { background: var(--promise); border: 1px dashed var(--served); }
.key.overlap { background: var(--overlap); } .key.failed { background: var(--bad); } .key.refresh { border-top: 2px dashed var(--ok); height: 2px; }
.buttons { display: flex; flex-wrap: wrap; gap: 8px; justify-content: flex-end; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; }
tr.lagging { background: #fff4e5; }
ul.plain { list-style: none; margin: 0; padding: 0; }
li.lagging { color: var(--warn); }
dialog { border: 1px solid var(--line); border-radius: 10px; padding: 18px; width: min(560px, calc(100vw - 24px)); }
dialog::backdrop { background: rgba(16, 22, 32, .45); }
dialog h2 { margin-top: 0; font-size: 18px; }
@media (max-width: 640px) {
  .top { padding: 8px 12px; } main { padding: 10px 10px 30px; }
  .card { padding: 12px; }
  .facts { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .buttons { justify-content: stretch; } .buttons button { flex: 1; }
  th, td { padding: 5px 4px; }
}
`;

export function pageRoute(_request: Request, _c: RequestContext): Response {
  return new Response(PAGE_HTML, { headers: { "content-type": "text/html; charset=utf-8", ...SECURITY_HEADERS } });
}

export function pageScriptRoute(_request: Request, _c: RequestContext): Response {
  return new Response(PAGE_SCRIPT, { headers: { "content-type": "text/javascript; charset=utf-8", ...SECURITY_HEADERS } });
}

const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2457c5"/><path d="M4 11h8M4 8h6M4 5h8" stroke="#fff" stroke-width="1.6"/></svg>`;

export function pageIconRoute(_request: Request, _c: RequestContext): Response {
  return new Response(FAVICON, { headers: { "content-type": "image/svg+xml", ...SECURITY_HEADERS, "cache-control": "max-age=86400" } });
}

export function pageStyleRoute(_request: Request, _c: RequestContext): Response {
  return new Response(PAGE_CSS, { headers: { "content-type": "text/css; charset=utf-8", ...SECURITY_HEADERS } });
}
