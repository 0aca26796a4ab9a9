// Outside client for baseten-key-rotator, following /work/shared/DESIGN.md only.
// Starts its own Baseten stand-in (baseten-standin.mjs) and `wrangler dev --local --test-scheduled`
// for this repository, fires the cron by hand at wall-clock times derived from the served key documents,
// and checks the promise rule from the outside:
//   (a) a replaced key is deleted at Baseten by the first cron fired after the expires_at it was served with
//   (b) live keys per set afterwards = current key + keys whose promise has not ended
// Usage: node dev/outside-check/check.mjs [--port 8811] [--skip-demo]   (about 12.5 minutes; not run by CI)
// Output (timeline, worker logs, local state) goes to $TMPDIR/bkr-outside-check.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

const MAIN = path.resolve(import.meta.dirname, "..", "..");
const HERE = import.meta.dirname;
const OUT = path.join(tmpdir(), "bkr-outside-check");
mkdirSync(OUT, { recursive: true });
const NODE22 = path.join(MAIN, "node_modules/node/bin/node");
const WRANGLER = path.join(MAIN, "node_modules/wrangler/bin/wrangler.js");
const argv = process.argv.slice(2);
const PORT = Number(argv.includes("--port") ? argv[argv.indexOf("--port") + 1] : 8811);
const SKIP_DEMO = argv.includes("--skip-demo");
const STAMP = new Date().toISOString().replace(/[:.]/g, "-");
const PERSIST = path.join(OUT, `state-${STAMP}`);
const WORKER = `http://127.0.0.1:${PORT}`;

const MODEL_SETS = {
  fast: { model_ids: ["m1"], rotate_every: "150s", overlap: "120s" },
  demo: { model_ids: ["m2"], rotate_every: "10m", overlap: "2m" },
};
const OVERLAP_MS = { fast: 120_000, demo: 120_000 };
const SETS = Object.keys(MODEL_SETS);

// ---------- secrets ----------
const CONSUMER_TOKEN = `ctok_${randomBytes(24).toString("hex")}`;
const ADMIN_TOKEN = `adm_${randomBytes(24).toString("hex")}`;
const MGMT_KEY = `standin-mgmt-${randomBytes(12).toString("hex")}`;
const sha256 = (s) => createHash("sha256").update(s).digest("hex");

// ---------- timeline ----------
const T0 = Date.now();
const timeline = [];
const rel = (ms) => `+${((ms - T0) / 1000).toFixed(1).padStart(6)}s`;
const iso = (ms) => new Date(ms).toISOString();
const rs = (ms) => `+${((ms - T0) / 1000).toFixed(1)}s`; // inline form
function tl(msg, at = Date.now()) {
  const line = `${rel(at)} ${iso(at)}  ${msg}`;
  timeline.push(line);
  console.log(line);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const relIso = (s) => (s ? `${s} (${rs(Date.parse(s))})` : String(s));

// ---------- children & cleanup ----------
const children = [];
function spawnGroup(cmd, args, opts) {
  const c = spawn(cmd, args, { ...opts, detached: true });
  children.push(c);
  return c;
}
const alive = (c) => c.exitCode === null && c.signalCode === null;
function killGroup(c, sig) {
  try {
    process.kill(-c.pid, sig);
  } catch {}
}
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) if (alive(c)) killGroup(c, "SIGTERM");
  const until = Date.now() + 5000;
  while (children.some(alive) && Date.now() < until) await sleep(100);
  for (const c of children) killGroup(c, "SIGKILL"); // whatever of each group outlived its leader
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"])
  process.on(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    cleanup().then(() => process.exit(130));
  });
process.on("exit", () => {
  for (const c of children) killGroup(c, "SIGKILL");
});

function gitState() {
  const g = (args) => spawnSync("git", ["-C", MAIN, ...args], { encoding: "utf8" }).stdout.trim();
  const dirty = g(["status", "--short", "--", "src"]).split("\n").filter(Boolean);
  return `HEAD ${g(["rev-parse", "--short", "HEAD"])} "${g(["log", "-1", "--format=%s"]).slice(0, 70)}"; src changes not committed: ${dirty.length ? dirty.join(", ") : "none"}`;
}
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}
function portFree(p) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

