/**
 * The cron's fan-out through the ROTATIONS queue: a tick with more due sets than the inline
 * budget sends one message per set and mints nothing itself; the consumer rotates each set,
 * a redelivered message mints nothing more, a failing upstream is retried with backoff, and
 * dead letters are logged and acked (the next tick plans the set again).
 */
import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { tick } from "../src/cron.ts";
import type { RotationMessage } from "../src/env.ts";
import worker from "../src/index.ts";
import { QUEUE_MAX_RETRIES, consumeRotations, retryDelaySeconds } from "../src/queue.ts";
import { createEngine } from "../src/rotation.ts";
import { loadConfig } from "../src/config.ts";
import { FaultPlan, faultyKV } from "./helpers/faulty-bindings.ts";
import { elsewhere, kvGeneration, servedLive } from "./helpers/invariants.ts";
import { sendWebhook } from "./helpers/webhooks.ts";
import { type World, makeWorld, prefixOf } from "./helpers/world.ts";

const QUEUE = "baseten-key-rotator-rotations";
const DLQ = "baseten-key-rotator-dlq";

/** A Queue that records what the tick sends. */
function recordingQueue() {
  const batches: MessageSendRequest<RotationMessage>[][] = [];
  const queue = {
    async send(body: RotationMessage) {
      batches.push([{ body }]);
    },
    async sendBatch(messages: Iterable<MessageSendRequest<RotationMessage>>) {
      batches.push([...messages]);
    },
  } as unknown as Queue<RotationMessage>;
  return { queue, batches, bodies: () => batches.flat().map((m) => m.body) };
}

function manySets(n: number): Record<string, unknown> {
  return Object.fromEntries(
    Array.from({ length: n }, (_, i) => [
      `set-${String(i).padStart(3, "0")}`,
      { model_ids: [`model${i}`], rotate_every: "24h", overlap: "1h" },
    ]),
  );
}

let seq = 0;
function message(set: string, attempts = 1, id = `msg-${++seq}`) {
  return { id, timestamp: new Date(), attempts, body: { model_set: set, tick_at: Date.now() } satisfies RotationMessage };
}

/**
 * Runs the consumer on a test batch. getQueueResult() does not report retry delays, so
 * each message's retry() is watched for the delay it was given.
 */
async function consume(w: World, queueName: string, messages: ReturnType<typeof message>[]) {
  const batch = createMessageBatch<RotationMessage>(queueName, messages);
  const delays: Record<string, number | undefined> = {};
  for (const msg of batch.messages) {
    const retry = msg.retry.bind(msg);
    msg.retry = (options?: QueueRetryOptions) => {
      delays[msg.id] = options?.delaySeconds;
      retry(options);
    };
  }
  const ctx = createExecutionContext();
  const results = await consumeRotations(w.engine(), batch);
  return { results, delays, outcome: await getQueueResult(batch, ctx) };
}

/** Through the worker's own queue handler (index.ts wiring, wall clock). */
async function deliver(w: World, queueName: string, messages: ReturnType<typeof message>[]) {
  const batch = createMessageBatch<RotationMessage>(queueName, messages);
  const ctx = createExecutionContext();
  await worker.queue(batch, w.env, ctx);
  return getQueueResult(batch, ctx);
}

