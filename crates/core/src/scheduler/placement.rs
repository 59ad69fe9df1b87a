//! Placement: which agent runs a ready task, and when a queued task leaves its queue.
//!
//! A ready task goes to the agent the [`RoutingPolicy`] picks among those with a free slot, or
//! joins its capability's ready queue; a freed slot takes the head of its agent's queues.
//!
//! A policy that weighs busy agents too (the learned one) may also *hold* a task: leave it queued
//! while an agent is free, because a busy one is expected to finish it sooner (a flaky or slow
//! agent is free exactly because it is not worth using). So the invariant of a plain job queue
//! ("a task queues only while no agent of its capability has a free slot") holds only for the
//! other policies; for a holding one it reads "a task queues while an agent has a free slot only
//! if another agent of its capability is busy", the one the task is held for. The queue's head is
//! offered again whenever that could change the answer: a task queued behind it (the queue
//! grew), a slot freed, a busy agent leaving or draining, and at the latest when the hold's limit
//! passes ([`RoutingPolicy::hold_limit_ms`], a [`Timer::Reoffer`]): time alone makes waiting
//! dearer, and the busy agent may be stuck on a long attempt.

use super::{AgentEntry, Phase, Scheduler, Timer, count_queued};
use crate::ids::{AgentId, TaskId};
use crate::queue::{queue_key, ready_at};
use crate::routing::{Candidate, Route, RoutingPolicy};
use crate::task::Capability;
use crate::time::Timestamp;

/// Time constant of the arrival rate a holding policy weighs: a second, so that a burst shows
/// within it and an overload is seen before the queue it builds.
const ARRIVALS_MS: u64 = 1_000;

impl<P: RoutingPolicy> Scheduler<P> {
    /// A task may run now: give it to an agent or queue it.
    pub(super) fn make_ready(&mut self, id: TaskId, now: Timestamp) {
        if self.tasks[&id].spec.consensus.is_some() {
            self.ask_replicas(id, now);
            return;
        }
        let capability = self.tasks[&id].spec.capability.clone();
        if self.policy.weighs_busy_agents() {
            self.arrivals
                .entry(capability.clone())
                .or_default()
                .add(now, ARRIVALS_MS);
        }
        // Tasks queue for a capability only while none of its agents will take them (no free
        // slot, or held): a new task goes behind them, and the (O(agents)) search is skipped.
        let saturated = self.queues.get(&capability).is_some_and(|q| !q.is_empty());
        let agent = if saturated {
            None
        } else {
            self.pick_agent(&capability, id, now)
        };
        match agent {
            Some(agent) => self.start_attempt(id, agent, now),
            None => {
                let task = self.tasks.get_mut(&id).expect("active task");
                let key = queue_key(now, task.spec.priority, self.config.aging_ms, id);
                count_queued(&mut self.queued, &capability, task.phase.queued(), true);
                task.phase = Phase::Ready { rank: key.0 };
                self.queues.entry(capability.clone()).or_default().push(key);
                if saturated && self.policy.weighs_busy_agents() {
                    // A longer queue may make a held head worth a free agent now.
                    self.offer_queued(&capability, now);
                }
            }
        }
    }

    /// The agent to run `task` now, or `None`: no free agent, or the policy holds the task.
    fn pick_agent(
        &mut self,
        capability: &Capability,
        task: TaskId,
        now: Timestamp,
    ) -> Option<AgentId> {
        let ids = self.agents_by_capability.get(capability)?;
        // Nothing to decide without a free agent (a saturated capability): skip the candidates.
        if !ids.iter().any(|(id, _)| self.agents[id].accepting()) {
            return None;
        }
        let busy_too = self.policy.weighs_busy_agents();
        let mut candidates: Vec<Candidate<'_>> = Vec::with_capacity(ids.len());
        for &(id, i) in ids {
            let agent = &self.agents[&id];
            let free = agent.accepting();
            let busy = busy_too && agent.connected && !agent.draining;
            if free || busy {
                candidates.push(agent.candidate(id, i, &self.knowledge));
            }
        }
        let routed = &self.tasks[&task];
        // A queued task is in the queue itself: count only the others.
        let waited_ms = match routed.phase {
            Phase::Ready { rank } => {
                Some(now.ms_since(ready_at(rank, routed.spec.priority, self.config.aging_ms)))
            }
            _ => None,
        };
        let queued =
            self.queues.get(capability).map_or(0, |q| q.len()) - usize::from(waited_ms.is_some());
        let route = Route {
            capability: capability.as_str(),
            payload_bytes: routed.spec.payload.len(),
            features: routed.spec.features.as_deref().unwrap_or_default(),
            now,
            retry_penalty_ms: routed.spec.backoff.delay_ms(task, 1),
            queued,
            waited_ms: waited_ms.unwrap_or(0),
            arrivals_per_ms: self
                .arrivals
                .get(capability)
                .map_or(0.0, |r| r.per_ms(now, ARRIVALS_MS)),
            learning: &self.config.learning,
        };
        let agent = match self.policy.choose(&route, &candidates) {
            Some(i) if candidates.get(i).is_some_and(Candidate::free) => Some(candidates[i].agent),
            // Held for a busy agent; without one (a policy breaking its contract) nothing would
            // ever take the task, so the first free agent does.
            None if candidates.iter().any(|c| !c.free()) => None,
            _ => candidates.iter().find(|c| c.free()).map(|c| c.agent),
        };
        if agent.is_none() && self.reoffers.insert(task) {
            let due = now.plus_ms(self.policy.hold_limit_ms().max(1));
            self.timers.insert((due, Timer::Reoffer(task)));
        }
        agent
    }

