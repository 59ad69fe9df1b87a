// Running tasks' progress from /ws/events, for the task page: of the one task the page watches,
// its latest fraction and message and the text streamed so far. Kept here, not in the view, so
// that the view's reloads (at every task event) do not lose the text. Pure but for its module
// state; tested in progress.test.ts.
import type { ProgressEvent } from "./types";

export interface LiveProgress {
  attempt: number;
  fraction?: number;
  message?: string;
  output: string;
}

/** The most text kept: the end of a long answer. */
export const MAX_OUTPUT = 256 * 1024;

let watched: string | null = null;
let live: LiveProgress | null = null;
const listeners = new Set<(progress: LiveProgress) => void>();

/** Follows task `id` (forgetting any other), calling `onChange` now if there is progress and at
 * every event; returns the unsubscribe. */
export function watch(id: string, onChange: (progress: LiveProgress) => void): () => void {
  if (watched !== id) {
    watched = id;
    live = null;
  }
  listeners.add(onChange);
  if (live) onChange(live);
  return () => {
    listeners.delete(onChange);
  };
}

/** An event from /ws/events: added to the watched task's progress (a new attempt starts over). */
export function take(event: ProgressEvent): void {
  if (event.task_id !== watched) return;
  const before: LiveProgress = live && live.attempt === event.attempt ? live : { attempt: event.attempt, output: "" };
  const current: LiveProgress = {
    attempt: event.attempt,
    fraction: event.fraction ?? before.fraction,
    message: event.message ?? before.message,
    output: (before.output + (event.output ?? "")).slice(-MAX_OUTPUT),
  };
  live = current;
  for (const listener of listeners) listener(current);
}
