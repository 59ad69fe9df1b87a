// The page: navigation by URL hash, the two live streams, and the view shown. The streams are
// held here so that switching views keeps the history and the connection.
import { useEffect, useState } from "react";
import { UNAUTHORIZED, setToken } from "./auth";
import { connect, type Status } from "./live";
import { take as takeProgress } from "./progress";
import { append } from "./series";
import type { HubEvent, MetricsSnapshot } from "./types";
import { Agents } from "./views/Agents";
import { Alerts } from "./views/Alerts";
import { Hubs } from "./views/Hubs";
import { Overview } from "./views/Overview";
import { Tasks } from "./views/Tasks";

const VIEWS = ["overview", "agents", "tasks", "hubs", "alerts"] as const;
type View = (typeof VIEWS)[number];

function currentView(): View {
  const name = window.location.hash.replace(/^#\/?/, "");
  return (VIEWS as readonly string[]).includes(name) ? (name as View) : "overview";
}

type PerformanceFrame =
  | { type: "history"; snapshots: MetricsSnapshot[] }
  | { type: "snapshot"; snapshot: MetricsSnapshot }
  | { type: "skipped"; count: number };

type EventsFrame = { type: "events"; events: HubEvent[] } | { type: "skipped"; count: number };

export function App() {
  const [view, setView] = useState<View>(currentView());
  const [history, setHistory] = useState<MetricsSnapshot[]>([]);
  const [status, setStatus] = useState<Status>("connecting");
  // Bumped per kind of event, so each view reloads what it shows only when it changed.
  const [changes, setChanges] = useState({ task: 0, agent: 0, alert: 0 });
  const [firing, setFiring] = useState(0);
  const [asking, setAsking] = useState(false);

  useEffect(() => {
    const ask = () => setAsking(true);
    window.addEventListener(UNAUTHORIZED, ask);
    return () => window.removeEventListener(UNAUTHORIZED, ask);
  }, []);

  useEffect(() => {
    const onHash = () => setView(currentView());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(
    () =>
      connect(
        "/ws/performance",
        (data) => {
          const frame = data as PerformanceFrame;
          if (frame.type === "history") setHistory(append([], frame.snapshots));
          if (frame.type === "snapshot") setHistory((h) => append(h, [frame.snapshot]));
        },
        setStatus,
      ),
    [],
  );

  useEffect(
    () =>
      connect(
        "/ws/events",
        (data) => {
          const frame = data as EventsFrame;
          const seen = { task: 0, agent: 0, alert: 0 };
          const events = frame.type === "events" ? frame.events : [];
          for (const event of events) {
            // Progress goes to the task page, and reloads nothing.
            if (event.type === "progress") {
              takeProgress(event);
              continue;
            }
            seen[event.type] += 1;
            if (event.type === "alert") setFiring((n) => Math.max(0, n + (event.state === "firing" ? 1 : -1)));
          }
          if (frame.type === "skipped") Object.assign(seen, { task: 1, agent: 1, alert: 1 });
          setChanges((c) => ({ task: c.task + seen.task, agent: c.agent + seen.agent, alert: c.alert + seen.alert }));
        },
        () => {},
      ),
    [],
  );

  return (
    <div className="app">
      <header>
        <h1>Hive</h1>
        <nav>
          {VIEWS.map((v) => (
            <a key={v} href={`#/${v}`} className={v === view ? "active" : ""}>
              {v}
              {v === "alerts" && firing > 0 && <span className="badge">{firing}</span>}
            </a>
          ))}
        </nav>
        <span className={`status ${status}`} data-testid="live-status">
          {status === "open" ? "live" : status}
        </span>
      </header>
      <main>
        {asking && <TokenPrompt />}
        {view === "overview" && <Overview history={history} />}
        {view === "agents" && <Agents changes={changes.agent} history={history} />}
        {view === "tasks" && <Tasks changes={changes.task} />}
        {view === "hubs" && <Hubs />}
        {view === "alerts" && <Alerts changes={changes.alert} />}
      </main>
    </div>
  );
}

/** Shown when the hub answers 401: the token is kept for this browser session, then the page
 * starts over with it (streams included). */
function TokenPrompt() {
  const [value, setValue] = useState("");
  return (
    <form
      className="token-prompt"
      data-testid="token-prompt"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value);
        window.location.reload();
      }}
    >
      <p>This hub wants an API token (a <code>read</code> token is enough to watch).</p>
      <input
        type="password"
        autoComplete="off"
        placeholder="hive_..."
        value={value}
        onChange={(e) => setValue(e.target.value)}
      />
      <button type="submit">use token</button>
    </form>
  );
}
