import { describe, expect, it } from "vitest";
import { agentsOnline, append, columns, cores, hasModel, modelErrorMs, modelErrorPercent, queued, stage } from "./series";
import { backoff, wsUrl } from "./live";
import type { MetricsSnapshot } from "./types";

function snapshot(at: string, over: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    at,
    interval_ms: 1000,
    p50_latency_ms: 0.5,
    p95_latency_ms: 1,
    p99_latency_ms: 2,
    agent_ops_per_sec: 0,
    task_ops_per_sec: 100,
    swarm_ops_per_sec: 0,
    cpu_core_usage: [10, 20],
    memory_by_component: {},
    cache_hit_rates: {},
    error_rate_percent: 0,
    timeout_rate_percent: 0,
    latency_ms: {},
    throughput: {},
    queue_depth: {},
    agents: {},
    totals: {},
    process: { cpu_percent: 1, rss_bytes: 9e6, peak_rss_bytes: 9e6, uptime_s: 1 },
    load_avg: null,
    llm: {},
    routes: {},
    ...over,
  };
}

describe("series", () => {
  it("reads the routing model's error, absent where the interval predicted nothing", () => {
    const neural = { trained: 900, ready: true, predicted: 40, mean_absolute_error_ms: 1.5, relative_error: 0.12, dropped: 0 };
    const learning = snapshot("2026-01-01T00:00:00Z", { neural });
    const idle = snapshot("2026-01-01T00:00:01Z", { neural: { ...neural, predicted: 0, mean_absolute_error_ms: null, relative_error: null } });
    const plain = snapshot("2026-01-01T00:00:02Z");
    expect(hasModel([plain])).toBe(false);
    expect(hasModel([plain, learning])).toBe(true);
    expect(columns([learning, idle, plain], [modelErrorMs, modelErrorPercent]).slice(1)).toEqual([
      [1.5, null, null],
      [12, null, null],
    ]);
  });
  it("keeps at most the newest points", () => {
    const all = Array.from({ length: 5 }, (_, i) => snapshot(`2026-01-01T00:00:0${i}Z`));
    const kept = append(all.slice(0, 3), all.slice(3), 4);
    expect(kept.map((s) => s.at)).toEqual(all.slice(1).map((s) => s.at));
  });
  it("turns snapshots into uPlot columns with time in seconds", () => {
    const h = [snapshot("2026-01-01T00:00:00Z"), snapshot("2026-01-01T00:00:01Z", { task_ops_per_sec: 250 })];
    const [x, ops] = columns(h, [(s) => s.task_ops_per_sec]);
    expect(x[1] - x[0]).toBe(1);
    expect(ops).toEqual([100, 250]);
  });
  it("sums queues and online agents, and leaves empty stages as gaps", () => {
    const s = snapshot("2026-01-01T00:00:00Z", {
      queue_depth: { a: 3, b: 4 },
      agents: { idle: 2, busy: 1, offline: 5 },
      latency_ms: { task_end_to_end: { p50: 1, p95: 2, p99: 3, max: 4, count: 0 } },
    });
    expect(queued(s)).toBe(7);
    expect(agentsOnline(s)).toBe(3);
    expect(stage("task_end_to_end", "p99")(s)).toBeNull();
    expect(cores([s, snapshot("x", { cpu_core_usage: [1, 2, 3] })])).toBe(3);
  });
});

describe("live", () => {
  it("backs off from half a second to ten", () => {
    expect([0, 1, 2, 5, 10].map(backoff)).toEqual([500, 1000, 2000, 10_000, 10_000]);
  });
  it("follows the page's scheme and host", () => {
    expect(wsUrl("/ws/events", { protocol: "http:", host: "127.0.0.1:7700" })).toBe("ws://127.0.0.1:7700/ws/events");
    expect(wsUrl("/ws/events", { protocol: "https:", host: "hive.example" })).toBe("wss://hive.example/ws/events");
  });
});
