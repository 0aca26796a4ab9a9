/** Wiring only: the HTTP app, the cron tick and the queue consumer. */
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { tick } from "./cron.ts";
import type { Env, RotationMessage } from "./env.ts";
import { log } from "./log.ts";
import { createEngine } from "./rotation.ts";

const app = createApp();

export default {
  fetch: app.fetch,

  async scheduled(controller, env, ctx) {
    const result = loadConfig(env);
    if (!result.ok) {
      log("error", "config_invalid", { problems: result.problems, cron: controller.cron });
      return;
    }
    ctx.waitUntil(Promise.resolve());
    await tick(createEngine(result.config, env), env.ROTATIONS);
  },
} satisfies ExportedHandler<Env, RotationMessage>;
