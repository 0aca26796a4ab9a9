/**
 * Managed consumers (DESIGN §3, §3.1): static-token consumers created and deleted through
 * `/v1/admin/consumers`, kept in D1 (`managed_consumers`: name, SHA-256 of the token, grants).
 *
 * Each location keeps a snapshot of the whole table, read at most once per 30 s and only when a
 * token that no configured consumer holds arrives. So an unknown token costs at most one D1 read
 * per location per 30 s however many arrive (no amplification), and a deleted consumer's token
 * stops working everywhere within 60 s: a snapshot is used as is for 30 s, refreshed in the
 * background up to 60 s, and never used past 60 s. The location that creates or deletes a
 * consumer drops its snapshot at once.
 */
import type { Config } from "../config.ts";

export const SNAPSHOT_FRESH_MS = 30_000;
export const SNAPSHOT_MAX_MS = 60_000;
export const MANAGED_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface ManagedConsumer {
  name: string;
  tokenSha256: string;
  modelSets: string[];
  createdAt: number;
}

interface Snapshot {
  byHash: Map<string, ManagedConsumer>;
  loadedAt: number;
}

interface SnapshotState {
  snapshot: Snapshot | null;
  inflight: Promise<Snapshot> | null;
  reads: number;
}

// Per configuration object (per isolate in production; per test world in tests).
const states = new WeakMap<Config, SnapshotState>();

function stateOf(config: Config): SnapshotState {
  let s = states.get(config);
  if (!s) states.set(config, (s = { snapshot: null, inflight: null, reads: 0 }));
  return s;
}

/** D1 reads of the managed table made at this location for this config (tests, bench). */
export function managedReads(config: Config): number {
  return states.get(config)?.reads ?? 0;
}

interface Row {
  name: string;
  token_sha256: string;
  model_sets: string;
  created_at: number;
}

export async function listManaged(db: D1Database): Promise<ManagedConsumer[]> {
  const { results } = await db.prepare("SELECT name, token_sha256, model_sets, created_at FROM managed_consumers ORDER BY name").all<Row>();
  return results.map((r) => ({
    name: r.name,
    tokenSha256: r.token_sha256,
    modelSets: JSON.parse(r.model_sets) as string[],
    createdAt: r.created_at,
  }));
}

function load(db: D1Database, config: Config, s: SnapshotState, now: number): Promise<Snapshot> {
  s.inflight ??= (async () => {
    s.reads++;
    const rows = await listManaged(db);
    // A configured consumer's name always wins (names never collide: creation refuses them).
    const configured = new Set(config.consumers.map((c) => c.name));
    const snapshot: Snapshot = {
      byHash: new Map(rows.filter((r) => !configured.has(r.name)).map((r) => [r.tokenSha256, r])),
      loadedAt: now,
    };
    s.snapshot = snapshot;
    return snapshot;
  })().finally(() => {
    s.inflight = null;
  });
  return s.inflight;
}

/**
 * The managed consumer holding `hash`, or null, and until when that answer may be reused
 * without asking again (the hot path's memory).
 */
export async function managedByHash(
  db: D1Database,
  config: Config,
  hash: string,
  now: number,
  waitUntil?: (p: Promise<unknown>) => void,
): Promise<{ consumer: ManagedConsumer | null; until: number }> {
  const s = stateOf(config);
  let snap = s.snapshot;
  const age = snap ? now - snap.loadedAt : Infinity;
  if (!snap || age >= SNAPSHOT_MAX_MS || age < 0) snap = await load(db, config, s, now);
  else if (age >= SNAPSHOT_FRESH_MS && !s.inflight) {
    const p = load(db, config, s, now).catch(() => undefined);
    if (waitUntil) waitUntil(p);
  }
  // Remembered until the snapshot is due for a refresh, so the refresh is what ends a deleted token.
  return { consumer: snap.byHash.get(hash) ?? null, until: snap.loadedAt + SNAPSHOT_FRESH_MS };
}

/** After a create or delete here: the next lookup reads D1 again. */
export function dropManagedSnapshot(config: Config): void {
  const s = stateOf(config);
  s.snapshot = null;
}

export async function insertManaged(db: D1Database, c: ManagedConsumer, audit: D1PreparedStatement[]): Promise<void> {
  await db.batch([
    db
      .prepare("INSERT INTO managed_consumers (name, token_sha256, model_sets, created_at) VALUES (?, ?, ?, ?)")
      .bind(c.name, c.tokenSha256, JSON.stringify(c.modelSets), c.createdAt),
    ...audit,
  ]);
}

export async function managedByName(db: D1Database, name: string): Promise<ManagedConsumer | null> {
  const r = await db
    .prepare("SELECT name, token_sha256, model_sets, created_at FROM managed_consumers WHERE name = ?")
    .bind(name)
    .first<Row>();
  return r ? { name: r.name, tokenSha256: r.token_sha256, modelSets: JSON.parse(r.model_sets) as string[], createdAt: r.created_at } : null;
}

/** Deletes the row; true if this call deleted it. `audit` runs first (guard it on the row existing). */
export async function deleteManaged(db: D1Database, name: string, audit: D1PreparedStatement[]): Promise<boolean> {
  const results = await db.batch([...audit, db.prepare("DELETE FROM managed_consumers WHERE name = ?").bind(name)]);
  return (results[results.length - 1]?.meta.changes ?? 0) > 0;
}
