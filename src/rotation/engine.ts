/**
 * The rotation state machine (DESIGN §4), one set at a time. `runSet` reads top to bottom:
 *
 *   1. acquire   take the set's lease in D1 and read the set under it (one round trip)
 *   2. plan      ask the policy what the set needs: src/rotation/policy.ts (pure, unit-tested)
 *   3. apply     the plan's steps, in its order:
 *        reject    answer why not (rate limited, unknown generation, ...) and do nothing else
 *        recover   pendings of a run that died mid-mint: list at Baseten, delete by name, abandon
 *        retire    a set removed from MODEL_SETS: current -> previous, its recorded promise kept
 *        mark      an explicit revocation is recorded (revoke_at) before Baseten is asked
 *        mint      record a pending (name first), mint, verify, then promote in ONE D1 batch
 *                  (with the webhook's receipt, and for revoke_previous every other key's revoke_at)
 *        extend    the set is overdue and got no new key: record the extended promise in D1
 *        cache     write KV from what D1 now holds (or drop the entry): only while the lease is held
 *        revoke    delete due keys at Baseten
 *   4. finish    one D1 batch: the revocations' bookkeeping, the cache record (kv_replaced_at,
 *                cached_generation), the lease released with the outcome, and, after a KV write,
 *                D1's current row read again: if it moved on (this run lost the race and its put
 *                landed late), KV is rewritten from it (repair, never regress)
 *
 * Keys move pending -> current -> previous -> revoked, or pending -> abandoned. Every await is
 * bounded by the run's deadline (withDeadline), which ends well inside the lease. Time comes
 * from `engine.clock`, never from Date.now(): tests and benchmarks move it.
 */
import { BasetenClient, type BasetenOptions, UpstreamError } from "../baseten.ts";
import { dropCache, forbidBelow, readCurrentFresh, sealKey, writeCache } from "../cache.ts";
import type { Config } from "../config.ts";
import { randomId } from "../crypto.ts";
import { type CurrentKey, iso } from "../document.ts";
import * as ledger from "../ledger.ts";
import type { KeyRow, Snapshot } from "../ledger.ts";
import { errorText, log } from "../log.ts";
import { isRefusal, refusedManagementKeyFailure, watchManagementKey } from "../management-key.ts";
import { verifyKey } from "../verify.ts";
import { DeadlineError, withDeadline } from "./deadline.ts";
import { LEASE_MS, type PlanOptions, RUN_BUDGET_MS, type SetConfig, type Step, plan, refreshAtFor } from "./policy.ts";

export type Trigger = "cron" | "queue" | "webhook" | "admin";

export interface Engine {
  db: D1Database;
  kv: KVNamespace;
  baseten: BasetenClient;
  config: Config;
  clock: () => number;
}

/** `client` overrides the Baseten client's transport and timing (tests, benchmarks). */
export function createEngine(
  config: Config,
  bindings: { DB: D1Database; KEYS: KVNamespace },
  clock: () => number = Date.now,
  client: Pick<BasetenOptions, "fetch" | "sleep" | "random" | "onAttempt"> = {},
): Engine {
  const baseten = new BasetenClient({
    apiBase: config.apiBase,
    teamId: config.teamId,
    apiKey: config.basetenApiKey,
    timeoutMs: config.timeoutMs,
    maxAttempts: config.maxAttempts,
    concurrency: config.concurrency,
    now: clock,
    ...client,
    // Records whether Baseten accepted the management key (status `management_key`): after `...client`, wrapping its fetch.
    fetch: watchManagementKey(bindings.DB, clock, client.fetch),
  });
  return { db: bindings.DB, kv: bindings.KEYS, baseten, config, clock };
}

export interface RunOptions {
  trigger: Trigger;
  /** "due": mint only if the policy says the set is due (cron, queue); "now": regardless (webhook, admin); false: no mint (admin revoke). */
  mint: "due" | "now" | false;
  /** The leak response: every key of the set other than the new one is revoked at once. */
  revokePrevious?: boolean;
  /** An explicit revocation of non-current keys (POST /v1/admin/revoke/{set}). */
  revoke?: { generations: number[] } | { allPrevious: true };
  reason?: string | null;
  /** The cron saw KV's list disagree with D1 long after the last write: rewrite KV. */
  recache?: boolean;
  /** With mint "due": the caller's own plan expects a mint (the pending is recorded with the lease). */
  expectMint?: boolean;
  /** The gap between the cron's last two ticks (the margins adapt to a late cron; default 60 s). */
  tickMs?: number;
  /**
   * A webhook delivery's claim on its id: the promote applies only while the claim is still this
   * delivery's, and turns it into the answer `render` gives in the same D1 batch (DESIGN §3).
   */
  receipt?: { webhookId: string; claimedAt: number; render: (report: RunReport) => string };
}

