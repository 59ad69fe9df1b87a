//! The task model: what a client submits ([`TaskSpec`]), how it is validated, and the statuses a
//! task moves through.
//!
//! ```text
//! waiting --deps succeeded--> queued --assigned--> running --ok--> succeeded
//!    |                          ^                     |
//!    |                          +--retry (backoff)----+--error, lease expired--> failed
//!    +--dep failed--> failed    any non-terminal --cancel--> cancelled
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::backoff::Backoff;
use crate::consensus::ConsensusSpec;
use crate::ids::TaskId;
use crate::time::Timestamp;

/// A capability name such as `summarize`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Capability(Arc<str>);

impl Capability {
    pub const MAX_LEN: usize = 128;

    /// Accepts 1-128 characters of ASCII letters, digits and `_ - . : /`.
    pub fn parse(name: &str, field: &str) -> Result<Capability, ValidationError> {
        if name.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                field,
                "must be at most 128 characters",
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
        {
            return Err(ValidationError::new(
                field,
                "may contain only ASCII letters, digits and _ - . : /",
            ));
        }
        Ok(Capability(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the two are one copy of a name (the tasks of a capability share their queue's).
    pub fn is_same_copy(&self, other: &Capability) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A rule that a submitted value broke, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
    /// The value is well-formed but over a size limit (HTTP 413 rather than 400).
    pub too_large: bool,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
            too_large: false,
        }
    }

    pub fn too_large(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            too_large: true,
            ..ValidationError::new(field, reason)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Waiting,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Waiting,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "waiting",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!("unknown status {s:?}; expected one of waiting, queued, running, succeeded, failed, cancelled"),
                )
            })
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    LeaseExpired,
    Cancelled,
    /// The agent gave the attempt back before starting it (it was stopping): the task runs
    /// elsewhere, and the attempt does not count toward `max_attempts`.
    Released,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::LeaseExpired,
            AttemptOutcome::Cancelled,
            AttemptOutcome::Released,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Bounds a submitted task must respect; the payload bound is configurable per hub.
#[derive(Debug, Clone, Copy)]
pub struct TaskLimits {
    pub max_payload_bytes: usize,
    /// Largest output a worker may report for a successful attempt.
    pub max_output_bytes: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            max_payload_bytes: 1024 * 1024,
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// Deepest nesting of arrays and objects accepted in a payload or an output: deeper values are
/// stored fine but crash parsers downstream (Python's `json` gives up near 1,000 levels, serde's
/// at 128), so they are refused at the door.
pub const MAX_JSON_DEPTH: usize = 64;

/// Longest error text kept from a worker; the rest is cut.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// How deep arrays and objects nest in a JSON text (0 for a scalar). The text is assumed to be
/// valid JSON; brackets inside strings do not count.
pub fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl TaskLimits {
    /// Why a payload (a task's, or a swarm message's) is refused, if it is: over the size or
    /// the nesting limit. The error names the field `payload`.
    pub fn check_payload(&self, payload: &str) -> Result<(), ValidationError> {
        if payload.len() > self.max_payload_bytes {
            return Err(ValidationError::too_large(
                "payload",
                format!(
                    "is {} bytes, over the limit of {} bytes",
                    payload.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        let depth = json_depth(payload);
        if depth > MAX_JSON_DEPTH {
            return Err(ValidationError::new(
                "payload",
                format!("nests {depth} levels deep, over the limit of {MAX_JSON_DEPTH}"),
            ));
        }
        Ok(())
    }

    /// Why a worker's output (a result's, or a reply's to a swarm message) cannot be kept, if
    /// it cannot.
    pub fn check_output(&self, output: &str) -> Result<(), String> {
        if output.len() > self.max_output_bytes {
            return Err(format!(
                "is {} bytes, over the limit of {} bytes",
                output.len(),
                self.max_output_bytes
            ));
        }
        let depth = json_depth(output);
        if depth > MAX_JSON_DEPTH {
            return Err(format!(
                "nests {depth} levels deep, over the limit of {MAX_JSON_DEPTH}"
            ));
        }
        Ok(())
    }

    /// Cuts an error text to [`MAX_ERROR_BYTES`] (on a character boundary).
    pub fn truncate_error(&self, error: &mut String) {
        if error.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
            error.push_str("... (cut)");
        }
    }
}

/// What a task with dependencies does when one of them fails or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnParentFailure {
    /// It fails too, with an error naming the parent (the default).
    #[default]
    Fail,
    /// It runs once every parent has ended, the failed parents' errors among its inputs: a
    /// reducer that makes do with partial results.
    Run,
}

impl OnParentFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnParentFailure::Fail => "fail",
            OnParentFailure::Run => "run",
        }
    }

    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        match text {
            "fail" => Ok(OnParentFailure::Fail),
            "run" => Ok(OnParentFailure::Run),
            _ => Err(ValidationError::new(
                field,
                format!("must be \"fail\" or \"run\", not {text:?}"),
            )),
        }
    }
}

