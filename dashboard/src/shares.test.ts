import { describe, expect, it } from "vitest";
import { append, columns, label, labels, sample } from "./shares";
import type { Agent, AgentState } from "./types";

function agent(name: string, state: AgentState, routing: Record<string, number>): Agent {
  return {
    id: `${name}-id`,
    name,
    state,
    capabilities: {},
    slots: 1,
    running: 0,
    connected_at: "",
    last_heartbeat: "",
    stats: {},
    routing: Object.fromEntries(
      Object.entries(routing).map(([c, share]) => [c, { success_probability: 1, latency_ms: 1, tail_ms: 1, samples: 1, share }]),
    ),
  };
}

describe("shares", () => {
  it("samples the share of each name and capability of the agents online", () => {
    const s = sample([agent("gpu", "busy", { echo: 0.75 }), agent("cpu", "idle", { echo: 0.25, sum: 1 }), agent("old", "offline", { echo: 0 })], 10);
    expect(s).toEqual({ at: 10, shares: { [label("gpu", "echo")]: 0.75, [label("cpu", "echo")]: 0.25, [label("cpu", "sum")]: 1 } });
  });

  it("keeps a bounded history and turns it into percent columns with gaps", () => {
    let history = append([], { at: 1, shares: { a: 0.5 } }, 2);
    history = append(history, { at: 2, shares: { a: 0.25, b: 0.75 } }, 2);
    history = append(history, { at: 3, shares: { b: 1 } }, 2);
    expect(history.map((s) => s.at)).toEqual([2, 3]);
    expect(labels(history)).toEqual(["a", "b"]);
    expect(columns(history, labels(history))).toEqual([
      [2, 3],
      [25, null],
      [75, 100],
    ]);
  });
});
