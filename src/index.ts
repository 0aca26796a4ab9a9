/** Wiring only: the HTTP app, the cron tick, the queue consumer and the KeyService entrypoint (RPC). */
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { tick } from "./cron.ts";
import type { Env, RotationMessage } from "./env.ts";
import { afterTick, deliverEvents, dispatchRunEvents } from "./events.ts";
import { laggingEvents } from "./identity/tracking.ts";
import { log } from "./log.ts";
import { consumeDeadLetters, consumeRotations, isDeadLetterQueue } from "./queue.ts";
import { createEngine } from "./rotation.ts";

export { KeyService } from "./rpc.ts";

const app = createApp();

export default {
  fetch: app.fetch,

  async scheduled(controller, env, ctx) {
    const result = loadConfig(env);
    if (!result.ok) {
      log("error", "config_invalid", { problems: result.problems, cron: controller.cron });
      return;
    }
    const summary = await tick(createEngine(result.config, env), env.ROTATIONS);
    // Events go out after the tick, through waitUntil: a slow receiver never holds up a rotation.
    dispatchRunEvents(result.config, env.DB, summary.results, ctx);
    // The tick is recorded (status, metrics) and sets > 5 min overdue get `rotation.overdue`.
    const overdue = await afterTick(result.config, env.DB, Date.now()).catch((err) => {
      log("warn", "after_tick.failed", { error: err instanceof Error ? err.message.slice(0, 200) : "unknown" });
      return [];
    });
    deliverEvents(result.config, env.DB, overdue, ctx);
    // consumer.lagging (DESIGN §3.1), once per consumer, set and generation; only when someone listens.
    const config = result.config;
    if (config.events.some((s) => s.events.length === 0 || s.events.includes("consumer.lagging"))) {
      ctx.waitUntil(
        laggingEvents(env.DB, config, Date.now())
          .then((events) => deliverEvents(config, env.DB, events, ctx))
          .catch((err) => log("warn", "consumer.lagging_failed", { error: err instanceof Error ? err.message.slice(0, 120) : "unknown" })),
      );
    }
  },

  async queue(batch, env, ctx) {
    if (isDeadLetterQueue(batch.queue)) return consumeDeadLetters(batch);
    const result = loadConfig(env);
    if (!result.ok) {
      // Like the cron: rotate nothing. The messages are stale by the fix; the next tick re-plans.
      log("error", "config_invalid", { problems: result.problems, queue: batch.queue });
      return batch.ackAll();
    }
    const results = await consumeRotations(createEngine(result.config, env), batch);
    dispatchRunEvents(result.config, env.DB, results, ctx);
  },
} satisfies ExportedHandler<Env, RotationMessage>;