export interface RotationEvent {
  type: "key.rotated" | "key.revoked" | "rotation.failed";
  model_set: string;
  generation: number | null;
  at: number;
  trigger: Trigger;
  data: Record<string, unknown>;
}

export interface Failure {
  /** Machine code: `upstream_<kind>`, `verify_failed`, `ledger_failed`, `lease_lost`, `internal`, or a reject code. */
  code: string;
  message: string;
  status: number | null;
  /** For a rejected request: when to try again (seconds). */
  retryAfterS?: number | null;
}

export interface RunReport {
  /** "rejected": the request could not be served (rate limited, unknown or current generation, ...): nothing was done. */
  outcome: "rotated" | "noop" | "failed" | "rejected";
  model_set: string;
  minted: { generation: number; created_at: number; refresh_at: number; expires_at: number } | null;
  replaced: { generation: number; expires_at: number } | null;
  revoked: number[];
  /** Keys this run was asked to revoke (revoke_previous, admin revoke) that Baseten has not confirmed gone yet. */
  revokePending: number[];
  failure: Failure | null;
  events: RotationEvent[];
}

export type RunResult = { outcome: "busy"; model_set: string; retryAfterS: number } | RunReport;

/** Runs one set through the state machine. Never throws: failures are in the result. */
export async function runSet(engine: Engine, set: string, opts: RunOptions): Promise<RunResult> {
  const { db, config, clock } = engine;
  const startedAt = clock();
  const holder = randomId(16);
  const cfg = config.sets.get(set) as SetConfig | undefined;

  // 1. acquire
  let snapshot: Snapshot;
  let pending: KeyRow | null;
  try {
    // Expecting a mint (on demand, or the cron's plan said so), the pending row is recorded in the
    // same round trip; the policy still decides under the lease, and an unused one is deleted.
    const expect = cfg?.enabled && (opts.mint === "now" || (opts.mint === "due" && opts.expectMint === true));
    const request = expect ? { suffix: randomId(8), modelIds: cfg.modelIds, overlapMs: cfg.overlapMs } : null;
    const acquired = await withDeadline(
      () => ledger.acquire(db, set, holder, startedAt, LEASE_MS, opts.mint === "now", request),
      startedAt + RUN_BUDGET_MS,
      clock,
      "acquire",
    );
    if (!acquired.leased) {
      return {
        outcome: "busy",
        model_set: set,
        retryAfterS: Math.min(90, Math.max(1, Math.ceil((acquired.leaseExpiresAt - startedAt) / 1000))),
      };
    }
    snapshot = acquired.snapshot;
    pending = acquired.pending;
  } catch (err) {
    log("error", "lease.failed", { model_set: set, trigger: opts.trigger, error: errorText(err) });
    const failure = { code: "ledger_failed", message: "could not take the set's lease in D1", status: null };
    return { ...emptyReport(set), outcome: "failed", failure, events: [failedEvent(set, opts, failure, startedAt)] };
  }

  // 2. plan
  const run = new Run(engine, set, cfg, opts, holder, startedAt, snapshot, pending);
  const steps = plan(snapshot, cfg, startedAt, planOptions(opts));

  // 3. apply
  for (const step of steps) {
    if (step.kind === "reject") {
      run.reject(step);
      break;
    }
    try {
      await run.apply(step);
    } catch (err) {
      // Unexpected (a D1 write failed, the deadline passed): everything written so far is
      // consistent on its own, and the later steps still run (a failed mint still extends).
      log("error", "run.step_failed", { model_set: set, trigger: opts.trigger, step: step.kind, error: errorText(err) });
      run.stepFailed(step.kind, {
        code: "internal",
        message: `the run's ${step.kind} step stopped on an internal error; the next run converges`,
        status: null,
      });
    }
  }

  // 4. finish
  await run.finish();
  const r = run.report;
  log(r.outcome === "failed" ? "warn" : "info", "run", {
    model_set: set,
    trigger: opts.trigger,
    outcome: r.outcome,
    plan: steps.map((s) => s.kind),
    generation: r.minted?.generation,
    revoked: r.revoked,
    error: r.failure?.message,
  });
  return r;
}

