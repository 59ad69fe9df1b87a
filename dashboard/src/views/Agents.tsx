// Agents: the registry, refreshed when an agent event arrives and every few seconds for slots.
import { useEffect, useState } from "react";
import * as api from "../api";
import * as f from "../format";
import type { Agent } from "../types";

export function Agents({ changes }: { changes: number }) {
  const [agents, setAgents] = useState<Agent[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      api
        .agents()
        .then((a) => live && (setAgents(a), setError(null)))
        .catch((e: Error) => live && setError(e.message));
    load();
    const timer = setInterval(load, 3000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [changes]);
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
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
