/**
 * The rotation policy (src/rotation/policy.ts) without any I/O: given D1's rows of a set, its
 * config and the time, which steps the engine applies, in which order. Table-driven: each row
 * is a state a set can be in and what a user relies on happening to it.
 */
import { describe, expect, it } from "vitest";
import type { ModelSetConfig } from "../src/config.ts";
import { MAX_STALENESS_MS, TICK_MS, nextAttempt } from "../src/document.ts";
import type { KeyRow, Snapshot } from "../src/ledger.ts";
import {
  LEASE_MS,
  OVERDUE_COVER_MS,
  RUN_AHEAD_MS,
  type PlanOptions,
  type Step,
  VERIFY_BACKOFF_MS,
  plan,
  refreshAtFor,
  revocable,
  runAheadMs,
} from "../src/rotation/policy.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const T = Date.parse("2026-11-27T15:00:00.000Z");
const CFG: ModelSetConfig = { id: "demo", modelIds: ["m1"], rotateEveryMs: 24 * HOUR, overlapMs: HOUR, enabled: true };

function row(generation: number, state: KeyRow["state"], over: Partial<KeyRow> = {}): KeyRow {
  const created = T - (10 - generation) * 24 * HOUR;
  return {
    model_set: "demo",
    generation,
    state,
    name: `bkr-demo-${generation}-x`,
    model_ids: ["m1"],
    overlap_ms: HOUR,
    prefix: state === "pending" ? null : `p${generation}`,
    created_at: created,
    refresh_at: state === "pending" ? null : created + 24 * HOUR,
    expires_at: state === "pending" ? null : created + 25 * HOUR,
    replaced_at: null,
    revoke_at: null,
    revoke_reason: null,
    kv_replaced_at: null,
    ...over,
  };
}

function snap(rows: KeyRow[], over: Partial<Snapshot> = {}): Snapshot {
  const current = rows.find((r) => r.state === "current");
  return {
    set: "demo",
    rows,
    cache: { model_set: "demo", cached_generation: current?.generation ?? null, cached_at: current ? current.created_at : null },
    maxGeneration: Math.max(0, ...rows.map((r) => r.generation)),
    onDemandMints: [],
    ...over,
  };
}

const kinds = (steps: Step[]) => steps.map((s) => s.kind);
const due: PlanOptions = { mint: "due" };
const now: PlanOptions = { mint: "now" };

/** A current key whose refresh_at is `inMs` from T. */
const currentDueIn = (inMs: number, over: Partial<KeyRow> = {}) =>
  row(5, "current", { created_at: T + inMs - 24 * HOUR, refresh_at: T + inMs, expires_at: T + inMs + HOUR, ...over });

