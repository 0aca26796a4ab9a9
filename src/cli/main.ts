/// <reference types="node" />
/**
 * `baseten-key-rotator`: the operator command line (DESIGN §7). Node 20+, built-ins only.
 *
 * Exit codes: 0 success (`--help` included), 1 a request (or the config check) failed,
 * 2 bad usage. `--json` prints the JSON body of the route called (on failure too, when there is one).
 * Tokens are never printed, except the one `consumers add` and `token` create (and they say so).
 */
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { FileProblem, runCheck } from "./check.ts";
import { str, table, when } from "./format.ts";
import { type Answer, RequestFailed, type Target, UsageError, adminToken, baseUrl, call } from "./http.ts";

const NAME = "baseten-key-rotator";
const VERSION = "0.1.0";
const SET_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** Managed consumers (POST /v1/admin/consumers). */
const MANAGED_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** Configured consumers (CONSUMERS), the rule of src/config.ts. */
const CONFIG_CONSUMER_NAME = /^[A-Za-z0-9._-]{1,64}$/;

const CONNECTION = `Connection (every command that calls the rotator):
  --url URL        the rotator's base URL (default: $BKR_URL)
  --token TOKEN    an admin token (default: $BKR_ADMIN_TOKEN; prefer the environment: a flag
                   ends up in your shell history and the process list)
  --json           print the JSON body of the route instead of a table
  -h, --help       this help`;

