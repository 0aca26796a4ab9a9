/**
 * STUB (engine branch): the secrets helper (issue #11) owns this file; at merge their version wins.
 * The engine calls `verifyKey` between mint and promote when a set has `verify` (DESIGN §4.8).
 */
export type VerifyConfig = { url: string; method?: string; headers?: Record<string, string>; body?: unknown; expect?: number[] };

export async function verifyKey(
  _verify: VerifyConfig,
  _apiKey: string,
  _opts: { deadline: number; clock: () => number; fetch?: typeof fetch; sleep?: (ms: number) => Promise<void> },
): Promise<{ ok: true } | { ok: false; code: "verify_failed"; message: string }> {
  return { ok: true };
}
