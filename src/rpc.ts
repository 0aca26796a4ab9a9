/**
 * KeyService (DESIGN §5): the rotator's keys over a service binding, for Workers on the same
 * Cloudflare account. The consumer Worker names itself in the binding's `props`
 * (`props = { consumer = "edge-svc" }`); that consumer must be configured with
 * `"binding": true`. Only Workers on this account can bind it: the account is the trust
 * boundary (whoever can deploy a Worker there can claim any props).
 *
 *   await env.KEY_ROTATOR.getKey("chat")                  -> key document (as GET /v1/keys/chat)
 *   await env.KEY_ROTATOR.getKey("chat", { fresh: true }) -> D1's current key (as Cache-Control: no-cache)
 *   await env.KEY_ROTATOR.listKeys()                      -> { keys: [...] }
 *
 * Every failure is an Error whose message starts with the machine code and a colon
 * (`unauthorized: ...`, `forbidden: ...`, `unknown_model_set: ...`, `no_key_yet: ...`,
 * `config_invalid: ...`, `bad_request: ...`); nothing else escapes.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { type Config, SET_ID, loadConfig } from "./config.ts";
import { type KeyDocument, keyDocument } from "./document.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http.ts";
import { type Identity, bindingIdentity } from "./identity/index.ts";
import { log } from "./log.ts";
import { resolveKey, resolveKeys } from "./routes/keys.ts";

export interface KeyServiceProps {
  consumer?: string;
}

const coded = (code: string, message: string) => new Error(`${code}: ${message}`);

function toCodedError(err: unknown): Error {
  if (err instanceof HttpError) return coded(err.code, err.message);
  log("error", "rpc.unhandled", { error: err instanceof Error ? err.name : "unknown" });
  return coded("internal", "internal error");
}

export class KeyService extends WorkerEntrypoint<Env, KeyServiceProps> {
  private who(): { config: Config; identity: Identity } {
    const result = loadConfig(this.env);
    if (!result.ok) throw coded("config_invalid", `the configuration is invalid: ${result.problems.length} problem(s); see /healthz`);
    return { config: result.config, identity: bindingIdentity(result.config, this.ctx.props) };
  }

  async getKey(set: unknown, options?: unknown, ...extra: unknown[]): Promise<KeyDocument> {
    try {
      if (extra.length > 0) throw coded("bad_request", "getKey takes (set, { fresh? })");
      if (typeof set !== "string") throw coded("bad_request", "set must be a string");
      let fresh = false;
      if (options !== undefined && options !== null) {
        if (typeof options !== "object" || Array.isArray(options))
          throw coded("bad_request", "options must be an object { fresh?: boolean }");
        const o = options as Record<string, unknown>;
        for (const k of Object.keys(o)) if (k !== "fresh") throw coded("bad_request", "options takes only fresh");
        if (o.fresh !== undefined && typeof o.fresh !== "boolean") throw coded("bad_request", "options.fresh must be a boolean");
        fresh = o.fresh === true;
      }
      const { config, identity } = this.who();
      if (!SET_ID.test(set)) throw coded("unknown_model_set", "no such model set");
      const now = Date.now();
      const key = await resolveKey(this.env, config, identity, set, now, { fresh, ctx: this.ctx });
      return keyDocument(key, now);
    } catch (err) {
      throw err instanceof Error && /^[a-z_]+: /.test(err.message) && !(err instanceof HttpError) ? err : toCodedError(err);
    }
  }

  async listKeys(...extra: unknown[]): Promise<{ keys: KeyDocument[] }> {
    try {
      if (extra.length > 0) throw coded("bad_request", "listKeys takes no arguments");
      const { config, identity } = this.who();
      const now = Date.now();
      const keys = await resolveKeys(this.env, config, identity, now, { ctx: this.ctx });
      return { keys: keys.map((k) => keyDocument(k, now)) };
    } catch (err) {
      throw err instanceof Error && /^[a-z_]+: /.test(err.message) && !(err instanceof HttpError) ? err : toCodedError(err);
    }
  }
}
