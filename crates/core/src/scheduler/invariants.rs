//! The scheduler's internal consistency, checked by the tests after every step (the property
//! tests after each random event): what every task's phase implies (queue entries, timers,
//! waiting counts, ballots), the agents' slot counts, the queued counts, the payload bytes, and
//! that nothing is kept per capability name that neither queues tasks nor has an agent.

use super::consensus::BALLOT_LOOKAHEAD;
use super::{Phase, Scheduler, Timer};
use crate::ids::{AgentId, TaskId};
use crate::routing::RoutingPolicy;

impl<P: RoutingPolicy> Scheduler<P> {
    /// Checks the scheduler's internal consistency; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut running_per_agent = std::collections::HashMap::new();
        let mut keyed = 0;
        for (id, task) in &self.tasks {
            match task.phase {
                Phase::Running {
                    agent, lease_until, ..
                } => {
                    if let Some(agent) = agent {
                        *running_per_agent.entry(agent).or_insert(0u32) += 1;
                    }
                    let attempt = task.attempt;
                    let timer = (lease_until, Timer::Lease { task: *id, attempt });
                    if !self.timers.contains(&timer) {
                        return Err(format!("running task {id} has no lease timer"));
                    }
                }
                Phase::Ready { rank } => {
                    keyed += 1;
                    let queue = self.queues.get(&task.spec.capability);
                    if !queue.is_some_and(|q| q.contains(&(rank, *id))) {
                        return Err(format!("queued task {id} is not in its queue"));
                    }
                }
                Phase::Backoff { until } => {
                    if !self.timers.contains(&(until, Timer::Backoff(*id))) {
                        return Err(format!("backing-off task {id} has no timer"));
                    }
                }
                Phase::Waiting => {
                    if self.pending_deps.get(id).copied().unwrap_or(0) == 0 {
                        return Err(format!("waiting task {id} waits for nothing"));
                    }
                }
                Phase::Voting => {
                    self.check_ballot(*id, &mut running_per_agent)?;
                }
            }
        }
        let voting = self.tasks.values().filter(|t| t.phase == Phase::Voting);
        if voting.count() != self.ballots.len() {
            return Err(format!("{} ballots for other tasks", self.ballots.len()));
        }
        if let Some(id) = self.inputs.keys().find(|id| !self.tasks.contains_key(id)) {
            return Err(format!("inputs kept for task {id}, which is not active"));
        }
        let bytes: usize = self
            .tasks
            .values()
            .map(|t| t.spec.payload.len())
            .sum::<usize>()
            + self
                .inputs
                .values()
                .flatten()
                .map(|(_, e)| e.text_len())
                .sum::<usize>();
        if bytes != self.payload_bytes {
            return Err(format!(
                "{} payload bytes counted, {bytes} held",
                self.payload_bytes
            ));
        }
        let mut queued_by_capability: std::collections::HashMap<&crate::task::Capability, usize> =
            std::collections::HashMap::new();
        for task in self.tasks.values() {
            let ballot_queued =
                task.phase == Phase::Voting && self.ballots[&task.spec.id].queued.is_some();
            if task.phase.queued() || ballot_queued {
                *queued_by_capability
                    .entry(&task.spec.capability)
                    .or_default() += 1;
            }
        }
        if queued_by_capability.len() != self.queued.len()
            || queued_by_capability
                .iter()
                .any(|(c, n)| self.queued.get(*c) != Some(n))
        {
            return Err(format!(
                "queued counts {:?} but tasks say {queued_by_capability:?}",
                self.queued
            ));
        }
        let queued: usize = self.queues.values().map(|q| q.len()).sum();
        if queued != keyed {
            return Err(format!("{queued} queue entries for {keyed} ready tasks"));
        }
        // What is kept per capability name goes once nothing waits for it and no agent serves
        // it (`forget_if_unused`).
        let named = self.queues.keys().chain(self.agents_by_capability.keys());
        for capability in named.chain(self.arrivals.keys()) {
            let waits = self.queues.get(capability).is_some_and(|q| !q.is_empty());
            let served = self
                .agents_by_capability
                .get(capability)
                .is_some_and(|agents| !agents.is_empty());
            if !waits && !served {
                return Err(format!(
                    "{capability} is kept with nothing queued and no agent"
                ));
            }
        }
        for (id, agent) in &self.agents {
            let running = running_per_agent.get(id).copied().unwrap_or(0);
            if running != agent.running {
                return Err(format!(
                    "agent {id} counts {} running, has {running}",
                    agent.running
                ));
            }
            if agent.running > agent.spec.slots {
                return Err(format!(
                    "agent {id} runs {} in {} slots",
                    agent.running, agent.spec.slots
                ));
            }
            if agent.accepting() {
                for (capability, _) in &agent.spec.capabilities {
                    let queued = self.queues.get(capability).is_some_and(|q| !q.is_empty());
                    // A holding policy may keep tasks queued for a busy agent (placement.rs).
                    let held_for_busy = self.policy.weighs_busy_agents()
                        && self.agents_by_capability[capability].iter().any(|(a, _)| {
                            let other = &self.agents[a];
                            other.connected && !other.draining && !other.accepting()
                        });
                    if queued && !held_for_busy {
                        return Err(format!("agent {id} is free while {capability} tasks queue"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one consensus task's ballot (for `check_invariants`): its runs hold slots and
    /// leases, it is queued exactly while it needs replicas, and then no free agent could take
    /// one.
    pub(super) fn check_ballot(
        &self,
        id: TaskId,
        running_per_agent: &mut std::collections::HashMap<AgentId, u32>,
    ) -> Result<(), String> {
        let ballot = self
            .ballots
            .get(&id)
            .ok_or_else(|| format!("voting task {id} has no ballot"))?;
        for run in &ballot.runs {
            if let Some(agent) = run.agent {
                *running_per_agent.entry(agent).or_insert(0) += 1;
            }
            let timer = (
                run.lease_until,
                Timer::Lease {
                    task: id,
                    attempt: run.attempt,
                },
            );
            if !self.timers.contains(&timer) {
                return Err(format!(
                    "replica {} of {id} has no lease timer",
                    run.attempt
                ));
            }
        }
        let spec = &self.tasks[&id].spec;
        let needs = self.replicas_needed(id) > 0;
        let in_queue = ballot.queued.is_some_and(|key| {
            self.ballot_queue
                .get(&spec.capability)
                .is_some_and(|q| q.contains(&key))
        });
        if needs != in_queue {
            return Err(format!(
                "task {id} needs replicas: {needs}, queued: {in_queue}"
            ));
        }
        let position = ballot.queued.and_then(|key| {
            let queue = self.ballot_queue.get(&spec.capability)?;
            queue.iter().position(|k| *k == key)
        });
        // Beyond the lookahead a free agent does not look (see the module's header).
        if needs && position.is_some_and(|p| p < BALLOT_LOOKAHEAD) {
            for (agent, _) in self
                .agents_by_capability
                .get(&spec.capability)
                .into_iter()
                .flatten()
            {
                if self.agents[agent].accepting() && self.may_answer(id, *agent) {
                    return Err(format!(
                        "agent {agent} is free while task {id} needs replicas"
                    ));
                }
            }
        }
        Ok(())
    }
}