const HELP: Record<string, string> = {
  main: `${NAME} ${VERSION}: operate a baseten-key-rotator worker.

Usage: ${NAME} <command> [options]

Commands:
  status                                     per-set state, consumers, config problems
  rotate <set> [--revoke-previous] [--reason R]
                                             rotate a set now
  revoke <set> (--all-previous | --generation N...) [--reason R]
                                             revoke older live keys now (never the current one)
  audit [--set S] [--limit N] [--cursor C]   the audit trail, newest first
  consumers list | add <name> --sets a,b | remove <name>
                                             managed consumers (kept in D1, no redeploy)
  token [<consumer> [<set>...]]              a new consumer token and its SHA-256 (offline)
  webhook <set> [--reason R] [--revoke-previous] [--print]
                                             a signed rotation webhook (Standard Webhooks)
  check [--config F] [--vars F] [--env E] [--local]
                                             the offline config check (runs before a deploy)

Environment: BKR_URL, BKR_ADMIN_TOKEN, WEBHOOK_SECRET (webhook; the first of a space-separated list).
Exit codes: 0 success, 1 a failed request or check, 2 bad usage.
Run \`${NAME} <command> --help\` for a command's options.`,

  status: `Usage: ${NAME} status [--url URL] [--json]

GET /v1/admin/status: per set the current generation, when it is refreshed and revoked, the
previous keys still live and the last run; the consumers and the generation each holds
(lagging ones flagged); config problems; the engine's last tick. Never key material.

${CONNECTION}`,

  rotate: `Usage: ${NAME} rotate <set> [--revoke-previous] [--reason R] [--url URL] [--json]

POST /v1/admin/rotate/<set>: mints a new key now. The replaced key stays live until the
expires_at it was served with, unless --revoke-previous (the leak response: every other key of
the set is revoked at Baseten at once).

  --revoke-previous   revoke every older key of the set at once
  --reason R          recorded in the audit trail

${CONNECTION}`,

  revoke: `Usage: ${NAME} revoke <set> (--all-previous | --generation N [--generation N...]) [--reason R]

POST /v1/admin/revoke/<set>: revokes older, non-current keys at Baseten now. The current key is
never revoked this way (409 is_current): rotate with --revoke-previous instead.

  --all-previous      every live key of the set except the current one
  --generation N      this generation (repeat for more)
  --reason R          recorded in the audit trail

${CONNECTION}`,

  audit: `Usage: ${NAME} audit [--set S] [--limit N] [--cursor C] [--url URL] [--json]

GET /v1/admin/audit: minted, revoked, abandoned, failed, resealed, consumer_created and
consumer_deleted entries, newest first.

  --set S        only this model set
  --limit N      entries per page, 1-500 (default 100)
  --cursor C     the next page (printed under the table, next_cursor in --json)

${CONNECTION}`,

  consumers: `Usage: ${NAME} consumers list
       ${NAME} consumers add <name> --sets a,b
       ${NAME} consumers remove <name>

Managed consumers, kept in D1 (no redeploy). \`add\` prints the new consumer's token: it is
shown this once (only its SHA-256 is stored). Names: ^[a-z0-9][a-z0-9-]{0,63}$. A deleted
consumer's token stops working everywhere within 60 s. Consumers configured in CONSUMERS are
listed too and cannot be removed here (409).

  --sets a,b     (add) the model sets it may read, comma-separated

${CONNECTION}`,

  token: `Usage: ${NAME} token [<consumer> [<set>...]] [--sets a,b] [--json]

Offline: prints a new random consumer token (256 bits) and its lowercase hex SHA-256. With a
consumer name and sets, also the CONSUMERS entry to paste into rotator.config.json or
wrangler.toml. The token is printed this once and stored nowhere: hand it to the service as a
secret. (To create a managed consumer without a redeploy: \`${NAME} consumers add\`.)

  --sets a,b     the sets the consumer may read (or list them after the name)
  --json         {"token", "sha256", "consumers_entry"}
  -h, --help     this help`,

  webhook: `Usage: ${NAME} webhook <set> [--reason R] [--revoke-previous] [--id ID] [--print] [--url URL] [--json]

Sends POST /v1/webhooks/rotate signed per Standard Webhooks with $WEBHOOK_SECRET (the first
secret of a space-separated list), as a leak scanner would. The same --id again shows the replay
answer (the first result, nothing minted). --print prints the signed request as a curl command
instead of sending it (valid for 5 minutes: the timestamp is signed). The secret itself is never
printed.

  --reason R          recorded with the rotation
  --revoke-previous   revoke every older key of the set at once
  --id ID             the webhook-id (default: a new random one)
  --print             print a curl command instead of sending
  --url URL           the rotator's base URL (default: $BKR_URL)
  --json              print the JSON body of the answer
  -h, --help          this help`,

  check: `Usage: ${NAME} check [--config wrangler.toml] [--vars .dev.vars] [--env NAME] [--local] [--rotator-config F] [--json]

Validates the configuration offline with the worker's own loader (src/config.ts): the
wrangler config's [vars] (read by wrangler itself: TOML tables or JSON strings, per-environment
vars), a .dev.vars-style file, and rotator.config.json (beside the wrangler config). Every
problem names the file it came from; a TOML error keeps its line and column. Refuses a var over
Cloudflare's 5 KB cap (wrangler dev does not enforce it): move MODEL_SETS / CONSUMERS into
rotator.config.json. Without --local it also checks what a deployment needs: the DB and KEYS ids
are not the placeholders, BASETEN_TEAM_ID is not the placeholder, a cron trigger, a non-local
API base, no secret in [vars]. Secrets are checked when given in the environment or --vars.

  --config F          the wrangler config (default: wrangler.toml / wrangler.json[c] here)
  --vars F            a .dev.vars-style file; its values override [vars], as in wrangler dev
                      (--secrets-file F is the same)
  --env NAME          the wrangler environment (default: $CLOUDFLARE_ENV, else the top level)
  --local             skip the deployment-only checks
  --rotator-config F  the bundled config file (default: rotator.config.json beside the config)
  --json              {"ok", "problems": [{"file", "problem"}], "warnings", "unchecked", "summary"}
  -h, --help          this help

Exit 0 with a one-line summary; 1 listing every problem; 2 on bad usage.`,
};

const CONNECTION_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Options = NonNullable<ParseArgsConfig["options"]>;

function parse<const O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>({
      args: argv,
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ""), command);
  }
}

const out = (text: string) => process.stdout.write(`${text}\n`);
const err = (text: string) => process.stderr.write(`${text}\n`);
const printJson = (body: unknown) => out(JSON.stringify(body, null, 2));

function target(command: string, values: { url?: string | boolean; token?: string | boolean }): Target {
  return { url: baseUrl(values.url as string | undefined, command), token: adminToken(values.token as string | undefined, command) };
}

function wantsHelp(command: string, values: { help?: boolean | string }): boolean {
  if (values.help) out(HELP[command]!);
  return Boolean(values.help);
}

