//! `hive.sha256`: iterated SHA-256, a CPU-bound task that needs no worker. The payload is
//! `{"data": "<text>", "rounds": N}`: the first round hashes `data`, each later round hashes the
//! previous digest (32 bytes). The output is `{"sha256": "<hex of the last digest>", "rounds": N}`.
//! Useful for proofs of work, for checking a hub, and for loading its CPU pool on purpose.
//!
//! A long job reports its progress (the fraction of rounds done): first after [`CHECK_EVERY`]
//! rounds, so that a short one sends none, then at most once per [`PROGRESS_EVERY`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Job, Stopped};

pub const CAPABILITY: &str = "hive.sha256";
pub const MAX_ROUNDS: u64 = 100_000_000;

/// How many rounds run between two looks at the cancel flag and the clock (about a millisecond).
const CHECK_EVERY: u64 = 4096;
/// The least time between two progress reports of a job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    data: String,
    #[serde(default = "one")]
    rounds: u64,
}

fn one() -> u64 {
    1
}

/// Runs one job: the output JSON.
pub fn run(payload: &str, job: &Job) -> Result<String, Stopped> {
    let input: Input = serde_json::from_str(payload).map_err(|e| {
        Stopped::BadPayload(format!(
            "payload: {e}; expected {{\"data\": string, \"rounds\": 1-{MAX_ROUNDS}}}"
        ))
    })?;
    if !(1..=MAX_ROUNDS).contains(&input.rounds) {
        return Err(Stopped::BadPayload(format!(
            "payload.rounds: must be between 1 and {MAX_ROUNDS}"
        )));
    }
    let mut digest = Sha256::digest(input.data.as_bytes());
    let mut reported: Option<Instant> = None;
    for round in 1..input.rounds {
        if round.is_multiple_of(CHECK_EVERY) {
            if job.cancelled.load(Ordering::Relaxed) {
                return Err(Stopped::Cancelled);
            }
            if reported.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                (job.progress)(round as f64 / input.rounds as f64);
                reported = Some(Instant::now());
            }
        }
        digest = Sha256::digest(digest);
    }
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(r#"{{"sha256":"{hex}","rounds":{}}}"#, input.rounds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::atomic::AtomicBool;

    fn job<'a>(cancelled: &'a AtomicBool, progress: &'a dyn Fn(f64)) -> Job<'a> {
        Job {
            cancelled,
            progress,
        }
    }

    #[test]
    fn one_round_is_the_standard_digest_and_rounds_chain() {
        let go = AtomicBool::new(false);
        let go = job(&go, &|_| {});
        // FIPS 180-2's example.
        assert_eq!(
            run(r#"{"data":"abc"}"#, &go).unwrap(),
            r#"{"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","rounds":1}"#
        );
        let twice = run(r#"{"data":"abc","rounds":2}"#, &go).unwrap();
        let expected = Sha256::digest(Sha256::digest(b"abc"));
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert!(twice.contains(&hex), "{twice}");
    }

    #[test]
    fn bad_payloads_name_the_field_and_cancel_stops_the_work() {
        let go = AtomicBool::new(false);
        let go = job(&go, &|_| {});
        for (payload, field) in [
            (r#"{"data":"x","rounds":0}"#, "payload.rounds"),
            (r#"{"rounds":3}"#, "data"),
            (r#"[1]"#, "payload"),
            (r#"{"data":"x","round":3}"#, "round"),
        ] {
            let Err(Stopped::BadPayload(reason)) = run(payload, &go) else {
                panic!("{payload}")
            };
            assert!(reason.contains(field), "{reason}");
        }
        let stop = AtomicBool::new(true);
        assert_eq!(
            run(r#"{"data":"x","rounds":100000}"#, &job(&stop, &|_| {})),
            Err(Stopped::Cancelled)
        );
    }

    #[test]
    fn a_long_job_reports_progress_and_a_short_one_does_not() {
        let go = AtomicBool::new(false);
        let seen = RefCell::new(Vec::new());
        let record = |fraction: f64| seen.borrow_mut().push(fraction);
        run(r#"{"data":"x","rounds":4096}"#, &job(&go, &record)).unwrap();
        assert_eq!(*seen.borrow(), Vec::<f64>::new());
        run(r#"{"data":"x","rounds":8192}"#, &job(&go, &record)).unwrap();
        assert_eq!(*seen.borrow(), vec![0.5]);
    }
}
