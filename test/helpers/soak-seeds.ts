/**
 * Which soak seeds run, and how long: `SOAK_SEEDS=a,b,c` (default "alpha,bravo") and
 * `SOAK_DAYS=n` (default 4 simulated days per path), handed in by test/global-setup.ts. The first
 * seed runs in test/soak.test.ts, the others in test/soak-second.test.ts, so two seeds use both
 * cores. Each seed runs twice, through the platform model (test/helpers/platform.ts): once over
 * the inline path (the cron rotates), once over the queue path (the cron fans out, the consumer
 * rotates).
 */
import { describe, expect, inject, it, vi } from "vitest";
import { type SoakPath, formatReport, runSoak } from "./soak.ts";

export const DEFAULT_SEEDS = ["alpha", "bravo"];
export const DEFAULT_DAYS = 4;
const PATHS: SoakPath[] = ["inline", "queue"];

export function soakSeeds(): { seeds: string[]; days: number } {
  const seeds = (inject("soakSeeds") || DEFAULT_SEEDS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return { seeds, days: Number(inject("soakDays") || DEFAULT_DAYS) };
}

/** One test per seed and path: the simulation, its summary line (printed at the end of the run), zero violations. */
export function soakSuite(seeds: string[], days: number): void {
  describe("soak through the platform model", () => {
    if (seeds.length === 0) it.skip("no seed for this file (SOAK_SEEDS names one)", () => {});
    for (const seed of seeds) {
      for (const path of PATHS) {
        it(
          `seed ${seed}, ${path} path: ${days} days of 5-minute ticks over 10 sets at 3 locations hold every invariant at every step`,
          { timeout: 600_000 },
          async ({ annotate }) => {
            // The engine logs every run; thousands of ticks of it would only slow the run down.
            for (const level of ["log", "info", "warn", "error"] as const) vi.spyOn(console, level).mockImplementation(() => {});
            let report;
            try {
              report = await runSoak({ seed, path, days });
            } finally {
              vi.restoreAllMocks();
            }
            await annotate(formatReport(report), "summary");
            // The violations first, listed: a failing soak says what broke, where and when.
            expect(report.firstViolations).toEqual([]);
            expect(report.violations).toBe(0);
            // The run exercised what it claims to.
            expect(report.ticks).toBe(Math.round(days * 288));
            expect(report.faultsFired).toBeGreaterThan(days * 3);
            if (days >= 3) expect(report.emergencyRevokes).toBeGreaterThan(0);
            if (path === "queue") expect(report.queued).toBeGreaterThan(0);
          },
        );
      }
    }
  });
}
