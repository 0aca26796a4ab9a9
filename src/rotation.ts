/**
 * The rotation engine's entry points, kept at this path so imports stay valid:
 *   src/rotation/policy.ts   what a set needs (pure)
 *   src/rotation/engine.ts   runSet: applies the plan step by step under the set's lease
 *   src/cron.ts              the tick: which sets need a run
 */
export {
  type Engine,
  type Failure,
  type RotationEvent,
  type RunOptions,
  type RunReport,
  type RunResult,
  type Trigger,
  createEngine,
  runSet,
} from "./rotation/engine.ts";
export { LEASE_MS, RUN_AHEAD_MS, RUN_BUDGET_MS, refreshAtFor, runAheadMs } from "./rotation/policy.ts";
