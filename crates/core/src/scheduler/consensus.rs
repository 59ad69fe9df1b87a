//! Consensus tasks in the scheduler: replicas placed on agents of distinct identities, their
//! results counted as votes, and the task decided as soon as a quorum agrees or agreement has
//! become impossible.
//!
//! A consensus task past waiting is `Phase::Voting` and has a [`Ballot`]. It keeps `replicas`
//! attempts going at once until it is decided: each on an agent whose identity (name) neither
//! voted on the task nor runs a replica of it, so that every vote comes from another identity.
//! A failed replica goes to another identity while one that has not failed on the task is
//! connected (it waits for one that is busy); only when none is left may an identity whose
//! replica failed be asked again (it has not voted), so that exactly `replicas` workers do not
//! wait forever after one failure. Its attempts are numbered across the replicas (1, 2,
//! 3, ...), so the protocol's fencing by `(task, attempt)` stays exact, and each keeps its own
//! lease. The attempts it may start in all are `replicas x max_attempts`.
//!
//! A replica that needs an agent and finds no eligible free one waits in the capability's
//! ballot queue, ranked like a ready task; a freed slot takes it when it ranks before the head
//! of the ready queue and the agent's identity may answer it. A freed slot looks at the first
//! [`BALLOT_LOOKAHEAD`] waiting tasks only: tasks that wait for identities that are not there
//! gather at the front, and a scan past all of them on every freed slot would cost the hub more
//! the longer they wait.
//!
//! When the task is decided, the replicas still running are cancelled. An agent whose answer
//! lost the vote has that attempt counted as a failure by routing ([`Estimate::overrule`]):
//! agents that keep answering wrong lose their share of the traffic.
//!
//! [`Estimate::overrule`]: crate::estimate::Estimate::overrule

use std::sync::Arc;

use super::{AttemptEnd, Change, NextStatus, Phase, Scheduler, Timer, inputs_of};
use crate::consensus::{ConsensusSpec, vote_of};
use crate::ids::{AgentId, TaskId};
use crate::queue::{QueueKey, queue_key, ready_at};
use crate::routing::{Candidate, Route, RoutingPolicy};
use crate::task::{AttemptOutcome, Capability, TaskEnd, TaskStatus};
use crate::time::Timestamp;

use super::changes::{Report, ReportError};

/// The replicas and votes of one consensus task.
#[derive(Debug, Default)]
pub(super) struct Ballot {
    /// Attempts started so far; the next one is numbered `started + 1`.
    pub(super) started: u32,
    pub(super) runs: Vec<ReplicaRun>,
    pub(super) votes: Vec<Vote>,
    /// Attempts that failed, with the last error, for the message when agreement is impossible.
    pub(super) failed: u32,
    /// Identities whose replica failed, asked again only when no other identity is left.
    pub(super) failed_identities: Vec<Arc<str>>,
    pub(super) last_error: Option<String>,
    /// Its key in the ballot queue while it needs an agent.
    pub(super) queued: Option<QueueKey>,
}

/// A replica's attempt in progress.
#[derive(Debug, Clone)]
pub(super) struct ReplicaRun {
    pub(super) attempt: u32,
    /// `None` after a restart, until the worker holding it reconnects.
    pub(super) agent: Option<AgentId>,
    pub(super) identity: Arc<str>,
    pub(super) started_at: Timestamp,
    pub(super) lease_until: Timestamp,
    /// The agent's other attempts as this one started (see `Phase::Running`).
    pub(super) others_running: u32,
}

/// A result counted: the canonical JSON of what it votes for, and the result itself.
#[derive(Debug, Clone)]
pub(super) struct Vote {
    pub(super) identity: Arc<str>,
    pub(super) value: String,
    pub(super) output: Arc<str>,
}

/// Waiting consensus tasks a freed slot looks through for one its identity may answer.
pub(super) const BALLOT_LOOKAHEAD: usize = 256;

