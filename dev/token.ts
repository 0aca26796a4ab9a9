/**
 * `npm run token -- <consumer> <set>...`: a fresh consumer token and the CONSUMERS entry to
 * paste. The worker only ever stores the token's sha-256; the token itself is printed once
 * here and goes to the consuming service as a secret.
 *
 *   npm run token -- billing-svc chat embed
 */
/// <reference types="node" />
import { createHash, randomBytes } from "node:crypto";

// The same rules the worker's config parser applies (src/config.ts).
const CONSUMER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SET_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const USAGE = "usage: npm run token -- <consumer> <set> [<set>...]";

function die(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const [consumer, ...sets] = process.argv.slice(2);
if (!consumer || consumer === "--help" || consumer === "-h") die("give a consumer name and at least one model set");
if (!CONSUMER_NAME.test(consumer)) die(`consumer name "${consumer}" must be 1-64 letters, digits, '.', '_' or '-'`);
if (sets.length === 0) die("give at least one model set the consumer may read");
for (const s of sets) if (!SET_ID.test(s)) die(`set id "${s}" must match ^[a-z0-9][a-z0-9-]{0,31}$`);

// 256 bits from the OS CSPRNG, base64url: fits the bearer token syntax without escaping.
const token = `bkr_${randomBytes(32).toString("base64url")}`;
const sha256 = createHash("sha256").update(token).digest("hex");
const grants = [...new Set(sets)].map((s) => JSON.stringify(s)).join(", ");
const entry = `${JSON.stringify(consumer)}: { "token_sha256": "${sha256}", "model_sets": [${grants}] }`;

console.log(`Token for ${consumer} (shown once, stored nowhere: hand it to the service as a secret):

  ${token}

CONSUMERS entry to add (the worker keeps only the sha-256):

  ${entry}

The service calls:  curl -H "Authorization: Bearer $TOKEN" https://<your-worker>/v1/keys/${sets[0]}`);
