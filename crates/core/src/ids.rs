//! Identifiers. Both are UUIDs; the runtime mints version 7 so that ids sort by creation time,
//! which makes the stores' id indexes insertion-ordered and paging by id stable.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: {0:?} (expected a UUID such as 0190b3c6-7d7e-7cc0-8d2c-2f5b8f9a1e01)")]
pub struct IdParseError(pub String);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name).map_err(|_| IdParseError(s.to_string()))
            }
        }
    };
}

uuid_id!(
    /// A task's id.
    TaskId
);
uuid_id!(
    /// An agent's id, minted anew for each worker connection.
    AgentId
);
