/**
 * The consumer of the cron's fan-out (wrangler.toml `[[queues.consumers]]`, README "Performance").
 *
 * When a tick finds more sets with work than INLINE_ROTATION_BUDGET it sends one message per set
 * (cron.ts); each message runs exactly what an inline tick runs: `runSet` with `mint: "due"`,
 * whose plan (src/rotation/policy.ts) covers recovery, rotation, extension, cache repair and
 * revocation alike. That is safe to repeat: the set's lease lets one run at a time through and the
 * plan is decided under it, so a redelivered or duplicated message does nothing more.
 *
 *   rotated / noop  ack
 *   busy            ack: another run holds the set's lease and does the same work; if that run
 *                   dies, the set is still due and the next tick plans it again
 *   failed          retry with backoff; after max_retries the platform moves the message to the
 *                   dead-letter queue, whose consumer logs it (the next tick re-plans the set)
 *
 * One engine (one Baseten client, one semaphore) serves the whole batch, so at most
 * `config.concurrency` Baseten calls are in flight per invocation, however many sets run at once.
 */
import { SET_ID } from "./config.ts";
import { pool, runsInFlight } from "./cron.ts";
import type { RotationMessage } from "./env.ts";
import { log } from "./log.ts";
import { type Engine, type RunResult, runSet } from "./rotation.ts";

/** Keep in step with `max_retries` of the rotations consumer in wrangler.toml (used for logs only). */
export const QUEUE_MAX_RETRIES = 3;

/** A queue whose name ends in `-dlq` is a dead-letter queue: its messages are logged, not run. */
export const isDeadLetterQueue = (queueName: string) => queueName.endsWith("-dlq");

/** Delay before the next delivery of a failed message: 10 s, 20 s, 40 s, ... at most 5 min. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(300, 10 * 2 ** Math.max(0, attempts - 1));
}

function setOf(body: unknown): string | null {
  const set = (body as Partial<RotationMessage> | null)?.model_set;
  return typeof set === "string" && SET_ID.test(set) ? set : null;
}

/** Runs every set named in the batch once (duplicates share the run) and acks or retries each message. */
export async function consumeRotations(engine: Engine, batch: MessageBatch<RotationMessage>): Promise<RunResult[]> {
  const bySet = new Map<string, Message<RotationMessage>[]>();
  const recache = new Set<string>();
  const expectMint = new Set<string>();
  const tickMs = new Map<string, number>();
  for (const msg of batch.messages) {
    const set = setOf(msg.body);
    if (set === null) {
      // Never runnable: retrying would only fill the dead-letter queue.
      log("error", "queue.bad_message", { queue: batch.queue, id: msg.id });
      msg.ack();
      continue;
    }
    let list = bySet.get(set);
    if (!list) bySet.set(set, (list = []));
    list.push(msg);
    if ((msg.body as Partial<RotationMessage>).recache === true) recache.add(set);
    if ((msg.body as Partial<RotationMessage>).mint === true) expectMint.add(set);
    const gap = (msg.body as Partial<RotationMessage>).tick_ms;
    if (typeof gap === "number" && Number.isFinite(gap)) tickMs.set(set, gap);
  }

  const sets = [...bySet.keys()];
  const results = await pool(sets, runsInFlight(engine.config), (set) =>
    runSet(engine, set, {
      trigger: "queue",
      mint: "due",
      recache: recache.has(set),
      expectMint: expectMint.has(set),
      tickMs: tickMs.get(set),
    }),
  );
  results.forEach((result, i) => {
    for (const msg of bySet.get(sets[i]!)!) {
      if (result.outcome !== "failed") {
        // rotated, noop, rejected (cannot happen for "due") and busy: nothing to retry.
        if (result.outcome === "busy")
          log("info", "run.skipped", { model_set: result.model_set, trigger: "queue", reason: "another run holds the lease" });
        msg.ack();
        continue;
      }
      const delaySeconds = retryDelaySeconds(msg.attempts);
      const last = msg.attempts > QUEUE_MAX_RETRIES;
      log(last ? "error" : "warn", last ? "queue.giving_up" : "queue.retry", {
        model_set: result.model_set,
        attempts: msg.attempts,
        error: result.failure?.code,
        ...(last ? { next: "dead-letter queue; the next cron tick plans the set again" } : { delay_s: delaySeconds }),
      });
      // Past max_retries the platform moves it to the dead-letter queue instead of redelivering.
      msg.retry({ delaySeconds });
    }
  });
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  log("info", "queue.batch", {
    queue: batch.queue,
    messages: batch.messages.length,
    sets: sets.length,
    rotated: count("rotated"),
    failed: count("failed"),
    busy: count("busy"),
  });
  return results;
}

/** Dead letters: rotations that failed every delivery. Logged loudly and acked; the set stays due. */
export function consumeDeadLetters(batch: MessageBatch<unknown>): void {
  for (const msg of batch.messages) {
    const body = msg.body as Partial<RotationMessage> | null;
    log("error", "queue.dead_letter", {
      queue: batch.queue,
      id: msg.id,
      model_set: setOf(body),
      tick_at: typeof body?.tick_at === "number" ? new Date(body.tick_at).toISOString() : null,
      attempts: msg.attempts,
      note: "rotation failed on every delivery; the set stays due and the next cron tick plans it again",
    });
    msg.ack();
  }
}
