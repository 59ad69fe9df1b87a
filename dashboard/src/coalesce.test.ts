import { describe, expect, it } from "vitest";
import { Coalescer, type Clock } from "./coalesce";

/** A clock the test moves by hand, and loads it answers by hand. */
function setup(gapMs: number) {
  let now = 0;
  let timers: { at: number; run: () => void; id: number }[] = [];
  let next = 0;
  const clock: Clock = {
    now: () => now,
    later: (run, ms) => {
      const id = next++;
      timers.push({ at: now + ms, run, id });
      return id;
    },
    cancel: (id) => {
      timers = timers.filter((t) => t.id !== id);
    },
  };
  const pending: (() => void)[] = [];
  let started = 0;
  const coalescer = new Coalescer(
    () =>
      new Promise<void>((answer) => {
        started++;
        pending.push(answer);
      }),
    gapMs,
    clock,
  );
  // Lets the promise callbacks queued so far run (a load starts, and is taken back, on them).
  const settle = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  const ask = async () => {
    coalescer.request();
    await settle();
  };
  const advance = async (ms: number) => {
    now += ms;
    const due = timers.filter((t) => t.at <= now);
    timers = timers.filter((t) => t.at > now);
    due.forEach((t) => t.run());
    await settle();
  };
  const answer = async () => {
    pending.shift()?.();
    await settle();
  };
  return { coalescer, ask, advance, answer, started: () => started, timers: () => timers.length };
}

describe("coalesced reloads", () => {
  it("takes a load that throws at once as a failed load and goes on", async () => {
    let calls = 0;
    const t = new Coalescer(() => {
      calls++;
      throw new Error("no network");
    }, 0);
    const settle = async () => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    t.request();
    await settle();
    t.request();
    await settle();
    expect(calls).toBe(2);
    t.stop();
  });

  it("loads at once, then at most once a gap however often asked, and the last ask is loaded", async () => {
    const t = setup(500);
    await t.ask();
    expect(t.started()).toBe(1);
    await t.answer();
    // Thirty changes in one second (an event frame every 33 ms).
    for (let i = 0; i < 30; i++) {
      await t.ask();
      await t.advance(33);
      await t.answer();
    }
    // One more load, once the first gap passed (at 528 ms: the first tick after 500).
    expect(t.started()).toBe(2);
    // The asks since are loaded once the next gap passes: three loads in all, not thirty-one.
    await t.advance(500);
    await t.answer();
    expect(t.started()).toBe(3);
    expect(t.timers()).toBe(0);
  });

  it("never runs two loads at once, and loads again after a slow one when asked meanwhile", async () => {
    const t = setup(100);
    await t.ask();
    await t.advance(1_000);
    await t.ask();
    await t.ask();
    await t.advance(1_000);
    expect(t.started()).toBe(1);
    await t.answer();
    expect(t.started()).toBe(2);
    await t.answer();
    expect(t.started()).toBe(2);
  });

  it("starts nothing once stopped", async () => {
    const t = setup(500);
    await t.ask();
    await t.answer();
    t.coalescer.request();
    t.coalescer.stop();
    await t.advance(1_000);
    expect(t.started()).toBe(1);
    expect(t.timers()).toBe(0);
  });
});