function requireSet(command: string, set: string | undefined): string {
  if (!set) throw new UsageError("give a model set", command);
  if (!SET_ID.test(set)) throw new UsageError(`set id "${set}" must match ^[a-z0-9][a-z0-9-]{0,31}$`, command);
  return set;
}

function noExtra(command: string, positionals: string[], max: number) {
  if (positionals.length > max) throw new UsageError(`unexpected argument ${positionals[max]}`, command);
}

// --- commands that call the rotator -----------------------------------------------------------

interface StatusBody {
  sets?: {
    model_set: string;
    enabled?: boolean | null;
    configured?: boolean | null;
    generation?: number | null;
    team_id?: string | null;
    refresh_at?: string | null;
    expires_at?: string | null;
    previous?: { generation: number; expires_at: string | null }[];
    last_run?: { trigger: string; outcome: string; error: string | null; at: string | null } | null;
  }[];
  config_problems?: string[];
  engine?: { last_tick_at?: string | null; stalled?: boolean } | null;
  encryption?: { primary?: string; sealed_by?: Record<string, number> } | null;
  management_key?: { ok?: boolean | null; checked_at?: string | null; error?: string | null } | null;
  consumers?: {
    name: string;
    kind?: string;
    model_sets?: string[];
    seen?: { model_set: string; generation: number; at?: string; lagging?: boolean }[];
  }[];
  delivery_failures?: unknown[];
}

function printStatus(body: StatusBody, url: string) {
  const sets = body.sets ?? [];
  out(`${url}: ${sets.length} set${sets.length === 1 ? "" : "s"}`);
  if (sets.length) {
    out("");
    out(
      table(
        ["SET", "ENABLED", "GEN", "REFRESH_AT", "EXPIRES_AT", "PREVIOUS (LIVE UNTIL)", "LAST RUN"],
        sets.map((s) => [
          s.model_set,
          s.configured === false ? "removed" : s.enabled === false ? "no" : s.enabled === true ? "yes" : "?",
          str(s.generation),
          when(s.refresh_at),
          when(s.expires_at),
          (s.previous ?? [])
            .map((p) => `${p.generation} (${p.expires_at ? when(p.expires_at).split(" (")[1]!.replace(")", "") : "-"})`)
            .join(", ") || "-",
          s.last_run
            ? `${s.last_run.outcome} (${s.last_run.trigger}, ${when(s.last_run.at).split(" (")[1]?.replace(")", "") ?? "-"})${s.last_run.error ? `: ${s.last_run.error}` : ""}`
            : "-",
        ]),
      ),
    );
  }
  const consumers = body.consumers ?? [];
  if (consumers.length) {
    out("");
    out(
      table(
        ["CONSUMER", "KIND", "SETS", "HOLDS"],
        consumers.map((c) => [
          c.name,
          str(c.kind),
          (c.model_sets ?? []).join(",") || "-",
          (c.seen ?? []).map((s) => `${s.model_set}@${s.generation}${s.lagging ? " LAGGING" : ""}`).join(", ") || "-",
        ]),
      ),
    );
  }
  out("");
  if (body.engine) out(`engine: last tick ${when(body.engine.last_tick_at)}${body.engine.stalled ? "  STALLED" : ""}`);
  if (body.encryption?.primary) {
    const by = Object.entries(body.encryption.sealed_by ?? {}).map(([k, n]) => `${k}: ${n}`);
    out(`encryption: primary key ${body.encryption.primary}${by.length ? `; sealed by ${by.join(", ")}` : ""}`);
  }
  if (body.management_key)
    out(
      `management key: ${body.management_key.ok === false ? `REFUSED${body.management_key.error ? ` (${body.management_key.error})` : ""}` : body.management_key.ok ? "accepted" : "not used yet"}${body.management_key.checked_at ? `, ${when(body.management_key.checked_at)}` : ""}`,
    );
  if (Array.isArray(body.delivery_failures) && body.delivery_failures.length)
    out(`event deliveries failing: ${body.delivery_failures.length}`);
  const problems = body.config_problems ?? [];
  if (problems.length) {
    out(`CONFIG INVALID: ${problems.length} problem${problems.length === 1 ? "" : "s"}`);
    for (const p of problems) out(`  - ${p}`);
  } else out("config: OK");
}