/// How a consensus task is decided.
pub(super) enum Verdict {
    /// A quorum agreed on `value` (canonical JSON); `result` is the task's result.
    Agreed {
        value: String,
        result: Arc<str>,
    },
    /// No quorum can be reached any more.
    Impossible(String),
    Cancelled,
}

impl Ballot {
    /// Whether the identity voted on the task or runs one of its replicas.
    fn asked(&self, name: &str) -> bool {
        self.votes.iter().any(|v| &*v.identity == name)
            || self.runs.iter().any(|r| &*r.identity == name)
    }

    fn failed(&self, name: &str) -> bool {
        self.failed_identities.iter().any(|f| &**f == name)
    }

    /// Queued until its first replica starts, then running until it is decided, also while
    /// it waits for an agent to replace a replica (as the store records it).
    pub(super) fn status(&self) -> TaskStatus {
        if self.started == 0 {
            TaskStatus::Queued
        } else {
            TaskStatus::Running
        }
    }

    /// Replicas to start now: those missing from `replicas`, within the attempts left.
    pub(super) fn needed(&self, spec: &ConsensusSpec, max_attempts: u32) -> u32 {
        let have = (self.votes.len() + self.runs.len()) as u32;
        let open = u32::from(spec.replicas).saturating_sub(have);
        open.min(budget(spec, max_attempts).saturating_sub(self.started))
    }

    /// The value with the most votes (the first to get there on a tie) and its count.
    fn leader(&self) -> Option<(&str, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for vote in &self.votes {
            let count = self.votes.iter().filter(|v| v.value == vote.value).count();
            if best.is_none_or(|(_, n)| count > n) {
                best = Some((&vote.value, count));
            }
        }
        best
    }

    /// Whether some value can still reach the quorum: the votes still to come are those of the
    /// running replicas and of the attempts left to start, up to `replicas` votes in all.
    fn can_agree(&self, spec: &ConsensusSpec, max_attempts: u32) -> bool {
        let leading = self.leader().map_or(0, |(_, n)| n) as u32;
        let left = budget(spec, max_attempts).saturating_sub(self.started);
        let to_come = (self.runs.len() as u32 + left)
            .min(u32::from(spec.replicas).saturating_sub(self.votes.len() as u32));
        leading + to_come >= u32::from(spec.quorum)
    }
}

/// Attempts a consensus task may start in all.
fn budget(spec: &ConsensusSpec, max_attempts: u32) -> u32 {
    u32::from(spec.replicas) * max_attempts
}

impl<P: RoutingPolicy> Scheduler<P> {
    /// A consensus task may run, or lost a replica: starts the replicas it needs on eligible
    /// free agents, and queues it for the rest.
    pub(super) fn ask_replicas(&mut self, id: TaskId, now: Timestamp) {
        let task = self.tasks.get_mut(&id).expect("active task");
        task.phase = Phase::Voting;
        self.ballots.entry(id).or_default();
        while self.replicas_needed(id) > 0 {
            let Some(agent) = self.pick_replica_agent(id, now) else {
                break;
            };
            self.start_replica(id, agent, now);
        }
        self.requeue_ballot(id, now);
    }

    pub(super) fn replicas_needed(&self, id: TaskId) -> u32 {
        let spec = &self.tasks[&id].spec;
        let consensus = spec.consensus.as_deref().expect("a consensus task");
        self.ballots[&id].needed(consensus, spec.max_attempts)
    }

    /// Whether the agent may run a replica of the task: its identity neither voted on it nor
    /// runs a replica of it, and, if its replica failed before, no identity that has not failed
    /// on it is connected for the capability.
    pub(super) fn may_answer(&self, id: TaskId, agent: AgentId) -> bool {
        let name = self.agents[&agent].spec.name.as_str();
        let ballot = &self.ballots[&id];
        !ballot.asked(name) && (!ballot.failed(name) || !self.fresh_left(id))
    }

