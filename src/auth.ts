/**
 * Consumer authentication: a bearer token is hashed (SHA-256) and compared in constant time
 * with every configured hash. Tokens that matched are remembered per isolate (and per config)
 * so the hot path hashes nothing; unknown tokens are never remembered (no unbounded growth).
 */
import type { Config, ConsumerConfig } from "./config.ts";
import { sha256Hex, timingSafeEqual } from "./crypto.ts";
import { bearerToken, fail } from "./http.ts";

const known = new WeakMap<Config, Map<string, ConsumerConfig>>();
const MAX_REMEMBERED = 1_000;

const unauthorized = (message: string): never => fail(401, "unauthorized", message, { "www-authenticate": 'Bearer realm="baseten-key-rotator"' });

/** The consumer of a token that already matched here, without hashing or awaiting (the hot path). */
export function rememberedConsumer(request: Request, config: Config): ConsumerConfig | undefined {
  const token = bearerToken(request);
  return token === null ? undefined : known.get(config)?.get(token);
}

export async function authenticateConsumer(request: Request, config: Config): Promise<ConsumerConfig> {
  const token = bearerToken(request);
  if (token === null) return unauthorized(request.headers.has("authorization") ? "malformed Authorization header: expected one 'Bearer <token>'" : "missing bearer token");
  let remembered = known.get(config);
  if (!remembered) known.set(config, (remembered = new Map()));
  const hit = remembered.get(token);
  if (hit) return hit;
  const hash = await sha256Hex(token);
  let match: ConsumerConfig | null = null;
  // No early exit: every hash is compared, so timing says nothing about which one matched.
  for (const consumer of config.consumers) if (timingSafeEqual(hash, consumer.tokenSha256)) match = consumer;
  if (!match) return unauthorized("invalid bearer token");
  if (remembered.size >= MAX_REMEMBERED) remembered.clear();
  remembered.set(token, match);
  return match;
}