async function status(argv: string[]) {
  const { values, positionals } = parse("status", argv, CONNECTION_OPTIONS);
  if (wantsHelp("status", values)) return;
  noExtra("status", positionals, 0);
  const t = target("status", values);
  const a = await call(t, "GET", "/v1/admin/status");
  if (values.json) return printJson(a.body);
  printStatus(a.body as StatusBody, t.url);
}

interface RotationBody {
  model_set: string;
  generation: number;
  refresh_at?: string;
  expires_at?: string;
  replaced?: { generation: number; expires_at: string | null } | null;
  revoked?: number[];
}

async function rotate(argv: string[]) {
  const { values, positionals } = parse("rotate", argv, {
    ...CONNECTION_OPTIONS,
    "revoke-previous": { type: "boolean" },
    reason: { type: "string" },
  });
  if (wantsHelp("rotate", values)) return;
  const set = requireSet("rotate", positionals[0]);
  noExtra("rotate", positionals, 1);
  const t = target("rotate", values);
  const body: Record<string, unknown> = {};
  if (values.reason !== undefined) body.reason = values.reason;
  if (values["revoke-previous"]) body.revoke_previous = true;
  // Rotations run inline (mint, maybe verify, promote): allow them their lease.
  const a = await call(t, "POST", `/v1/admin/rotate/${encodeURIComponent(set)}`, { body, timeoutMs: 120_000 });
  if (values.json) return printJson(a.body);
  printRotation(a);
}

function printRotation(a: Answer) {
  const r = a.body as RotationBody;
  const replay = a.headers.get("idempotent-replayed");
  out(
    `${r.model_set}: generation ${r.generation} is current${replay ? " (a replay: the first answer to this webhook-id, nothing minted)" : ""}`,
  );
  out(`  refresh at  ${when(r.refresh_at)}`);
  out(`  revoked at  ${when(r.expires_at)} (at the latest)`);
  if (r.replaced) out(`  replaced    generation ${r.replaced.generation}, live until ${when(r.replaced.expires_at)}`);
  if (r.revoked?.length) out(`  revoked now generation${r.revoked.length === 1 ? "" : "s"} ${r.revoked.join(", ")}`);
}

async function revoke(argv: string[]) {
  const { values, positionals } = parse("revoke", argv, {
    ...CONNECTION_OPTIONS,
    "all-previous": { type: "boolean" },
    generation: { type: "string", multiple: true },
    reason: { type: "string" },
  });
  if (wantsHelp("revoke", values)) return;
  const set = requireSet("revoke", positionals[0]);
  noExtra("revoke", positionals, 1);
  const gens = (values.generation ?? []) as string[];
  if (values["all-previous"] && gens.length) throw new UsageError("give --all-previous or --generation, not both", "revoke");
  if (!values["all-previous"] && gens.length === 0) throw new UsageError("give --all-previous or at least one --generation N", "revoke");
  const generations = gens
    .flatMap((g) => g.split(","))
    .map((g) => {
      if (!/^[1-9]\d{0,14}$/.test(g.trim())) throw new UsageError(`--generation needs a whole number >= 1, got "${g}"`, "revoke");
      return Number(g.trim());
    });
  const t = target("revoke", values);
  const body: Record<string, unknown> = values["all-previous"] ? { all_previous: true } : { generations: [...new Set(generations)] };
  if (values.reason !== undefined) body.reason = values.reason;
  const a = await call(t, "POST", `/v1/admin/revoke/${encodeURIComponent(set)}`, { body, timeoutMs: 120_000 });
  if (values.json) return printJson(a.body);
  const r = a.body as { model_set?: string; revoked?: number[] };
  const list = r.revoked ?? [];
  out(
    list.length
      ? `${r.model_set ?? set}: revoked generation${list.length === 1 ? "" : "s"} ${list.join(", ")} at Baseten`
      : `${r.model_set ?? set}: nothing to revoke (already revoked, or no older live key)`,
  );
}

