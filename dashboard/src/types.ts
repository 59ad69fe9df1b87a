// The hub's JSON, by the names the views use. Every shape is generated from the hub's OpenAPI
// document (dashboard/openapi.json, which `hive openapi` prints) into openapi.gen.ts by
// `npm run types`; CI fails when either is stale. Nothing here is written by hand but the names
// and one predicate.
import { taskStatusValues, type components } from "./openapi.gen";

type Schemas = components["schemas"];

export type MetricsSnapshot = Schemas["MetricsSnapshot"];
export type LlmUsage = Schemas["LlmUsage"];
export type Agent = Schemas["Agent"];
export type Task = Schemas["Task"];
export type Alert = Schemas["Alert"];
export type AlertEvent = Schemas["AlertEvent"];
export type HubList = Schemas["HubList"];
export type TaskStatus = Schemas["TaskStatus"];
export type AgentState = Schemas["AgentState"];
export type TaskList = Schemas["TaskList"];
export type AgentList = Schemas["AgentList"];
export type AlertList = Schemas["AlertList"];

/** Every task status, in the API's order. */
export const TASK_STATUSES = taskStatusValues;

/** Succeeded, failed or cancelled: nothing will change it again. */
export function isFinished(status: TaskStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled";
}

/** An event of /ws/events (and of a task's event stream). */
export type HubEvent = Schemas["Event"];
/** What a running attempt's agent reported (docs/protocol.md, "progress"). */
export type ProgressEvent = Extract<HubEvent, { type: "progress" }>;
