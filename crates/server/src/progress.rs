//! Progress of running attempts (docs/protocol.md, "Progress"): what their agents report is
//! checked here against the attempts running now (followed from the committed changes, so a
//! stale attempt's or another agent's frame is ignored), bounded in size and rate per attempt,
//! and becomes an [`Event::Progress`] for the streams. Nothing of it is stored: only the latest
//! fraction and message of each running attempt are kept, in memory, for `GET /tasks/{id}`.
//!
//! Only attempts started since the hub started are followed: one recovered after a restart (or
//! after a failed commit rebuilt the scheduler) reports progress again from its next attempt.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hive_core::{AgentId, Capability, Change, TaskId, Timestamp};
use hive_proto::events::Event;
use hive_proto::protocol::Progress;

use crate::metrics::Count;
use crate::state::AppState;
use crate::views::rfc3339;

/// The longest `message` kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most `output` one frame may carry, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Frames an attempt may send at once, and per second after that; the rest are dropped.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 10.0;

/// The latest fraction and message of a running attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub attempt: u32,
    pub fraction: Option<f64>,
    pub message: Option<String>,
    pub at: Timestamp,
}

struct Watched {
    agent: AgentId,
    capability: Capability,
    latest: Option<Latest>,
    /// Frames it may still send now (refilled at `PER_SECOND`), as of `refilled`.
    tokens: f64,
    refilled: Timestamp,
}

/// Why a frame was not passed on.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not an attempt this agent runs now (it ended, or runs elsewhere): ignored.
    NotRunning,
    /// Over the attempt's rate: dropped.
    TooFast,
    /// Over a size bound: the worker is told.
    TooLarge(String),
}

#[derive(Default)]
pub struct ProgressBoard {
    running: Mutex<BTreeMap<(TaskId, u32), Watched>>,
}

impl ProgressBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(TaskId, u32), Watched>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the attempts that start, move to a reconnected agent, and end.
    pub fn follow(&self, changes: &[Change]) {
        let moves = |change: &Change| {
            matches!(
                change,
                Change::AttemptStarted { .. }
                    | Change::AttemptReattached { .. }
                    | Change::AttemptEnded { .. }
                    | Change::TaskFinished { .. }
            )
        };
        // Most commits (submits, heartbeats) start or end no attempt: no lock for them.
        if !changes.iter().any(moves) {
            return;
        }
        let mut running = self.lock();
        for change in changes {
            match change {
                Change::AttemptStarted {
                    spec,
                    attempt,
                    agent,
                    started_at,
                    ..
                } => {
                    running.insert(
                        (spec.id, *attempt),
                        Watched {
                            agent: *agent,
                            capability: spec.capability.clone(),
                            latest: None,
                            tokens: BURST,
                            refilled: *started_at,
                        },
                    );
                }
                Change::AttemptReattached {
                    task,
                    attempt,
                    agent,
                } => {
                    if let Some(entry) = running.get_mut(&(*task, *attempt)) {
                        entry.agent = *agent;
                    }
                }
                Change::AttemptEnded { task, attempt, .. } => {
                    running.remove(&(*task, *attempt));
                }
                Change::TaskFinished { task, .. } => {
                    let ended: Vec<_> = running
                        .range((*task, 0)..=(*task, u32::MAX))
                        .map(|(key, _)| *key)
                        .collect();
                    for key in ended {
                        running.remove(&key);
                    }
                }
                _ => {}
            }
        }
    }

    /// Forgets every attempt: after a failed commit the scheduler is rebuilt from the store,
    /// and attempts it recovers report progress again from their next attempt on.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// `agent`'s frame for a running attempt: the event to publish, or why there is none.
    pub fn report(
        &self,
        agent: AgentId,
        progress: Progress,
        now: Timestamp,
    ) -> Result<Event, Refused> {
        let task: TaskId = progress.task_id.parse().map_err(|_| Refused::NotRunning)?;
        if progress
            .output
            .as_ref()
            .is_some_and(|o| o.len() > MAX_OUTPUT_BYTES)
        {
            return Err(Refused::TooLarge(format!(
                "progress output is over {MAX_OUTPUT_BYTES} bytes; send it in smaller pieces"
            )));
        }
        let mut running = self.lock();
        let entry = running
            .get_mut(&(task, progress.attempt))
            .filter(|e| e.agent == agent)
            .ok_or(Refused::NotRunning)?;
        let elapsed_s = now.ms_since(entry.refilled) as f64 / 1000.0;
        entry.tokens = (entry.tokens + elapsed_s * PER_SECOND).min(BURST);
        entry.refilled = now;
        if entry.tokens < 1.0 {
            return Err(Refused::TooFast);
        }
        entry.tokens -= 1.0;
        let mut message = progress.message;
        if let Some(text) = message.as_mut() {
            truncate(text, MAX_MESSAGE_BYTES);
        }
        let previous = entry.latest.take();
        entry.latest = Some(Latest {
            attempt: progress.attempt,
            fraction: progress
                .fraction
                .or_else(|| previous.as_ref().and_then(|p| p.fraction)),
            message: message.clone().or_else(|| previous.and_then(|p| p.message)),
            at: now,
        });
        Ok(Event::Progress {
            task_id: progress.task_id,
            capability: entry.capability.to_string(),
            attempt: progress.attempt,
            fraction: progress.fraction,
            message,
            output: progress.output,
            at: rfc3339(now),
        })
    }

    /// The latest progress of the task's newest running attempt that reported any.
    pub fn latest(&self, task: TaskId) -> Option<Latest> {
        self.lock()
            .range((task, 0)..=(task, u32::MAX))
            .rev()
            .find_map(|(_, e)| e.latest.clone())
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// `agent`'s progress for an attempt, to the streams. A frame for an attempt the agent does not
/// run, or over the attempt's rate, is dropped; an error says why one was refused (too large).
pub fn pass_on(state: &AppState, agent: AgentId, progress: Progress) -> Result<(), String> {
    match state
        .events
        .progress
        .report(agent, progress, state.clock.now())
    {
        Ok(event) => {
            state.metrics.add(Count::ProgressReported, 1);
            state.events.publish_one(event);
            Ok(())
        }
        Err(Refused::NotRunning) => Ok(()),
        Err(Refused::TooFast) => {
            state.metrics.add(Count::ProgressDropped, 1);
            Ok(())
        }
        Err(Refused::TooLarge(why)) => Err(why),
    }
}
