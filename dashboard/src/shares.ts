// The share of traffic per agent over time: what routing reports of each agent identity (its
// name) per capability, sampled from the agent list each time it is polled. Pure functions
// (tested in shares.test.ts).
import type { Columns } from "./series";
import type { Agent } from "./types";

/** Samples kept: at one poll per 3 s, a quarter of an hour. */
export const MAX_SAMPLES = 300;

export interface ShareSample {
  /** Seconds since the epoch. */
  at: number;
  /** Share of the capability's recent assignments, 0-1, by "name · capability". */
  shares: Record<string, number>;
}

export function label(name: string, capability: string): string {
  return `${name} · ${capability}`;
}

/** One sample from an agent list; instances of one name report the same share, kept once. */
export function sample(agents: Agent[], at: number): ShareSample {
  const shares: Record<string, number> = {};
  for (const agent of agents) {
    if (agent.state === "offline") continue;
    for (const [capability, estimate] of Object.entries(agent.routing ?? {})) {
      shares[label(agent.name, capability)] = estimate.share;
    }
  }
  return { at, shares };
}

export function append(history: ShareSample[], next: ShareSample, max = MAX_SAMPLES): ShareSample[] {
  const all = history.concat([next]);
  return all.length > max ? all.slice(all.length - max) : all;
}

/** Every label seen in the history, sorted. */
export function labels(history: ShareSample[]): string[] {
  const seen = new Set<string>();
  for (const s of history) for (const l of Object.keys(s.shares)) seen.add(l);
  return [...seen].sort();
}

/** uPlot's columns, in percent; a label missing from a sample is a gap. */
export function columns(history: ShareSample[], lines: string[]): Columns {
  return [history.map((s) => s.at), ...lines.map((l) => history.map((s) => (l in s.shares ? s.shares[l] * 100 : null)))];
}