/// How a task ended, as the tasks that depend on it see it: what their assignments carry as
/// `inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// It succeeded with this output (JSON text).
    Succeeded(Arc<str>),
    /// It failed or was cancelled, with this error.
    Unsuccessful { status: TaskStatus, error: Arc<str> },
}

impl TaskEnd {
    pub fn status(&self) -> TaskStatus {
        match self {
            TaskEnd::Succeeded(_) => TaskStatus::Succeeded,
            TaskEnd::Unsuccessful { status, .. } => *status,
        }
    }

    /// Bytes of text it holds, for the scheduler's memory count.
    pub fn text_len(&self) -> usize {
        match self {
            TaskEnd::Succeeded(output) => output.len(),
            TaskEnd::Unsuccessful { error, .. } => error.len(),
        }
    }
}

/// The immutable part of a task: what was submitted, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub id: TaskId,
    pub capability: Capability,
    /// The payload as JSON text; the core never looks inside.
    pub payload: Arc<str>,
    /// 0-9, 9 most urgent.
    pub priority: u8,
    pub max_attempts: u32,
    /// The lease of one attempt: an attempt still running after this long is given up.
    pub timeout_ms: u64,
    pub backoff: Backoff,
    pub idempotency_key: Option<String>,
    pub depends_on: Vec<TaskId>,
    /// Whether it runs when a parent fails or is cancelled.
    pub on_parent_failure: OnParentFailure,
    /// Several agents must agree on its result (boxed: most tasks have none, and a million
    /// queued tasks carry this field).
    pub consensus: Option<Box<ConsensusSpec>>,
    pub created_at: Timestamp,
    /// Who submitted it: the name of the API token (`None` with authentication off).
    pub submitted_by: Option<Arc<str>>,
    /// Numeric hints for routing's model, sorted by name; `None` when the task gave none (no
    /// allocation for the many tasks without).
    pub features: Option<Arc<[Feature]>>,
}

/// A numeric hint about a task that the `neural` routing policy reads (`"features":
/// {"tokens": 1200}`): what the submitter knows about the work that its payload's size does not
/// say. Routing never looks inside the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: Arc<str>,
    pub value: f64,
}

impl Feature {
    pub const MAX_COUNT: usize = 16;
    /// In characters.
    pub const MAX_NAME_LEN: usize = 64;

    /// Features from name-value pairs, sorted by name; `None` for none.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, f64)>) -> Option<Arc<[Feature]>> {
        let mut features: Vec<Feature> = pairs
            .into_iter()
            .map(|(name, value)| Feature {
                name: name.into(),
                value,
            })
            .collect();
        features.sort_by(|a, b| a.name.cmp(&b.name));
        (!features.is_empty()).then(|| features.into())
    }

    /// As a JSON object, the way the store keeps them.
    pub fn to_json(features: &[Feature]) -> String {
        let map: serde_json::Map<String, serde_json::Value> = features
            .iter()
            .map(|f| (f.name.to_string(), serde_json::Value::from(f.value)))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// From [`Feature::to_json`]'s text; `None` for text that is not an object of numbers.
    pub fn from_json(text: &str) -> Option<Arc<[Feature]>> {
        let map: std::collections::BTreeMap<String, f64> = serde_json::from_str(text).ok()?;
        Feature::from_pairs(map)
    }
}

impl TaskSpec {
    pub const DEFAULT_PRIORITY: u8 = 5;
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    pub const MAX_PRIORITY: u8 = 9;
    pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
    pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
    pub const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;
    /// In characters, as JSON Schema's `maxLength` counts them.
    pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
    pub const MAX_DEPENDENCIES: usize = 1_000;