async function audit(argv: string[]) {
  const { values, positionals } = parse("audit", argv, {
    ...CONNECTION_OPTIONS,
    set: { type: "string" },
    limit: { type: "string" },
    cursor: { type: "string" },
  });
  if (wantsHelp("audit", values)) return;
  noExtra("audit", positionals, 0);
  const q = new URLSearchParams();
  if (values.set !== undefined) q.set("model_set", requireSet("audit", values.set as string));
  if (values.limit !== undefined) {
    const n = Number(values.limit);
    if (!/^\d+$/.test(values.limit as string) || n < 1 || n > 500)
      throw new UsageError(`--limit must be a whole number from 1 to 500, got "${values.limit}"`, "audit");
    q.set("limit", String(n));
  }
  if (values.cursor !== undefined) q.set("cursor", values.cursor as string);
  const t = target("audit", values);
  const qs = q.toString();
  const a = await call(t, "GET", `/v1/admin/audit${qs ? `?${qs}` : ""}`);
  if (values.json) return printJson(a.body);
  const b = a.body as { entries?: Record<string, unknown>[]; next_cursor?: string | null };
  const entries = b.entries ?? [];
  if (entries.length === 0) out("no audit entries");
  else
    out(
      table(
        ["AT", "ACTION", "SET", "GEN", "TRIGGER", "CONSUMER", "REASON"],
        entries.map((e) => [
          typeof e.at === "string" ? e.at.replace("T", " ").replace(/\.\d{3}Z$/, "Z") : str(e.at),
          str(e.action),
          str(e.model_set),
          str(e.generation),
          str(e.trigger),
          str(e.consumer),
          str(e.reason),
        ]),
      ),
    );
  if (b.next_cursor)
    out(
      `\nmore: ${NAME} audit${values.set ? ` --set ${values.set}` : ""}${values.limit ? ` --limit ${values.limit}` : ""} --cursor ${b.next_cursor}`,
    );
}

async function consumers(argv: string[]) {
  const { values, positionals } = parse("consumers", argv, { ...CONNECTION_OPTIONS, sets: { type: "string" } });
  if (wantsHelp("consumers", values)) return;
  const [action, name] = positionals;
  if (action === "list" || action === undefined) {
    if (action === undefined) throw new UsageError("give list, add <name> --sets a,b, or remove <name>", "consumers");
    noExtra("consumers", positionals, 1);
    const a = await call(target("consumers", values), "GET", "/v1/admin/consumers");
    if (values.json) return printJson(a.body);
    const list = (a.body as { consumers?: { name: string; kind?: string; model_sets?: string[] }[] }).consumers ?? [];
    if (list.length === 0) return out("no consumers");
    return out(
      table(
        ["NAME", "KIND", "SETS"],
        list.map((c) => [c.name, str(c.kind), (c.model_sets ?? []).join(",") || "-"]),
      ),
    );
  }
  if (action === "add") {
    if (!name) throw new UsageError("give the new consumer's name", "consumers");
    if (!MANAGED_NAME.test(name)) throw new UsageError(`consumer name "${name}" must match ^[a-z0-9][a-z0-9-]{0,63}$`, "consumers");
    noExtra("consumers", positionals, 2);
    const sets = splitSets("consumers", values.sets as string | undefined);
    if (sets.length === 0) throw new UsageError("give the sets it may read: --sets a,b", "consumers");
    const a = await call(target("consumers", values), "POST", "/v1/admin/consumers", { body: { name, model_sets: sets } });
    if (values.json) return printJson(a.body);
    const c = a.body as { name: string; model_sets?: string[]; token?: string };
    out(`created consumer ${c.name} (sets ${(c.model_sets ?? sets).join(", ")})`);
    out("");
    out("Its token, printed this once and stored nowhere (only its SHA-256 is kept): hand it to the service as a secret.");
    out("");
    out(`  ${c.token ?? "(the answer held no token)"}`);
    return;
  }
  if (action === "remove" || action === "delete") {
    if (!name) throw new UsageError("give the consumer's name", "consumers");
    noExtra("consumers", positionals, 2);
    const a = await call(target("consumers", values), "DELETE", `/v1/admin/consumers/${encodeURIComponent(name)}`);
    if (values.json) return printJson(a.body);
    return out(`deleted consumer ${name}: its token stops working everywhere within 60 s`);
  }
  throw new UsageError(`unknown action "${action}": give list, add <name> --sets a,b, or remove <name>`, "consumers");
}

function splitSets(command: string, raw: string | undefined): string[] {
  const sets = (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of sets) requireSet(command, s);
  return [...new Set(sets)];
}