const planOptions = (o: RunOptions): PlanOptions => ({
  mint: o.mint,
  revokePrevious: o.revokePrevious,
  revoke: o.revoke,
  reason: o.reason,
  recache: o.recache,
  tickMs: o.tickMs,
});

function emptyReport(set: string): RunReport {
  return { outcome: "noop", model_set: set, minted: null, replaced: null, revoked: [], revokePending: [], failure: null, events: [] };
}

/** One run's state while it applies its plan: the set as D1 holds it after this run's own writes. */
class Run {
  readonly report: RunReport;
  private readonly deadline: number;
  /** The lease's own end: the finish may still release it after the deadline. */
  private readonly leaseEnd: number;
  private rows: KeyRow[];
  private mint: "none" | "minted" | "failed" = "none";
  /** The new key's plaintext, for the cache step (no second D1 read after a mint). */
  private fresh: CurrentKey | null = null;
  /** Generations the leak response marked (revoke_at) in the promote batch. */
  private marked: number[] = [];
  private cached: { generation: number; at: number; dropped: boolean; overwrite?: boolean } | null = null;
  private extended = false;
  /** A KV put that did not answer before the deadline: it may still land (checked in finish). */
  private putUnknown: number | null = null;
  private revoked: ledger.Finish["revoked"] = [];
  private recordRun = true;
  /** When this run's new key failed verification (the scheduled mints' back-off starts then). */
  private verifyFailedAt: number | null = null;

  constructor(
    private readonly engine: Engine,
    private readonly set: string,
    private readonly cfg: SetConfig | undefined,
    private readonly opts: RunOptions,
    private readonly holder: string,
    startedAt: number,
    private readonly snapshot: Snapshot,
    /** A pending recorded with the lease, for the mint step (deleted at the end if unused). */
    private ownPending: KeyRow | null,
  ) {
    this.report = emptyReport(set);
    this.deadline = startedAt + RUN_BUDGET_MS;
    this.leaseEnd = startedAt + LEASE_MS - 5_000;
    this.rows = [...snapshot.rows];
  }

  private get current(): KeyRow | undefined {
    return this.rows.find((r) => r.state === "current");
  }

  /** Replaces (or adds) rows by generation with what D1 returned. */
  private update(...written: (KeyRow | null)[]) {
    for (const w of written) {
      if (!w) continue;
      const i = this.rows.findIndex((r) => r.generation === w.generation);
      if (i >= 0) this.rows[i] = w;
      else this.rows.push(w);
    }
  }

  /** Starts `work` only if the deadline has not passed, and stops waiting for it when it does. */
  private bound<T>(work: () => Promise<T>, what: string, until = this.deadline): Promise<T> {
    return withDeadline(work, until, this.engine.clock, what);
  }

  reject(step: Extract<Step, { kind: "reject" }>) {
    this.report.outcome = "rejected";
    this.report.failure = { code: step.code, message: step.message, status: null, retryAfterS: step.retryAfterS };
    this.recordRun = false;
  }

  stepFailed(kind: Step["kind"], failure: Failure) {
    if (kind === "mint" && this.mint === "none") this.mint = "failed";
    this.fail(failure);
  }

  fail(failure: Failure) {
    this.report.outcome = "failed";
    this.report.failure ??= failure;
  }

  async apply(step: Exclude<Step, { kind: "reject" }>): Promise<void> {
    switch (step.kind) {
      case "recover":
        return this.recover(step.generations);
      case "retire":
        return this.retire(step.generation);
      case "mark":
        this.update(
          ...(await this.bound(
            () => ledger.recordRevokeIntent(this.engine.db, this.set, this.holder, step.generations, this.engine.clock(), step.reason),
            "record revocation",
          )),
        );
        return;
      case "mint":
        return this.mintAndPromote(step);
      case "extend":
        return this.extend(step);
      case "cache":
        return this.writeCache(step);
      case "revoke":
        return this.revoke(step.generations);
    }
  }

