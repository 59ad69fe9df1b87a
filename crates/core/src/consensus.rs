//! Consensus tasks: what a task asks for when it wants several agents to agree
//! ([`ConsensusSpec`]), and what counts as agreeing ([`vote_of`]).
//!
//! A consensus task runs `replicas` attempts at once on agents of distinct identities and
//! succeeds as soon as `quorum` results agree. Results agree when they are equal as canonical
//! JSON (object keys sorted, no insignificant whitespace, so `{"a":1,"b":2}` and
//! `{ "b": 2, "a": 1 }` agree; `1` and `1.0` do not), or, with `vote` (a JSON pointer such as
//! `/answer`), when the values at that pointer are. The scheduler's side of it (placing
//! replicas, counting votes) is in `scheduler::consensus`.

use std::sync::Arc;

use crate::task::ValidationError;

/// What a consensus task asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusSpec {
    /// Attempts run at once, each on an agent of another identity (1-16).
    pub replicas: u8,
    /// Agreeing results that decide the task (1 to `replicas`).
    pub quorum: u8,
    /// A JSON pointer: the part of each result that is voted on; the whole result without one.
    pub vote: Option<Arc<str>>,
}

impl ConsensusSpec {
    pub const MAX_REPLICAS: u8 = 16;
    /// In characters, as JSON Schema's `maxLength` counts them.
    pub const MAX_VOTE_LEN: usize = 256;

    /// Builds one from the submitted fields, any of which may be absent: `replicas` defaults to
    /// 1 and `quorum` to a majority of the replicas. `None` when none is given (a plain task).
    pub fn from_fields(
        replicas: Option<u32>,
        quorum: Option<u32>,
        vote: Option<&str>,
    ) -> Result<Option<Self>, ValidationError> {
        if replicas.is_none() && quorum.is_none() && vote.is_none() {
            return Ok(None);
        }
        let replicas = replicas.unwrap_or(1);
        if !(1..=u32::from(Self::MAX_REPLICAS)).contains(&replicas) {
            return Err(ValidationError::new("replicas", "must be between 1 and 16"));
        }
        let quorum = quorum.unwrap_or(replicas / 2 + 1);
        if !(1..=replicas).contains(&quorum) {
            return Err(ValidationError::new(
                "quorum",
                format!("must be between 1 and replicas ({replicas})"),
            ));
        }
        if let Some(pointer) = vote {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(ValidationError::new(
                    "vote",
                    "must be a JSON pointer: empty or starting with '/', such as \"/answer\"",
                ));
            }
            // RFC 6901: `~` only as `~0` (a `~`) or `~1` (a `/`).
            let mut rest = pointer.split('~').skip(1);
            if rest.any(|after| !(after.starts_with('0') || after.starts_with('1'))) {
                return Err(ValidationError::new(
                    "vote",
                    "a '~' in a JSON pointer must be followed by 0 or 1",
                ));
            }
            if pointer.chars().count() > Self::MAX_VOTE_LEN {
                return Err(ValidationError::new("vote", "at most 256 characters"));
            }
        }
        Ok(Some(ConsensusSpec {
            replicas: replicas as u8,
            quorum: quorum as u8,
            vote: vote.map(Arc::from),
        }))
    }
}

/// The value a result votes for, as canonical JSON text: the whole result, or the value at the
/// `vote` pointer. An error (a result that is not JSON, or has nothing at the pointer) makes the
/// replica's attempt a failure.
pub fn vote_of(output: &str, vote: Option<&str>) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|e| format!("the result is not JSON: {e}"))?;
    let chosen = match vote {
        Some(pointer) => value
            .pointer(pointer)
            .ok_or_else(|| format!("the result has no value at {pointer:?} to vote with"))?,
        None => &value,
    };
    // serde_json's map is ordered by key (its `preserve_order` feature is off; a test below
    // fails if it is turned on), so this text is canonical.
    Ok(chosen.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_json_votes_alike_whatever_its_layout() {
        let a = vote_of(r#"{"b": [1, 2], "a": {"y": 1, "x": null}}"#, None).unwrap();
        let b = vote_of(r#"{"a":{"x":null,"y":1},"b":[1,2]}"#, None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":{"x":null,"y":1},"b":[1,2]}"#);
        assert_ne!(vote_of("1", None).unwrap(), vote_of("1.0", None).unwrap());
    }

    #[test]
    fn a_pointer_votes_with_part_of_the_result() {
        let pointer = Some("/answer");
        let a = vote_of(r#"{"answer": 42, "why": "long"}"#, pointer).unwrap();
        let b = vote_of(r#"{"why": "short", "answer": 42}"#, pointer).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("42", "42"));
        let missing = vote_of(r#"{"other": 1}"#, pointer).unwrap_err();
        assert!(missing.contains("/answer"), "{missing}");
        assert!(vote_of("not json", None).is_err());
    }

    #[test]
    fn the_fields_are_checked_and_named() {
        assert_eq!(ConsensusSpec::from_fields(None, None, None), Ok(None));
        let three = ConsensusSpec::from_fields(Some(3), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (three.replicas, three.quorum),
            (3, 2),
            "a majority by default"
        );
        let field = |r, q, v| ConsensusSpec::from_fields(r, q, v).unwrap_err().field;
        assert_eq!(field(Some(17), None, None), "replicas");
        assert_eq!(field(Some(0), None, None), "replicas");
        assert_eq!(field(Some(3), Some(4), None), "quorum");
        assert_eq!(
            field(None, Some(2), None),
            "quorum",
            "one replica cannot make two"
        );
        assert_eq!(field(Some(3), None, Some("answer")), "vote");
        assert_eq!(field(Some(3), None, Some("/a~2")), "vote");
        let escaped = ConsensusSpec::from_fields(Some(3), None, Some("/a~1b/~0")).unwrap();
        assert!(escaped.is_some());
        let long = format!("/{}", "é".repeat(255));
        assert!(
            ConsensusSpec::from_fields(Some(3), None, Some(&long)).is_ok(),
            "characters"
        );
    }
}
