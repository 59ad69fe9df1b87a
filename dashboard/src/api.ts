// REST calls to the hub that serves this page (same origin).
import { authHeaders, refused } from "./auth";
import { allPages } from "./pages";
import type { AgentList, AlertList, HubList, Task, TaskList, TaskStatus } from "./types";

export class ApiError extends Error {}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const headers = { ...authHeaders(), ...(init?.headers as Record<string, string> | undefined) };
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) refused();
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
    throw new ApiError(message);
  }
  return body as T;
}

// Every agent, page after page: the view shows them all, however many.
export const agents = () =>
  allPages((cursor) =>
    call<AgentList>(`/api/v1/agents${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`),
  );

export interface TaskFilter {
  status?: TaskStatus;
  capability?: string;
}

export function taskQuery(filter: TaskFilter, limit = 100): string {
  const query = new URLSearchParams({ limit: String(limit) });
  if (filter.status) query.set("status", filter.status);
  if (filter.capability) query.set("capability", filter.capability);
  return `/api/v1/tasks?${query}`;
}

export const tasks = (filter: TaskFilter) =>
  call<TaskList>(taskQuery(filter));
export const task = (id: string) => call<Task>(`/api/v1/tasks/${encodeURIComponent(id)}`);
// The hub takes a POST only as JSON, even without a body (its defence against cross-site forms).
export const cancel = (id: string) =>
  call<Task>(`/api/v1/tasks/${encodeURIComponent(id)}/cancel`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
export const alerts = () => call<AlertList>("/api/v1/alerts");
export const hubs = () => call<HubList>("/api/v1/hubs");