describe("plan: which steps a set gets", () => {
  const cases: {
    name: string;
    rows: KeyRow[];
    cfg?: ModelSetConfig | null;
    opts?: PlanOptions;
    snap?: Partial<Snapshot>;
    at?: number;
    steps: string[];
  }[] = [
    { name: "a new set mints its first key and caches it", rows: [], steps: ["mint", "cache"] },
    { name: "a key far from its refresh_at: nothing to do", rows: [currentDueIn(HOUR)], steps: [] },
    { name: "just before the run-ahead margin: nothing yet", rows: [currentDueIn(RUN_AHEAD_MS + 1)], steps: [] },
    {
      name: "at refresh_at - run-ahead: mint (and extend only if the mint fails)",
      rows: [currentDueIn(RUN_AHEAD_MS)],
      steps: ["mint", "extend", "cache"],
    },
    { name: "overdue: mint, extension recorded if it fails", rows: [currentDueIn(-10 * MIN)], steps: ["mint", "extend", "cache"] },
    {
      name: "model_ids changed: re-mint now with the new scope",
      rows: [currentDueIn(10 * HOUR, { model_ids: ["old"] })],
      steps: ["mint", "cache"],
    },
    {
      name: "model_ids in another order: the same scope",
      rows: [currentDueIn(10 * HOUR, { model_ids: ["m1"] })],
      cfg: { ...CFG, modelIds: ["m1"] },
      steps: [],
    },
    { name: "disabled and not due: nothing", rows: [currentDueIn(HOUR)], cfg: { ...CFG, enabled: false }, steps: [] },
    {
      name: "disabled and overdue: extend the promise and re-cache, never mint",
      rows: [currentDueIn(-5 * MIN)],
      cfg: { ...CFG, enabled: false },
      steps: ["extend", "cache"],
    },
    { name: "disabled with no key: nothing", rows: [], cfg: { ...CFG, enabled: false }, steps: [] },
    {
      name: "a mint of another run in flight (young pending): no second mint",
      rows: [row(5, "current", { refresh_at: T - MIN }), row(6, "pending", { created_at: T - 10_000 })],
      steps: ["extend", "cache"],
    },
    {
      name: "a stale pending (run died): recover, then mint",
      rows: [row(5, "current", { refresh_at: T - MIN }), row(6, "pending", { created_at: T - LEASE_MS })],
      steps: ["recover", "mint", "extend", "cache"],
    },
    {
      name: "KV behind D1 (a failed KV write): re-cache",
      rows: [currentDueIn(HOUR)],
      snap: { cache: { model_set: "demo", cached_generation: 4, cached_at: T - HOUR } },
      steps: ["cache"],
    },
    { name: "KV never confirmed (upgrade from v1): re-cache", rows: [currentDueIn(HOUR)], snap: { cache: null }, steps: ["cache"] },
    {
      name: "the cron suspects KV regressed: re-cache",
      rows: [currentDueIn(HOUR)],
      opts: { mint: "due", recache: true },
      steps: ["cache"],
    },
    { name: "a removed set: retire, drop its cache entry", rows: [currentDueIn(HOUR)], cfg: null, steps: ["retire", "cache"] },
    {
      name: "a removed set whose entry is already dropped: nothing",
      rows: [row(5, "previous", { expires_at: T + HOUR })],
      cfg: null,
      snap: { cache: { model_set: "demo", cached_generation: 0, cached_at: T - HOUR } },
      steps: [],
    },
    { name: "on demand: mint now", rows: [currentDueIn(10 * HOUR)], opts: now, steps: ["mint", "cache"] },
    {
      name: "on demand with revoke_previous: mint, cache, revoke the others",
      rows: [currentDueIn(10 * HOUR)],
      opts: { mint: "now", revokePrevious: true },
      steps: ["mint", "cache", "revoke"],
    },
    {
      name: "on demand, 10 in the last 10 minutes: rejected",
      rows: [currentDueIn(10 * HOUR)],
      opts: now,
      snap: { onDemandMints: Array.from({ length: 10 }, (_, i) => T - i * 30_000) },
      steps: ["reject"],
    },
    {
      name: "on demand, 9 in the last 10 minutes: allowed",
      rows: [currentDueIn(10 * HOUR)],
      opts: now,
      snap: { onDemandMints: Array.from({ length: 9 }, (_, i) => T - i * 30_000) },
      steps: ["mint", "cache"],
    },
    {
      name: "on demand for a disabled set: rejected",
      rows: [currentDueIn(HOUR)],
      cfg: { ...CFG, enabled: false },
      opts: now,
      steps: ["reject"],
    },
    {
      name: "on demand while a mint may still be landing: rejected",
      rows: [currentDueIn(HOUR), row(6, "pending", { created_at: T - 5_000 })],
      opts: now,
      steps: ["reject"],
    },
    {
      name: "admin revoke of a previous key: mark first, then revoke",
      rows: [row(4, "previous", { expires_at: T + HOUR }), currentDueIn(HOUR)],
      opts: { mint: false, revoke: { generations: [4] } },
      steps: ["mark", "revoke"],
    },
    {
      name: "admin revoke of the current key: rejected",
      rows: [currentDueIn(HOUR)],
      opts: { mint: false, revoke: { generations: [5] } },
      steps: ["reject"],
    },
    {
      name: "admin revoke of a generation never minted: rejected",
      rows: [currentDueIn(HOUR)],
      opts: { mint: false, revoke: { generations: [9] } },
      steps: ["reject"],
    },
    {
      name: "admin revoke of an already revoked generation: skipped, nothing to do",
      rows: [currentDueIn(HOUR)],
      opts: { mint: false, revoke: { generations: [2] } },
      steps: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const cfg = c.cfg === null ? undefined : (c.cfg ?? CFG);
      expect(kinds(plan(snap(c.rows, c.snap), cfg, c.at ?? T, c.opts ?? due))).toEqual(c.steps);
    });
  }

  it("the rate-limit answer says when the oldest of the ten leaves the window", () => {
    const mints = Array.from({ length: 10 }, (_, i) => T - i * 30_000); // oldest 4.5 min ago
    const [step] = plan(snap([currentDueIn(HOUR)], { onDemandMints: mints }), CFG, T, now);
    expect(step).toMatchObject({ kind: "reject", code: "rate_limited", retryAfterS: 5.5 * 60 });
  });

  it("the replaced key keeps its recorded promise: the step names it and adds nothing", () => {
    const current = currentDueIn(5 * MIN);
    const mint = plan(snap([current]), CFG, T, now).find((s) => s.kind === "mint")!;
    expect(mint).toMatchObject({ replaced: { generation: 5 }, previousRefreshAt: null, why: "on_demand" });
    expect(mint.kind === "mint" && Object.keys(mint.replaced!)).toEqual(["generation"]);
    const scheduled = plan(snap([currentDueIn(RUN_AHEAD_MS)]), CFG, T, due).find((s) => s.kind === "mint")!;
    expect(scheduled).toMatchObject({ why: "schedule", previousRefreshAt: T + RUN_AHEAD_MS });
  });

  it("a lowered overlap in the config changes nothing the replaced key keeps: the step carries no expiry of its own", () => {
    const current = currentDueIn(RUN_AHEAD_MS, { overlap_ms: 2 * HOUR });
    const mint = plan(snap([current]), { ...CFG, overlapMs: 2 * MIN }, T, due).find((s) => s.kind === "mint")!;
    expect(mint).toMatchObject({ replaced: { generation: 5 }, overlapMs: 2 * MIN });
    expect(mint.kind === "mint" && Object.keys(mint.replaced!)).toEqual(["generation"]);
  });
});

