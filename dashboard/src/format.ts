// Formatting of the numbers the dashboard shows. Pure functions (tested in format.test.ts).

export function bytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function rate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)}M/s`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)}k/s`;
  return `${perSec.toFixed(perSec < 10 ? 1 : 0)}/s`;
}

export function ms(value: number): string {
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  return `${value.toFixed(2)} ms`;
}

export function percent(value: number): string {
  return `${value.toFixed(value < 10 ? 2 : 1)}%`;
}

/** completed / (completed + failed), or null with nothing finished. */
export function successRate(completed: number, failed: number): number | null {
  const all = completed + failed;
  return all === 0 ? null : (completed * 100) / all;
}

export function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

/** What a consensus task asked for and how its votes stand: "3 replicas, quorum 2, voting on
 * /answer: 2 of 3 votes agree". `null` for a plain task. */
export function consensusSummary(task: {
  replicas?: number | null;
  quorum?: number | null;
  vote?: string | null;
  votes?: { agreed: boolean }[] | null;
}): string | null {
  if (task.replicas == null || task.quorum == null) return null;
  const on = task.vote || "the whole result";
  const votes = task.votes ?? [];
  const agreed = votes.filter((v) => v.agreed).length;
  const count = `${votes.length} vote${votes.length === 1 ? "" : "s"}`;
  const tally = agreed > 0 ? `${agreed} of ${count} agree` : `${count}, none agreed yet`;
  return `${task.replicas} replicas, quorum ${task.quorum}, voting on ${on}: ${tally}`;
}