// --- offline commands ---------------------------------------------------------------------------

function token(argv: string[]) {
  const { values, positionals } = parse("token", argv, {
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
    sets: { type: "string" },
  });
  if (wantsHelp("token", values)) return;
  const [consumer, ...rest] = positionals;
  if (consumer !== undefined && !CONFIG_CONSUMER_NAME.test(consumer))
    throw new UsageError(`consumer name "${consumer}" must be 1-64 letters, digits, '.', '_' or '-'`, "token");
  const sets = [
    ...new Set([...rest.flatMap((s) => s.split(",")).filter(Boolean), ...splitSets("token", values.sets as string | undefined)]),
  ];
  for (const s of sets) requireSet("token", s);
  if (sets.length && consumer === undefined) throw new UsageError("give the consumer's name before its sets", "token");
  // 256 bits from the OS CSPRNG, base64url: fits the bearer token syntax without escaping.
  const tok = `bkr_${randomBytes(32).toString("base64url")}`;
  const sha256 = createHash("sha256").update(tok).digest("hex");
  const entry = consumer === undefined ? null : { [consumer]: { token_sha256: sha256, model_sets: sets } };
  if (values.json) return printJson({ token: tok, sha256, ...(entry ? { consumers_entry: entry } : {}) });
  out(`A new consumer token${consumer ? ` for ${consumer}` : ""}, printed this once and stored nowhere: hand it to the service as a secret.

  ${tok}

Its SHA-256 (what the worker keeps, as token_sha256):

  ${sha256}`);
  if (entry) {
    out(`
CONSUMERS entry (add it to rotator.config.json's "CONSUMERS", or as [vars.CONSUMERS.${consumer}] in wrangler.toml):

  ${JSON.stringify(consumer)}: ${JSON.stringify(entry[consumer!])}`);
    if (sets.length === 0) out("\n(no sets yet: list the sets it may read in model_sets)");
    else out(`\nThe service calls:  curl -H "Authorization: Bearer $TOKEN" https://<your-worker>/v1/keys/${sets[0]}`);
  }
}

