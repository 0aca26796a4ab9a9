/**
 * `npm run webhook -- <url> <set> [--revoke-previous] [--reason <text>] [--id <webhook-id>]`:
 * sends a rotation webhook signed per the Standard Webhooks spec with WEBHOOK_SECRET from the
 * environment, so an operator can test the integration end to end.
 *
 *   WEBHOOK_SECRET=whsec_... npm run webhook -- https://rotator.example.workers.dev chat --reason "drill"
 *
 * <url> is the worker's base URL (the path /v1/webhooks/rotate is added) or the full route URL.
 * Resending with the printed `--id` shows the replay behaviour: the first answer, no new key.
 * The signature is made here with node:crypto, independently of the worker's code.
 * Exit 0 on a 2xx answer, 1 otherwise, 2 on bad usage.
 */
/// <reference types="node" />
import { createHmac, randomUUID } from "node:crypto";

const USAGE = "usage: WEBHOOK_SECRET=whsec_... npm run webhook -- <url> <set> [--revoke-previous] [--reason <text>] [--id <webhook-id>]";

function die(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const positional: string[] = [];
let revokePrevious = false;
let reason: string | undefined;
let id: string | undefined;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]!;
  if (arg === "--revoke-previous") revokePrevious = true;
  else if (arg === "--reason") reason = argv[++i] ?? die("--reason needs a value");
  else if (arg.startsWith("--reason=")) reason = arg.slice("--reason=".length);
  else if (arg === "--id") id = argv[++i] ?? die("--id needs a value");
  else if (arg.startsWith("--id=")) id = arg.slice("--id=".length);
  else if (arg === "--help" || arg === "-h") die("");
  else if (arg.startsWith("--")) die(`unknown option ${arg}`);
  else positional.push(arg);
}
const [rawUrl, set] = positional;
if (!rawUrl || !set || positional.length > 2) die("give the worker's URL and one model set");

const secret = process.env.WEBHOOK_SECRET ?? "";
if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret)) die("WEBHOOK_SECRET must be set in the environment to the worker's whsec_<base64> secret");

let url: URL;
try {
  url = new URL(rawUrl);
} catch {
  die(`not a URL: ${rawUrl}`);
}
if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/webhooks/rotate";

const body = JSON.stringify({ model_set: set, ...(reason !== undefined ? { reason } : {}), ...(revokePrevious ? { revoke_previous: true } : {}) });
const webhookId = id ?? `msg_${randomUUID().replaceAll("-", "")}`;
const timestamp = Math.floor(Date.now() / 1000);
// Standard Webhooks: HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed with the bytes the base64 after whsec_ decodes to.
const key = Buffer.from(secret.slice("whsec_".length), "base64");
const signature = `v1,${createHmac("sha256", key).update(`${webhookId}.${timestamp}.${body}`).digest("base64")}`;

console.error(`POST ${url}\nwebhook-id: ${webhookId}   (resend with --id ${webhookId} to see the replay answer)\n${body}\n`);
let res: Response;
try {
  res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "webhook-id": webhookId, "webhook-timestamp": String(timestamp), "webhook-signature": signature },
    body,
    signal: AbortSignal.timeout(120_000),
  });
} catch (err) {
  console.error(`request failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
const text = await res.text();
const notable = ["retry-after", "idempotent-replayed"].filter((h) => res.headers.has(h)).map((h) => `${h}: ${res.headers.get(h)}`);
console.log(`HTTP ${res.status}${notable.length ? `\n${notable.join("\n")}` : ""}`);
try {
  console.log(JSON.stringify(JSON.parse(text), null, 2));
} catch {
  console.log(text);
}
process.exit(res.ok ? 0 : 1);
