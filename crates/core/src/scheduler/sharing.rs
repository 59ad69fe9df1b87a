//! Sharing queued work with other hubs (several hubs on one database, docs/scaling.md).
//!
//! A hub keeps in memory the tasks it can start soon and hands the rest to a shared pool, from
//! which every hub claims in proportion to its free slots. This module decides both sides from
//! the scheduler's state alone: how many more ready tasks each capability could start here
//! ([`Scheduler::spare_slots`]), which queued tasks to let go ([`Scheduler::release_excess`]),
//! and a task whose parent another hub holds ([`Scheduler::park`]).
//! Claimed tasks come back in through [`Scheduler::restore`], as after a restart. The store and
//! the notifications between hubs are the runtime's business.

use super::{Change, Phase, Scheduler, count_queued};
use crate::ids::TaskId;
use crate::routing::RoutingPolicy;
use crate::task::{Capability, TaskSpec, TaskStatus};

/// Ready tasks a capability could start at once here: its agents' free slots beyond what its
/// ready queue already holds.
pub type SpareSlots = Vec<(Capability, u32)>;

/// What [`Scheduler::release_excess`] let go of.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Ready tasks handed to the pool.
    pub tasks: usize,
    /// Waiting tasks parked because a parent of theirs was released (in the order parked).
    pub parked: Vec<TaskId>,
}

impl<P: RoutingPolicy> Scheduler<P> {
    /// Per capability with a connected agent: free slots of its agents that accept work, less the
    /// tasks already queued for them; only capabilities with room. An agent serving several
    /// capabilities counts for each (a claim may then bring a few more tasks than start at once;
    /// they wait here, and are released again if they wait too long).
    pub fn spare_slots(&self) -> SpareSlots {
        let mut spare: SpareSlots = self
            .agents_by_capability
            .iter()
            .filter_map(|(capability, agents)| {
                let free: u32 = agents
                    .iter()
                    .map(|(id, _)| &self.agents[id])
                    .filter(|a| a.accepting())
                    .map(|a| a.spec.slots - a.running)
                    .sum();
                let queued = self.queues.get(capability).map_or(0, |q| q.len());
                let room = (free as usize).saturating_sub(queued);
                (room > 0).then(|| (capability.clone(), room as u32))
            })
            .collect();
        spare.sort();
        spare
    }

    /// Accepts a task that depends on one held by another hub (the caller found out): created
    /// `waiting` and parked ([`Change::TaskParked`]), not kept in memory. The hub that takes it
    /// over once its parents ended restores it, which decides it then (ready, or failed by a
    /// parent) as after a restart.
    pub fn park(&mut self, spec: TaskSpec) -> TaskStatus {
        let parents = super::distinct(&spec.depends_on);
        let task = spec.id;
        self.changes.push(Change::TaskCreated {
            spec: std::sync::Arc::new(spec),
            status: TaskStatus::Waiting,
            error: None,
        });
        self.changes.push(Change::TaskParked { task, parents });
        TaskStatus::Waiting
    }

