import { loadConfig } from "../config.ts";
import type { Env } from "../env.ts";
import { json } from "../http.ts";

/** GET /healthz: 200 when the configuration is valid, 503 naming every problem otherwise. */
export function health(_request: Request, env: Env): Response {
  const result = loadConfig(env);
  if (result.ok) return json({ ok: true });
  return json({ ok: false, error: "config_invalid", message: "the configuration is invalid", problems: result.problems }, 503);
}
