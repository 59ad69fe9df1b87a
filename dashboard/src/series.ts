// The charts' data: a bounded history of snapshots turned into uPlot's column arrays.
// Pure functions (tested in series.test.ts).
import type { MetricsSnapshot } from "./types";

/** Snapshots kept in the page: the hub's own history length. */
export const MAX_POINTS = 300;

export function append(history: MetricsSnapshot[], next: MetricsSnapshot[], max = MAX_POINTS) {
  const all = history.concat(next);
  return all.length > max ? all.slice(all.length - max) : all;
}

/** Seconds since the epoch, uPlot's x axis. */
export function times(history: MetricsSnapshot[]): number[] {
  return history.map((s) => Date.parse(s.at) / 1000);
}

export type Columns = [number[], ...(number | null)[][]];

export function columns(history: MetricsSnapshot[], pick: ((s: MetricsSnapshot) => number | null)[]): Columns {
  return [times(history), ...pick.map((f) => history.map(f))];
}

export function queued(s: MetricsSnapshot): number {
  return Object.values(s.queue_depth).reduce((a, b) => a + b, 0);
}

export function agentsOnline(s: MetricsSnapshot): number {
  return Object.entries(s.agents)
    .filter(([state]) => state !== "offline")
    .reduce((a, [, n]) => a + n, 0);
}

/** One column per core; the machine's core count can only be known from the data. */
export function cores(history: MetricsSnapshot[]): number {
  return history.reduce((n, s) => Math.max(n, s.cpu_core_usage.length), 0);
}

/** Whether any snapshot carries the neural routing model (policy `neural`). */
export function hasModel(history: MetricsSnapshot[]): boolean {
  return history.some((s) => s.neural != null);
}

/** The routing model's mean absolute error (ms) on the interval's attempts, before learning from them. */
export function modelErrorMs(s: MetricsSnapshot): number | null {
  return s.neural?.mean_absolute_error_ms ?? null;
}

/** The same error as a share of the attempts' mean latency, %. */
export function modelErrorPercent(s: MetricsSnapshot): number | null {
  const r = s.neural?.relative_error;
  return r == null ? null : r * 100;
}

export function stage(name: string, key: "p50" | "p95" | "p99") {
  return (s: MetricsSnapshot) => {
    const l = s.latency_ms[name];
    return l && l.count > 0 ? l[key] : null;
  };
}
