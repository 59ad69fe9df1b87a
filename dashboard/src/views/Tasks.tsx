// Tasks: a filterable list, newest first, refreshed as task events arrive; a task's attempts,
// result and error, its progress while it runs, and a cancel button.
import { useEffect, useState } from "react";
import * as api from "../api";
import * as f from "../format";
import { isFinished, TASK_STATUSES, type Task } from "../types";
import { watch, type LiveProgress } from "../progress";
import { usePoll } from "../usePoll";

const STATUSES = ["", ...TASK_STATUSES];

function Detail({ id, changes, onClose }: { id: string; changes: number; onClose: () => void }) {
  const [task, setTask] = useState<Task | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState<LiveProgress | null>(null);
  // Reloaded as task events arrive, coalesced like the list's (it was once per event frame).
  const loaded = usePoll(() => api.task(id), id, undefined, changes);
  useEffect(() => {
    if (loaded.data) setTask(loaded.data);
  }, [loaded.data]);
  useEffect(() => setError(loaded.error), [loaded.error]);
  useEffect(() => watch(id, setLive), [id]);
  const cancel = () => api.cancel(id).then(setTask, (e: Error) => setError(e.message));
  return (
    <aside className="detail" data-testid="task-detail">
      <button onClick={onClose}>close</button>
      {error && <p className="error">{error}</p>}
      {task && (
        <>
          <h3>{task.id}</h3>
          <p>
            <b>{task.status}</b> · {task.capability} · priority {task.priority} · created {task.created_at}
            {task.submitted_by && <> · by {task.submitted_by}</>}
          </p>
          {!isFinished(task.status) && <button onClick={cancel}>cancel task</button>}
          {task.status === "running" && <Progress task={task} live={live} />}
          <h4>attempts</h4>
          <table>
            <thead>
              <tr>
                <th>#</th>
                <th>agent</th>
                <th>started</th>
                <th>ended</th>
                <th>outcome</th>
                <th>error</th>
              </tr>
            </thead>
            <tbody>
              {task.attempts.map((a) => (
                <tr key={a.attempt}>
                  <td>{a.attempt}</td>
                  <td>{a.agent_id ? f.shortId(a.agent_id) : "-"}</td>
                  <td>{a.started_at}</td>
                  <td>{a.ended_at ?? "-"}</td>
                  <td>{a.outcome ?? "running"}</td>
                  <td>{a.error ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h4>payload</h4>
          <pre>{JSON.stringify(task.payload, null, 2)}</pre>
          {task.result !== null && task.result !== undefined && (
            <>
              <h4>result</h4>
              <pre>{JSON.stringify(task.result, null, 2)}</pre>
            </>
          )}
          {task.error && <p className="error">{task.error}</p>}
          {task.depends_on.length > 0 && (
            <p>
              after {task.depends_on.length} parent task(s); on a parent's failure: {task.on_parent_failure}
            </p>
          )}
          {task.replicas != null && <Votes task={task} />}
        </>
      )}
    </aside>
  );
}

/** A running task's progress: the latest fraction and message, and the text its attempt has
 * streamed since the page opened it. */
function Progress({ task, live }: { task: Task; live: LiveProgress | null }) {
  // What the page heard, unless the task has moved on to a later attempt since.
  const current = live && live.attempt >= (task.progress?.attempt ?? 0) ? live : null;
  const fraction = current?.fraction ?? task.progress?.fraction;
  const message = current?.message ?? task.progress?.message;
  if (fraction == null && !message && !current?.output) return null;
  return (
    <div data-testid="task-progress">
      <h4>progress</h4>
      {fraction != null && <progress max={1} value={fraction} />}
      {message && <p>{message}</p>}
      {current?.output && <pre>{current.output}</pre>}
    </div>
  );
}

/** A consensus task's votes: who voted for what, and who was outvoted. */
function Votes({ task }: { task: Task }) {
  const dissenters = task.dissenters ?? [];
  return (
    <div data-testid="votes">
      <h4>consensus</h4>
      <p>{f.consensusSummary(task)}</p>
      <table>
        <thead>
          <tr>
            <th>attempt</th>
            <th>agent</th>
            <th>voted for</th>
            <th>agreed</th>
          </tr>
        </thead>
        <tbody>
          {(task.votes ?? []).map((v) => (
            <tr key={v.attempt}>
              <td>{v.attempt}</td>
              <td>{v.agent_id ? f.shortId(v.agent_id) : "-"}</td>
              <td>
                <code>{JSON.stringify(v.value)}</code>
              </td>
              <td>{v.agreed ? "agreed" : "dissent"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {dissenters.length > 0 && <p>outvoted: {dissenters.map(f.shortId).join(", ")}</p>}
    </div>
  );
}

export function Tasks({ changes }: { changes: number }) {
  const [filter, setFilter] = useState<api.TaskFilter>({});
  const [open, setOpen] = useState<string | null>(null);
  const { data, error } = usePoll(() => api.tasks(filter), JSON.stringify(filter), undefined, changes);
  const tasks = data?.items ?? [];
  return (
    <div className="tasks">
      <div className="filters">
        <label>
          status{" "}
          <select value={filter.status ?? ""} onChange={(e) => setFilter({ ...filter, status: TASK_STATUSES.find((s) => s === e.target.value) })}>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "any"}
              </option>
            ))}
          </select>
        </label>
        <label>
          capability{" "}
          <input
            value={filter.capability ?? ""}
            placeholder="any"
            onChange={(e) => setFilter({ ...filter, capability: e.target.value || undefined })}
          />
        </label>
      </div>
      {error && <p className="error">{error}</p>}
      <table data-testid="tasks">
        <thead>
          <tr>
            <th>id</th>
            <th>status</th>
            <th>capability</th>
            <th>priority</th>
            <th>attempts</th>
            <th>created</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((t) => (
            <tr key={t.id} className="clickable" onClick={() => setOpen(t.id)}>
              <td title={t.id}>{f.shortId(t.id)}</td>
              <td className={`status-${t.status}`}>{t.status}</td>
              <td>{t.capability}</td>
              <td>{t.priority}</td>
              <td>{t.attempts.length}</td>
              <td>{t.created_at}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {open && <Detail key={open} id={open} changes={changes} onClose={() => setOpen(null)} />}
    </div>
  );
}
