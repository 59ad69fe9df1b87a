// Alerts: what is pending or firing now, and the history, refreshed when an alert event arrives.
import * as api from "../api";
import { usePoll } from "../usePoll";

export function Alerts({ changes }: { changes: number }) {
  // Pending alerts change without an event: polled too.
  const { data, error } = usePoll(api.alerts, "alerts", 5000, changes);
  const active = data?.active ?? [];
  const recent = data?.recent ?? [];
  return (
    <div>
      {error && <p className="error">{error}</p>}
      <h3>active</h3>
      {active.length === 0 && <p className="muted">Nothing pending or firing.</p>}
      <ul className="alerts" data-testid="active-alerts">
        {active.map((a) => (
          <li key={a.rule} className={`alert ${a.state} ${a.severity}`}>
            <b>{a.rule}</b> {a.state} since {a.since}: {a.message}
          </li>
        ))}
      </ul>
      <h3>history</h3>
      <table data-testid="alert-history">
        <thead>
          <tr>
            <th>at</th>
            <th>rule</th>
            <th>state</th>
            <th>severity</th>
            <th>message</th>
          </tr>
        </thead>
        <tbody>
          {recent.map((e, i) => (
            <tr key={i}>
              <td>{e.at}</td>
              <td>{e.rule}</td>
              <td className={`alert-${e.state}`}>{e.state}</td>
              <td>{e.severity}</td>
              <td>{e.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