    /// Whether an agent of the capability is connected, not draining, of an identity neither
    /// asked nor failed on the task.
    fn fresh_left(&self, id: TaskId) -> bool {
        let ballot = &self.ballots[&id];
        let capability = &self.tasks[&id].spec.capability;
        let agents = self
            .agents_by_capability
            .get(capability)
            .into_iter()
            .flatten();
        agents.map(|(other, _)| &self.agents[other]).any(|other| {
            let name = other.spec.name.as_str();
            other.connected && !other.draining && !ballot.asked(name) && !ballot.failed(name)
        })
    }

    /// The free agent of an identity that may answer that the routing policy prefers.
    fn pick_replica_agent(&mut self, id: TaskId, now: Timestamp) -> Option<AgentId> {
        let spec = self.tasks[&id].spec.clone();
        let ids = self.agents_by_capability.get(&spec.capability)?;
        let ballot = &self.ballots[&id];
        // Once per decision, not per candidate: it walks the capability's agents.
        let failed_may = ballot.failed_identities.is_empty() || !self.fresh_left(id);
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for &(agent_id, i) in ids {
            let agent = &self.agents[&agent_id];
            let name = agent.spec.name.as_str();
            let eligible = !ballot.asked(name) && (failed_may || !ballot.failed(name));
            if agent.accepting() && eligible {
                candidates.push(agent.candidate(agent_id, i, &self.knowledge));
            }
        }
        if candidates.is_empty() {
            return None;
        }
        let route = Route {
            capability: spec.capability.as_str(),
            payload_bytes: spec.payload.len(),
            features: spec.features.as_deref().unwrap_or_default(),
            now,
            retry_penalty_ms: spec.backoff.delay_ms(id, 1),
            queued: 0,
            waited_ms: 0,
            arrivals_per_ms: 0.0,
            learning: &self.config.learning,
        };
        // Only free agents are candidates: a holding policy has nothing to hold for.
        let chosen = self.policy.choose(&route, &candidates).unwrap_or(0);
        Some(candidates.get(chosen).unwrap_or(&candidates[0]).agent)
    }

    fn start_replica(&mut self, id: TaskId, agent: AgentId, now: Timestamp) {
        let task = self.tasks.get_mut(&id).expect("active task");
        let ballot = self.ballots.get_mut(&id).expect("a ballot");
        ballot.started += 1;
        let attempt = ballot.started;
        task.attempt = attempt;
        let lease_until = now.plus_ms(task.spec.timeout_ms);
        let entry = self.agents.get_mut(&agent).expect("agent");
        let identity: Arc<str> = entry.spec.name.as_str().into();
        ballot.runs.push(ReplicaRun {
            attempt,
            agent: Some(agent),
            identity: identity.clone(),
            started_at: now,
            lease_until,
            others_running: entry.running,
        });
        let queued_ms = ballot.queued.map_or(0, |(rank, _)| {
            now.ms_since(ready_at(rank, task.spec.priority, self.config.aging_ms))
        });
        entry.running += 1;
        if let Some((_, slot)) = entry.capability(&task.spec.capability) {
            let learning = &self.config.learning;
            self.knowledge.update(slot, |e| e.assign(now, learning));
        }
        self.timers
            .insert((lease_until, Timer::Lease { task: id, attempt }));
        self.changes.push(Change::AttemptStarted {
            spec: task.spec.clone(),
            attempt,
            agent,
            started_at: now,
            lease_until,
            queued_ms,
            inputs: inputs_of(&self.inputs, &task.spec),
            identity: Some(identity),
        });
    }

    /// Puts the task in its capability's ballot queue while it needs replicas, out otherwise.
    fn requeue_ballot(&mut self, id: TaskId, now: Timestamp) {
        let needs = self.replicas_needed(id) > 0;
        let spec = self.tasks[&id].spec.clone();
        let aging_ms = self.config.aging_ms;
        let ballot = self.ballots.get_mut(&id).expect("a ballot");
        match (needs, ballot.queued) {
            (true, None) => {
                let key = queue_key(now, spec.priority, aging_ms, id);
                ballot.queued = Some(key);
                self.ballot_queue
                    .entry(spec.capability.clone())
                    .or_default()
                    .insert(key);
                *self.queued.entry(spec.capability.clone()).or_default() += 1;
            }
            (false, Some(key)) => {
                ballot.queued = None;
                self.unqueue_ballot(&spec.capability, key);
            }
            _ => {}
        }
    }

