//! REST bodies under `/api/v1`. Timestamps are RFC 3339 strings in UTC; ids are UUID strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

// The words these bodies use, reachable from here as from `enums`.
pub use crate::enums::{
    AgentState, AttemptOutcome, HealthStatus, LeaseState, Role, RoutingPolicy, StoreKind,
    TaskStatus,
};

/// A task to submit. Only `capability` is required.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The capability an agent needs to run this task: 1-128 ASCII letters, digits and `_ - . : /`.
    #[schema(
        example = "summarize",
        pattern = r"^[A-Za-z0-9_.:/-]+$",
        min_length = 1,
        max_length = 128
    )]
    pub capability: String,
    /// Any JSON value, `null` included, handed to the agent as is (default `null`; at most 1 MiB
    /// and 64 levels of nesting by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
    /// 0-9, 9 most urgent (default 5).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
    /// Attempts before the task fails for good, 1-100 (default 3).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Lease of one attempt in milliseconds, 1 ms to 7 days (default 30000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(minimum = 1, maximum = 604_800_000)]
    pub timeout_ms: Option<u64>,
    /// Base retry delay in milliseconds, doubled per attempt, with jitter; at most 24 hours
    /// (default 1000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(maximum = 86_400_000)]
    pub backoff_ms: Option<u64>,
    /// A second submit with the same key returns the first task instead of creating one (1-256
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
    /// Ids of tasks that must succeed before this one runs (at most 1000; each must exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 1000)]
    pub depends_on: Option<Vec<String>>,
    /// What this task does when a parent (`depends_on`) fails or is cancelled (default `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_parent_failure: Option<OnParentFailure>,
    /// Consensus: run this many attempts at once, on agents of distinct names (1-16; default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(minimum = 1, maximum = 16)]
    pub replicas: Option<u32>,
    /// Consensus: the task succeeds once this many results agree (1 to `replicas`; default a
    /// majority of the replicas).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(minimum = 1, maximum = 16)]
    pub quorum: Option<u32>,
    /// Consensus: a JSON pointer (such as `/answer`) to the part of each result that is voted on;
    /// without it, whole results must be equal (as canonical JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256, pattern = "^(/([^~]|~[01])*)?$")]
    pub vote: Option<String>,
    /// Numeric hints about the work that the `neural` routing policy reads (such as
    /// `{"tokens": 1200}`): what makes this task quick or slow on one agent or another that its
    /// payload's size does not show. At most 16; names 1-64 characters. Other policies ignore
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<BTreeMap<String, f64>>,
}

/// `fail`: the task fails too, with an error naming the parent. `run`: it runs once every parent
/// has ended, the failed parents' errors in its inputs (a reducer of partial results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnParentFailure {
    Fail,
    Run,
}

impl NewTask {
    pub fn new(capability: impl Into<String>) -> Self {
        NewTask {
            capability: capability.into(),
            payload: None,
            priority: None,
            max_attempts: None,
            timeout_ms: None,
            backoff_ms: None,
            idempotency_key: None,
            depends_on: None,
            on_parent_failure: None,
            replicas: None,
            quorum: None,
            vote: None,
            features: None,
        }
    }
}

/// Tasks in one `POST /tasks/batch` at most.
pub const MAX_BATCH_TASKS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBatch {
    /// 1 to 10,000 tasks, all accepted or none.
    #[schema(min_items = 1, max_items = 10_000)]
    #[serde(deserialize_with = "at_most_a_batch")]
    pub tasks: Vec<NewTask>,
}

/// A batch's tasks, refused as soon as there is one too many: a body of a million tasks is not
/// parsed to its end, and held, only to be refused then.
fn at_most_a_batch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<NewTask>, D::Error> {
    struct Tasks;
    impl<'de> serde::de::Visitor<'de> for Tasks {
        type Value = Vec<NewTask>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_BATCH_TASKS} tasks")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut tasks = Vec::new();
            while let Some(task) = seq.next_element()? {
                if tasks.len() == MAX_BATCH_TASKS {
                    return Err(serde::de::Error::custom(format_args!(
                        "at most {MAX_BATCH_TASKS} tasks per batch"
                    )));
                }
                tasks.push(task);
            }
            Ok(tasks)
        }
    }
    d.deserialize_seq(Tasks)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchCreated {
    pub ids: Vec<String>,
}

