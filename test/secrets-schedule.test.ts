/**
 * Calendar schedules (DESIGN §2): croner runs inside workerd (this file runs in the pool), a
 * schedule's next time is in UTC, and the shortest gap between two schedule times is what a
 * scheduled set's overlap is checked against (and its rotateEveryMs).
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config.ts";
import type { Env } from "../src/env.ts";
import { nextScheduleTime, scheduleProblem, scheduleTimeAtOrAfter, scheduledRefreshAt, shortestGapMs } from "../src/schedule.ts";
import { randomB64 } from "./helpers/world.ts";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();
const H = 3_600_000;
const D = 24 * H;

describe("schedules (croner inside workerd)", () => {
  it("every Tuesday at 10:00 UTC: the next time after an instant, strictly after", () => {
    expect(iso(nextScheduleTime("0 10 * * TUE", at("2026-11-27T15:00:00Z")))).toBe("2026-12-01T10:00:00.000Z");
    expect(iso(nextScheduleTime("0 10 * * TUE", at("2026-12-01T10:00:00Z")))).toBe("2026-12-08T10:00:00.000Z");
    expect(iso(scheduleTimeAtOrAfter("0 10 * * TUE", at("2026-12-01T10:00:00Z")))).toBe("2026-12-01T10:00:00.000Z");
    // UTC, whatever the runtime's zone: 23:30 on 31 December stays that.
    expect(iso(nextScheduleTime("30 23 31 12 *", at("2026-06-01T00:00:00Z")))).toBe("2026-12-31T23:30:00.000Z");
    expect(iso(nextScheduleTime("0 0 29 2 *", at("2026-03-01T00:00:00Z")))).toBe("2028-02-29T00:00:00.000Z");
    // A rotation run ahead of Tuesday 10:00 mints a key for the Tuesday after, never the same one.
    expect(iso(scheduledRefreshAt("0 10 * * TUE", at("2026-12-01T09:55:00Z"), 2 * H, 5 * 60_000))).toBe("2026-12-08T10:00:00.000Z");
    expect(iso(scheduledRefreshAt("0 10 * * TUE", at("2026-11-27T15:00:00Z"), 2 * H))).toBe("2026-12-01T10:00:00.000Z");
  });

  it.each([
    ["0 10 * * TUE", 7 * D],
    ["0 10 * * TUE,THU", 2 * D],
    ["0 10,22 * * TUE", 12 * H],
    ["0 23 * * 1,2", D],
    ["*/15 * * * *", 15 * 60_000],
    ["* * * * *", 60_000],
    ["0 0 1 * *", 28 * D],
    ["0 0 29 2 *", (365 * 3 + 366) * D],
  ])("shortest gap of %s", (expr, gap) => {
    expect(shortestGapMs(expr)).toBe(gap);
  });

  it.each([
    ["0 0 10 * * TUE", /exactly 5 fields/],
    ["0 0 31 2 *", /never happens/],
    ["0 0 30 2 *", /never happens/],
    ["61 * * * *", /not a valid cron expression/],
    ["0 10 * * FUNDAY", /not a valid cron expression/],
    ["", /5-field cron expression/],
    [42, /5-field cron expression/],
  ])("%j is a problem", (expr, why) => {
    expect(scheduleProblem(expr)).toMatch(why);
  });

  it("a scheduled set gets rotateEveryMs = the shortest gap, and parsing stays cheap", () => {
    const env = {
      BASETEN_TEAM_ID: "team-1",
      BASETEN_API_KEY: "mgmt-key-value-0123456789",
      ENCRYPTION_KEY: randomB64(32),
      MODEL_SETS: JSON.stringify(
        Object.fromEntries(
          Array.from({ length: 40 }, (_, i) => [
            `set-${i}`,
            { model_ids: ["abcd1234"], schedule: `${i} ${i % 24} * * ${i % 7}`, overlap: "1h" },
          ]),
        ),
      ),
      CONSUMERS: "{}",
    } as unknown as Env;
    const start = performance.now();
    const result = parseConfig(env);
    const elapsed = performance.now() - start;
    if (!result.ok) throw new Error(result.problems.join("; "));
    expect(result.config.sets.get("set-3")).toMatchObject({ schedule: "3 3 * * 3", rotateEveryMs: 7 * D });
    // workerd's clock moves only at I/O; this bounds a pathological parse, not a benchmark.
    expect(elapsed).toBeLessThan(2_000);
  });
});

describe("a scheduled set rotates on the calendar", () => {
  it("every Tuesday at 10:00 UTC: refresh_at is the next Tuesday 10:00 that leaves the overlap; the rotation follows it", async () => {
    const { makeWorld } = await import("./helpers/world.ts");
    const w = await makeWorld({
      sets: { demo: { model_ids: ["abcd1234"], schedule: "0 10 * * TUE", overlap: "2h" } },
      consumers: { "demo-svc": ["demo"] },
    });
    await w.tick(); // Friday 2026-11-27 15:00: the first key
    const first = (await (await w.getKey("demo")).json()) as { generation: number; refresh_at: string; expires_at: string };
    expect(first).toMatchObject({ generation: 1, refresh_at: "2026-12-01T10:00:00.000Z", expires_at: "2026-12-01T12:00:00.000Z" });
    w.clock.set(at("2026-12-01T10:00:30Z"));
    await w.tick();
    w.clock.advance(10_000);
    const second = (await (await w.getKey("demo")).json()) as { generation: number; refresh_at: string };
    expect(second).toMatchObject({ generation: 2, refresh_at: "2026-12-08T10:00:00.000Z" });
  });
});
