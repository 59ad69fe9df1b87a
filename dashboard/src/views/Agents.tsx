// Agents: the registry, refreshed when an agent event arrives and every few seconds for slots.
import * as api from "../api";
import * as f from "../format";
import { usePoll } from "../usePoll";

export function Agents({ changes }: { changes: number }) {
  // Slots in use change without an agent event: polled too.
  const { data, error } = usePoll(api.agents, String(changes), 3000);
  const agents = data ?? [];
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