    pub(super) fn unqueue_ballot(&mut self, capability: &Capability, key: QueueKey) {
        if let Some(queue) = self.ballot_queue.get_mut(capability) {
            queue.remove(&key);
            if queue.is_empty() {
                self.ballot_queue.remove(capability);
            }
        }
        super::count_queued(&mut self.queued, capability, true, false);
    }

    /// Gives a free agent a replica from the ballot queues when its identity may answer one and
    /// it ranks before the heads of the agent's ready queues (or `any_rank`: nothing ready is
    /// for the agent). Returns whether it did.
    pub(super) fn place_ballot_on(
        &mut self,
        agent: AgentId,
        any_rank: bool,
        now: Timestamp,
    ) -> bool {
        let entry = &self.agents[&agent];
        let mut best: Option<QueueKey> = None;
        let mut ready_head: Option<QueueKey> = None;
        for (capability, _) in &entry.spec.capabilities {
            if let Some(head) = self.queues.get(capability).and_then(|q| q.peek()) {
                ready_head = Some(ready_head.map_or(*head, |h| h.min(*head)));
            }
            let Some(queue) = self.ballot_queue.get(capability) else {
                continue;
            };
            // The first this identity may answer; those before it wait for other identities.
            let mut waiting = queue.iter().take(BALLOT_LOOKAHEAD);
            if let Some(key) = waiting.find(|(_, id)| self.may_answer(*id, agent)) {
                best = Some(best.map_or(*key, |b| b.min(*key)));
            }
        }
        match best {
            Some(key) if any_rank || ready_head.is_none_or(|head| key < head) => {
                self.start_replica(key.1, agent, now);
                // Asking this identity may have left only identities that failed before, and
                // those may answer now.
                self.ask_replicas(key.1, now);
                true
            }
            _ => false,
        }
    }

    /// An agent of the capability left or drains: identities whose replica failed may be what
    /// is left now, so the first waiting consensus tasks ask again.
    pub(super) fn reoffer_ballots(&mut self, capability: &Capability, now: Timestamp) {
        let waiting: Vec<TaskId> = match self.ballot_queue.get(capability) {
            Some(queue) => queue
                .iter()
                .take(BALLOT_LOOKAHEAD)
                .map(|(_, id)| *id)
                // Only those with an identity that failed: for the others nothing changed.
                .filter(|id| !self.ballots[id].failed_identities.is_empty())
                .collect(),
            None => return,
        };
        for id in waiting {
            self.ask_replicas(id, now);
        }
    }

    /// A result for a replica: fenced by attempt and agent like any attempt's.
    pub(super) fn report_replica(
        &mut self,
        agent: AgentId,
        task: TaskId,
        attempt: u32,
        report: Report,
        now: Timestamp,
    ) -> Result<(), ReportError> {
        let ballot = &self.ballots[&task];
        let live = ballot
            .runs
            .iter()
            .any(|r| r.attempt == attempt && r.agent == Some(agent));
        if !live {
            return Err(ReportError::StaleAttempt {
                task,
                attempt,
                current: ballot.started,
            });
        }
        if let Some(entry) = self.agents.get_mut(&agent) {
            entry.last_heartbeat = now;
        }
        match report {
            Report::Success { output } => {
                self.end_replica(task, attempt, Ok(output.into()), now);
            }
            Report::Failure { error, .. } | Report::Throttled { error, .. } => {
                self.end_replica(task, attempt, Err((AttemptOutcome::Failed, error)), now);
            }
            // A replica given back counts as failed: a ballot's budget is per replica, and
            // who may vote depends on who failed (docs/protocol.md, "Stopping a worker").
            Report::Released => {
                let error = "released by its agent (a replica counts as failed)".to_string();
                self.end_replica(task, attempt, Err((AttemptOutcome::Failed, error)), now);
            }
        }
        Ok(())
    }

