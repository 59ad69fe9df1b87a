//! Progress of running attempts (docs/protocol.md, "Progress"): what their agents report is
//! checked here against the attempts running now (followed from the committed changes, so a
//! stale attempt's or another agent's frame is ignored), bounded in size and rate per attempt,
//! and becomes an [`Event::Progress`] for the streams. Nothing of it is stored: only the latest
//! fraction and message of each running attempt are kept, in memory, for `GET /tasks/{id}`.
//!
//! Only attempts started since the hub started are followed: one recovered after a restart (or
//! after a failed commit rebuilt the scheduler) reports progress again from its next attempt.

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

/// The running attempts of each task that has any, by attempt: nearly always one (a consensus
/// task runs several at once). Every attempt that starts passes through here whether or not its
/// agent ever reports progress, so the map is a hash map with foldhash (ids the hub minted) and
/// a task's attempts a short list: an ordered map of (task, attempt) cost about 2% of a batched
/// task's instructions end to end (BENCHMARKS.md).
type Running = foldhash::HashMap<TaskId, Vec<(u32, Watched)>>;

#[derive(Default)]
pub struct ProgressBoard {
    running: Mutex<Running>,
}

impl ProgressBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
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
                    let watched = Watched {
                        agent: *agent,
                        capability: spec.capability.clone(),
                        latest: None,
                        tokens: BURST,
                        refilled: *started_at,
                    };
                    let attempts = running.entry(spec.id).or_default();
                    attempts.retain(|(n, _)| n != attempt);
                    attempts.push((*attempt, watched));
                }
                Change::AttemptReattached {
                    task,
                    attempt,
                    agent,
                } => {
                    if let Some(entry) = find(&mut running, *task, *attempt) {
                        entry.agent = *agent;
                    }
                }
                Change::AttemptEnded { task, attempt, .. } => {
                    if let Some(attempts) = running.get_mut(task) {
                        attempts.retain(|(n, _)| n != attempt);
                        if attempts.is_empty() {
                            running.remove(task);
                        }
                    }
                }
                Change::TaskFinished { task, .. } => {
                    running.remove(task);
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
        let entry = find(&mut running, task, progress.attempt)
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
            .get(&task)?
            .iter()
            .filter(|(_, e)| e.latest.is_some())
            .max_by_key(|(n, _)| *n)
            .and_then(|(_, e)| e.latest.clone())
    }
}

fn find(running: &mut Running, task: TaskId, attempt: u32) -> Option<&mut Watched> {
    running
        .get_mut(&task)?
        .iter_mut()
        .find_map(|(n, e)| (*n == attempt).then_some(e))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hive_core::{AttemptOutcome, Backoff, NextStatus, OnParentFailure, TaskSpec, TaskStatus};
    use uuid::Uuid;

    use super::*;

    fn started(spec: &Arc<TaskSpec>, attempt: u32, agent: AgentId) -> Change {
        Change::AttemptStarted {
            spec: spec.clone(),
            attempt,
            agent,
            started_at: Timestamp(1_000),
            lease_until: Timestamp(60_000),
            queued_ms: 0,
            inputs: Vec::new(),
            identity: None,
        }
    }

    fn frame(spec: &TaskSpec, attempt: u32, fraction: f64) -> Progress {
        Progress {
            task_id: spec.id.to_string(),
            attempt,
            fraction: Some(fraction),
            message: None,
            output: None,
        }
    }

    /// A consensus task runs several attempts at once: each is followed on its own, the newest
    /// one that reported is the task's latest, and the task's end forgets all of them.
    #[test]
    fn each_running_attempt_of_a_task_is_followed_until_it_or_the_task_ends() {
        let board = ProgressBoard::default();
        let spec = Arc::new(TaskSpec {
            id: TaskId(Uuid::now_v7()),
            capability: Capability::parse("vote", "capability").unwrap(),
            payload: "{}".into(),
            priority: 5,
            max_attempts: 3,
            timeout_ms: 60_000,
            backoff: Backoff::default(),
            idempotency_key: None,
            depends_on: Vec::new(),
            on_parent_failure: OnParentFailure::Fail,
            consensus: None,
            created_at: Timestamp(0),
            submitted_by: None,
            features: None,
        });
        let (a, b, c) = (
            AgentId(Uuid::from_u128(1)),
            AgentId(Uuid::from_u128(2)),
            AgentId(Uuid::from_u128(3)),
        );
        board.follow(&[
            started(&spec, 1, a),
            started(&spec, 2, b),
            started(&spec, 3, c),
        ]);
        let now = Timestamp(2_000);
        assert!(board.report(a, frame(&spec, 1, 0.1), now).is_ok());
        assert_eq!(
            board.report(a, frame(&spec, 2, 0.1), now).unwrap_err(),
            Refused::NotRunning
        );
        assert!(board.report(b, frame(&spec, 2, 0.2), now).is_ok());
        assert_eq!(board.latest(spec.id).unwrap().fraction, Some(0.2));

        board.follow(&[Change::AttemptEnded {
            task: spec.id,
            capability: spec.capability.clone(),
            attempt: 2,
            agent: Some(b),
            created_at: Timestamp(0),
            started_at: Timestamp(1_000),
            ended_at: now,
            outcome: AttemptOutcome::Failed,
            output: None,
            error: Some("no".into()),
            next: NextStatus::Voting,
        }]);
        assert_eq!(
            board.report(b, frame(&spec, 2, 0.3), now).unwrap_err(),
            Refused::NotRunning
        );
        assert_eq!(board.latest(spec.id).unwrap().fraction, Some(0.1));
        assert!(board.report(c, frame(&spec, 3, 0.5), now).is_ok());

        board.follow(&[Change::TaskFinished {
            task: spec.id,
            capability: spec.capability.clone(),
            status: TaskStatus::Succeeded,
            error: None,
            result: Some("1".into()),
            at: now,
        }]);
        assert_eq!(board.latest(spec.id), None);
        assert_eq!(
            board.report(a, frame(&spec, 1, 0.9), now).unwrap_err(),
            Refused::NotRunning
        );
        assert!(board.lock().is_empty());
    }
}
