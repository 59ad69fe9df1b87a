// Overview: the numbers of the latest snapshot, and charts over the history kept in the page.
import { useMemo } from "react";
import { Chart } from "../components/Chart";
import { palette } from "../palette";
import * as f from "../format";
import { agentsOnline, columns, cores, queued, stage } from "../series";
import type { LlmUsage, MetricsSnapshot } from "../types";

function Tile({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="tile">
      <div className="tile-value" data-testid={testId}>
        {value}
      </div>
      <div className="tile-label">{label}</div>
    </div>
  );
}

/** Tokens and requests per LLM provider and model, since the hub started (docs/llm.md). */
function LlmTable({ usage }: { usage: Record<string, LlmUsage> }) {
  const rows = Object.entries(usage);
  if (rows.length === 0) return null;
  return (
    <div className="llm-usage">
      <h3>LLM tokens</h3>
      <table data-testid="llm-usage">
        <thead>
          <tr>
            <th>capability</th>
            <th>requests</th>
            <th>failed</th>
            <th>prompt tokens</th>
            <th>completion tokens</th>
            <th>cost</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([capability, u]) => (
            <tr key={capability}>
              <td>{capability}</td>
              <td>{u.requests}</td>
              <td>{u.failed_requests}</td>
              <td>{u.prompt_tokens}</td>
              <td>{u.completion_tokens}</td>
              <td>{u.cost === null ? "" : u.cost.toFixed(4)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Overview({ history }: { history: MetricsSnapshot[] }) {
  const latest = history[history.length - 1];
  const coreCount = cores(history);
  const charts = useMemo(
    () => ({
      throughput: columns(history, [(s) => s.task_ops_per_sec, (s) => s.agent_ops_per_sec, (s) => s.swarm_ops_per_sec]),
      latency: columns(history, [
        (s) => s.p50_latency_ms,
        (s) => s.p95_latency_ms,
        (s) => s.p99_latency_ms,
        stage("task_end_to_end", "p99"),
      ]),
      cpu: columns(
        history,
        Array.from({ length: coreCount }, (_, i) => (s: MetricsSnapshot) => s.cpu_core_usage[i] ?? null),
      ),
      memory: columns(history, [
        (s) => s.process.rss_bytes / 1e6,
        (s) => (s.memory_by_component.scheduler ?? 0) / 1e6,
      ]),
      queue: columns(history, [queued, agentsOnline]),
      errors: columns(history, [(s) => s.error_rate_percent, (s) => s.timeout_rate_percent]),
    }),
    [history, coreCount],
  );
  if (!latest) return <p className="muted">Waiting for the first snapshot…</p>;
  const totals = latest.totals;
  return (
    <div>
      <div className="tiles">
        <Tile testId="task-ops" label="task ops" value={f.rate(latest.task_ops_per_sec)} />
        <Tile testId="api-p99" label="API p99" value={f.ms(latest.p99_latency_ms)} />
        <Tile testId="queued" label="queued" value={String(queued(latest))} />
        <Tile testId="agents-online" label="agents online" value={String(agentsOnline(latest))} />
        <Tile testId="submitted" label="tasks submitted" value={String(totals.tasks_submitted ?? 0)} />
        <Tile testId="succeeded" label="succeeded" value={String(totals.tasks_succeeded ?? 0)} />
        <Tile testId="failed" label="failed" value={String(totals.tasks_failed ?? 0)} />
        <Tile testId="rss" label="hub memory" value={f.bytes(latest.process.rss_bytes)} />
        <Tile testId="cpu" label="hub CPU" value={f.percent(latest.process.cpu_percent)} />
        <Tile testId="errors" label="5xx rate" value={f.percent(latest.error_rate_percent)} />
        <Tile testId="query-cache" label="query cache hits" value={f.percent(latest.cache_hit_rates.query_cache ?? 0)} />
      </div>
      <LlmTable usage={latest.llm ?? {}} />
      <div className="charts">
        <Chart
          title="Throughput (ops/s)"
          data={charts.throughput}
          lines={[
            { label: "tasks", color: palette[0] },
            { label: "agents", color: palette[1] },
            { label: "swarm", color: palette[2] },
          ]}
        />
        <Chart
          title="Latency (ms)"
          data={charts.latency}
          lines={[
            { label: "API p50", color: palette[2], unit: " ms" },
            { label: "API p95", color: palette[0], unit: " ms" },
            { label: "API p99", color: palette[3], unit: " ms" },
            { label: "task end-to-end p99", color: palette[4], unit: " ms" },
          ]}
        />
        <Chart
          title="CPU per core (%)"
          data={charts.cpu}
          lines={Array.from({ length: coreCount }, (_, i) => ({ label: `core ${i}`, color: palette[i % palette.length], unit: "%" }))}
        />
        <Chart
          title="Memory (MB)"
          data={charts.memory}
          lines={[
            { label: "hub RSS", color: palette[1], unit: " MB" },
            { label: "scheduler", color: palette[5], unit: " MB" },
          ]}
        />
        <Chart
          title="Queue depth and agents"
          data={charts.queue}
          lines={[
            { label: "queued tasks", color: palette[0] },
            { label: "agents online", color: palette[2] },
          ]}
        />
        <Chart
          title="Error and timeout rate (%)"
          data={charts.errors}
          lines={[
            { label: "5xx", color: palette[3], unit: "%" },
            { label: "lease expired", color: palette[6], unit: "%" },
          ]}
        />
      </div>
    </div>
  );
}
