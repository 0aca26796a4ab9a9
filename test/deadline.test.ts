/**
 * The deadline watch (src/rotation/deadline.ts): one timer per engine bounds every await of its
 * runs. On the engine's clock, which tests move by hand: a wait ends when that clock passes its
 * deadline, whatever the work does; work that settles in time settles the wait, value or error.
 */
import { describe, expect, it } from "vitest";
import { DeadlineError, DeadlineWatch } from "../src/rotation/deadline.ts";

const never = () => new Promise<never>(() => {});

describe("DeadlineWatch", () => {
  it("rejects a wait whose work never settles once the clock passes its deadline, and only that wait", async () => {
    let now = 1_000;
    const watch = new DeadlineWatch(() => now);
    const late = watch.wait(never, 5_000, "kv put");
    const later = watch.wait(never, 60_000, "d1 batch");
    let lateErr: unknown = null;
    late.catch((e) => (lateErr = e));
    let laterSettled = false;
    later.catch(() => (laterSettled = true));
    now = 5_001;
    await expect(late).rejects.toThrow(DeadlineError);
    expect(String(lateErr)).toMatch(/kv put: no answer before the run's deadline/);
    await new Promise((r) => setTimeout(r, 450));
    expect(laterSettled, "a wait with a later deadline keeps waiting").toBe(false);
    now = 60_000;
    await expect(later).rejects.toThrow(/d1 batch/);
  });

  it("work that settles in time settles the wait: its value, or its own error", async () => {
    const watch = new DeadlineWatch(() => 0);
    await expect(watch.wait(async () => 42, 10)).resolves.toBe(42);
    await expect(watch.wait(Promise.reject(new Error("boom")), 10)).rejects.toThrow("boom");
  });

  it("a deadline already past starts nothing", async () => {
    const watch = new DeadlineWatch(() => 100);
    let started = false;
    await expect(
      watch.wait(
        async () => {
          started = true;
        },
        100,
        "acquire",
      ),
    ).rejects.toThrow(/acquire: the run's deadline has passed/);
    expect(started).toBe(false);
  });
});