function jsonLine(line: unknown): Record<string, unknown> {
  try {
    return JSON.parse(String(line)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

const mints = async (w: World) => (await w.fake.calls()).counts.mint ?? 0;

afterEach(() => {
  vi.restoreAllMocks();
});

describe("fan-out", () => {
  it("the ROTATIONS binding and both consumers come from wrangler.toml", () => {
    expect(typeof env.ROTATIONS?.sendBatch).toBe("function");
  });

  it("a tick over the inline budget sends one message per due set and mints nothing itself", async () => {
    const w = await makeWorld({ sets: manySets(25), consumers: {} }); // default budget: 20
    const q = recordingQueue();
    const summary = await tick(w.engine(), q.queue);

    expect(summary).toMatchObject({ planned: 25, inline: 0, queued: 25 });
    const bodies = q.bodies();
    expect(bodies.map((b) => b.model_set).sort()).toEqual(Object.keys(manySets(25)).sort());
    expect(new Set(bodies.map((b) => b.tick_at))).toEqual(new Set([w.clock.now()]));
    expect(await mints(w)).toBe(0);
    expect(await w.fake.liveKeys()).toEqual([]);

    // The consumer then rotates every one of them.
    const { outcome } = await consume(
      w,
      QUEUE,
      bodies.map((b) => message(b.model_set)),
    );
    expect(outcome.explicitAcks).toHaveLength(25);
    expect(outcome.retryMessages).toEqual([]);
    expect(await mints(w)).toBe(25);
    const current = await env.DB.prepare("SELECT COUNT(*) AS n FROM keys WHERE state = 'current'").first<{ n: number }>();
    expect(current?.n).toBe(25);
  });

  it("sends at most 100 messages per sendBatch call", async () => {
    const w = await makeWorld({ sets: manySets(150), consumers: {}, vars: { INLINE_ROTATION_BUDGET: "0" } });
    const q = recordingQueue();
    await tick(w.engine(), q.queue);
    expect(q.batches.map((b) => b.length)).toEqual([100, 50]);
    expect(new Set(q.bodies().map((b) => b.model_set)).size).toBe(150);
  });

  it("a tick at or under the budget rotates inline and sends nothing", async () => {
    const w = await makeWorld({ vars: { INLINE_ROTATION_BUDGET: "2" } });
    const q = recordingQueue();
    const summary = await tick(w.engine(), q.queue);
    expect(summary).toMatchObject({ planned: 2, inline: 2, queued: 0 });
    expect(q.batches).toEqual([]);
    expect(await mints(w)).toBe(2);
  });

  it("sets that are not due are not sent", async () => {
    const w = await makeWorld({ vars: { INLINE_ROTATION_BUDGET: "0" } });
    await consume(w, QUEUE, [message("demo"), message("other")]);
    const q = recordingQueue();
    expect(await tick(w.engine(), q.queue)).toMatchObject({ planned: 0, queued: 0 });
    expect(q.batches).toEqual([]);
  });
});

describe("queue consumer", () => {
  it("rotates the set of each message and acks it", async () => {
    const w = await makeWorld();
    const a = message("demo");
    const b = message("other");
    const { results, outcome } = await consume(w, QUEUE, [a, b]);
    expect(results.map((r) => r.outcome)).toEqual(["rotated", "rotated"]);
    expect(outcome.explicitAcks.sort()).toEqual([a.id, b.id].sort());
    expect(outcome.retryMessages).toEqual([]);
    const res = await w.getKey("demo");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ model_set: "demo", generation: 1 });
    expect(await mints(w)).toBe(2);
  });

  it("a redelivered message mints nothing more", async () => {
    const w = await makeWorld();
    const first = message("demo");
    await consume(w, QUEUE, [first]);
    const again = await consume(w, QUEUE, [{ ...first, attempts: 2 }]);
    expect(again.results[0]!.outcome).toBe("noop");
    expect(again.outcome.explicitAcks).toEqual([first.id]);
    expect(await mints(w)).toBe(1);
    expect((await w.fake.liveKeys()).filter((k) => k.model_ids?.includes("abcd1234"))).toHaveLength(1);
  });

  it("the same set twice in one batch is run once and both messages are acked", async () => {
    const w = await makeWorld();
    const a = message("demo");
    const b = message("demo");
    const { results, outcome } = await consume(w, QUEUE, [a, b]);
    expect(results).toHaveLength(1);
    expect(outcome.explicitAcks.sort()).toEqual([a.id, b.id].sort());
    expect(await mints(w)).toBe(1);
  });

  it("acks a set whose lease another run holds, and mints nothing", async () => {
    const w = await makeWorld();
    await env.DB.prepare("INSERT INTO sets (model_set, lease_holder, lease_expires_at) VALUES ('demo', 'someone-else', ?1)")
      .bind(w.clock.now() + 60_000)
      .run();
    const m = message("demo");
    const { results, outcome } = await consume(w, QUEUE, [m]);
    expect(results[0]!.outcome).toBe("busy");
    expect(outcome.explicitAcks).toEqual([m.id]);
    expect(outcome.retryMessages).toEqual([]);
    expect(await mints(w)).toBe(0);
  });

  it("retries a failed rotation with a growing delay, and the retry rotates once upstream recovers", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "2" } });
    await w.fake.fault({ op: "mint", kind: "503", count: 4 });
    const m = message("demo");
    const first = await consume(w, QUEUE, [m]);
    expect(first.results[0]!.outcome).toBe("failed");
    expect(first.outcome.explicitAcks).toEqual([]);
    expect(first.outcome.retryMessages).toEqual([{ msgId: m.id }]);
    expect(first.delays).toEqual({ [m.id]: 10 });

    const second = await consume(w, QUEUE, [{ ...m, attempts: 2 }]);
    expect(second.outcome.retryMessages).toEqual([{ msgId: m.id }]);
    expect(second.delays).toEqual({ [m.id]: 20 });
    expect(retryDelaySeconds(3)).toBe(40);
    expect((await w.getKey("demo")).status).toBe(503);

    // The fake answers again: the next delivery rotates and is acked.
    const third = await consume(w, QUEUE, [{ ...m, attempts: 3 }]);
    expect(third.results[0]!.outcome).toBe("rotated");
    expect(third.outcome.explicitAcks).toEqual([m.id]);
    expect((await w.getKey("demo")).status).toBe(200);
    // Only the answered mint made a key.
    expect(await w.fake.liveKeys()).toHaveLength(1);
  });

  it("keeps at most BASETEN_CONCURRENCY Baseten calls in flight across the whole batch", async () => {
    const w = await makeWorld({ sets: manySets(12), consumers: {}, vars: { BASETEN_CONCURRENCY: "3" } });
    await w.fake.latency(50);
    let inFlight = 0;
    let peak = 0;
    const counting: typeof fetch = async (input, init) => {
      peak = Math.max(peak, ++inFlight);
      try {
        return await fetch(input, init);
      } finally {
        inFlight--;
      }
    };
    const config = loadConfig(w.env);
    if (!config.ok) throw new Error(config.problems.join("; "));
    const engine = createEngine(config.config, w.env, w.clock.now, { fetch: counting });
    const batch = createMessageBatch<RotationMessage>(
      QUEUE,
      Object.keys(manySets(12)).map((s) => message(s)),
    );
    const results = await consumeRotations(engine, batch);
    expect(results.every((r) => r.outcome === "rotated")).toBe(true);
    expect(peak).toBe(3);
  });

  it("acks a message with no usable set id instead of retrying it forever", async () => {
    const w = await makeWorld();
    const bad = { id: "bad-1", timestamp: new Date(), attempts: 1, body: { model_set: "../etc", tick_at: 0 } };
    const { outcome } = await consume(w, QUEUE, [bad]);
    expect(outcome.explicitAcks).toEqual(["bad-1"]);
    expect(await mints(w)).toBe(0);
  });
});

