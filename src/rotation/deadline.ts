/**
 * Every await of a run is bounded by the run's deadline (DESIGN §4: a run never outlives its
 * lease). The deadline is on the engine's clock, which tests and the soak move by hand, so the
 * wait is re-checked against that clock a few times a second instead of trusting one timer.
 */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

const POLL_MS = 200;

/**
 * `work` (a promise, or a function started only if the deadline has not passed) settles, or the
 * deadline passes first and this rejects with a DeadlineError. The work itself is not cancelled:
 * what it writes may still land later, which is why the engine re-checks D1 after its KV write.
 */
export function withDeadline<T>(
  work: Promise<T> | (() => Promise<T>),
  deadline: number,
  clock: () => number,
  what = "operation",
): Promise<T> {
  if (clock() >= deadline) {
    if (typeof work !== "function") work.catch(() => {});
    return Promise.reject(new DeadlineError(`${what}: the run's deadline has passed`));
  }
  const promise = typeof work === "function" ? work() : work;
  if (deadline === Infinity) return promise;
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const check = () => {
      if (settled) return;
      const left = deadline - clock();
      if (left <= 0) {
        settled = true;
        reject(new DeadlineError(`${what}: no answer before the run's deadline`));
        return;
      }
      timer = setTimeout(check, Math.min(left, POLL_MS));
    };
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
    check();
  });
}