describe("revocation reads recorded promises only", () => {
  const prev = (over: Partial<KeyRow>) => row(4, "previous", { expires_at: T - MIN, kv_replaced_at: T - HOUR, ...over });
  const cases: { name: string; row: KeyRow; configured?: boolean; revoke: boolean }[] = [
    { name: "promise ended, KV replaced long ago: revoke", row: prev({}), revoke: true },
    { name: "promise not ended: keep", row: prev({ expires_at: T + 1 }), revoke: false },
    { name: "promise ends exactly now: revoke", row: prev({ expires_at: T }), revoke: true },
    { name: "KV never confirmed a newer key (failed KV write): keep", row: prev({ kv_replaced_at: null }), revoke: false },
    { name: "KV replaced it less than the caches' lag ago: keep", row: prev({ kv_replaced_at: T - MAX_STALENESS_MS + 1 }), revoke: false },
    { name: "KV replaced it exactly the caches' lag ago: revoke", row: prev({ kv_replaced_at: T - MAX_STALENESS_MS }), revoke: true },
    {
      name: "explicit revoke_at passed: revoke even with a promise left",
      row: prev({ expires_at: T + HOUR, kv_replaced_at: null, revoke_at: T - 1, revoke_reason: "revoke_previous" }),
      revoke: true,
    },
    { name: "explicit revoke_at in the future: keep", row: prev({ expires_at: T + HOUR, revoke_at: T + 1 }), revoke: false },
    {
      name: "a removed set's key: its promise alone decides (nobody is served)",
      row: prev({ kv_replaced_at: null }),
      configured: false,
      revoke: true,
    },
    {
      name: "a current key is never revoked because its expires_at passed",
      row: row(5, "current", { expires_at: T - HOUR, kv_replaced_at: T - HOUR }),
      revoke: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(revocable(c.row, c.configured ?? true, T) !== null).toBe(c.revoke);
    });
  }

  it("revoke_previous's targets are decided after the promote; a due previous key is revoked in the same run", () => {
    const steps = plan(snap([prev({}), currentDueIn(HOUR)]), CFG, T, { mint: "now", revokePrevious: true });
    expect(steps.find((s) => s.kind === "revoke")).toEqual({ kind: "revoke", generations: [{ generation: 4, reason: "promise ended" }] });
  });
});