  // recover ---------------------------------------------------------------------------------
  private async recover(generations: number[]) {
    const pendings = this.rows.filter((r) => generations.includes(r.generation));
    try {
      await recoverPendings(this.engine, pendings, this.opts.trigger, this.deadline);
      for (const p of pendings) this.update({ ...p, state: "abandoned" });
    } catch (err) {
      log("warn", "recover.failed", { model_set: this.set, error: errorText(err) });
    }
  }

  // retire ----------------------------------------------------------------------------------
  private async retire(generation: number) {
    this.update(
      await this.bound(() => ledger.retireCurrent(this.engine.db, this.set, this.holder, generation, this.engine.clock()), "retire"),
    );
  }

  // mint ------------------------------------------------------------------------------------
  private async mintAndPromote(step: Extract<Step, { kind: "mint" }>) {
    const { db, kv, config, clock, baseten } = this.engine;
    const cfg = this.cfg!;
    const set = this.set;
    const failed = (failure: Failure) => {
      this.mint = "failed";
      this.fail(failure);
      this.report.events.push(failedEvent(set, this.opts, failure, clock()));
    };

    const own =
      this.ownPending && this.ownPending.overlap_ms === step.overlapMs && this.ownPending.model_ids.join("\n") === step.modelIds.join("\n")
        ? this.ownPending
        : null;
    this.ownPending = own === null ? this.ownPending : null;
    const pending =
      own ??
      (await this.bound(
        () =>
          ledger.recordPending(db, set, this.holder, clock(), { suffix: randomId(8), modelIds: step.modelIds, overlapMs: step.overlapMs }),
        "record pending",
      ));
    if (!pending) return failed({ code: "lease_lost", message: "the run lost its lease before it could mint", status: null });
    this.update(pending);

    let minted;
    try {
      minted = await baseten.mint(pending.name, step.modelIds, this.deadline, cfg.teamId);
    } catch (err) {
      if (err instanceof UpstreamError && !err.maybeApplied) {
        await this.bound(
          () => ledger.markAbandoned(db, set, pending.generation, clock(), this.opts.trigger, "mint refused"),
          "abandon",
        ).catch(() => {});
      } else {
        // The answer was lost, malformed or empty: the key may exist. Treat it like a run that
        // died mid-mint, right away; if that fails too, the pending row stays for a later run.
        await recoverPendings(this.engine, [pending], this.opts.trigger, this.deadline).catch((e) =>
          log("warn", "recover.failed", { model_set: set, error: errorText(e) }),
        );
      }
      return failed(upstreamFailure(err));
    }

    if (cfg.verify) {
      const verdict = await verifyKey(cfg.verify, minted.apiKey, { deadline: this.deadline, clock });
      if (!verdict.ok) {
        // The new key does not work: it is deleted at Baseten, the current key stays and is served.
        // Scheduled mints back off for a while (verifyFailedAt, recorded in the finish batch).
        this.verifyFailedAt = clock();
        const deleted = await baseten.revoke(minted.prefix, this.deadline).then(
          () => true,
          (e) => (log("warn", "revoke.failed", { model_set: set, generation: pending.generation, error: errorText(e) }), false),
        );
        // Not deleted: the row stays pending, and recovery (after a lease) finds the key by name and deletes it.
        if (deleted)
          await this.bound(
            () => ledger.markAbandoned(db, set, pending.generation, clock(), this.opts.trigger, `verify_failed: ${verdict.message}`),
            "abandon",
          ).catch(() => {});
        return failed({ code: "verify_failed", message: verdict.message, status: null });
      }
    }

    const createdAt = clock();
    const refreshAt = refreshAtFor(cfg, createdAt, step.previousRefreshAt);
    const expiresAt = refreshAt + cfg.overlapMs;
    const ciphertext = await sealKey(config.keyring, set, pending.generation, minted.apiKey);
    const mintedTimes = { generation: pending.generation, created_at: createdAt, refresh_at: refreshAt, expires_at: expiresAt };
    // The answer a webhook redelivery gets if the route cannot store the final one.
    const others = this.rows.filter((r) => r.state === "previous" || r.state === "current").map((r) => r.generation);
    const receipt =
      this.opts.receipt === undefined
        ? null
        : {
            webhookId: this.opts.receipt.webhookId,
            claimedAt: this.opts.receipt.claimedAt,
            body: this.opts.receipt.render({
              ...this.report,
              outcome: "rotated",
              minted: mintedTimes,
              replaced: step.replaced && {
                generation: step.replaced.generation,
                expires_at: step.revokeOthers ? createdAt : (this.current?.expires_at ?? createdAt),
              },
              revokePending: step.revokeOthers ? others : [],
            }),
          };

    let promoted;
    try {
      promoted = await this.bound(
        () =>
          ledger.promote(db, {
            set,
            holder: this.holder,
            generation: pending.generation,
            prefix: minted.prefix,
            ciphertext,
            createdAt,
            refreshAt,
            expiresAt,
            replaced: step.replaced && { generation: step.replaced.generation },
            revokeOthers: step.revokeOthers,
            trigger: this.opts.trigger,
            reason: this.opts.reason ?? null,
            receipt,
          }),
        "promote",
      );
    } catch (err) {
      // The batch may or may not have committed. Either way is safe: committed, the key is current
      // (a later run repairs the cache); not committed, the row is still pending and a later run
      // finds the key by name and deletes it.
      log("error", "promote.failed", { model_set: set, generation: pending.generation, error: errorText(err) });
      // If it committed, the leaked key is replaced: this location must stop serving it now.
      if (step.revokeOthers) await this.bound(() => dropCache(kv, set, pending.generation), "kv delete").catch(() => {});
      return failed({
        code: "ledger_failed",
        message: "the key was minted but recording it in D1 failed; a later run cleans it up",
        status: null,
      });
    }
    if (!promoted) {
      // Fenced off: the lease ran out and another run took over (it may have abandoned this pending).
      await baseten
        .revoke(minted.prefix, this.deadline)
        .catch((e) => log("warn", "revoke.failed", { model_set: set, generation: pending.generation, error: errorText(e) }));
      return failed({ code: "lease_lost", message: "the run outlived its lease; the minted key was deleted", status: null });
    }

    this.mint = "minted";
    this.update(promoted.current, promoted.replaced, ...promoted.marked);
    this.marked = promoted.marked.map((r) => r.generation);
    const c = promoted.current;
    this.fresh = {
      model_set: set,
      model_ids: c.model_ids,
      generation: c.generation,
      api_key: minted.apiKey,
      created_at: c.created_at,
      refresh_at: c.refresh_at!,
      expires_at: c.expires_at!,
      overlap_ms: c.overlap_ms,
    };
    this.report.outcome = "rotated";
    this.report.minted = mintedTimes;
    // The leak response revokes the replaced key now: that is when it stops working (its recorded
    // promise stays in D1, overridden by the explicit revoke_at).
    this.report.replaced = promoted.replaced && {
      generation: promoted.replaced.generation,
      expires_at: step.revokeOthers ? createdAt : promoted.replaced.expires_at!,
    };
    this.report.events.push({
      type: "key.rotated",
      model_set: set,
      generation: c.generation,
      at: createdAt,
      trigger: this.opts.trigger,
      data: {
        created_at: iso(createdAt),
        refresh_at: iso(refreshAt),
        expires_at: iso(expiresAt),
        replaced: this.report.replaced && { generation: this.report.replaced.generation, expires_at: iso(this.report.replaced.expires_at) },
        reason: this.opts.reason ?? null,
      },
    });
  }

