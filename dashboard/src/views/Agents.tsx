// Agents: the registry, refreshed when an agent event arrives and every few seconds for slots,
// with what routing believes of each agent and the share of traffic each got over time.
import { useEffect, useState } from "react";
import * as api from "../api";
import { Chart } from "../components/Chart";
import * as f from "../format";
import { palette } from "../palette";
import * as shares from "../shares";
import type { Agent } from "../types";
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

export function Agents({ changes }: { changes: number }) {
  // Slots in use change without an agent event: polled too.
  const { data, error } = usePoll(api.agents, String(changes), 3000);
  const agents = data ?? [];
  const [history, setHistory] = useState<shares.ShareSample[]>([]);
  useEffect(() => {
    if (data) setHistory((h) => shares.append(h, shares.sample(data, Date.now() / 1000)));
  }, [data]);
  const lines = shares.labels(history);
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
              </tr>
            );
          })}
        </tbody>
      </table>
      {lines.length > 0 && (
        <Chart
          title="share of recent assignments per agent (%)"
          lines={lines.map((label, i) => ({ label, color: palette[i % palette.length], unit: "%" }))}
          data={shares.columns(history, lines)}
        />
      )}
    </div>
  );
}
