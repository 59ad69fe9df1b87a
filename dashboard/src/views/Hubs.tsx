// Hubs: the hubs sharing this hub's store (one on SQLite), their agents, slots, tasks and leases,
// and the tasks pooled for any of them. Polled: hubs join, beat and leave without events.
import * as api from "../api";
import { usePoll } from "../usePoll";

function ago(ms: number | null): string {
  if (ms === null) return "-";
  const seconds = (ms - Date.now()) / 1000;
  return seconds >= 0 ? `in ${seconds.toFixed(1)} s` : `${(-seconds).toFixed(1)} s ago`;
}

export function Hubs() {
  const { data, error } = usePoll(api.hubs, "hubs", 2000);
  const hubs = data?.items ?? [];
  return (
    <div>
      {error && <p className="error">{error}</p>}
      {data && (
        <p className="muted" data-testid="hubs-summary">
          {hubs.length} hub{hubs.length === 1 ? "" : "s"} on {data.store}; {data.pooled} task{data.pooled === 1 ? "" : "s"} pooled
          for any hub to claim
        </p>
      )}
      <table data-testid="hubs">
        <thead>
          <tr>
            <th>name</th>
            <th>address</th>
            <th>lease</th>
            <th>lease until</th>
            <th>last beat</th>
            <th>agents</th>
            <th>slots</th>
            <th>tasks</th>
            <th>queued</th>
          </tr>
        </thead>
        <tbody>
          {hubs.map((h) => (
            <tr key={h.id ?? h.name} className={h.this ? "this-hub" : ""}>
              <td>
                {h.name}
                {h.this && <span className="muted"> (this page's)</span>}
              </td>
              <td>{h.address}</td>
              <td className={`lease-${h.lease}`}>{h.lease}</td>
              <td>{ago(h.lease_until_ms)}</td>
              <td>{ago(h.heartbeat_at_ms)}</td>
              <td>{h.agents}</td>
              <td>{h.slots}</td>
              <td>{h.tasks}</td>
              <td>{h.queued}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
