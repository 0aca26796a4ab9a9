import { type RequestContext, json } from "../http.ts";
import { log } from "../log.ts";
import { undecryptableSets } from "../reseal.ts";

/**
 * GET /healthz: 200 when the configuration is valid, 503 naming every problem otherwise;
 * 503 `undecryptable_keys` naming the sets whose stored keys no configured key opens (§4.9).
 */
export async function health(c: RequestContext): Promise<Response> {
  const result = c.loaded;
  if (!result.ok)
    return json({ ok: false, error: "config_invalid", message: "the configuration is invalid", problems: result.problems }, 503);
  const sets = await undecryptableSets(c.env.DB, result.config.keyring).catch((err) => {
    // D1 unreachable: health is about the configuration; the read path says the rest.
    log("warn", "health.undecryptable_check_failed", { error: err instanceof Error ? err.name : "unknown" });
    return [];
  });
  if (sets.length > 0) {
    const message = `stored keys of ${sets.length} set(s) open with no configured key: put the key that sealed them back in ENCRYPTION_KEY_PREVIOUS`;
    return json(
      { ok: false, error: "undecryptable_keys", message, model_sets: sets, problems: sets.map((s) => `${s}: undecryptable_keys`) },
      503,
    );
  }
  return json({ ok: true });
}
