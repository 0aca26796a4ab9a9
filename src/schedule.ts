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
/** At most this many matching days are enumerated for the gap (a weekly schedule: 7 years). */
const GAP_MAX_RUNS = 400;
/** Reference instant for the gap search: any fixed time gives the same answer for periodic schedules. */
const GAP_FROM = Date.UTC(2027, 0, 1);

const parsed = new Map<string, Cron>();

function cronOf(expr: string): Cron {
  let c = parsed.get(expr);
  if (!c) {
    c = new Cron(expr, { utcOffset: 0, mode: "5-part", paused: true });
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
 * `refresh_at` for a key of a scheduled set minted at `mintedAt`: the next schedule time that
 * leaves at least the overlap and the run-ahead margin (a rotation run ahead of schedule time S
 * mints a key whose refresh_at is the time after S, never S itself).
 */
export function scheduledRefreshAt(expr: string, mintedAt: number, overlapMs: number, runAheadMs = 0): number {
  return scheduleTimeAtOrAfter(expr, mintedAt + overlapMs + runAheadMs);
}

/**
 * The shortest gap between two consecutive schedule times, in ms (the `rotateEveryMs` of a
 * scheduled set; `overlap` must be shorter). Null when the schedule has fewer than two times
 * in the horizon.
 *
 * Computed from croner's own answers in two small parts, instead of walking every time for years:
 * the times of day (minute and hour fields, one day) and the matching days (the three day fields,
 * croner's day-of-month/day-of-week semantics included). The shortest gap is the shortest gap
 * within a day, or the shortest run of days between two matching days minus the day's span.
 */
export function shortestGapMs(expr: string): number | null {
  const f = expr.trim().split(/\s+/);
  if (f.length !== 5) throw new Error(`schedule "${expr}" must have 5 fields`);
  const day = 86_400_000;
  // Times of day: every run of "<minute> <hour> * * *" within one day.
  const times = cronOf(`${f[0]} ${f[1]} * * *`);
  const dayStart = GAP_FROM;
  const ofDay: number[] = [];
  for (let t = times.nextRun(new Date(dayStart - 1)); t && t.getTime() < dayStart + day; t = times.nextRun(t)) {
    ofDay.push(t.getTime() - dayStart);
    if (ofDay.length >= 2 && ofDay[ofDay.length - 1]! - ofDay[ofDay.length - 2]! === 60_000) return 60_000; // the shortest there is
  }
  if (ofDay.length === 0) return null;
  let best: number | null = null;
  for (let i = 1; i < ofDay.length; i++) best = Math.min(best ?? Infinity, ofDay[i]! - ofDay[i - 1]!);
  if (best === 60_000) return best; // cannot get shorter with 5 fields
  // Matching days: runs of "0 0 <day-of-month> <month> <day-of-week>".
  const days = cronOf(`0 0 ${f[2]} ${f[3]} ${f[4]}`);
  let prev = days.nextRun(new Date(GAP_FROM - 1));
  let fewestDays: number | null = null;
  const until = GAP_FROM + GAP_HORIZON_MS;
  for (let i = 0; prev && i < GAP_MAX_RUNS && fewestDays !== 1; i++) {
    const next = days.nextRun(prev);
    if (!next || next.getTime() > until) break;
    // A year of matching days shows the shortest run of days (leap-day schedules look further).
    if (fewestDays !== null && next.getTime() > GAP_FROM + 372 * day) break;
    const n = Math.round((next.getTime() - prev.getTime()) / day);
    if (fewestDays === null || n < fewestDays) fewestDays = n;
    prev = next;
  }
  if (fewestDays !== null) {
    const across = fewestDays * day - (ofDay[ofDay.length - 1]! - ofDay[0]!);
    best = Math.min(best ?? Infinity, across);
  }
  return best;
}
