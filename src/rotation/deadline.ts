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
 * With a `watch` (one per engine, i.e. per invocation) the wait costs no timer of its own.
 */
export function withDeadline<T>(
  work: Promise<T> | (() => Promise<T>),
  deadline: number,
  clock: () => number,
  what = "operation",
  watch?: DeadlineWatch,
): Promise<T> {
  if (watch) return watch.wait(work, deadline, what);
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

interface Waiting {
  deadline: number;
  what: string;
  reject: (err: DeadlineError) => void;
}

/**
 * The deadlines of one invocation's awaits, checked by one timer (every POLL_MS while any wait is
 * pending) instead of a timer set and cleared per await: a rotation awaits D1, KV and Baseten
 * about ten times, and a tick runs a thousand rotations on one thread (bench: timers were a
 * visible share of the engine's CPU). Create one per engine (per invocation, never shared
 * between requests: workerd runs a timer in the request that set it).
 */
export class DeadlineWatch {
  private readonly waiting = new Set<Waiting>();
  private armed = false;
  private readonly clock: () => number;
  constructor(clock: () => number) {
    this.clock = clock;
  }

  wait<T>(work: Promise<T> | (() => Promise<T>), deadline: number, what = "operation"): Promise<T> {
    if (this.clock() >= deadline) {
      if (typeof work !== "function") work.catch(() => {});
      return Promise.reject(new DeadlineError(`${what}: the run's deadline has passed`));
    }
    const promise = typeof work === "function" ? work() : work;
    if (deadline === Infinity) return promise;
    return new Promise<T>((resolve, reject) => {
      const entry: Waiting = { deadline, what, reject };
      this.waiting.add(entry);
      this.arm();
      promise.then(
        (value) => {
          if (this.waiting.delete(entry)) resolve(value);
        },
        (err: unknown) => {
          if (this.waiting.delete(entry)) reject(err);
        },
      );
    });
  }

  private arm() {
    if (this.armed) return;
    this.armed = true;
    setTimeout(() => this.check(), POLL_MS);
  }

  private check() {
    this.armed = false;
    const now = this.clock();
    for (const w of this.waiting) {
      if (w.deadline > now) continue;
      this.waiting.delete(w);
      w.reject(new DeadlineError(`${w.what}: no answer before the run's deadline`));
    }
    // A timer that finds nothing pending is not re-armed: the watch idles without timers.
    if (this.waiting.size > 0) this.arm();
  }
}
