//! The wire's closed sets of words: a task's status, how an attempt ended, an agent's state, an
//! alert's state, a token's role, ... Each is a Rust enum here, so a client matches on it and the
//! compiler finds every place a new word must be handled, and an `enum` in the OpenAPI document,
//! so the dashboard's generated types and any other generated client know the words too. The
//! JSON is the word itself (`"lease_expired"`), as it was when these fields were strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Text that is none of an enum's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not one of {}", expected.join(", "))]
pub struct NotOneOf {
    pub text: String,
    pub expected: &'static [&'static str],
}

/// An enum whose variants are written as the given words, with `as_str`, `Display`, `FromStr`
/// and `ALL`. The serde names come from the same words, so the three cannot disagree. The words
/// are `tt`, not `literal`: utoipa does not see through the invisible group a `literal` fragment
/// is wrapped in, and would name the variants instead (a test below catches it).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $word:tt,)+ }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            ToSchema,
        )]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = NotOneOf;
            fn from_str(text: &str) -> Result<Self, NotOneOf> {
                match text {
                    $($word => Ok($name::$variant),)+
                    _ => Err(NotOneOf { text: text.to_string(), expected: Self::WORDS }),
                }
            }
        }
    };
}

wire_enum! {
    /// Where a task stands: `waiting` for its parents, `queued` for an agent (or a retry),
    /// `running`, or finished: `succeeded`, `failed` or `cancelled`.
    pub enum TaskStatus {
        Waiting = "waiting",
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl TaskStatus {
    /// Succeeded, failed or cancelled: nothing will change it again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

wire_enum! {
    /// How one attempt ended.
    pub enum AttemptOutcome {
        Succeeded = "succeeded",
        Failed = "failed",
        LeaseExpired = "lease_expired",
        Cancelled = "cancelled",
        /// Given back unstarted by an agent that was stopping; not counted toward
        /// `max_attempts`.
        Released = "released",
    }
}

wire_enum! {
    /// `idle` (connected, nothing running), `busy`, `draining` (finishing what it runs, taking
    /// nothing new) or `offline`.
    pub enum AgentState {
        Idle = "idle",
        Busy = "busy",
        Draining = "draining",
        Offline = "offline",
    }
}

wire_enum! {
    /// An active alert: `pending` (breaching, not yet for long enough) or `firing`.
    pub enum AlertState {
        Pending = "pending",
        Firing = "firing",
    }
}

wire_enum! {
    /// What an alert event says: the alert started `firing`, or it `resolved`.
    pub enum AlertChange {
        Firing = "firing",
        Resolved = "resolved",
    }
}

wire_enum! {
    /// What a token may do: `admin` everything, `client` submit and read, `agent` connect as an
    /// agent, `read` only read.
    pub enum Role {
        Admin = "admin",
        Client = "client",
        Agent = "agent",
        Read = "read",
    }
}

wire_enum! {
    /// A hub's lease on its tasks: `held` (renewed in time), `expired` (its tasks are about to
    /// be taken over), or `none` (SQLite: one hub, no lease).
    pub enum LeaseState {
        Held = "held",
        Expired = "expired",
        NoLease = "none",
    }
}

wire_enum! {
    /// The store the hubs share.
    pub enum StoreKind {
        Sqlite = "sqlite",
        Postgres = "postgres",
    }
}

wire_enum! {
    /// How routing picks an agent among those able to run a task (docs/routing.md).
    pub enum RoutingPolicy {
        LeastLoaded = "least_loaded",
        P2cEwma = "p2c_ewma",
        Learned = "learned",
        Neural = "neural",
    }
}

wire_enum! {
    /// `/healthz` answers `ok`; `/readyz` answers `ready` or `unavailable`.
    pub enum HealthStatus {
        Ok = "ok",
        Ready = "ready",
        Unavailable = "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + fmt::Display + FromStr + Serialize,
        T: for<'de> Deserialize<'de>,
        <T as FromStr>::Err: fmt::Debug,
    {
        for &value in all {
            let json = serde_json::to_string(&value).unwrap();
            assert_eq!(json, format!("\"{value}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value);
            assert_eq!(value.to_string().parse::<T>().unwrap(), value);
        }
    }

    #[test]
    fn the_json_the_text_and_the_parse_agree() {
        round_trips(TaskStatus::ALL);
        round_trips(AttemptOutcome::ALL);
        round_trips(AgentState::ALL);
        round_trips(AlertState::ALL);
        round_trips(AlertChange::ALL);
        round_trips(Role::ALL);
        round_trips(LeaseState::ALL);
        round_trips(StoreKind::ALL);
        round_trips(RoutingPolicy::ALL);
        round_trips(HealthStatus::ALL);
        assert_eq!(AttemptOutcome::LeaseExpired.to_string(), "lease_expired");
        assert_eq!(LeaseState::NoLease.to_string(), "none");
    }

    #[test]
    fn an_unknown_word_names_the_words_expected() {
        let error = "done".parse::<TaskStatus>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"done\" is not one of waiting, queued, running, succeeded, failed, cancelled"
        );
        assert!(serde_json::from_str::<AgentState>("\"asleep\"").is_err());
    }

    #[test]
    fn the_openapi_schema_lists_the_words() {
        let schema =
            serde_json::to_value(<AttemptOutcome as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!([
                "succeeded",
                "failed",
                "lease_expired",
                "cancelled",
                "released"
            ])
        );
    }
}
