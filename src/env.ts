/**
 * Bindings, vars and secrets the worker reads. Vars may arrive as strings (`--var`,
 * `.dev.vars`, dashboard) or, for MODEL_SETS/CONSUMERS/EVENT_WEBHOOKS, as TOML tables.
 */
export interface Env {
  DB: D1Database;
  KEYS: KVNamespace;
  /** Optional queue for the cron's fan-out (see README, "Scale"). */
  ROTATIONS?: Queue<RotationMessage>;

  BASETEN_API_BASE?: string;
  BASETEN_TEAM_ID?: string;
  MODEL_SETS?: unknown;
  CONSUMERS?: unknown;
  EVENT_WEBHOOKS?: unknown;
  /** Tuning knobs (extensions of the contract, documented in the README). */
  BASETEN_TIMEOUT_MS?: string;
  BASETEN_MAX_ATTEMPTS?: string;
  BASETEN_CONCURRENCY?: string;
  INLINE_ROTATION_BUDGET?: string;

  BASETEN_API_KEY?: string;
  ENCRYPTION_KEY?: string;
  /** Older AES keys (space-separated base64), opening only, while everything is re-sealed (§4.9). */
  ENCRYPTION_KEY_PREVIOUS?: string;
  /** Space-separated lists: any listed value verifies / admits (changed without downtime). */
  WEBHOOK_SECRET?: string;
  ADMIN_TOKEN?: string;
  /** Optional (a list): admits GET /metrics only. */
  METRICS_TOKEN?: string;
}

/** One queued cron rotation: the set to run, and the tick that asked for it. */
export interface RotationMessage {
  model_set: string;
  tick_at: number;
  /** The tick saw KV's list disagree with D1 long after the last write: rewrite KV. */
  recache?: boolean;
  /** The tick's plan for the set mints (the consumer records the pending with the lease). */
  mint?: boolean;
  /** The gap the cron left before this tick (the consumer plans with the same margins). */
  tick_ms?: number;
}
