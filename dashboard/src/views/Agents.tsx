// Agents: the registry, refreshed when an agent event arrives and every few seconds for slots,
// with what routing believes of each agent and the share of traffic each got over time; with the
// neural policy, what its model predicts of each agent and the model's error over time.
import { useEffect, useState } from "react";
import * as api from "../api";
import { Chart } from "../components/Chart";
import * as f from "../format";
import { palette } from "../palette";
import { columns, hasModel, modelErrorMs, modelErrorPercent } from "../series";
import * as shares from "../shares";
import type { Agent, MetricsSnapshot } from "../types";
import { usePoll } from "../usePoll";

/** Per capability: success probability, latency estimate, share of recent traffic. */
function beliefs(agent: Agent): string {
  return Object.entries(agent.routing ?? {})
    .map(([capability, r]) => {
      const latency = r.latency_ms == null ? "not measured" : f.ms(r.latency_ms);
      return `${capability}: ${f.percent(r.success_probability * 100)} ok, ${latency}, ${f.percent(r.share * 100)} of traffic`;
    })
    .join("; ");
}

/** Per capability: what the neural model predicts on a typical task ("-" where it cannot say). */
function predictions(agent: Agent): string {
  const known = Object.entries(agent.routing ?? {}).filter(([, r]) => r.predicted != null);
  if (known.length === 0) return "-";
  return known
    .map(([capability, r]) => `${capability}: ${f.ms(r.predicted!.latency_ms)}, ${f.percent(r.predicted!.success_probability * 100)} ok`)
    .join("; ");
}

export function Agents({ changes, history }: { changes: number; history: MetricsSnapshot[] }) {
  const model = hasModel(history);
  // Slots in use change without an agent event: polled too.
  const { data, error } = usePoll(api.agents, "agents", 3000, changes);
  const agents = data ?? [];
  const [shareHistory, setShareHistory] = useState<shares.ShareSample[]>([]);
  useEffect(() => {
    if (data) setShareHistory((h) => shares.append(h, shares.sample(data, Date.now() / 1000)));
  }, [data]);
  const lines = shares.labels(shareHistory);
  return (
    <div>
      {error && <p className="error">{error}</p>}
      <table data-testid="agents">
        <thead>
          <tr>
            <th>id</th>
            <th>name</th>
            <th>state</th>
            <th>capabilities</th>
            <th>slots in use</th>
            <th>success rate</th>
            <th>mean latency</th>
            <th title="what routing learned of this name (docs/routing.md)">routing believes</th>
            {model && <th title="the neural routing model on a typical task of the capability, the agent idle">model predicts</th>}
          </tr>
        </thead>
        <tbody>
          {agents.map((a) => {
            const stats = Object.values(a.stats);
            const completed = stats.reduce((n, s) => n + s.completed, 0);
            const failed = stats.reduce((n, s) => n + s.failed, 0);
            const success = f.successRate(completed, failed);
            const latencies = stats.filter((s) => s.mean_latency_ms != null && s.completed > 0);
            const weighted = latencies.reduce((n, s) => n + (s.mean_latency_ms ?? 0) * s.completed, 0);
            const mean = latencies.length ? weighted / latencies.reduce((n, s) => n + s.completed, 0) : null;
            return (
              <tr key={a.id}>
                <td title={a.id}>{f.shortId(a.id)}</td>
                <td>{a.name}</td>
                <td className={`state-${a.state}`}>{a.state}</td>
                <td>{Object.keys(a.capabilities).join(", ")}</td>
                <td>
                  {a.running} / {a.slots}
                </td>
                <td>{success == null ? "-" : f.percent(success)}</td>
                <td>{mean == null ? "-" : f.ms(mean)}</td>
                <td data-testid="routing">{beliefs(a)}</td>
                {model && <td data-testid="predicted">{predictions(a)}</td>}
              </tr>
            );
          })}
        </tbody>
      </table>
      {lines.length > 0 && (
        <Chart
          title="share of recent assignments per agent (%)"
          lines={lines.map((label, i) => ({ label, color: palette[i % palette.length], unit: "%" }))}
          data={shares.columns(shareHistory, lines)}
        />
      )}
      {model && (
        <Chart
          title="routing model: error on attempts before it learned from them"
          lines={[
            { label: "mean absolute error", color: palette[0], unit: " ms" },
            { label: "relative error", color: palette[3], unit: "%" },
          ]}
          data={columns(history, [modelErrorMs, modelErrorPercent])}
        />
      )}
    </div>
  );
}