// The hub writes a task through `crate::fast_json::task`, which names every field: a field
// added here does not compile until it is written there too. The answer to `POST /tasks` is
// written from the spec by `hive_server::task_view`, checked against this type's bytes by its
// tests: a field added here must be added there as well.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    pub capability: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
    pub priority: u8,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub backoff_ms: u64,
    #[schema(required)]
    pub idempotency_key: Option<String>,
    pub depends_on: Vec<String>,
    pub on_parent_failure: OnParentFailure,
    pub attempts: Vec<Attempt>,
    /// The output of the successful attempt.
    #[schema(value_type = Option<serde_json::Value>, required)]
    pub result: Option<Box<RawValue>>,
    /// The last error, when the task failed or an attempt did.
    #[schema(required)]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The name of the token it was submitted with (absent with authentication off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// A consensus task's replicas, quorum and pointer voted on (absent for a plain task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<String>,
    /// The hints it was submitted with (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<BTreeMap<String, f64>>,
    /// A consensus task's results so far, one per replica that answered, and whether each agreed
    /// with the decided `result` (absent for a plain task, and in listings: `GET /tasks/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<Vec<Vote>>,
    /// The agents whose results disagreed with the agreed one (a consensus task that
    /// succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dissenters: Option<Vec<String>>,
    /// The latest progress its running attempt reported (`GET /tasks/{id}` of a running task
    /// whose agent sent some; kept in the hub's memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TaskProgress>,
}

/// What a running attempt last said of its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskProgress {
    pub attempt: u32,
    /// 0.0-1.0, as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// As last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was reported (RFC 3339).
    pub at: String,
}

/// One replica's vote: the value its result voted for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vote {
    pub attempt: u32,
    #[schema(required)]
    pub agent_id: Option<String>,
    /// The value at the task's `vote` pointer, or the whole result.
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
    /// Whether it is the task's agreed result (false while undecided or when no quorum agreed).
    pub agreed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    #[schema(required)]
    pub agent_id: Option<String>,
    pub started_at: String,
    #[schema(required)]
    pub ended_at: Option<String>,
    /// Absent while running.
    #[schema(required)]
    pub outcome: Option<AttemptOutcome>,
    #[schema(required)]
    pub error: Option<String>,
    /// A consensus task's replica: the result it returned (in `GET /tasks/{id}`, not in
    /// listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub output: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub items: Vec<Task>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub state: AgentState,
    pub capabilities: BTreeMap<String, f64>,
    pub slots: u32,
    pub running: u32,
    pub connected_at: String,
    pub last_heartbeat: String,
    pub stats: BTreeMap<String, CapabilityStats>,
    /// What routing believes of the agent's identity (its name) on each of its capabilities,
    /// learned from outcomes and kept across reconnects and restarts.
    #[serde(default)]
    #[schema(required)]
    pub routing: BTreeMap<String, RoutingEstimate>,
}

/// What routing believes of an agent identity on one capability, as it weighs it at the moment
/// of the answer (docs/routing.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoutingEstimate {
    /// The probability believed that an attempt succeeds: (successes + 1) / (attempts + 1).
    #[schema(minimum = 0, maximum = 1)]
    pub success_probability: f64,
    /// Latency estimate (peak-sensitive EWMA), ms, decayed toward 0 while the agent is idle;
    /// absent until an attempt was measured.
    #[schema(required)]
    pub latency_ms: Option<f64>,
    /// Tail estimate, ms: the latency plus twice the mean absolute deviation.
    #[schema(required)]
    pub tail_ms: Option<f64>,
    /// Attempts measured, ever.
    pub samples: u64,
    /// Share of the capability's recent assignments that went to this identity.
    #[schema(minimum = 0, maximum = 1)]
    pub share: f64,
    /// What the neural routing model predicts for this agent, idle, on a typical task of the
    /// capability (the average of the tasks it learned from); absent unless the policy is
    /// `neural` and the model has learned enough of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Predicted>,
}

