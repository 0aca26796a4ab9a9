import { type RequestContext, json } from "../http.ts";

/** GET /healthz: 200 when the configuration is valid, 503 naming every problem otherwise. */
export function health(c: RequestContext): Response {
  const result = c.loaded;
  if (result.ok) return json({ ok: true });
  return json({ ok: false, error: "config_invalid", message: "the configuration is invalid", problems: result.problems }, 503);
}
