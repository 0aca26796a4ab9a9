/// <reference types="node" />
/**
 * Prints the reliability figures at the end of a run: every "summary" annotation (the soak's
 * one line per seed) and the sum of every test's `meta.tally` (test/helpers/tally.ts).
 * Registered next to the default reporter in vitest.config.ts.
 */
import type { Reporter, TestModule } from "vitest/node";

export default class FiguresReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const summaries: string[] = [];
    const totals: Record<string, Record<string, number>> = {};
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        for (const a of test.annotations()) if (a.type === "summary") summaries.push(a.message);
        const counts = (test.meta() as { tally?: Record<string, Record<string, number>> }).tally ?? {};
        for (const [cat, keys] of Object.entries(counts)) {
          const t = (totals[cat] ??= {});
          for (const [k, n] of Object.entries(keys)) t[k] = (t[k] ?? 0) + n;
        }
      }
    }
    if (summaries.length === 0 && Object.keys(totals).length === 0) return;
    const lines = ["", " Reliability figures"];
    for (const s of summaries) lines.push(`   ${s}`);
    for (const [cat, keys] of Object.entries(totals).sort(([a], [b]) => a.localeCompare(b))) {
      const sum = Object.values(keys).reduce((a, b) => a + b, 0);
      const parts = Object.entries(keys)
        .sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }))
        .map(([k, n]) => `${k}=${n}`)
        .join(", ");
      lines.push(`   ${cat}: ${sum} (${parts})`);
    }
    const fiveHundreds = Object.entries(totals.response ?? {})
      .filter(([k]) => k === "500")
      .reduce((a, [, n]) => a + n, 0);
    lines.push(`   500s seen: ${fiveHundreds}`, "");
    process.stdout.write(lines.join("\n") + "\n");
  }
}
