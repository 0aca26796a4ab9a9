/**
 * Which soak seeds run, and how long: `SOAK_SEEDS=a,b,c` (default "alpha,bravo") and
 * `SOAK_DAYS=n` (default 30), handed in by test/global-setup.ts. The first seed runs in
 * test/soak.test.ts, the others in test/soak-second.test.ts, so two seeds use both cores.
 */
import { describe, expect, inject, it, vi } from "vitest";
import { formatReport, runSoak } from "./soak.ts";

export const DEFAULT_SEEDS = ["alpha", "bravo"];

export function soakSeeds(): { seeds: string[]; days: number } {
  const seeds = (inject("soakSeeds") || DEFAULT_SEEDS.join(",")).split(",").map((s) => s.trim()).filter(Boolean);
  return { seeds, days: Number(inject("soakDays") || 30) };
}

/** One test per seed: the simulation, its summary line (printed at the end of the run), zero violations. */
export function soakSuite(seeds: string[], days: number): void {
  describe("soak", () => {
    if (seeds.length === 0) it.skip("no seed for this file (SOAK_SEEDS names one)", () => {});
    for (const seed of seeds) {
      it(`seed ${seed}: ${days} days of 5-minute ticks over 10 sets hold every invariant`, { timeout: 900_000 }, async ({ annotate }) => {
        // The engine logs every run; thousands of ticks of it would only slow the run down.
        for (const level of ["log", "info", "warn", "error"] as const) vi.spyOn(console, level).mockImplementation(() => {});
        let report;
        try {
          report = await runSoak({ seed, days });
        } finally {
          vi.restoreAllMocks();
        }
        await annotate(formatReport(report), "summary");
        expect(report.firstViolations).toEqual([]);
        expect(report.violations).toBe(0);
        // The run exercised what it claims to.
        expect(report.ticks).toBe(Math.round(days * 288));
        expect(report.faultsFired).toBeGreaterThan(days * 3);
        if (days >= 10) expect(report.emergencyRevokes).toBeGreaterThan(0);
      });
    }
  });
}
