//! Agents that come back holding work: a worker reconnecting after a dropped connection or a hub
//! restart names the attempts it still runs, and those that are still current are bound to it
//! again instead of waiting out their leases.
//!
//! Fencing stays exact: an attempt is re-bound only if it is the task's current attempt and no
//! other live agent runs it. The lease is not renewed: it is the attempt's time budget, counted
//! from when it started. What cannot be re-bound gets a `cancel`, so the worker stops it.

use std::sync::Arc;

use super::{Change, Phase, Scheduler};
use crate::agent::AgentSpec;
use crate::ids::{AgentId, TaskId};
use crate::routing::RoutingPolicy;
use crate::time::Timestamp;

/// An attempt a reconnecting agent says it still runs (or has finished and not yet reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAttempt {
    pub task: TaskId,
    pub attempt: u32,
}

/// What became of the attempts an agent named when it registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejoined {
    /// Bound to the agent again: its results for them count.
    pub kept: Vec<HeldAttempt>,
    /// Not current, held elsewhere or over the agent's slots: a `cancel` was sent for each.
    pub refused: Vec<HeldAttempt>,
}

impl<P: RoutingPolicy> Scheduler<P> {
    /// Registers an agent that already runs `held` attempts, binds those still current to it, and
    /// then offers it work for its free slots.
    ///
    /// `draining`: the agent was draining before (a rebuild after a failed commit): it stays so,
    /// and is offered nothing.
    ///
    /// An attempt is kept when it is the task's current running attempt, of a capability the agent
    /// has, and its agent is unknown
    /// (recovered after a restart), offline, or another connection of the same name (a
    /// connection the hub has not yet seen drop). At most `slots` attempts are kept.
    pub fn rejoin_agent(
        &mut self,
        id: AgentId,
        spec: impl Into<Arc<AgentSpec>>,
        held: &[HeldAttempt],
        draining: bool,
        now: Timestamp,
    ) -> Rejoined {
        let spec = spec.into();
        let name = spec.name.clone();
        let slots = spec.slots;
        self.add_agent(id, spec, now);
        // Taking no work while its claims are bound: a holder's freed slot is offered around
        // (with a holding policy, to any agent), and must not fill this one's slots before its
        // own attempts are back.
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.draining = true;
        }
        let mut holders = Vec::new();
        let mut rejoined = Rejoined::default();
        for &claim in held {
            if self.agents[&id].running < slots && self.reattach(id, &name, claim, &mut holders) {
                rejoined.kept.push(claim);
            } else {
                self.changes.push(Change::SendCancel {
                    agent: id,
                    task: claim.task,
                    attempt: claim.attempt,
                });
                rejoined.refused.push(claim);
            }
        }
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.draining = draining;
        }
        self.emit_agent(id);
        for holder in holders {
            // Its slot is back (fill_agent skips an offline one).
            self.fill_agent(holder, now);
        }
        self.fill_agent(id, now);
        rejoined
    }

    /// Running attempts and the agents that run them, for rebuilding the scheduler elsewhere.
    pub fn running_attempts(&self) -> Vec<(AgentId, HeldAttempt)> {
        let replicas = self.ballots.iter().flat_map(|(task, ballot)| {
            ballot.runs.iter().filter_map(|run| {
                let held = HeldAttempt {
                    task: *task,
                    attempt: run.attempt,
                };
                Some((run.agent?, held))
            })
        });
        self.tasks
            .values()
            .filter_map(|task| match task.phase {
                Phase::Running {
                    agent: Some(agent), ..
                } => Some((
                    agent,
                    HeldAttempt {
                        task: task.spec.id,
                        attempt: task.attempt,
                    },
                )),
                _ => None,
            })
            .chain(replicas)
            .collect()
    }

    /// The agent that held an attempt now bound to another gives up its slot; if it is still
    /// connected (a connection of the same name the hub has not yet seen drop) it is told to
    /// stop, or the attempt would run twice at once.
    pub(super) fn unbind(
        &mut self,
        holder: AgentId,
        claim: HeldAttempt,
        holders: &mut Vec<AgentId>,
    ) {
        if let Some(entry) = self.agents.get_mut(&holder) {
            entry.running -= 1;
            if entry.connected {
                self.changes.push(Change::SendCancel {
                    agent: holder,
                    task: claim.task,
                    attempt: claim.attempt,
                });
            }
            holders.push(holder);
        }
    }

    fn reattach(
        &mut self,
        id: AgentId,
        name: &str,
        claim: HeldAttempt,
        holders: &mut Vec<AgentId>,
    ) -> bool {
        let Some(task) = self.tasks.get(&claim.task) else {
            return false;
        };
        if task.phase == Phase::Voting {
            return self.reattach_replica(id, name, claim, holders);
        }
        let Phase::Running {
            started_at,
            lease_until,
            agent: holder,
            others_running,
        } = task.phase
        else {
            return false;
        };
        // Only work it could have been given: a claim outside its capabilities is someone
        // else's attempt (and an agent token limited to capabilities must not reach past them).
        let capable = self.agents[&id].capability(&task.spec.capability).is_some();
        if task.attempt != claim.attempt || !capable {
            return false;
        }
        if let Some(holder) = holder {
            let free = match self.agents.get(&holder) {
                None => true,
                Some(entry) => holder != id && (!entry.connected || entry.spec.name == name),
            };
            if !free {
                return false;
            }
            self.unbind(holder, claim, holders);
        }
        let task = self.tasks.get_mut(&claim.task).expect("checked above");
        task.phase = Phase::Running {
            started_at,
            lease_until,
            agent: Some(id),
            others_running,
        };
        self.rebound(id, claim);
        true
    }

    /// The agent `id` holds the claimed attempt now: a slot of its, and the store is told.
    fn rebound(&mut self, id: AgentId, claim: HeldAttempt) {
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.running += 1;
        }
        self.changes.push(Change::AttemptReattached {
            task: claim.task,
            attempt: claim.attempt,
            agent: id,
        });
    }

    /// Binds a replica's attempt to the reconnecting agent `id` named `name` (see
    /// `rejoin_agent`): only an attempt still running, of the same identity (a replica belongs to
    /// the identity that was asked), whose agent is unknown, offline or another connection of
    /// that name.
    pub(super) fn reattach_replica(
        &mut self,
        id: AgentId,
        name: &str,
        claim: HeldAttempt,
        holders: &mut Vec<AgentId>,
    ) -> bool {
        let Some(run) = self.ballots[&claim.task]
            .runs
            .iter()
            .find(|r| r.attempt == claim.attempt)
        else {
            return false;
        };
        // Only work it could have been given (as in `reattach`), by the identity that was asked.
        let capable = self.agents[&id]
            .capability(&self.tasks[&claim.task].spec.capability)
            .is_some();
        if &*run.identity != name || !capable {
            return false;
        }
        if let Some(holder) = run.agent {
            // Its holder was of this identity too: gone, offline, or a connection the hub has
            // not yet seen drop.
            if holder == id {
                return false;
            }
            self.unbind(holder, claim, holders);
        }
        let ballot = self.ballots.get_mut(&claim.task).expect("checked above");
        let run = ballot
            .runs
            .iter_mut()
            .find(|r| r.attempt == claim.attempt)
            .expect("checked above");
        run.agent = Some(id);
        self.rebound(id, claim);
        true
    }
}