describe("how far ahead and how long", () => {
  it("the run-ahead margin covers one tick, the run, KV's lag and the isolate's memory; halved for short periods", () => {
    expect(RUN_AHEAD_MS).toBeGreaterThanOrEqual(TICK_MS + 60_000 + 5_000 + 20_000);
    expect(runAheadMs(CFG)).toBe(RUN_AHEAD_MS);
    expect(runAheadMs({ rotateEveryMs: 150_000 })).toBe(75_000);
  });

  it("a late or sparse cron (the gap between its last two ticks) widens the margins, up to 10 minutes", () => {
    expect(runAheadMs(CFG, 5 * MIN)).toBe(RUN_AHEAD_MS + 4 * MIN);
    expect(runAheadMs(CFG, 30 * MIN)).toBe(RUN_AHEAD_MS + 9 * MIN);
    expect(runAheadMs(CFG, 10_000)).toBe(RUN_AHEAD_MS);
    // Due 5 minutes early with a 5-minute cron, not with the minute cron.
    const rows = [currentDueIn(RUN_AHEAD_MS + 3 * MIN)];
    expect(kinds(plan(snap(rows), CFG, T, due))).toEqual([]);
    expect(kinds(plan(snap(rows), CFG, T, { mint: "due", tickMs: 5 * MIN }))).toEqual(["mint", "extend", "cache"]);
    const ext = plan(snap([currentDueIn(-MIN)]), { ...CFG, enabled: false }, T, { mint: "due", tickMs: 5 * MIN }).find(
      (s) => s.kind === "extend",
    ) as Extract<Step, { kind: "extend" }>;
    expect(ext.expiresAt).toBe(nextAttempt(T) + OVERDUE_COVER_MS + 2 * 4 * MIN + 5 * MIN + HOUR);
  });

  it("the last tick before refresh_at records the extension before it mints: a run that dies or stalls there leaves no overdue document without its promise", () => {
    // A 5-minute cron, refresh_at 4 minutes away: the next tick comes after refresh_at, so if this
    // run's mint takes the whole budget (or the run dies), nothing else records the extension in
    // time. The extension is recorded first, unconditionally.
    const sparse: PlanOptions = { mint: "due", tickMs: 5 * MIN };
    const last = plan(snap([currentDueIn(4 * MIN)]), CFG, T, sparse);
    expect(kinds(last)).toEqual(["extend", "mint", "cache"]);
    expect(last[0]).toMatchObject({ kind: "extend", generation: 5, onlyIfMintFailed: false });
    // The minute cron: the first due tick still has a later one before refresh_at (extend only if
    // the mint fails, so a replaced key is revoked right after the promise it was served with);
    // the tick after that (less than one tick + the run left) records it first.
    expect(kinds(plan(snap([currentDueIn(RUN_AHEAD_MS)]), CFG, T, due))).toEqual(["mint", "extend", "cache"]);
    expect(kinds(plan(snap([currentDueIn(90_000)]), CFG, T, due))).toEqual(["mint", "extend", "cache"]);
    expect(kinds(plan(snap([currentDueIn(80_000)]), CFG, T, due))).toEqual(["extend", "mint", "cache"]);
    // Already extended far enough (a previous tick): nothing to record first.
    const extended = currentDueIn(80_000, { expires_at: T + 80_000 + OVERDUE_COVER_MS + 5 * MIN + HOUR });
    expect(kinds(plan(snap([extended]), CFG, T, due))).toEqual(["mint", "cache"]);
    // The first tick after an outage (a gap beyond 10 minutes) assumes the minute cron again.
    expect(kinds(plan(snap([currentDueIn(4 * MIN)]), CFG, T, { mint: "due", tickMs: 8 * HOUR }))).toEqual(["mint", "extend", "cache"]);
    // Overdue and never extended (no tick ran in time): the documents are past saving; mint first.
    expect(kinds(plan(snap([currentDueIn(-10 * MIN)]), CFG, T, due))).toEqual(["mint", "extend", "cache"]);
  });

  it("a set whose run-ahead is capped at half its period never records the last-chance extension before a mint: the replaced key keeps the promise it was served with", () => {
    const short: ModelSetConfig = { ...CFG, rotateEveryMs: 150_000, overlapMs: 120_000 };
    const current = currentDueIn(25_000, { overlap_ms: 120_000, expires_at: T + 25_000 + 120_000 });
    // The outside client's third cron: 2 minutes after the last, 25 s before refresh_at.
    const steps = plan(snap([current]), short, T, { mint: "due", tickMs: 2 * MIN });
    expect(kinds(steps)).toEqual(["mint", "extend", "cache"]);
    expect(steps.find((s) => s.kind === "extend")).toMatchObject({ onlyIfMintFailed: true });
    // The same timing for a day-long set (run-ahead not capped) is its last chance: extension first.
    expect(kinds(plan(snap([currentDueIn(25_000)]), CFG, T, { mint: "due", tickMs: 2 * MIN }))).toEqual(["extend", "mint", "cache"]);
  });

  it("refresh_at stays anchored to the schedule on a scheduled rotation, restarts on demand or far behind", () => {
    const R = T + RUN_AHEAD_MS;
    expect(refreshAtFor(CFG, T, R)).toBe(R + 24 * HOUR);
    expect(refreshAtFor(CFG, T, null)).toBe(T + 24 * HOUR);
    // A day late: the cadence restarts from the mint instead of being due again at once.
    expect(refreshAtFor(CFG, T, T - 20 * HOUR)).toBe(T + 24 * HOUR);
  });

  it("a schedule gives the first schedule time after the previous refresh_at", () => {
    const cfg = { ...CFG, schedule: "0 10 * * TUE" };
    const tue = Date.parse("2026-12-01T10:00:00.000Z");
    expect(refreshAtFor(cfg, tue - RUN_AHEAD_MS, tue)).toBe(Date.parse("2026-12-08T10:00:00.000Z"));
    expect(refreshAtFor(cfg, Date.parse("2026-12-02T00:00:00.000Z"), null)).toBe(Date.parse("2026-12-08T10:00:00.000Z"));
  });

  it("a schedule time leaves at least the overlap and the run-ahead margin (issue #11)", () => {
    const cfg = { ...CFG, schedule: "0 * * * *", rotateEveryMs: HOUR, overlapMs: 20 * MIN };
    // Minted at 10:40: 10:40 + 20 min + run-ahead is past 11:00, so the first usable time is 12:00.
    const at = Date.parse("2026-12-01T10:40:00.000Z");
    expect(refreshAtFor(cfg, at, null)).toBe(Date.parse("2026-12-01T12:00:00.000Z"));
    const R = refreshAtFor(cfg, Date.parse("2026-12-01T10:30:00.000Z"), null);
    expect(R - Date.parse("2026-12-01T10:30:00.000Z")).toBeGreaterThanOrEqual(20 * MIN + RUN_AHEAD_MS);
    // A rotation run far ahead (a late cron's margin) never gets the schedule time it ran ahead of.
    const eleven = Date.parse("2026-12-01T11:00:00.000Z");
    expect(refreshAtFor({ ...cfg, overlapMs: 2 * MIN }, eleven - 10 * MIN, eleven)).toBe(Date.parse("2026-12-01T12:00:00.000Z"));
  });

  it("after a failed verification the due mints back off (on demand does not); the overdue key is extended meanwhile", () => {
    const cfg: ModelSetConfig = { ...CFG, verify: { url: "https://model.test/predict", method: "POST", headers: {} } };
    const current = currentDueIn(-MIN);
    const failed = { cache: { model_set: "demo", cached_generation: 5, cached_at: T - HOUR, verify_failed_at: T - 2 * MIN } };
    expect(kinds(plan(snap([current], failed), cfg, T, due))).toEqual(["extend", "cache"]);
    expect(kinds(plan(snap([current], failed), cfg, T + VERIFY_BACKOFF_MS, due))).toEqual(["mint", "extend", "cache"]);
    expect(kinds(plan(snap([current], failed), cfg, T, now))).toEqual(["mint", "extend", "cache"]);
    // A first key backs off too (nothing to extend); a set without verify ignores the record.
    expect(kinds(plan(snap([], failed), cfg, T, due))).toEqual([]);
    expect(kinds(plan(snap([current], failed), CFG, T, due))).toEqual(["mint", "extend", "cache"]);
  });

  it("an overdue extension covers the next attempt, a late tick, the run and the caches' lag, plus the overlap", () => {
    const current = currentDueIn(-MIN);
    const ext = plan(snap([current]), { ...CFG, enabled: false }, T, due).find((s) => s.kind === "extend")!;
    expect(ext).toMatchObject({ generation: 5, onlyIfMintFailed: false });
    const expiresAt = (ext as Extract<Step, { kind: "extend" }>).expiresAt;
    expect(expiresAt).toBe(nextAttempt(T) + OVERDUE_COVER_MS + TICK_MS + HOUR);
    // Recorded once, the next tick a minute later finds it still enough; the one after extends again.
    const extended = { ...current, expires_at: expiresAt };
    expect(kinds(plan(snap([extended]), { ...CFG, enabled: false }, T + MIN, due))).toEqual([]);
    expect(kinds(plan(snap([extended]), { ...CFG, enabled: false }, T + 2 * MIN, due))).toEqual(["extend", "cache"]);
  });

  it("a longer overlap in the config extends with the longer one; a shorter one never shortens", () => {
    const current = currentDueIn(-MIN, { overlap_ms: 2 * HOUR });
    const ext = plan(snap([current]), { ...CFG, overlapMs: 2 * MIN, enabled: false }, T, due).find((s) => s.kind === "extend") as
      Extract<Step, { kind: "extend" }> | undefined;
    expect(ext === undefined || ext.expiresAt >= current.expires_at!).toBe(true);
  });
});
