/**
 * STUB (engine branch): the secrets helper (issue #11) owns this file; at merge their version wins.
 * `nextScheduleTime(expr, after)`: the first time of a 5-field UTC cron expression after `after`.
 */
import { Cron } from "croner";

export function nextScheduleTime(expr: string, after: number): number {
  const next = new Cron(expr, { timezone: "UTC", paused: true }).nextRun(new Date(after));
  if (!next) throw new Error(`schedule "${expr}" has no time after ${new Date(after).toISOString()}`);
  return next.getTime();
}
