/**
 * `npm run test:browser`: the operator page (GET /admin) in a real browser against the running worker.
 *
 * Node, not the workerd test pool: starts the fake Baseten (dev/fake-baseten.ts) and `wrangler dev
 * --local --test-scheduled` on free ports with its own state directory and config (nothing of
 * `.dev.vars` or `.wrangler/state` is used), applies the migrations, fires the cron through
 * /__scheduled, rotates and fails a few runs so there is history, then drives Debian's chromium
 * (/usr/bin/chromium, no browser download) through playwright-core: enters the token, checks the
 * bars and numbers against /v1/admin/status, checks a set name full of markup stays text, clicks
 * rotate, confirms, sees the new generation, revokes an older key, and saves screenshots at 1280×800
 * (docs/operator-page.png) and at a phone width (docs/operator-page-phone.png), failing on any
 * CSP violation or script error, and checking the token is in sessionStorage only.
 *
 * Options: CHROMIUM=/path/to/chromium, KEEP_OPEN=1 (leave the worker running for a look).
 */
/// <reference types="node" />
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startFakeBaseten } from "../../dev/fake-baseten.ts";

const ROOT = path.resolve(import.meta.dirname, "..", "..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const XSS_SET = `<img src=x onerror="window.__xss=1">`;

const b64 = (n: number) => randomBytes(n).toString("base64");
const sha256Hex = (t: string) => createHash("sha256").update(t).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${message}`);
}
function equal(actual: unknown, expected: unknown, message: string) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`check failed: ${message}\n  expected ${e}\n  actual   ${a}`);
}

const wrangler = path.join(path.dirname(createRequire(import.meta.url).resolve("wrangler/package.json")), "bin", "wrangler.js");
const childEnv = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" };

let dev: ChildProcess | null = null;
let devLog = "";
const cleanups: (() => Promise<void> | void)[] = [];

async function main() {
  const fake = await startFakeBaseten({ port: 0 });
  cleanups.push(() => fake.close());
  const mgmt = `fake-mgmt-browser-${randomBytes(6).toString("hex")}`;
  const control = (p: string, init?: RequestInit) => fetch(`${fake.url}/__control/${mgmt}/${p}`, init);
  const state = mkdtempSync(path.join(tmpdir(), "bkr-browser-state-"));
  cleanups.push(() => rmSync(state, { recursive: true, force: true }));

  const adminToken = `adm_${randomBytes(24).toString("hex")}`;
  const consumerToken = `tok_${randomBytes(24).toString("hex")}`;
  const vars: Record<string, string> = {
    BASETEN_API_BASE: fake.url,
    BASETEN_TEAM_ID: "team-browser",
    BASETEN_API_KEY: mgmt,
    ENCRYPTION_KEY: b64(32),
    WEBHOOK_SECRET: `whsec_${b64(32)}`,
    ADMIN_TOKEN: adminToken,
    BASETEN_MAX_ATTEMPTS: "1",
    MODEL_SETS: JSON.stringify({
      chat: { model_ids: ["abcd1234", "efgh5678"], rotate_every: "1h", overlap: "15m" },
      embed: { model_ids: ["qwer0987"], rotate_every: "1h", overlap: "10m" },
    }),
    CONSUMERS: JSON.stringify({ "billing-svc": { token_sha256: sha256Hex(consumerToken), model_sets: ["chat", "embed"] } }),
    EVENT_WEBHOOKS: JSON.stringify([
      { url: `${fake.url}/__sink/${mgmt}?status=500`, secret: `whsec_${b64(24)}`, events: ["rotation.failed"] },
    ]),
  };

  const migrate = spawnSync(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", state], {
    cwd: ROOT,
    env: childEnv,
    encoding: "utf8",
  });
  check(migrate.status === 0, `migrations: ${migrate.stdout}\n${migrate.stderr}`);
  // A set D1 still knows (removed from MODEL_SETS) whose name is markup: the page must show it as text.
  const insert = spawnSync(
    process.execPath,
    [
      wrangler,
      "d1",
      "execute",
      "DB",
      "--local",
      "--persist-to",
      state,
      "--command",
      `INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at) VALUES ('${XSS_SET.replaceAll("'", "''")}', 1, 'previous', 'bkr-x-1-aaaa', '["m"]', 120000, 'xssprefx', ${Date.now() - 3_600_000}, ${Date.now() - 600_000}, ${Date.now() + 86_400_000}, ${Date.now() - 600_000})`,
    ],
    { cwd: ROOT, env: childEnv, encoding: "utf8" },
  );
  check(insert.status === 0, `d1 execute: ${insert.stdout}\n${insert.stderr}`);
  // Three hours of chat's history (so the timeline has something to draw): g1 and g2 replaced and
  // revoked once their promises ended, g3 replaced a minute ago, two failed runs an hour ago. The
  // first cron mints g4. (These keys never existed at the fake: their deletes answer 404, done.)
  const H = 3_600_000;
  const t = Date.now();
  const row = (g: number, state: string, created: number, replaced: number, revoked: number | null) =>
    `('chat', ${g}, '${state}', 'bkr-chat-${g}-hist', '["abcd1234","efgh5678"]', ${H / 4}, 'histpfx${g}', ${created}, ${created + H}, ${Math.max(created + H, replaced) + H / 4}, ${replaced}, ${revoked ?? "NULL"})`;
  const history = spawnSync(
    process.execPath,
    [
      wrangler,
      "d1",
      "execute",
      "DB",
      "--local",
      "--persist-to",
      state,
      "--command",
      `INSERT INTO keys (model_set, generation, state, name, model_ids, overlap_ms, prefix, created_at, refresh_at, expires_at, replaced_at, revoked_at) VALUES ${[
        row(1, "revoked", t - 3 * H, t - 2 * H, t - 2 * H + H / 4 + 40_000),
        row(2, "revoked", t - 2 * H, t - H + 120_000, t - H + H / 4 + 160_000),
        row(3, "previous", t - H + 120_000, t - 60_000, null),
      ].join(
        ", ",
      )}; INSERT INTO audit (model_set, generation, action, trigger, reason, at) VALUES ('chat', NULL, 'failed', 'cron', 'mint: Baseten answered 503: unavailable', ${t - H - 600_000}), ('chat', NULL, 'failed', 'cron', 'mint: Baseten answered 503: unavailable', ${t - H - 540_000})`,
    ],
    { cwd: ROOT, env: childEnv, encoding: "utf8" },
  );
  check(history.status === 0, `d1 execute: ${history.stdout}\n${history.stderr}`);

  const port = await freePort();
  const inspector = await freePort();
  const args = [
    wrangler,
    "dev",
    "--local",
    "--test-scheduled",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspector),
    "--persist-to",
    state,
    "--show-interactive-dev-session=false",
  ];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  dev = spawn(process.execPath, args, { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"], detached: true });
  dev.stdout!.on("data", (d) => (devLog += d));
  dev.stderr!.on("data", (d) => (devLog += d));
  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + 90_000;
  for (;;) {
    check(dev.exitCode === null, `wrangler dev exited:\n${devLog}`);
    check(Date.now() < until, `the worker did not answer within 90 s:\n${devLog}`);
    const ok = await fetch(`${base}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    await sleep(300);
  }
  console.log(`worker at ${base}, fake Baseten at ${fake.url}`);

  const adminFetch = (p: string, init: RequestInit = {}) =>
    fetch(`${base}${p}`, {
      ...init,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
    });
  const status = async () => (await (await adminFetch("/v1/admin/status")).json()) as Status;

  // The cron replaces chat's g3 and mints embed's first key; embed then fails once (Baseten 500).
  check((await fetch(`${base}/__scheduled?cron=*+*+*+*+*`)).ok, "cron");
  await control("faults", { method: "POST", body: JSON.stringify({ faults: [{ op: "mint", kind: "500" }] }) });
  check((await adminFetch("/v1/admin/rotate/embed", { method: "POST" })).status === 502, "embed fails");
  const consumerRes = await fetch(`${base}/v1/keys/chat`, { headers: { authorization: `Bearer ${consumerToken}` } });
  check(
    consumerRes.status === 200,
    `consumer fetch: ${consumerRes.status} ${await consumerRes.text()} ${JSON.stringify((await status()).sets[0])}`,
  );
  // The failed run's event delivery fails for good (the sink answers 500): wait for the record.
  for (let i = 0; i < 40 && (await status()).event_failures.length === 0; i++) await sleep(250);
  const before = await status();
  check(before.event_failures.length === 1, "an event delivery failure to show");

  const userDataDir = mkdtempSync(path.join(tmpdir(), "bkr-browser-profile-"));
  cleanups.push(() => rmSync(userDataDir, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
  });
  cleanups.unshift(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || /Content Security Policy|Refused to/.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
  });
  const requested: string[] = [];
  page.on("request", (r) => requested.push(r.url()));

  await page.goto(`${base}/admin`);
  await page.locator("#token").fill(adminToken);
  await page.keyboard.press("Enter");
  await page.locator("article.set").first().waitFor();
  await page.locator(`article.set[data-set="embed"]`).waitFor();

  // The numbers and bars against /v1/admin/status.
  const s = await status();
  const shown = await page.$$eval("article.set", (cards) =>
    cards.map((c) => ({
      set: c.getAttribute("data-set"),
      title: c.querySelector("h2")!.textContent,
      generation: c.querySelector("[data-testid=generation]")!.textContent,
      liveKeys: c.querySelector("[data-testid=live-keys]")!.textContent,
      bars: [...c.querySelectorAll("g.tl-gen")].map((g) => ({
        generation: Number(g.getAttribute("data-generation")),
        state: g.getAttribute("data-state"),
        start: g.getAttribute("data-start"),
        current: g.classList.contains("current"),
      })),
      failed: c.querySelectorAll(".tl-failed").length,
      refresh: c.querySelector(".tl-refresh")?.getAttribute("data-refresh-at") ?? null,
      rotate: c.querySelector("button[data-action=rotate]") !== null,
    })),
  );
  equal(
    shown.map((x) => x.set),
    [...s.sets.filter((x) => x.configured !== false), ...s.sets.filter((x) => x.configured === false)].map((x) => x.model_set),
    "one card per set: configured ones first",
  );
  for (const set of s.sets) {
    const card = shown.find((x) => x.set === set.model_set)!;
    equal(card.title, set.model_set, `${set.model_set}: title as text`);
    equal(card.generation, set.generation === null ? "none yet" : String(set.generation), `${set.model_set}: generation`);
    equal(card.liveKeys, String((set.generation === null ? 0 : 1) + set.previous.length), `${set.model_set}: live keys`);
    equal(
      card.bars,
      set.history.map((h) => ({ generation: h.generation, state: h.state, start: h.created_at, current: h.state === "current" })),
      `${set.model_set}: one bar per generation`,
    );
    equal(card.failed, set.failures.length, `${set.model_set}: failed runs marked`);
    equal(card.refresh, set.refresh_at, `${set.model_set}: next refresh_at`);
  }
  equal(s.sets.find((x) => x.model_set === "chat")!.generation, 4, "chat at generation 4");
  equal(s.sets.find((x) => x.model_set === "chat")!.failures.length, 2, "chat's failed runs");
  check(s.sets.find((x) => x.model_set === "embed")!.failures.length === 1, "embed has a failed run");
  const xss = shown.find((x) => x.set === XSS_SET);
  check(xss && xss.title === XSS_SET, "a set name full of markup is shown as text");
  check((await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)) === undefined, "no markup from data ran");
  check((await page.locator("img").count()) === 0, "no element made from data");
  equal(await page.locator("#event-failures tbody tr").count(), 1, "event delivery failure shown");
  equal(await page.locator("#consumers-body tr[data-consumer]").count(), s.consumers.length, "consumers listed");

  // The token: sessionStorage only, never a URL.
  const storage = await page.evaluate(() => ({
    session: sessionStorage.getItem("bkr.adminToken"),
    local: localStorage.length,
    url: (globalThis as unknown as { location: { href: string } }).location.href,
  }));
  equal(storage.session, adminToken, "token in sessionStorage");
  equal(storage.local, 0, "nothing in localStorage");
  check(!requested.some((u) => u.includes(adminToken)), "token never in a URL");
  check(
    requested.every((u) => u.startsWith(base)),
    `same-origin requests only: ${requested.filter((u) => !u.startsWith(base)).join(", ")}`,
  );

  await page.screenshot({ path: path.join(ROOT, "docs", "operator-page.png") });
  console.log("saved docs/operator-page.png (1280x800)");

  // Keyboard: the rotate dialog opens from the keyboard and Escape cancels it.
  const chatRotate = page.locator(`article.set[data-set="chat"] button[data-action=rotate]`);
  await chatRotate.focus();
  await page.keyboard.press("Enter");
  await page.locator("dialog#confirm[open]").waitFor();
  await page.keyboard.press("Escape");
  await page.locator("dialog#confirm:not([open])").waitFor({ state: "attached" });
  equal((await status()).sets.find((x) => x.model_set === "chat")!.generation, 4, "Escape rotated nothing");

  // Rotate, confirm, see the new generation.
  await chatRotate.click();
  await page.locator("#rotate-reason").fill("browser test");
  await page.locator("#confirm-ok").click();
  await page
    .locator("#notice", { hasText: "Rotated chat to generation 5" })
    .waitFor({ timeout: 10_000 })
    .catch(async (err) => {
      throw new Error(
        `${(err as Error).message}\nnotice: ${await page.locator("#notice").textContent()}\ndialog error: ${await page.locator("#confirm-error").textContent()}`,
      );
    });
  await page.locator(`article.set[data-set="chat"] [data-testid=generation]`, { hasText: "5" }).waitFor();
  const afterRotate = (await status()).sets.find((x) => x.model_set === "chat")!;
  equal(afterRotate.generation, 5, "status agrees: generation 5");
  equal(
    await page.locator(`article.set[data-set="chat"] g.tl-gen.current`).getAttribute("data-generation"),
    "5",
    "the new generation is the highlighted bar",
  );

  // Emergency revoke of generation 3: checkbox, the set name typed, confirm.
  await page.locator(`article.set[data-set="chat"] button[data-action=revoke]`).click();
  await page.locator("#revoke-g3").check();
  await page.locator("#confirm-ok").click();
  await page.locator("#confirm-error", { hasText: "type the set name" }).waitFor();
  await page.locator("#revoke-confirm-name").fill("chat");
  await page.locator("#confirm-ok").click();
  await page.locator("#notice", { hasText: "Revoked generation 3 of chat" }).waitFor();
  const chat = (await status()).sets.find((x) => x.model_set === "chat")!;
  equal(
    chat.previous.map((p) => p.generation),
    [4],
    "generation 3 revoked, 4 still live",
  );
  await page.locator(`article.set[data-set="chat"] g.tl-gen[data-generation="3"][data-state="revoked"]`).waitFor({ state: "attached" });

  // Phone width: no sideways scrolling, everything still there.
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(400);
  const widths = await page.evaluate(() => {
    const root = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document
      .documentElement;
    return { scroll: root.scrollWidth, client: root.clientWidth };
  });
  check(widths.scroll <= widths.client + 1, `no horizontal scroll at phone width (${widths.scroll} > ${widths.client})`);
  await page.screenshot({ path: path.join(ROOT, "docs", "operator-page-phone.png"), fullPage: true });
  console.log("saved docs/operator-page-phone.png (390 wide, full page)");
  await page.setViewportSize({ width: 1280, height: 800 });

  // What this branch's status cannot produce yet (consumer tracking, config problems, a stalled
  // engine), injected into the status answer: lagging consumers are flagged, problems listed, and
  // markup in any of them stays text.
  const real = await status();
  const injected = {
    ...real,
    config_problems: [`MODEL_SETS.x: <b id="inj">bad</b>`],
    engine: { last_tick_at: null, stalled: true },
    consumers: [
      {
        name: `<i id="inj2">svc</i>`,
        kind: "oidc",
        model_sets: ["chat"],
        seen: [{ model_set: "chat", generation: 4, at: new Date().toISOString(), lagging: true }],
      },
      {
        name: "fresh-svc",
        kind: "token",
        model_sets: ["chat"],
        seen: [{ model_set: "chat", generation: 5, at: new Date().toISOString(), lagging: false }],
      },
    ],
  };
  await page.route("**/v1/admin/status", (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(injected) }),
  );
  await page.locator("#refresh").click();
  await page.locator("#config-problems li").waitFor();
  equal(await page.locator("#config-problems li").textContent(), injected.config_problems[0], "config problem shown as text");
  equal(await page.locator("#inj, #inj2").count(), 0, "no markup from status data");
  equal(await page.locator("#consumers-body tr.lagging").count(), 1, "the lagging consumer is flagged");
  equal(await page.locator("#consumers-body tr.lagging th").textContent(), injected.consumers[0]!.name, "its name as text");
  check((await page.locator("#summary").textContent())!.includes("1 lagging"), "lagging count in the summary");
  check((await page.locator("#summary").textContent())!.includes("engine stalled"), "stalled engine in the summary");
  await page.unroute("**/v1/admin/status");

  // Signing out forgets the token.
  await page.locator("#signout").click();
  equal(await page.evaluate(() => sessionStorage.getItem("bkr.adminToken")), null, "sign out forgets the token");

  check(problems.length === 0, `no CSP violation or script error:\n${problems.join("\n")}`);
  check(!devLog.includes(adminToken), "the admin token is not in the worker's logs");
  console.log("browser test passed");
  if (process.env.KEEP_OPEN) {
    console.log(`KEEP_OPEN: ${base}/admin (token ${adminToken}); Ctrl-C to stop`);
    await new Promise(() => {});
  }
}

interface Status {
  sets: {
    model_set: string;
    configured: boolean | null;
    generation: number | null;
    refresh_at: string | null;
    previous: { generation: number }[];
    history: { generation: number; state: string; created_at: string }[];
    failures: unknown[];
  }[];
  consumers: unknown[];
  event_failures: unknown[];
}

async function stop() {
  for (const c of cleanups) await Promise.resolve(c()).catch(() => {});
  if (dev?.pid) {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {
      /* gone */
    }
    await sleep(500);
    try {
      process.kill(-dev.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

try {
  await main();
  await stop();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  if (devLog && process.env.DEBUG) console.error(devLog);
  await stop();
  process.exit(1);
}
