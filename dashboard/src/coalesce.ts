// Reloads of one query, coalesced. A change asks for a reload; at most one load runs at a time,
// and loads start at least `gapMs` apart. A busy hub's event stream changes a view tens of times a
// second (one frame per group commit): reloading at each change cost tens of requests a second per
// open page (BENCHMARKS.md, "The query cache on the dashboard's read mix"). A change asked for is
// never lost: the last one is loaded once the gap has passed and the running load answered.

export interface Clock {
  now: () => number;
  later: (run: () => void, ms: number) => unknown;
  cancel: (timer: unknown) => void;
}

const realClock: Clock = {
  now: () => Date.now(),
  later: (run, ms) => setTimeout(run, ms),
  cancel: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

export class Coalescer {
  private running = false;
  private wanted = false;
  private stopped = false;
  private lastStart = -Infinity;
  private timer: unknown = undefined;

  constructor(
    private readonly load: () => Promise<unknown>,
    private readonly gapMs: number,
    private readonly clock: Clock = realClock,
  ) {}

  /** Something changed: load again, now or as soon as the bounds allow. */
  request(): void {
    this.wanted = true;
    this.pump();
  }

  /** The view moved on: nothing more starts. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.cancel(this.timer);
    this.timer = undefined;
  }

  private pump(): void {
    if (this.stopped || !this.wanted || this.running || this.timer !== undefined) return;
    const wait = this.lastStart + this.gapMs - this.clock.now();
    if (wait > 0) {
      this.timer = this.clock.later(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
      return;
    }
    this.wanted = false;
    this.running = true;
    this.lastStart = this.clock.now();
    const done = () => {
      this.running = false;
      this.pump();
    };
    // A load that throws at once is a failed load, not a coalescer stuck running.
    Promise.resolve()
      .then(() => this.load())
      .then(done, done);
  }
}