/// A prediction of the neural routing model (docs/routing.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Predicted {
    pub latency_ms: f64,
    #[schema(minimum = 0, maximum = 1)]
    pub success_probability: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CapabilityStats {
    pub completed: u64,
    pub failed: u64,
    #[schema(required)]
    pub mean_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<Agent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// Tasks by status (every status present, zero included).
    pub tasks: BTreeMap<String, u64>,
    /// Agents by state (every state present, zero included).
    pub agents: BTreeMap<String, u64>,
    /// Queued tasks per capability: ready, backing off, or consensus tasks waiting for an agent
    /// for a replica.
    pub queue_depth: BTreeMap<String, u64>,
    pub routing_policy: RoutingPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

/// Every 4xx and 5xx answer has this body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `conflict`.
    pub code: String,
    pub message: String,
    /// The offending field, as a path such as `tasks[3].priority`, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A broadcast to every agent of a swarm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSwarmMessage {
    /// Any JSON value (default `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = serde_json::Value)]
    pub payload: Option<Box<RawValue>>,
    /// How long to collect replies, in ms (default 5000, at most 60000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::optional"
    )]
    #[schema(maximum = 60_000)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwarmReply {
    pub agent_id: String,
    #[schema(value_type = serde_json::Value)]
    pub output: Box<RawValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwarmMessageOutcome {
    pub message_id: String,
    pub group: String,
    /// Agents the message was sent to.
    pub recipients: u64,
    pub replies: Vec<SwarmReply>,
    /// Recipients that did not reply before the timeout.
    pub missing: Vec<String>,
    /// Several hubs: other live hubs that did not say before the timeout whom they delivered
    /// the message to (their members, if any, are in neither `recipients` nor `missing`).
    #[serde(default)]
    #[schema(required)]
    pub unreported_hubs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Swarm {
    pub name: String,
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwarmList {
    pub items: Vec<Swarm>,
}

/// One hub of those sharing the store. Loads are as of the hub's last heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HubView {
    /// New at each start; `null` for a hub alone in a SQLite data directory.
    #[schema(required)]
    pub id: Option<String>,
    pub name: String,
    /// Where it serves (host:port).
    pub address: String,
    /// True for the hub that answered.
    pub this: bool,
    pub lease: LeaseState,
    /// Milliseconds since the Unix epoch (the database's clock); `null` without a lease.
    #[schema(required)]
    pub lease_until_ms: Option<u64>,
    #[schema(required)]
    pub heartbeat_at_ms: Option<u64>,
    #[schema(required)]
    pub started_at_ms: Option<u64>,
    /// Connected agents and their slots.
    pub agents: u32,
    pub slots: u32,
    /// Tasks it holds (waiting, queued, running), and how many of them are queued.
    pub tasks: u32,
    pub queued: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HubList {
    pub store: StoreKind,
    pub items: Vec<HubView>,
    /// Queued tasks no hub holds, waiting to be claimed (always 0 on SQLite).
    pub pooled: u64,
}

/// The longest lifetime a token may be given: ten years of 365.25 days (as `--expires-in 10y`
/// reads), in seconds.
pub const MAX_TOKEN_LIFETIME_S: u64 = 10 * 31_557_600;

/// A token to create (admin only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1-64 letters, digits, `-`, `_` or `.`; unique.
    #[schema(
        example = "ci",
        pattern = r"^[A-Za-z0-9_.-]+$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    #[schema(example = "client")]
    pub role: Role,
    /// Agent tokens only: the capabilities it may offer (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Agent tokens only: the swarms it may join (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Seconds from now after which the token is refused (`401 token_expired`); 1 to
    /// 315,576,000 (ten years, `MAX_TOKEN_LIFETIME_S`). Absent: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 315_576_000, example = 2_592_000)]
    pub expires_in_s: Option<u64>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When it stops being accepted (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A token just created: `token` is shown this once and kept nowhere.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn batch_of(n: usize) -> String {
        format!(
            r#"{{"tasks":[{}]}}"#,
            vec![r#"{"capability":"a"}"#; n].join(",")
        )
    }

    #[test]
    fn a_batch_is_refused_at_one_task_too_many_before_the_rest_is_parsed() {
        let full: NewTaskBatch = serde_json::from_str(&batch_of(MAX_BATCH_TASKS)).unwrap();
        assert_eq!(full.tasks.len(), MAX_BATCH_TASKS);
        let err = serde_json::from_str::<NewTaskBatch>(&batch_of(MAX_BATCH_TASKS + 1)).unwrap_err();
        assert!(
            err.to_string().starts_with("at most 10000 tasks per batch"),
            "{err}"
        );
        // The parse stops there: what follows the task too many is never read, so a broken
        // tail is not what is reported.
        let broken = batch_of(MAX_BATCH_TASKS + 1).replace("]}", ",{nonsense");
        let err = serde_json::from_str::<NewTaskBatch>(&broken).unwrap_err();
        assert!(err.to_string().starts_with("at most 10000 tasks"), "{err}");
    }
}
