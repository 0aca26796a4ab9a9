/**
 * Calendar schedules (DESIGN §2): a set's `schedule` is a 5-field cron expression in UTC
 * ("0 10 * * TUE": every Tuesday at 10:00). Parsing and the next-time arithmetic come from
 * croner (a maintained library, no hand-written parser); this module only adds what the
 * rotator needs: a named problem for a bad expression, the next time after an instant, and
 * the shortest gap between two schedule times (the `rotate_every` a scheduled set stands for).
 *
 * Day-of-month and day-of-week combine with OR when both are restricted (classic cron).
 */
import { Cron } from "croner";

const FIELDS = /^\S+(\s+\S+){4}$/;
/** How far ahead the shortest gap is looked for: covers leap-day schedules (every 4 years, twice). */
const GAP_HORIZON_MS = 9 * 366 * 86_400_000;
/** At most this many schedule times are enumerated for the gap (a dense schedule shows its gap at once). */
const GAP_MAX_RUNS = 1_500;
/** Reference instant for the gap search: any fixed time gives the same answer for periodic schedules. */
const GAP_FROM = Date.UTC(2027, 0, 1);

const parsed = new Map<string, Cron>();

function cronOf(expr: string): Cron {
  let c = parsed.get(expr);
  if (!c) {
    c = new Cron(expr, { timezone: "UTC", mode: "5-part", paused: true });
    if (parsed.size >= 1_000) parsed.clear();
    parsed.set(expr, c);
  }
  return c;
}

/** Null when `expr` is a usable schedule, else why not (never throws). */
export function scheduleProblem(expr: unknown): string | null {
  if (typeof expr !== "string" || expr.trim() === "") return 'must be a 5-field cron expression in UTC, e.g. "0 10 * * TUE"';
  const text = expr.trim();
  if (!FIELDS.test(text)) {
    const n = text.split(/\s+/).length;
    return `must have exactly 5 fields (minute hour day-of-month month day-of-week, UTC); "${text.slice(0, 60)}" has ${n}`;
  }
  let cron: Cron;
  try {
    cron = cronOf(text);
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/^CronPattern:\s*/, "") : String(err);
    return `is not a valid cron expression: ${why.slice(0, 120)}`;
  }
  if (cron.nextRun(new Date(GAP_FROM)) === null) return `"${text}" never happens (an impossible date, like 31 February)`;
  return null;
}

/** The first schedule time strictly after `after` (ms since the epoch, UTC). Throws on a bad expression. */
export function nextScheduleTime(expr: string, after: number): number {
  const next = cronOf(expr.trim()).nextRun(new Date(after));
  if (!next) throw new Error(`schedule "${expr}" has no time after ${new Date(after).toISOString()}`);
  return next.getTime();
}

/**
 * The first schedule time at or after `notBefore` (the engine's refresh_at for a key minted now:
 * `notBefore` = minted_at + overlap + run-ahead margin leaves the key being replaced its overlap).
 */
export function scheduleTimeAtOrAfter(expr: string, notBefore: number): number {
  return nextScheduleTime(expr, notBefore - 1);
}

/**
 * The shortest gap between two consecutive schedule times, in ms (the `rotateEveryMs` of a
 * scheduled set; `overlap` must be shorter). Null when the schedule has fewer than two times
 * in the horizon (it then never needs a second rotation to compare against).
 */
export function shortestGapMs(expr: string): number | null {
  const cron = cronOf(expr.trim());
  let prev = cron.nextRun(new Date(GAP_FROM));
  if (!prev) return null;
  let best: number | null = null;
  const until = GAP_FROM + GAP_HORIZON_MS;
  for (let i = 0; i < GAP_MAX_RUNS; i++) {
    const next = cron.nextRun(prev);
    if (!next || next.getTime() > until) break;
    const gap = next.getTime() - prev.getTime();
    if (best === null || gap < best) best = gap;
    if (best === 60_000) break; // cannot get shorter with 5 fields
    prev = next;
  }
  return best;
}