describe("one path: the queue consumer repairs what the inline tick repairs", () => {
  it("revoke_previous whose KV put and delete failed: the tick queues the set, the consumer rewrites KV, no location serves the revoked key", async () => {
    const plan = new FaultPlan();
    const w = await makeWorld({ vars: { KEYS: faultyKV(env.KEYS, plan), INLINE_ROTATION_BUDGET: "0" } });
    const other = elsewhere(w);
    await consume(w, QUEUE, [message("demo"), message("other")]);
    const leaked = await servedLive(w, "demo", "demo-svc", other);
    plan.kv({ op: "put" }, { op: "delete" });
    w.clock.advance(60_000);
    expect((await sendWebhook(w, { model_set: "demo", reason: "leak", revoke_previous: true })).status).toBe(200);
    expect(await kvGeneration("demo")).toBe(1); // the stale entry survived: elsewhere may serve it for now
    const q = recordingQueue();
    w.clock.advance(60_000);
    const summary = await tick(w.engine(), q.queue);
    expect(summary.queued).toBeGreaterThanOrEqual(1);
    expect(q.bodies().map((b) => b.model_set)).toContain("demo");
    const { results } = await consume(
      w,
      QUEUE,
      q.bodies().map((b) => message(b.model_set)),
    );
    expect(results.every((r) => r.outcome !== "failed")).toBe(true);
    expect(await kvGeneration("demo")).toBe(2);
    // Past every cache's lag, no location serves the revoked key.
    w.clock.advance(65_000);
    for (const via of [other, (s: string, c?: string) => w.getKey(s, c)]) {
      const doc = await servedLive(w, "demo", "demo-svc", via);
      expect(doc.generation).toBe(2);
      expect(prefixOf(doc.api_key)).not.toBe(prefixOf(leaked.api_key));
    }
    // And the next tick has nothing left to do for it.
    w.clock.advance(60_000);
    const again = recordingQueue();
    await tick(w.engine(), again.queue);
    expect(again.bodies().map((b) => b.model_set)).not.toContain("demo");
  });
});