    /// A replica's lease ran out: the attempt fails, and its agent is told to stop.
    pub(super) fn replica_lease_expired(&mut self, task: TaskId, attempt: u32, now: Timestamp) {
        let Some(run) = self.ballots[&task]
            .runs
            .iter()
            .find(|r| r.attempt == attempt)
            .cloned()
        else {
            return;
        };
        let timeout = self.tasks[&task].spec.timeout_ms;
        let error = format!("lease of {timeout} ms expired");
        self.end_replica(
            task,
            attempt,
            Err((AttemptOutcome::LeaseExpired, error)),
            now,
        );
        if let Some(agent) = run.agent {
            self.changes.push(Change::SendCancel {
                agent,
                task,
                attempt,
            });
        }
    }

    /// Ends a replica's attempt with its result (`Ok`) or a failure, counts its vote, and decides
    /// the task or asks for a replacement.
    fn end_replica(
        &mut self,
        id: TaskId,
        attempt: u32,
        result: Result<Arc<str>, (AttemptOutcome, String)>,
        now: Timestamp,
    ) {
        let spec = self.tasks[&id].spec.clone();
        let consensus = spec.consensus.as_deref().expect("a consensus task");
        let ballot = self.ballots.get_mut(&id).expect("a ballot");
        let i = ballot
            .runs
            .iter()
            .position(|r| r.attempt == attempt)
            .expect("a running replica");
        let run = ballot.runs.swap_remove(i);
        self.timers
            .remove(&(run.lease_until, Timer::Lease { task: id, attempt }));
        // A result that cannot vote (not JSON, nothing at the pointer) is a failed attempt.
        let (outcome, output, error, vote) = match result {
            Ok(output) => match vote_of(&output, consensus.vote.as_deref()) {
                Ok(value) => (AttemptOutcome::Succeeded, Some(output), None, Some(value)),
                Err(error) => (AttemptOutcome::Failed, Some(output), Some(error), None),
            },
            Err((outcome, error)) => (outcome, None, Some(error), None),
        };
        match (vote, &output) {
            (Some(value), Some(output)) => ballot.votes.push(Vote {
                identity: run.identity.clone(),
                value,
                output: output.clone(),
            }),
            _ => {
                ballot.failed += 1;
                ballot.last_error.clone_from(&error);
                if !ballot.failed_identities.contains(&run.identity) {
                    ballot.failed_identities.push(run.identity.clone());
                }
            }
        }
        let ended = AttemptEnd {
            agent: run.agent,
            spec: &spec,
            outcome,
            started_at: run.started_at,
            others_running: run.others_running,
            now,
        };
        ended.count(
            &mut self.agents,
            &mut self.knowledge,
            &self.config.learning,
            &mut self.policy,
        );
        self.changes.push(Change::AttemptEnded {
            task: id,
            capability: spec.capability.clone(),
            attempt,
            agent: run.agent,
            created_at: spec.created_at,
            started_at: run.started_at,
            ended_at: now,
            outcome,
            output,
            error,
            next: NextStatus::Voting,
        });
        self.tally(id, now);
        if let Some(agent) = run.agent {
            self.fill_agent(agent, now);
        }
    }

