// The hub's JSON, as the Rust types in crates/proto define it (api.rs, metrics.rs, alerts.rs,
// events.rs). Only the fields the dashboard reads.

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  count: number;
}

export interface MetricsSnapshot {
  at: string;
  interval_ms: number;
  p50_latency_ms: number;
  p95_latency_ms: number;
  p99_latency_ms: number;
  agent_ops_per_sec: number;
  task_ops_per_sec: number;
  swarm_ops_per_sec: number;
  cpu_core_usage: number[];
  memory_by_component: Record<string, number>;
  cache_hit_rates: Record<string, number>;
  error_rate_percent: number;
  timeout_rate_percent: number;
  latency_ms: Record<string, LatencySummary>;
  throughput: Record<string, number>;
  queue_depth: Record<string, number>;
  agents: Record<string, number>;
  totals: Record<string, number>;
  process: { cpu_percent: number; rss_bytes: number; peak_rss_bytes: number; uptime_s: number };
  load_avg: number | null;
  /** By capability (`llm:<provider>/<model>`); absent from hubs older than the LLM executor. */
  llm?: Record<string, LlmUsage>;
}

export interface LlmUsage {
  provider: string;
  model: string;
  requests: number;
  failed_requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number | null;
}

export interface CapabilityStats {
  completed: number;
  failed: number;
  mean_latency_ms: number | null;
}

export interface Agent {
  id: string;
  name: string;
  state: string;
  capabilities: Record<string, number>;
  slots: number;
  running: number;
  connected_at: string;
  last_heartbeat: string;
  stats: Record<string, CapabilityStats>;
  /** What routing believes of the agent's name per capability (docs/routing.md). */
  routing: Record<string, RoutingEstimate>;
}

export interface RoutingEstimate {
  success_probability: number;
  latency_ms: number | null;
  tail_ms: number | null;
  samples: number;
  share: number;
}

export interface Attempt {
  attempt: number;
  agent_id: string | null;
  started_at: string;
  ended_at: string | null;
  outcome: string | null;
  error: string | null;
  /** A consensus task's replica: the result it returned. */
  output?: unknown;
}

/** One replica's vote in a consensus task. */
export interface Vote {
  attempt: number;
  agent_id: string | null;
  value: unknown;
  agreed: boolean;
}

export interface Task {
  id: string;
  status: string;
  capability: string;
  payload: unknown;
  priority: number;
  max_attempts: number;
  attempts: Attempt[];
  result: unknown;
  error: string | null;
  created_at: string;
  updated_at: string;
  /** The name of the token it was submitted with (absent with authentication off). */
  submitted_by?: string;
  depends_on: string[];
  on_parent_failure: string;
  /** A consensus task's request and votes (absent for a plain task). */
  replicas?: number;
  quorum?: number;
  vote?: string;
  votes?: Vote[];
  dissenters?: string[];
  /** The latest progress of its running attempt (a running task whose agent sent some). */
  progress?: { attempt: number; fraction?: number; message?: string; at: string };
}

export interface Alert {
  rule: string;
  state: string;
  severity: string;
  value: number | null;
  threshold: number;
  since: string;
  message: string;
}

export interface AlertEvent {
  rule: string;
  state: string;
  severity: string;
  value: number | null;
  threshold: number;
  message: string;
  at: string;
}

export type HubEvent =
  | { type: "task"; task_id: string; capability: string; status: string }
  | { type: "agent"; agent_id: string; name: string; state: string }
  | ProgressEvent
  | ({ type: "alert" } & AlertEvent);

/** What a running attempt's agent reported (docs/protocol.md, "progress"). */
export interface ProgressEvent {
  type: "progress";
  task_id: string;
  capability: string;
  attempt: number;
  fraction?: number;
  message?: string;
  /** Text that follows what the attempt's earlier events sent. */
  output?: string;
}

export interface HubView {
  id: string | null;
  name: string;
  address: string;
  this: boolean;
  lease: "held" | "expired" | "none";
  lease_until_ms: number | null;
  heartbeat_at_ms: number | null;
  started_at_ms: number | null;
  agents: number;
  slots: number;
  tasks: number;
  queued: number;
}

export interface HubList {
  store: string;
  items: HubView[];
  pooled: number;
}