describe("dead letters", () => {
  it("past max_retries the message is retried once more (the platform dead-letters it) and the give-up is logged", async () => {
    const w = await makeWorld({ vars: { BASETEN_MAX_ATTEMPTS: "1" } });
    await w.fake.fault({ op: "mint", kind: "500", count: 1 });
    const errors = vi.spyOn(console, "error");
    const m = message("demo", QUEUE_MAX_RETRIES + 1);
    const { outcome } = await consume(w, QUEUE, [m]);
    expect(outcome.explicitAcks).toEqual([]);
    expect(outcome.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    const lines = errors.mock.calls.map((c) => jsonLine(c[0]));
    expect(lines).toContainEqual(expect.objectContaining({ event: "queue.giving_up", model_set: "demo", attempts: QUEUE_MAX_RETRIES + 1 }));
  });

  it("the dead-letter consumer logs and acks every message, rotates nothing, and the next tick plans the set again", async () => {
    const w = await makeWorld();
    const errors = vi.spyOn(console, "error");
    const m = message("demo");
    const outcome = await deliver(w, DLQ, [m]);
    expect(outcome.explicitAcks).toEqual([m.id]);
    expect(outcome.retryMessages).toEqual([]);
    expect(await mints(w)).toBe(0);
    const lines = errors.mock.calls.map((c) => jsonLine(c[0]));
    expect(lines).toContainEqual(expect.objectContaining({ event: "queue.dead_letter", queue: DLQ, model_set: "demo", id: m.id }));

    const summary = await w.tick();
    expect(summary.results.find((r) => r.model_set === "demo")?.outcome).toBe("rotated");
  });
});

describe("the worker's queue handler", () => {
  it("rotates through the wiring in index.ts", async () => {
    const w = await makeWorld();
    const m = message("other");
    const outcome = await deliver(w, QUEUE, [m]);
    expect(outcome.explicitAcks).toEqual([m.id]);
    expect(await mints(w)).toBe(1);
  });

  it("with an invalid configuration rotates nothing and acks the batch", async () => {
    const w = await makeWorld({ vars: { ENCRYPTION_KEY: "not-a-key" } });
    const outcome = await deliver(w, QUEUE, [message("demo")]);
    expect(outcome.ackAll).toBe(true);
    expect(await mints(w)).toBe(0);
  });
});
