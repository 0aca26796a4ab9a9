/**
 * Figures for the closing reliability note (faults injected by kind, bad inputs tried, statuses
 * answered, 500s seen). Tests count with `tally(category, key)`; `useTally()` (called once at
 * the top of a test file) attaches each test's counts to its task meta (`meta.tally`), and
 * test/reporters/figures.ts adds them up over the whole run and prints them at the end.
 */
import { afterEach } from "vitest";

let counts: Record<string, Record<string, number>> = {};

export function tally(category: string, key: string, n = 1): void {
  const c = (counts[category] ??= {});
  c[key] = (c[key] ?? 0) + n;
}

export function useTally(): void {
  afterEach(({ task }) => {
    if (Object.keys(counts).length > 0) (task.meta as { tally?: unknown }).tally = counts;
    counts = {};
  });
}