/** The first secret of WEBHOOK_SECRET (a space-separated list, as the worker takes it). */
function webhookSecret(): string {
  const first = (process.env.WEBHOOK_SECRET ?? "").trim().split(/\s+/)[0] ?? "";
  if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(first))
    throw new UsageError(
      "WEBHOOK_SECRET must be set in the environment to the worker's whsec_<base64> secret (the first of a space-separated list is used)",
      "webhook",
    );
  return first;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function webhook(argv: string[]) {
  const { values, positionals } = parse("webhook", argv, {
    url: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
    reason: { type: "string" },
    "revoke-previous": { type: "boolean" },
    id: { type: "string" },
    print: { type: "boolean" },
  });
  if (wantsHelp("webhook", values)) return;
  // `webhook <url> <set>` (the old `npm run webhook -- <url> <set>`) still works.
  let urlArg = values.url as string | undefined;
  let rest = positionals;
  if (positionals.length === 2 && /^https?:\/\//.test(positionals[0]!)) {
    urlArg = positionals[0];
    rest = positionals.slice(1);
  }
  const set = requireSet("webhook", rest[0]);
  noExtra("webhook", rest, 1);
  const secret = webhookSecret();
  let url: string;
  if (values.print && !urlArg && !process.env.BKR_URL) url = "$BKR_URL";
  else url = baseUrl(urlArg, "webhook");
  // A full route URL is taken as is; a base URL gets the route's path.
  const endpoint =
    url === "$BKR_URL" ? "$BKR_URL/v1/webhooks/rotate" : /\/v1\/webhooks\/rotate\/?$/.test(url) ? url : `${url}/v1/webhooks/rotate`;

  const body = JSON.stringify({
    model_set: set,
    ...(values.reason !== undefined ? { reason: values.reason } : {}),
    ...(values["revoke-previous"] ? { revoke_previous: true } : {}),
  });
  const id = (values.id as string | undefined) ?? `msg_${randomUUID().replaceAll("-", "")}`;
  if (!/^[\x21-\x7e]{1,256}$/.test(id)) throw new UsageError("--id must be 1-256 printable characters without spaces", "webhook");
  const timestamp = String(Math.floor(Date.now() / 1000));
  // Standard Webhooks: HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed with the bytes after whsec_.
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const signature = `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
  const headers = { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature };

  if (values.print) {
    const target = endpoint.startsWith("$BKR_URL") ? `"${endpoint}"` : shellQuote(endpoint);
    out(
      [
        `curl -sS -X POST ${target}`,
        ...Object.entries(headers).map(([k, v]) => `-H ${shellQuote(`${k}: ${v}`)}`),
        `--data-binary ${shellQuote(body)}`,
      ].join(" \\\n  "),
    );
    err(`(signed at ${new Date(Number(timestamp) * 1000).toISOString()}: the worker accepts it for 5 minutes; the secret is not in it)`);
    return;
  }
  err(`POST ${endpoint}\nwebhook-id: ${id}   (resend with --id ${id} to see the replay answer)`);
  const a = await call({ url: endpoint, token: null }, "POST", "", { rawBody: body, headers, timeoutMs: 120_000 });
  if (values.json) return printJson(a.body);
  printRotation(a);
}

async function check(argv: string[]) {
  const { values, positionals } = parse("check", argv, {
    config: { type: "string", short: "c" },
    vars: { type: "string" },
    "secrets-file": { type: "string" },
    env: { type: "string", short: "e" },
    local: { type: "boolean" },
    "rotator-config": { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (wantsHelp("check", values)) return;
  noExtra("check", positionals, 0);
  if (values.vars && values["secrets-file"]) throw new UsageError("--secrets-file is another name for --vars: give one", "check");
  let result: Awaited<ReturnType<typeof runCheck>>;
  try {
    result = await runCheck({
      config: values.config as string | undefined,
      vars: (values.vars ?? values["secrets-file"]) as string | undefined,
      env: values.env as string | undefined,
      local: Boolean(values.local),
      rotatorConfig: values["rotator-config"] as string | undefined,
      quiet: Boolean(values.json),
    });
  } catch (e) {
    if (!(e instanceof FileProblem)) throw e;
    if (values.json) printJson({ ok: false, problems: [{ file: e.file, problem: e.message }], warnings: [], unchecked: [], summary: "" });
    else err(`config check failed:\n  - ${e.message.replace(/\n/g, "\n  ")}`);
    process.exitCode = 1;
    return;
  }
  const { report, where } = result;
  if (values.json) {
    printJson({ ok: report.ok, problems: report.located, warnings: report.warnings, unchecked: report.unchecked, summary: report.summary });
    if (!report.ok) process.exitCode = 1;
    return;
  }
  for (const w of report.warnings) err(`warning: ${w}`);
  if (!report.ok) {
    err(`config check failed for ${where}: ${report.located.length} problem${report.located.length === 1 ? "" : "s"}`);
    for (const p of report.located) err(`  - ${p.file}: ${p.problem}`);
    if (report.unchecked.length) err(`(secrets not checked here, set with wrangler secret put: ${report.unchecked.join(", ")})`);
    process.exitCode = 1;
    return;
  }
  out(`config OK (${where}): ${report.summary}`);
}

// --- dispatch -----------------------------------------------------------------------------------

const COMMANDS: Record<string, (argv: string[]) => unknown> = { status, rotate, revoke, audit, consumers, token, webhook, check };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      const topic = command === "help" ? rest[0] : undefined;
      if (topic !== undefined && !HELP[topic]) throw new UsageError(`unknown command "${topic}"`);
      // No command at all is a usage mistake (help on stderr, exit 2); asking for help is not.
      if (command === undefined) {
        err(HELP.main!);
        return 2;
      }
      out(HELP[topic ?? "main"]!);
      return 0;
    }
    if (command === "--version" || command === "-v") {
      out(VERSION);
      return 0;
    }
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`unknown command "${command}"`);
    await run(rest);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`${NAME}${e.command ? ` ${e.command}` : ""}: ${e.message}`);
      err(`run \`${NAME} ${e.command ? `${e.command} ` : ""}--help\` for usage`);
      return 2;
    }
    if (e instanceof RequestFailed) {
      if (argv.includes("--json") && e.body !== null) printJson(e.body);
      err(`${NAME} ${command}: ${e.message}`);
      return 1;
    }
    err(`${NAME} ${command}: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