// ---------- stand-in ----------
let STANDIN = "";
async function startStandin() {
  const c = spawnGroup(process.execPath, [path.join(HERE, "baseten-standin.mjs"), "--port", "0", "--mgmt-key", MGMT_KEY], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: c.stdout });
    rl.on("line", (l) => {
      const m = /^LISTENING (\d+)/.exec(l);
      if (m) resolve(Number(m[1]));
    });
    c.once("exit", (code) => reject(new Error(`stand-in exited (${code})`)));
    setTimeout(() => reject(new Error("stand-in did not start")), 10_000);
  });
  STANDIN = `http://127.0.0.1:${port}`;
}
async function standinKeys() {
  const r = await fetch(`${STANDIN}/__standin/keys`);
  return (await r.json()).keys;
}
const nameInfo = (name) => {
  const m = /^bkr-([a-z0-9][a-z0-9-]{0,31})-(\d+)-/.exec(name || "");
  return m ? { set: m[1], gen: Number(m[2]) } : null;
};

// ---------- wrangler ----------
const workerLog = createWriteStream(path.join(OUT, "worker.log"));
const workerFull = createWriteStream(path.join(OUT, "worker-full.log"));
const childEnv = {
  ...process.env,
  PATH: `${path.join(MAIN, "node_modules/.bin")}:${process.env.PATH}`, // anything wrangler spawns as `node` gets Node 22
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
};
function pipeLines(stream, tag) {
  const rl = createInterface({ input: stream });
  rl.on("line", (l) => {
    workerFull.write(`${tag} ${l}\n`);
    if (/Reloading local server/.test(l) && tag !== "[migrate]")
      tl("!! wrangler reloaded the worker (a file under the repository changed)");
    if (l.includes('"event"')) workerLog.write(`${l.slice(l.indexOf("{"))}\n`);
  });
}
function runWrangler(args, extraEnv = {}) {
  return new Promise((resolve) => {
    const c = spawnGroup(NODE22, [WRANGLER, ...args], { cwd: MAIN, env: { ...childEnv, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
    pipeLines(c.stdout, "[migrate]");
    pipeLines(c.stderr, "[migrate!]");
    c.once("exit", (code) => resolve(code));
  });
}
let dev = null;
async function startWorker() {
  mkdirSync(PERSIST, { recursive: true });
  const common = ["-c", path.join(MAIN, "wrangler.toml"), "--persist-to", PERSIST];
  const code = await runWrangler(["d1", "migrations", "apply", "DB", "--local", ...common], { CI: "true" });
  if (code !== 0) throw new Error(`d1 migrations apply failed (exit ${code}); see worker-full.log`);
  const vars = {
    BASETEN_API_BASE: STANDIN,
    BASETEN_TEAM_ID: "outside-team",
    BASETEN_API_KEY: MGMT_KEY,
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    WEBHOOK_SECRET: `whsec_${randomBytes(32).toString("base64")}`,
    ADMIN_TOKEN,
    MODEL_SETS: JSON.stringify(MODEL_SETS),
    CONSUMERS: JSON.stringify({ outside: { token_sha256: sha256(CONSUMER_TOKEN), model_sets: SETS } }),
  };
  const varArgs = Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const inspector = await freePort();
  const args = [
    "dev",
    ...common,
    "--local",
    "--test-scheduled",
    "--ip",
    "127.0.0.1",
    "--port",
    String(PORT),
    "--inspector-port",
    String(inspector),
    "--show-interactive-dev-session=false",
    ...varArgs,
  ];
  dev = spawnGroup(NODE22, [WRANGLER, ...args], { cwd: MAIN, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  pipeLines(dev.stdout, "[out]");
  pipeLines(dev.stderr, "[err]");
  dev.once("exit", (code, sig) => {
    if (!cleaned) tl(`!! wrangler dev exited (${sig ?? code})`);
  });
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    if (!alive(dev)) throw new Error("wrangler dev exited before /healthz answered; see worker-full.log");
    try {
      const r = await fetch(`${WORKER}/healthz`, { signal: AbortSignal.timeout(3000) });
      const body = await r.json().catch(() => null);
      if (r.status === 200) return;
      throw Object.assign(new Error(`/healthz ${r.status}: ${JSON.stringify(body)}`), { fatal: true });
    } catch (e) {
      if (e.fatal) throw e;
    }
    await sleep(500);
  }
  throw new Error("worker did not answer /healthz within 120 s");
}

// ---------- observations ----------
const docsSeen = []; // every document fetched: {at, set, generation, prefix, created_at, refresh_at, expires_at}
const served = {}; // set -> gen -> {maxE, firstAt, lastAt, prefix, created_at, refresh_at(last)}
const lastDoc = {};
for (const s of SETS) served[s] = {};
async function fetchDoc(set, why, { quietIfSame = false } = {}) {
  const at = Date.now();
  let r, body;
  try {
    r = await fetch(`${WORKER}/v1/keys/${set}`, {
      headers: { authorization: `Bearer ${CONSUMER_TOKEN}` },
      signal: AbortSignal.timeout(10_000),
    });
    body = await r.json().catch(() => null);
  } catch (e) {
    tl(`GET /v1/keys/${set} (${why}) -> network error ${e.message}`, at);
    return null;
  }
  if (r.status !== 200) {
    tl(`GET /v1/keys/${set} (${why}) -> ${r.status} ${JSON.stringify(body)}`, at);
    return null;
  }
  const d = {
    at,
    set,
    generation: body.generation,
    prefix: String(body.api_key).split(".")[0],
    created_at: body.created_at,
    refresh_at: body.refresh_at,
    expires_at: body.expires_at,
  };
  docsSeen.push(d);
  const g = (served[set][d.generation] ??= { maxE: 0, firstAt: at, prefix: d.prefix, created_at: d.created_at, es: new Set() });
  g.maxE = Math.max(g.maxE, Date.parse(d.expires_at));
  g.lastAt = at;
  g.refresh_at = d.refresh_at;
  g.es.add(d.expires_at);
  const key = `${d.generation}|${d.refresh_at}|${d.expires_at}|${d.prefix}`;
  const same = lastDoc[set] === key;
  lastDoc[set] = key;
  if (!(quietIfSame && same))
    tl(
      `doc ${set} (${why}): gen ${d.generation} prefix ${d.prefix} created ${rs(Date.parse(d.created_at))} refresh_at ${relIso(d.refresh_at)} expires_at ${relIso(d.expires_at)}${same ? " [unchanged]" : ""}`,
      at,
    );
  return d;
}
async function fetchAllDocs(why, opts) {
  for (const s of SETS) await fetchDoc(s, why, opts);
}

const cronLog = []; // {n, at, status, live: keys snapshot}
async function fireCron(label) {
  const at = Date.now();
  let status, text;
  try {
    const r = await fetch(`${WORKER}/__scheduled?cron=*+*+*+*+*`, { signal: AbortSignal.timeout(90_000) });
    status = r.status;
    text = (await r.text()).slice(0, 80);
  } catch (e) {
    status = "ERR";
    text = e.message;
  }
  const n = cronLog.length + 1;
  tl(`CRON #${n} fired (${label}) -> ${status} ${JSON.stringify(text)} (took ${((Date.now() - at) / 1000).toFixed(1)} s)`, at);
  await sleep(2000); // let anything the tick left in waitUntil land
  const all = await standinKeys();
  const entry = { n, at, label, all };
  cronLog.push(entry);
  printLive(`after CRON #${n}`, all);
  await fetchAllDocs(`after CRON #${n}`);
  await adminStatus(`after CRON #${n}`);
  return entry;
}
function printLive(what, all) {
  const live = all.filter((k) => !k.revoked_at);
  const by = {};
  for (const k of live) (by[nameInfo(k.name)?.set ?? "?"] ??= []).push(k);
  const parts = SETS.map(
    (s) => `${s}: ${(by[s] ?? []).length} [${(by[s] ?? []).map((k) => `g${nameInfo(k.name).gen}:${k.prefix}`).join(", ")}]`,
  );
  if (by["?"]) parts.push(`other: ${by["?"].map((k) => k.name).join(",")}`);
  tl(`Baseten live keys ${what}: ${parts.join("  ")}`);
  const revoked = all.filter((k) => k.revoked_at).map((k) => `${k.name.split("-").slice(0, 3).join("-")}@${rs(Date.parse(k.revoked_at))}`);
  if (revoked.length) tl(`   revoked so far: ${revoked.join(", ")}`);
}

// The recorded promises (D1) as /v1/admin/status shows them (DESIGN §3.2): diagnostics only.
async function adminStatus(why) {
  try {
    const r = await fetch(`${WORKER}/v1/admin/status`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      signal: AbortSignal.timeout(10_000),
    });
    const b = await r.json();
    if (r.status !== 200) return tl(`admin status (${why}) -> ${r.status} ${JSON.stringify(b).slice(0, 200)}`);
    for (const st of b.sets ?? [])
      tl(
        `   status ${st.model_set}: current g${st.generation} E ${st.expires_at ? rs(Date.parse(st.expires_at)) : "-"}; recorded previous: ${(st.previous ?? []).map((p) => `g${p.generation} E ${p.expires_at ? rs(Date.parse(p.expires_at)) : "-"}`).join(", ") || "none"}`,
      );
  } catch (e) {
    tl(`admin status (${why}) -> error ${e.message}`);
  }
}

// Waits until `target` (ms), fetching documents every 20 s to record every promise served meanwhile.
async function waitUntil(target, why) {
  tl(`waiting until ${rs(target)} (${iso(target)}): ${why}`);
  while (Date.now() < target) {
    await sleep(Math.min(20_000, target - Date.now()));
    if (Date.now() < target - 1000) await fetchAllDocs("poll", { quietIfSame: true });
  }
}

// ---------- checks ----------
const results = [];
const check = (name, ok, detail) => {
  results.push({ name, ok, detail });
};
function keyOf(all, set, gen) {
  return all.find((k) => nameInfo(k.name)?.set === set && nameInfo(k.name)?.gen === gen);
}
// The promise of generation g (DESIGN §3): live until the latest expires_at served for it, and at
// least `overlap` after it was replaced (approximated from outside by its successor's created_at).
function promiseEnd(set, gen, all) {
  const s = served[set][gen];
  const next = keyOf(all, set, gen + 1);
  // The worker's clock stands still within an event, so "replaced" is taken as the moment the cron
  // that minted the successor was fired (never later than the worker's own idea of it).
  const firstCron = next ? cronLog.find((c) => keyOf(c.all, set, gen + 1)) : null;
  const replacedAt = next ? Math.min(Date.parse(next.created_at), firstCron ? firstCron.at : Infinity) : null;
  return { servedE: s ? s.maxE : null, replacedAt, end: Math.max(s ? s.maxE : 0, replacedAt ? replacedAt + OVERLAP_MS[set] : 0) };
}
// must: current + promises ending more than 1 s after the cron; may: promises ending within 1 s of it.
const TOL = 1000;
function expectedLive(set, cron) {
  const gens = cron.all.filter((k) => nameInfo(k.name)?.set === set).map((k) => nameInfo(k.name).gen);
  const cur = Math.max(...gens);
  const end = (g) => promiseEnd(set, g, cron.all).end;
  return {
    must: gens.filter((g) => g === cur || end(g) > cron.at + TOL).sort((a, b) => a - b),
    may: gens.filter((g) => g !== cur && Math.abs(end(g) - cron.at) <= TOL).sort((a, b) => a - b),
  };
}
function liveGens(set, cron) {
  return cron.all
    .filter((k) => !k.revoked_at && nameInfo(k.name)?.set === set)
    .map((k) => nameInfo(k.name).gen)
    .sort((a, b) => a - b);
}
function checkReplacedDeleted(set, gen, cron, tag) {
  const k = keyOf(cron.all, set, gen);
  const p = promiseEnd(set, gen, cron.all);
  const fmt = (ms) => (ms ? rs(ms) : "-");
  check(
    `${tag} (a) ${set} gen ${gen} deleted at Baseten by CRON #${cron.n} (first cron after its served expires_at)`,
    !!k && !!k.revoked_at && Date.parse(k.revoked_at) >= p.servedE && cron.at >= p.servedE,
    `served E=${fmt(p.servedE)}, cron at ${fmt(cron.at)}, key ${k ? (k.revoked_at ? `revoked at ${fmt(Date.parse(k.revoked_at))}` : "STILL LIVE") : "not found"}`,
  );
}
function checkLiveCount(set, cron, tag, exactlyOne = false) {
  const live = liveGens(set, cron);
  const { must, may } = expectedLive(set, cron);
  const ok =
    must.every((g) => live.includes(g)) && live.every((g) => must.includes(g) || may.includes(g)) && (!exactlyOne || live.length === 1);
  check(
    `${tag} (b) ${set} live keys after CRON #${cron.n}: ${live.length}`,
    ok,
    `live gens [${live}], expected (current + served/overlap promises not yet ended) [${must}]${may.length ? ` (+ either way, promise ends within 1 s of the cron: [${may}])` : ""}${exactlyOne ? ", expected exactly one" : ""}`,
  );
}
// Promise rule over everything observed: no key revoked before the latest expires_at served for it.
function checkNoEarlyRevocation(all) {
  const early = [];
  for (const k of all) {
    const ni = nameInfo(k.name);
    if (!ni || !k.revoked_at) continue;
    const s = served[ni.set]?.[ni.gen];
    if (s && Date.parse(k.revoked_at) < s.maxE)
      early.push(`${ni.set} g${ni.gen} revoked ${rs(Date.parse(k.revoked_at))} < served E ${rs(s.maxE)}`);
  }
  check("(promise) no key revoked before the latest expires_at served for it", early.length === 0, early.join("; ") || "none");
}
// Generic: at every cron fired > 2 s after a replaced key's promise ended, that key must be gone.
function checkNoLingering() {
  const linger = [];
  for (const c of cronLog)
    for (const set of SETS)
      for (const g of liveGens(set, c)) {
        const gens = c.all.filter((k) => nameInfo(k.name)?.set === set).map((k) => nameInfo(k.name).gen);
        if (g === Math.max(...gens)) continue;
        const p = promiseEnd(set, g, c.all);
        if (c.at > p.end + TOL)
          linger.push(
            `${set} g${g} live after CRON #${c.n} at ${rs(c.at)} (served E ${rs(p.servedE)}, replaced ${rs(p.replacedAt)}: promise ended ${rs(p.end)})`,
          );
      }
  check("(all crons) no replaced key still live at a cron fired after its promise ended", linger.length === 0, linger.join("; ") || "none");
}

// DESIGN §3 key document: "expires_at is when this key will be revoked (at least refresh_at + overlap)".
// (DESIGN also says that when no tick runs at all, promises are not extended; a hand-driven cron is
// that case between firings, so this is reported as a NOTE and does not change the overall result.)
function noteDocShape() {
  const bad = docsSeen.filter((d) => Date.parse(d.expires_at) < Date.parse(d.refresh_at) + OVERLAP_MS[d.set]);
  const uniq = [...new Map(bad.map((d) => [`${d.set}|${d.generation}|${d.refresh_at}|${d.expires_at}`, d])).values()];
  notes.push({
    name: "(doc shape) every served document has expires_at >= refresh_at + overlap",
    ok: uniq.length === 0,
    detail:
      uniq
        .map(
          (d) =>
            `${d.set} g${d.generation} first seen ${rs(d.at)}: refresh_at ${rs(Date.parse(d.refresh_at))} + overlap ${OVERLAP_MS[d.set] / 1000}s > expires_at ${rs(Date.parse(d.expires_at))}`,
        )
        .join("; ") || "none",
  });
}
const notes = [];

// ---------- scenario ----------
async function main() {
  if (existsSync(path.join(MAIN, ".dev.vars"))) tl("NOTE: .dev.vars exists in the repository; wrangler reads it, our --var flags win");
  tl(`code under test: ${gitState()}`);
  if (!(await portFree(PORT))) throw new Error(`port ${PORT} is in use; pass --port N`);
  await startStandin();
  tl(`Baseten stand-in at ${STANDIN}`);
  tl(`starting wrangler dev on ${WORKER} (persist ${PERSIST})`);
  await startWorker();
  tl("worker /healthz 200");
  await fetchAllDocs("before any cron");

  // fast
  const c1 = await fireCron("first keys");
  const f1 = served.fast[1];
  if (!f1) throw new Error("no gen 1 document for fast after the first cron");
  const R1 = Date.parse(f1.refresh_at);
  const d1 = served.demo[1];
  await waitUntil(R1 + 5000, "fast R1 + 5 s");
  await fetchAllDocs("just before CRON #2");
  const c2 = await fireCron("fast R1+5s");
  const E1 = served.fast[1].maxE; // the (latest) expires_at gen 1 was served with
  tl(`fast gen 1 was served with expires_at ${[...served.fast[1].es].join(", ")} -> E1 = ${iso(E1)} (${rs(E1)})`);
  await waitUntil(E1 + 5000, "fast E1 + 5 s");
  await fetchAllDocs("just before CRON #3");
  const c3 = await fireCron("fast E1+5s");
  checkReplacedDeleted("fast", 1, c3, "[fast]");
  checkLiveCount("fast", c3, "[fast]");
  check(
    "[fast] gen 2 served after CRON #2",
    docsSeen.some((d) => d.set === "fast" && d.generation === 2 && d.at >= c2.at),
    `gens served after CRON #2: ${[...new Set(docsSeen.filter((d) => d.set === "fast" && d.at >= c2.at && d.at < c3.at).map((d) => d.generation))]}`,
  );

  // demo
  if (!SKIP_DEMO && d1) {
    const dR1 = Date.parse(d1.refresh_at);
    await waitUntil(dR1 + 5000, "demo R1 + 5 s");
    await fetchAllDocs("just before CRON #4");
    const c4 = await fireCron("demo R1+5s");
    const dE1 = served.demo[1].maxE;
    tl(`demo gen 1 was served with expires_at ${[...served.demo[1].es].join(", ")} -> E1 = ${iso(dE1)} (${rs(dE1)})`);
    await waitUntil(dE1 + 5000, "demo E1 + 5 s");
    await fetchAllDocs("just before CRON #5");
    const c5 = await fireCron("demo E1+5s");
    checkReplacedDeleted("demo", 1, c5, "[demo]");
    checkLiveCount("demo", c5, "[demo]", true);
    checkLiveCount("fast", c5, "[fast-late]");
    void c4;
  }
  const finalAll = await standinKeys();
  checkNoEarlyRevocation(finalAll);
  checkNoLingering();
  void c1;
}

let exitCode = 0;
try {
  await main();
} catch (e) {
  tl(`ERROR: ${e.stack || e.message}`);
  check("scenario completed", false, e.message);
  exitCode = 2;
} finally {
  tl(`code under test at the end: ${gitState()}`);
  noteDocShape();
  await cleanup();
}
console.log("\n==== RESULTS ====");
for (const r of results) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name}\n        ${r.detail}`);
for (const r of notes) console.log(`NOTE  ${r.ok ? "ok  " : "SEEN"}  ${r.name}\n        ${r.detail}`);
if (results.some((r) => !r.ok)) exitCode ||= 1;
console.log(
  `\noverall: ${exitCode === 0 ? "PASS" : "FAIL"}   (timeline: ${OUT}/timeline.txt, worker events: ${OUT}/worker.log, full wrangler output: ${OUT}/worker-full.log)`,
);
writeFileSync(
  path.join(OUT, "timeline.txt"),
  [
    ...timeline,
    "",
    ...results.map((r) => `${r.ok ? "PASS" : "FAIL"}  ${r.name} :: ${r.detail}`),
    ...notes.map((r) => `NOTE ${r.ok ? "ok" : "SEEN"}  ${r.name} :: ${r.detail}`),
  ].join("\n") + "\n",
);
workerLog.end();
workerFull.end();
process.exitCode = exitCode;