  // extend ----------------------------------------------------------------------------------
  private async extend(step: Extract<Step, { kind: "extend" }>) {
    if (step.onlyIfMintFailed && this.mint !== "failed") return;
    const row = await this.bound(
      () => ledger.extendPromise(this.engine.db, this.set, this.holder, step.generation, step.expiresAt),
      "extend promise",
    );
    this.update(row);
    this.extended = row !== null;
    if (row) log("info", "promise.extended", { model_set: this.set, generation: step.generation, expires_at: iso(row.expires_at!) });
  }

  // cache -----------------------------------------------------------------------------------
  private async writeCache(step: Extract<Step, { kind: "cache" }>) {
    const { kv, db, config, clock } = this.engine;
    const set = this.set;
    // KV is written only while this run holds the lease: never after its deadline.
    if (clock() >= this.deadline) return log("warn", "cache.skipped", { model_set: set, reason: "deadline" });
    if (step.drop) {
      const floor = this.snapshot.maxGeneration + 1;
      await this.bound(() => dropCache(kv, set), "kv delete")
        .then(() => (this.cached = { generation: floor, at: clock(), dropped: true }))
        .catch((err) => log("warn", "cache.drop_failed", { model_set: set, error: errorText(err) }));
      return;
    }
    const current = this.current;
    // Nothing changed after all (the mint failed and no extension was needed) and KV agrees with D1.
    if (!current) return;
    const changed = this.mint === "minted" || this.extended;
    if (step.reason === "changed" && !changed && this.snapshot.cache?.cached_generation === current.generation) return;
    try {
      const key =
        this.fresh?.generation === current.generation
          ? this.fresh
          : await this.bound(() => readCurrentFresh(db, config.keyring, set), "read current");
      if (!key) return;
      if (clock() >= this.deadline) return log("warn", "cache.skipped", { model_set: set, reason: "deadline" });
      await this.bound(() => writeCache(kv, config.keyring, key), "kv put");
      this.cached = { generation: key.generation, at: clock(), dropped: false, overwrite: step.reason === "suspect" };
    } catch (err) {
      if (err instanceof DeadlineError) this.putUnknown = current.generation;
      log("warn", "cache.write_failed", { model_set: set, generation: current.generation, error: errorText(err) });
      // A leaked key must not stay in this location's cache: without a new entry, drop the old one.
      if (this.opts.revokePrevious && this.mint === "minted" && clock() < this.deadline) {
        await this.bound(() => dropCache(kv, set, current.generation), "kv delete")
          .then(() => (this.cached = { generation: current.generation, at: clock(), dropped: true }))
          .catch((e) => log("warn", "cache.drop_failed", { model_set: set, error: errorText(e) }));
      }
    }
  }