    /// Lets go of ready tasks beyond what this hub's agents could take in one more round: per
    /// capability, the queue keeps as many tasks as its connected, undrained agents have slots
    /// (none when no agent here serves it), and the rest (those that would run last) leave
    /// memory as [`Change::TaskReleased`]. A task that waiting tasks here depend on stays while
    /// an agent here serves its capability: they learn of its end only from this scheduler.
    /// With none (or all of them draining) it goes too, or the graph would wait here for ever;
    /// the tasks waiting on it here, and on them, are parked ([`Change::TaskParked`]), to be
    /// taken over by a hub once their parents ended, as a child submitted behind a parent
    /// another hub holds is. A consensus task waiting for replicas goes the same way when no
    /// agent here serves its capability and none of its replicas ever started (a started one's
    /// votes and leases live in this hub's memory): the hub that claims it asks for all of them.
    pub fn release_excess(&mut self) -> Released {
        let mut released = Released::default();
        let capabilities: Vec<Capability> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(c, _)| c.clone())
            .collect();
        for capability in capabilities {
            let keep = self.slots_here(&capability);
            let queue = &self.queues[&capability];
            if queue.len() <= keep {
                continue;
            }
            let excess = queue.len() - keep;
            let whole_graphs = keep == 0;
            let chosen: Vec<_> = queue
                .iter_last_first()
                .filter(|(_, id)| whole_graphs || !self.dependents.contains_key(id))
                .take(excess)
                .copied()
                .collect();
            for key in chosen {
                self.queues
                    .get_mut(&capability)
                    .expect("queue of a capability")
                    .remove(&key);
                count_queued(&mut self.queued, &capability, true, false);
                debug_assert!(matches!(self.tasks[&key.1].phase, Phase::Ready { .. }));
                self.release(key, &capability, &mut released);
            }
            self.forget_if_unused(&capability);
        }
        let ballots: Vec<Capability> = self
            .ballot_queue
            .keys()
            .filter(|capability| self.slots_here(capability) == 0)
            .cloned()
            .collect();
        for capability in ballots {
            let unstarted: Vec<_> = self.ballot_queue[&capability]
                .iter()
                .filter(|(_, id)| self.ballots[id].started == 0)
                .copied()
                .collect();
            for key in unstarted {
                self.unqueue_ballot(&capability, key);
                self.ballots.remove(&key.1);
                self.release(key, &capability, &mut released);
            }
            self.forget_if_unused(&capability);
        }
        released
    }

    /// Slots of the connected, undrained agents here that serve `capability`.
    fn slots_here(&self, capability: &Capability) -> usize {
        self.agents_by_capability
            .get(capability)
            .map_or(0, |agents| {
                agents
                    .iter()
                    .map(|(id, _)| &self.agents[id])
                    .filter(|a| a.connected && !a.draining)
                    .map(|a| a.spec.slots as usize)
                    .sum()
            })
    }

    /// Hands a task taken out of its queue (`key`: its place there) to the pool, and parks what
    /// waits on it here.
    fn release(
        &mut self,
        key: crate::queue::QueueKey,
        capability: &Capability,
        released: &mut Released,
    ) {
        let id = key.1;
        let task = self.forget_unstarted(id);
        self.changes.push(Change::TaskReleased {
            task: id,
            capability: capability.clone(),
            priority: task.spec.priority,
            created_at: task.spec.created_at,
            rank: key.0,
        });
        released.tasks += 1;
        self.park_waiting_on(id, &mut released.parked);
    }

    /// Takes an active task that runs nowhere out of memory, with its payload's and its
    /// inputs' bytes; its queue entries, dependents and ballot are the caller's.
    fn forget_unstarted(&mut self, id: TaskId) -> Box<super::ActiveTask> {
        let task = self.tasks.remove(&id).expect("an active task");
        self.payload_bytes -= task.spec.payload.len();
        if let Some(inputs) = self.inputs.remove(&id) {
            self.payload_bytes -= inputs.iter().map(|(_, e)| e.text_len()).sum::<usize>();
        }
        task
    }

    /// Parks the tasks waiting here on `parent` (which left this hub's memory), and those
    /// waiting on them, down the graph: each leaves memory, and every parent it had here
    /// forgets it. The inputs kept for them are read from the store by the hub that takes them
    /// over.
    fn park_waiting_on(&mut self, parent: TaskId, parked: &mut Vec<TaskId>) {
        let mut children = self.dependents.remove(&parent).unwrap_or_default();
        while let Some(child) = children.pop() {
            // A child of two released parents is parked once.
            if !self
                .tasks
                .get(&child)
                .is_some_and(|t| matches!(t.phase, Phase::Waiting))
            {
                continue;
            }
            let task = self.forget_unstarted(child);
            self.pending_deps.remove(&child);
            let parents = super::distinct(&task.spec.depends_on);
            for other in &parents {
                if let Some(siblings) = self.dependents.get_mut(other) {
                    siblings.retain(|c| *c != child);
                    if siblings.is_empty() {
                        self.dependents.remove(other);
                    }
                }
            }
            children.extend(self.dependents.remove(&child).unwrap_or_default());
            self.changes.push(Change::TaskParked {
                task: child,
                parents,
            });
            parked.push(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LeastLoaded;
    use crate::scheduler::tests::{agent_id, agent_spec, none, task_id};
    use crate::scheduler::{RecoveredTask, SchedulerConfig};
    use crate::task::tests::spec;
    use crate::time::Timestamp;

    fn scheduler() -> Scheduler<LeastLoaded> {
        Scheduler::new(SchedulerConfig::default(), LeastLoaded)
    }

    fn task(n: u128, priority: u8) -> TaskSpec {
        let mut spec = spec(n, "echo");
        spec.priority = priority;
        spec
    }

    fn cap() -> Capability {
        Capability::parse("echo", "capability").unwrap()
    }

    fn released(changes: &[Change]) -> Vec<crate::ids::TaskId> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::TaskReleased { task, .. } => Some(*task),
                _ => None,
            })
            .collect()
    }

    fn check(s: &Scheduler<LeastLoaded>) {
        s.check_invariants().expect("invariants hold");
    }

    #[test]
    fn without_an_agent_every_ready_task_is_released_and_memory_forgets_it() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        for n in 1..=3 {
            s.submit(task(n, 0), now, &mut none).unwrap();
        }
        s.take_changes();
        assert_eq!(s.release_excess().tasks, 3);
        assert_eq!(released(&s.take_changes()).len(), 3);
        assert_eq!(s.memory().active_tasks, 0);
        assert!(s.queue_depths().is_empty());
        assert_eq!(s.active_status(task_id(1)), None);
        check(&s);
    }

    #[test]
    fn a_hub_keeps_one_round_for_its_agents_and_releases_those_that_would_run_last() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        s.register_agent(agent_id(1), agent_spec(&[("echo", 1.0)], 2), now);
        // Two start at once, two stay queued (one more round), the lowest priority goes.
        for (n, priority) in [(1, 5), (2, 5), (3, 5), (4, 5), (5, 0)] {
            s.submit(task(n, priority), now, &mut none).unwrap();
        }
        s.take_changes();
        assert_eq!(s.release_excess().tasks, 1);
        assert_eq!(released(&s.take_changes()), vec![task_id(5)]);
        assert_eq!(s.queue_depths(), vec![(cap(), 2)]);
        assert_eq!(s.spare_slots(), vec![]);
        check(&s);
    }

    #[test]
    fn spare_slots_count_free_slots_beyond_the_queue_and_a_claimed_task_comes_back_in() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        s.register_agent(agent_id(1), agent_spec(&[("echo", 1.0)], 3), now);
        assert_eq!(s.spare_slots(), vec![(cap(), 3)]);
        s.restore(
            vec![RecoveredTask {
                spec: task(7, 0),
                status: TaskStatus::Queued,
                attempt: 0,
                released: 0,
                lease_until: None,
                not_before: None,
                replicas: Vec::new(),
            }],
            now,
            &mut none,
        );
        // Claimed: it starts on the free agent at once, like a task submitted here.
        assert_eq!(s.spare_slots(), vec![(cap(), 2)]);
        assert_eq!(s.active_status(task_id(7)), Some(TaskStatus::Running));
        check(&s);
    }

    /// Tasks 1 and 2 (`echo`), 3 (`other`) waiting on 1 and 2, 4 (`other`) waiting on 3.
    fn graph(s: &mut Scheduler<LeastLoaded>, now: Timestamp) {
        s.submit(task(1, 0), now, &mut none).unwrap();
        s.submit(task(2, 0), now, &mut none).unwrap();
        let mut child = spec(3, "other");
        child.depends_on = vec![task_id(1), task_id(2)];
        s.submit(child, now, &mut none).unwrap();
        let mut grandchild = spec(4, "other");
        grandchild.depends_on = vec![task_id(3)];
        s.submit(grandchild, now, &mut none).unwrap();
        s.take_changes();
    }

    #[test]
    fn a_task_with_waiting_dependents_here_is_kept_while_an_agent_here_serves_it() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        // One slot, busy: both parents are queued, one of them in excess.
        s.register_agent(agent_id(1), agent_spec(&[("echo", 1.0)], 1), now);
        s.submit(task(9, 9), now, &mut none).unwrap();
        graph(&mut s, now);
        assert_eq!(s.release_excess(), Released::default());
        assert_eq!(s.active_status(task_id(1)), Some(TaskStatus::Queued));
        assert_eq!(s.active_status(task_id(4)), Some(TaskStatus::Waiting));
        check(&s);
    }

    #[test]
    fn a_consensus_task_no_agent_here_serves_is_released_until_a_replica_started() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        let voted = |n| {
            let mut spec = task(n, 0);
            spec.consensus = crate::ConsensusSpec::from_fields(Some(3), Some(2), None)
                .unwrap()
                .map(Box::new);
            spec
        };
        s.submit(voted(1), now, &mut none).unwrap();
        s.take_changes();
        let out = s.release_excess();
        assert_eq!(out.tasks, 1);
        assert_eq!(released(&s.take_changes()), vec![task_id(1)]);
        assert_eq!(s.active_status(task_id(1)), None);
        assert!(s.queue_depths().is_empty());
        check(&s);
        // With a replica started here, it stays, though its agent drains.
        s.register_agent(agent_id(1), agent_spec(&[("echo", 1.0)], 1), now);
        s.submit(voted(2), now, &mut none).unwrap();
        s.drain(agent_id(1)).unwrap();
        s.take_changes();
        assert_eq!(s.release_excess(), Released::default());
        assert_eq!(s.active_status(task_id(2)), Some(TaskStatus::Running));
        check(&s);
    }

    #[test]
    fn with_no_agent_here_for_a_parent_it_is_released_and_its_graph_parked() {
        let mut s = scheduler();
        let now = Timestamp(1_000);
        graph(&mut s, now);
        let out = s.release_excess();
        assert_eq!(out.tasks, 2);
        let mut parked = out.parked.clone();
        parked.sort();
        assert_eq!(parked, vec![task_id(3), task_id(4)], "each parked once");
        let changes = s.take_changes();
        assert_eq!(released(&changes).len(), 2, "both parents go to the pool");
        assert!(changes.contains(&Change::TaskParked {
            task: task_id(3),
            parents: vec![task_id(1), task_id(2)],
        }));
        assert!(changes.contains(&Change::TaskParked {
            task: task_id(4),
            parents: vec![task_id(3)],
        }));
        for n in 1..=4 {
            assert_eq!(s.active_status(task_id(n)), None, "task {n} left memory");
        }
        assert_eq!(s.memory().active_tasks, 0);
        check(&s);
    }
}

#[cfg(test)]
mod park_tests {
    use super::*;
    use crate::routing::LeastLoaded;
    use crate::scheduler::SchedulerConfig;
    use crate::scheduler::tests::task_id;
    use crate::task::tests::spec;

    #[test]
    fn a_parked_task_is_stored_waiting_with_its_parents_and_not_kept() {
        let mut s = Scheduler::new(SchedulerConfig::default(), LeastLoaded);
        let mut child = spec(2, "echo");
        child.depends_on = vec![task_id(1), task_id(1), task_id(3)];
        assert_eq!(s.park(child), TaskStatus::Waiting);
        let changes = s.take_changes();
        assert!(matches!(
            &changes[0],
            Change::TaskCreated {
                status: TaskStatus::Waiting,
                ..
            }
        ));
        assert_eq!(
            changes[1],
            Change::TaskParked {
                task: task_id(2),
                parents: vec![task_id(1), task_id(3)]
            }
        );
        assert_eq!(s.active_status(task_id(2)), None);
        s.check_invariants().unwrap();
    }
}