    /// Checks every rule, naming the first field that breaks one.
    pub fn validate(&self, limits: &TaskLimits) -> Result<(), ValidationError> {
        if self.priority > Self::MAX_PRIORITY {
            return Err(ValidationError::new("priority", "must be between 0 and 9"));
        }
        if !(1..=Self::MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(ValidationError::new(
                "max_attempts",
                "must be between 1 and 100",
            ));
        }
        if !(1..=Self::MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(ValidationError::new(
                "timeout_ms",
                "must be between 1 and 604800000 (7 days)",
            ));
        }
        if self.backoff.base_ms > Self::MAX_BACKOFF_MS || self.backoff.max_ms > Self::MAX_BACKOFF_MS
        {
            return Err(ValidationError::new(
                "backoff_ms",
                "must be at most 86400000 (24 hours)",
            ));
        }
        limits.check_payload(&self.payload)?;
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.chars().count() > Self::MAX_IDEMPOTENCY_KEY_LEN)
        {
            return Err(ValidationError::new(
                "idempotency_key",
                "must be 1 to 256 characters long",
            ));
        }
        if self.depends_on.len() > Self::MAX_DEPENDENCIES {
            return Err(ValidationError::new(
                "depends_on",
                "at most 1000 dependencies",
            ));
        }
        if self.depends_on.contains(&self.id) {
            return Err(ValidationError::new(
                "depends_on",
                "a task cannot depend on itself",
            ));
        }
        let features = self.features.as_deref().unwrap_or_default();
        if features.len() > Feature::MAX_COUNT {
            return Err(ValidationError::new(
                "features",
                format!("at most {} features", Feature::MAX_COUNT),
            ));
        }
        for f in features {
            if f.name.is_empty() || f.name.chars().count() > Feature::MAX_NAME_LEN {
                return Err(ValidationError::new(
                    "features",
                    format!(
                        "names must be 1 to {} characters long",
                        Feature::MAX_NAME_LEN
                    ),
                ));
            }
            if !f.value.is_finite() {
                return Err(ValidationError::new(
                    format!("features.{}", f.name),
                    "must be a finite number",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn spec(n: u128, capability: &str) -> TaskSpec {
        TaskSpec {
            id: TaskId(Uuid::from_u128(n)),
            capability: Capability::parse(capability, "capability").unwrap(),
            payload: "{}".into(),
            priority: TaskSpec::DEFAULT_PRIORITY,
            max_attempts: TaskSpec::DEFAULT_MAX_ATTEMPTS,
            timeout_ms: 1_000,
            backoff: Backoff {
                base_ms: 100,
                max_ms: 1_000,
            },
            idempotency_key: None,
            depends_on: vec![],
            on_parent_failure: OnParentFailure::Fail,
            consensus: None,
            created_at: Timestamp(0),
            submitted_by: None,
            features: None,
        }
    }

    #[test]
    fn validation_names_the_field() {
        let limits = TaskLimits {
            max_payload_bytes: 10,
            ..TaskLimits::default()
        };
        let mut s = spec(1, "x");
        s.priority = 10;
        assert_eq!(s.validate(&limits).unwrap_err().field, "priority");
        let mut s = spec(1, "x");
        s.max_attempts = 0;
        assert_eq!(s.validate(&limits).unwrap_err().field, "max_attempts");
        let mut s = spec(1, "x");
        s.payload = "[1,2,3,4,5,6]".into();
        let too_large = s.validate(&limits).unwrap_err();
        assert!(too_large.field == "payload" && too_large.too_large);
        let mut s = spec(1, "x");
        s.depends_on = vec![s.id];
        assert_eq!(s.validate(&limits).unwrap_err().field, "depends_on");
        assert!(spec(1, "x").validate(&limits).is_ok());
        let with = |pairs: Vec<(String, f64)>| TaskSpec {
            features: Feature::from_pairs(pairs),
            ..spec(1, "x")
        };
        let many = (0..17).map(|i| (format!("f{i}"), 1.0)).collect();
        assert_eq!(with(many).validate(&limits).unwrap_err().field, "features");
        let long = vec![("n".repeat(65), 1.0)];
        assert_eq!(with(long).validate(&limits).unwrap_err().field, "features");
        let infinite = vec![("tokens".into(), f64::INFINITY)];
        assert_eq!(
            with(infinite).validate(&limits).unwrap_err().field,
            "features.tokens"
        );
        let fine = with(vec![("b".into(), 2.0), ("a".into(), -1.5)]);
        assert!(fine.validate(&limits).is_ok());
        let names: Vec<&str> = fine
            .features
            .as_deref()
            .unwrap()
            .iter()
            .map(|f| &*f.name)
            .collect();
        assert_eq!(names, ["a", "b"], "sorted by name");
        let json = Feature::to_json(fine.features.as_deref().unwrap());
        assert_eq!(Feature::from_json(&json), fine.features);
    }

    #[test]
    fn capability_names_are_checked() {
        assert!(Capability::parse("summarize.v2", "capability").is_ok());
        assert_eq!(
            Capability::parse("", "capability").unwrap_err().reason,
            "must not be empty"
        );
        assert!(Capability::parse("has space", "capability").is_err());
        assert!(Capability::parse(&"a".repeat(129), "capability").is_err());
    }

    #[test]
    fn statuses_round_trip_and_know_terminality() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
        }
        assert!("done".parse::<TaskStatus>().is_err());
        assert!(TaskStatus::Cancelled.is_terminal() && !TaskStatus::Running.is_terminal());
    }

    #[test]
    fn json_depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(json_depth(r#"["[[[{{", "\\\"[["]"#), 1);
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(json_depth(&deep), 100);
    }

    #[test]
    fn deep_payloads_and_outputs_are_refused_and_long_errors_cut() {
        let limits = TaskLimits::default();
        let mut s = spec(1, "x");
        s.payload = ("[".repeat(65) + &"]".repeat(65)).into();
        let e = s.validate(&limits).unwrap_err();
        assert_eq!(e.field, "payload");
        assert!(e.reason.contains("65 levels"), "{}", e.reason);
        s.payload = ("[".repeat(64) + &"]".repeat(64)).into();
        assert!(s.validate(&limits).is_ok());
        assert!(limits.check_output(&"[".repeat(70)).is_err());
        let big = format!("\"{}\"", "x".repeat(limits.max_output_bytes));
        assert!(
            limits
                .check_output(&big)
                .unwrap_err()
                .contains("over the limit")
        );
        let mut error = "é".repeat(MAX_ERROR_BYTES);
        limits.truncate_error(&mut error);
        assert!(error.len() <= MAX_ERROR_BYTES + 16 && error.ends_with("(cut)"));
    }
}