  // revoke ----------------------------------------------------------------------------------
  private async revoke(due: { generation: number; reason: string }[]) {
    const { kv, baseten, clock } = this.engine;
    const asked = new Set([
      ...(this.opts.revoke ? due.filter((d) => this.isExplicit(d.generation)).map((d) => d.generation) : []),
      ...this.marked,
    ]);
    const todo = [...due];
    for (const g of this.marked) if (!todo.some((d) => d.generation === g)) todo.push({ generation: g, reason: "revoke_previous" });
    todo.sort((a, b) => a.generation - b.generation);
    for (const { generation, reason } of todo) {
      const row = this.rows.find((r) => r.generation === generation && r.state === "previous");
      if (!row?.prefix || clock() >= this.deadline) continue; // the next run finishes the job
      try {
        await baseten.revoke(row.prefix, this.deadline);
        const at = clock();
        this.revoked.push({ generation, at, reason });
        this.update({ ...row, state: "revoked" });
        this.report.revoked.push(generation);
        this.report.events.push({
          type: "key.revoked",
          model_set: this.set,
          generation,
          at,
          trigger: this.opts.trigger,
          data: { revoked_at: iso(at), emergency: asked.has(generation), reason },
        });
      } catch (err) {
        // The key stays previous and live; the next run tries again (its revoke_at, if any, is recorded).
        log("warn", "revoke.failed", { model_set: this.set, generation, error: errorText(err) });
      }
    }
    this.report.revokePending = [...asked].filter((g) => !this.report.revoked.includes(g));
    // This location never serves a key it was asked to revoke again (memory, a stale KV entry).
    const current = this.current;
    if (asked.size > 0 && current) forbidBelow(kv, this.set, current.generation);
  }

  private isExplicit(generation: number): boolean {
    const r = this.opts.revoke;
    return r !== undefined && ("allPrevious" in r || r.generations.includes(generation));
  }