    /// Decides the task if its votes allow, or asks for the replicas it still needs.
    pub(super) fn tally(&mut self, id: TaskId, now: Timestamp) {
        let spec = &self.tasks[&id].spec;
        let consensus = spec.consensus.as_deref().expect("a consensus task");
        let ballot = &self.ballots[&id];
        if let Some((value, count)) = ballot.leader()
            && count >= usize::from(consensus.quorum)
        {
            // The result is what the first agreeing agent returned (its text as it came), or
            // the value voted on.
            let result = match consensus.vote {
                Some(_) => Arc::from(value),
                None => {
                    let first = ballot.votes.iter().find(|v| v.value == value);
                    first.expect("a vote for it").output.clone()
                }
            };
            let value = value.to_string();
            self.decide(id, Verdict::Agreed { value, result }, now);
        } else if !ballot.can_agree(consensus, spec.max_attempts) {
            let error = no_agreement(ballot, consensus);
            self.decide(id, Verdict::Impossible(error), now);
        } else {
            self.ask_replicas(id, now);
        }
    }

    /// Ends the task: cancels the replicas still running, takes it out of its queue, judges the
    /// voters, and settles it.
    pub(super) fn decide(&mut self, id: TaskId, verdict: Verdict, now: Timestamp) {
        let spec = self.tasks[&id].spec.clone();
        let ballot = self.ballots.remove(&id).expect("a ballot");
        if let Some(key) = ballot.queued {
            self.unqueue_ballot(&spec.capability, key);
        }
        let mut freed = Vec::new();
        for run in &ballot.runs {
            self.timers.remove(&(
                run.lease_until,
                Timer::Lease {
                    task: id,
                    attempt: run.attempt,
                },
            ));
            let ended = AttemptEnd {
                agent: run.agent,
                spec: &spec,
                outcome: AttemptOutcome::Cancelled,
                started_at: run.started_at,
                others_running: run.others_running,
                now,
            };
            ended.count(
                &mut self.agents,
                &mut self.knowledge,
                &self.config.learning,
                &mut self.policy,
            );
            self.changes.push(Change::AttemptEnded {
                task: id,
                capability: spec.capability.clone(),
                attempt: run.attempt,
                agent: run.agent,
                created_at: spec.created_at,
                started_at: run.started_at,
                ended_at: now,
                outcome: AttemptOutcome::Cancelled,
                output: None,
                error: Some("cancelled: the task was decided".into()),
                next: NextStatus::Voting,
            });
            if let Some(agent) = run.agent {
                self.changes.push(Change::SendCancel {
                    agent,
                    task: id,
                    attempt: run.attempt,
                });
                freed.push(agent);
            }
        }
        let (status, error, result) = match verdict {
            Verdict::Agreed { value, result } => {
                for vote in ballot.votes.iter().filter(|v| v.value != value) {
                    let slot = self.knowledge.slot(&vote.identity, &spec.capability);
                    let learning = &self.config.learning;
                    self.knowledge.update(slot, |e| e.overrule(now, learning));
                }
                (TaskStatus::Succeeded, None, Some(result))
            }
            Verdict::Impossible(error) => (TaskStatus::Failed, Some(error), None),
            Verdict::Cancelled => (TaskStatus::Cancelled, Some("cancelled".to_string()), None),
        };
        let end = match &result {
            Some(value) => TaskEnd::Succeeded(value.clone()),
            None => TaskEnd::Unsuccessful {
                status,
                error: error.as_deref().unwrap_or(status.as_str()).into(),
            },
        };
        self.changes.push(Change::TaskFinished {
            task: id,
            capability: spec.capability.clone(),
            status,
            error,
            result,
            at: now,
        });
        self.settle(id, end, now);
        for agent in freed {
            self.fill_agent(agent, now);
        }
    }
}

/// Why a consensus task failed: no value can reach the quorum any more.
fn no_agreement(ballot: &Ballot, consensus: &ConsensusSpec) -> String {
    let leading = ballot.leader().map_or(0, |(_, n)| n);
    let mut message = format!(
        "no agreement: {} of {} results needed to agree; {} results came in, at most {leading} \
         alike, and {} attempts failed",
        consensus.quorum,
        consensus.replicas,
        ballot.votes.len(),
        ballot.failed
    );
    if let Some(error) = &ballot.last_error {
        message.push_str(&format!(" (the last: {error})"));
    }
    message
}