    /// A held task's [`Timer::Reoffer`] fired: its queue is offered again.
    pub(super) fn reoffer(&mut self, task: TaskId, now: Timestamp) {
        self.reoffers.remove(&task);
        if let Some(t) = self.tasks.get(&task)
            && matches!(t.phase, Phase::Ready { .. })
        {
            let capability = t.spec.capability.clone();
            self.offer_queued(&capability, now);
        }
    }

    /// Gives a free agent the most urgent queued tasks it can run, until its slots are full. With
    /// a holding policy, each queue's head goes where the policy says, perhaps to another free
    /// agent, and a held head leaves the next capability's head to try.
    pub(super) fn fill_agent(&mut self, id: AgentId, now: Timestamp) {
        while self.agents.get(&id).is_some_and(AgentEntry::accepting) {
            if !self.ballot_queue.is_empty() && self.place_ballot_on(id, false, now) {
                continue;
            }
            let heads = self.agents[&id]
                .spec
                .capabilities
                .iter()
                .filter_map(|(capability, _)| {
                    let head = self.queues.get(capability)?.peek()?;
                    Some((*head, capability))
                });
            let placed = if self.policy.weighs_busy_agents() {
                let mut heads: Vec<_> = heads.map(|(key, c)| (key, c.clone())).collect();
                heads.sort_unstable_by_key(|(key, _)| *key);
                heads.into_iter().find_map(|(key, capability)| {
                    let agent = self.pick_agent(&capability, key.1, now)?;
                    Some((key, capability, agent))
                })
            } else {
                heads
                    .min_by_key(|(key, _)| *key)
                    .map(|(key, capability)| (key, capability.clone(), id))
            };
            let Some((key, capability, agent)) = placed else {
                // Nothing ready for it (or all held for busy agents): a replica may still be.
                if !self.ballot_queue.is_empty() && self.place_ballot_on(id, true, now) {
                    continue;
                }
                return;
            };
            self.queues
                .get_mut(&capability)
                .expect("non-empty queue")
                .pop();
            self.start_attempt(key.1, agent, now);
        }
    }

    /// A busy agent a task may be held for is leaving or draining: its capabilities' queues are
    /// offered again (at the latest moment seen: leaving and draining carry no time).
    ///
    /// Consensus tasks waiting for an agent are offered again too: the agent leaving may leave
    /// only identities whose replica failed, which may then answer.
    pub(super) fn release_holds_of(&mut self, agent: AgentId) {
        let holds = self.policy.weighs_busy_agents();
        if !holds && self.ballot_queue.is_empty() {
            return;
        }
        for capability in &self.capabilities_of(agent) {
            if holds {
                self.offer_queued(capability, self.now);
            }
            self.reoffer_ballots(capability, self.now);
        }
    }

    /// Offers the capability's queue, head first, to whichever agents the policy picks, until it
    /// holds the head or no agent is free.
    pub(super) fn offer_queued(&mut self, capability: &Capability, now: Timestamp) {
        while let Some(key) = self.queues.get(capability).and_then(|q| q.peek()).copied() {
            let Some(agent) = self.pick_agent(capability, key.1, now) else {
                return;
            };
            self.queues
                .get_mut(capability)
                .expect("non-empty queue")
                .pop();
            self.start_attempt(key.1, agent, now);
        }
    }
}