  // finish ----------------------------------------------------------------------------------
  async finish(): Promise<void> {
    const { db, kv, config, clock } = this.engine;
    const set = this.set;
    const r = this.report;
    const record = this.recordRun
      ? { trigger: this.opts.trigger, outcome: r.outcome, error: r.failure?.message ?? null, at: clock() }
      : null;
    let after: CurrentKeyRow | null | undefined;
    const recheck = (this.cached !== null && !this.cached.dropped) || this.putUnknown !== null;
    try {
      ({ current: after } = await this.bound(
        () =>
          ledger.finish(db, {
            set,
            holder: this.holder,
            revoked: this.revoked,
            cached: this.cached,
            run: record,
            trigger: this.opts.trigger,
            overwriteReplaced: this.cached?.overwrite === true,
            unusedPending: this.ownPending?.generation ?? null,
            recheck,
            verifyFailedAt: this.verifyFailedAt,
          }),
        "finish",
        this.leaseEnd,
      ));
    } catch (err) {
      // The bookkeeping is lost (the next run redoes it: a second revoke answers 404, a cache
      // record missing only makes KV count as behind); free the set at least.
      log("warn", "run.finish_failed", { model_set: set, error: errorText(err) });
      await this.bound(() => ledger.release(db, set, this.holder, record), "release", this.leaseEnd).catch((e) =>
        log("warn", "lease.release_failed", { model_set: set, error: errorText(e) }),
      );
    }
    if (!recheck) return;
    // A run past its lease still re-checks what its own KV put may have done (not fenced: it only reads).
    after ??= await withDeadline(() => ledger.currentRow(db, set), clock() + 10_000, clock, "read current").catch(() => undefined);
    // Fencing re-check: D1 moved past what this run wrote to KV (its lease ran out and another run
    // promoted; this run's put landed after that run's). Rewrite KV from D1's current row.
    const written = this.cached && !this.cached.dropped ? this.cached.generation : null;
    if (written === null && this.putUnknown !== null && after && after.generation !== this.putUnknown) {
      // A put that may still land over a newer entry: count KV as behind, so the next run of any
      // path rewrites it (this run cannot: its own put may overtake the repair).
      log("warn", "cache.lost_race", { model_set: set, written: this.putUnknown, current: after.generation, landed: "unknown" });
      await withDeadline(
        ledger.recordCacheRegressed(db, set, this.putUnknown, after.generation),
        clock() + 10_000,
        clock,
        "record cache",
      ).catch(() => {});
      return;
    }
    if (written === null || !after || after.generation === written) return;
    log("warn", "cache.lost_race", { model_set: set, written, current: after.generation });
    const until = clock() + 10_000;
    try {
      await withDeadline(ledger.recordCacheRegressed(db, set, written, after.generation), until, clock, "record cache");
      const key = await withDeadline(readCurrentFresh(db, config.keyring, set), until, clock, "read current");
      if (!key || key.generation < after.generation) return;
      await withDeadline(writeCache(kv, config.keyring, key), until, clock, "kv put");
      await withDeadline(ledger.recordCacheRepaired(db, set, key.generation, clock()), until, clock, "record cache");
    } catch (err) {
      // D1 now says KV is behind: the next run of any path rewrites it.
      log("warn", "cache.repair_failed", { model_set: set, error: errorText(err) });
    }
  }
}

type CurrentKeyRow = ledger.CurrentRow;

/**
 * Pendings whose mint may have happened: look their names up at Baseten, delete what is
 * found, mark them abandoned. Throws (leaving them pending) if Baseten can't be asked.
 */
async function recoverPendings(
  engine: Engine,
  pendings: Pick<KeyRow, "model_set" | "generation" | "name">[],
  trigger: Trigger,
  deadline: number,
): Promise<void> {
  const listed = await engine.baseten.list(deadline);
  const byName = new Map(listed.map((k) => [k.name, k]));
  for (const p of pendings) {
    const found = byName.get(p.name);
    if (found) await engine.baseten.revoke(found.prefix, deadline);
    await withDeadline(
      ledger.markAbandoned(
        engine.db,
        p.model_set,
        p.generation,
        engine.clock(),
        trigger,
        found ? "recovered: deleted at Baseten" : "recovered: never created",
      ),
      deadline,
      engine.clock,
      "abandon",
    );
  }
}

function upstreamFailure(err: unknown): Failure {
  // A refused management key gets a clear reason (README "Changing BASETEN_API_KEY"); the code stays upstream_client.
  if (err instanceof UpstreamError && err.status !== null && isRefusal(err.status)) return refusedManagementKeyFailure(err.op, err.status);
  if (err instanceof UpstreamError) return { code: `upstream_${err.kind}`, message: err.message, status: err.status };
  return { code: "internal", message: errorText(err), status: null };
}

function failedEvent(set: string, opts: RunOptions, failure: Failure, at: number): RotationEvent {
  return {
    type: "rotation.failed",
    model_set: set,
    generation: null,
    at,
    trigger: opts.trigger,
    data: { error: failure.code, message: failure.message, reason: opts.reason ?? null },
  };
}
