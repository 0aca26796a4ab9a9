import { env } from "cloudflare:test";
import { it, vi } from "vitest";
import { tick } from "../src/cron.ts";
import { makeWorld, MIN } from "./helpers/world.ts";

it("proto", async ({ annotate }) => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  vi.spyOn(console, "warn").mockImplementation(() => {});
  const sets: Record<string, unknown> = {};
  for (let i = 0; i < 10; i++) sets[`s${i}`] = { model_ids: ["m" + i], rotate_every: "1h", overlap: "10m" };
  const w = await makeWorld({ sets, consumers: { all: Object.keys(sets) } });
  const engine = w.engine();
  const t0 = Date.now();
  let n = 0;
  let fakeMs = 0, tickMs = 0, readMs = 0;
  for (let i = 0; i < 500; i++) {
    let a = Date.now();
    await tick(engine);
    tickMs += Date.now() - a; a = Date.now();
    const r = await w.request("/v1/keys", { headers: { authorization: `Bearer ${w.tokens.all}` } });
    await r.json();
    readMs += Date.now() - a; a = Date.now();
    await w.fake.liveKeys();
    fakeMs += Date.now() - a;
    w.clock.advance(5 * MIN);
    n++;
  }
  const ms = Date.now() - t0;
  await annotate(`ticks=${n} ms=${ms} per=${(ms / n).toFixed(2)} tick=${tickMs} read=${readMs} fake=${fakeMs} keys=${(await w.fake.keys()).length}`, "soak");
});
