import { describe, expect, it } from "vitest";
import { MAX_OUTPUT, take, watch, type LiveProgress } from "./progress";
import type { ProgressEvent } from "./types";

const event = (task_id: string, attempt: number, more: Partial<ProgressEvent>): ProgressEvent => ({
  type: "progress",
  task_id,
  capability: "c",
  attempt,
  at: "2026-12-02T00:00:00.000Z",
  ...more,
});

describe("progress of the watched task", () => {
  it("gathers the text, keeps the latest fraction and message, and ignores other tasks", () => {
    const seen: LiveProgress[] = [];
    const stop = watch("a", (p) => seen.push(p));
    take(event("a", 1, { fraction: 0.25, message: "start", output: "Once " }));
    take(event("b", 1, { output: "not mine" }));
    take(event("a", 1, { output: "upon" }));
    expect(seen.at(-1)).toEqual({ attempt: 1, fraction: 0.25, message: "start", output: "Once upon" });
    stop();
    // Watching it again (the view reloads) finds the text still there.
    const again: LiveProgress[] = [];
    watch("a", (p) => again.push(p));
    expect(again[0].output).toBe("Once upon");
  });

  it("starts over for a new attempt or another task, and keeps only the end of long text", () => {
    const seen: LiveProgress[] = [];
    watch("c", (p) => seen.push(p));
    take(event("c", 1, { output: "first try" }));
    take(event("c", 2, { output: "second" }));
    expect(seen.at(-1)).toEqual({ attempt: 2, fraction: undefined, message: undefined, output: "second" });
    take(event("c", 2, { output: "x".repeat(MAX_OUTPUT) }));
    expect(seen.at(-1)?.output.length).toBe(MAX_OUTPUT);
    const other: LiveProgress[] = [];
    watch("d", (p) => other.push(p));
    expect(other).toEqual([]);
  });
});
