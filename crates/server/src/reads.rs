//! Which reads may be answered by a read replica, and for whom. Reads that tolerate staleness
//! (task listings, status counts) go to a replica in rotation; a client's reads after its own
//! writes go only to a replica that has replayed those writes, else to the primary. Point reads
//! of one task always go to the primary. (docs/design.md, "Read replicas".)
//!
//! A client is its API token when authentication is on, else its address (all clients behind
//! one proxy are one client: their reads go to the primary a little more often than needed).
//! After each acknowledged write of a client the hub notes the store's written position for it
//! ([`OwnWrites`]). While the note is fresh the client's reads skip the query cache too; it is
//! forgotten once every replica in rotation must have passed it and every cached answer from
//! before it has expired.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::Principal;

/// The peer address of the connection a request came on (set by the listener).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Who sent a request, for reading its own writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Token(Arc<str>),
    Address(IpAddr),
    /// Neither known (a request not from the listener): all such share one note.
    Unknown,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Self::Rejection> {
        if let Some(who) = parts.extensions.get::<Principal>() {
            return Ok(Client::Token(who.token_id.clone()));
        }
        Ok(match parts.extensions.get::<ClientAddr>() {
            Some(ClientAddr(peer)) => Client::Address(peer.ip()),
            None => Client::Unknown,
        })
    }
}

/// Notes kept at most (a bound on memory: past it, once the moot ones are gone, the oldest tenth
/// of the rest go, and such a client's next reads may miss its write for a moment).
const MAX_NOTES: usize = 100_000;

/// A client's latest write, as noted.
#[derive(Debug, Clone, Copy)]
struct Note {
    /// The store's written position after the client's latest write of known position.
    position: u64,
    at: Instant,
    /// Until then the position of one of its writes is unknown (a cancel another hub may have
    /// committed, a position the store could not read): its reads go to the primary.
    unknown_until: Option<Instant>,
}

/// Each client's latest write: the store's written position after it, and when it was noted.
///
/// A map behind one mutex, pruned of moot notes as it goes: every acknowledged write updates it,
/// and moka's cache (with its own expiry and eviction) cost about 9,500 instructions a write,
/// 8% of a task submitted alone end to end (BENCHMARKS.md, "Later changes"). A prune walks the
/// map under the mutex (every few `keep_for`s, or when full): with the bound's 100,000 notes a
/// few milliseconds during which other requests wait for it.
pub struct OwnWrites {
    notes: Mutex<Notes>,
    /// After this a note is moot: every cached answer read before the write has expired, and
    /// every replica in rotation lags less than its bound (by a check still valid), so even an
    /// answer a replica gave just before has the write.
    keep_for: Duration,
    capacity: usize,
}

struct Notes {
    by_client: foldhash::HashMap<Client, Note>,
    /// When the moot notes were last dropped.
    pruned_at: Instant,
}

impl OwnWrites {
    /// `max_lag`: the replicas' lag bound, `None` without replicas.
    pub fn new(max_lag: Option<Duration>) -> OwnWrites {
        let cached = crate::query_cache::FRESH_FOR;
        let replicas = max_lag.map_or(Duration::ZERO, |lag| {
            lag + hive_store::postgres::REPLICA_CHECK_VALID_FOR
        });
        OwnWrites::keeping_for(cached + replicas, MAX_NOTES)
    }

    fn keeping_for(keep_for: Duration, capacity: usize) -> OwnWrites {
        debug_assert!(capacity > 0, "a bound of no notes");
        OwnWrites {
            notes: Mutex::new(Notes {
                by_client: foldhash::HashMap::default(),
                pruned_at: Instant::now(),
            }),
            keep_for,
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `client`'s write was acknowledged; `position` is the store's written position now (0
    /// where the store has no replicas; `u64::MAX` when unknown, as for a write another hub
    /// may have made: its reads go to the primary until that note is moot).
    pub fn wrote(&self, client: &Client, position: u64) {
        let now = Instant::now();
        let mut notes = self.lock();
        // Moot notes go every few `keep_for`s (a walk of the map), and whenever it is full.
        let full = notes.by_client.len() >= self.capacity;
        if full || now.duration_since(notes.pruned_at) > self.keep_for * 4 {
            notes.prune(now, self.keep_for, self.capacity);
        }
        // A moot note not yet pruned counts for nothing, as if it were gone.
        let before = notes
            .by_client
            .get(client)
            .copied()
            .filter(|n| now.duration_since(n.at) < self.keep_for);
        let unknown_until = before
            .and_then(|n| n.unknown_until)
            .filter(|until| *until > now);
        let known = before.map_or(0, |n| n.position);
        let note = if position == u64::MAX {
            Note {
                position: known,
                at: now,
                unknown_until: Some(now + self.keep_for),
            }
        } else {
            Note {
                position: known.max(position),
                at: now,
                unknown_until,
            }
        };
        notes.by_client.insert(client.clone(), note);
    }

    /// The position a replica must have replayed to answer `client` (0: any in rotation;
    /// `u64::MAX`: none), and whether the client wrote lately (then cached answers may miss its
    /// write).
    pub fn after(&self, client: &Client) -> (u64, bool) {
        match self.lock().by_client.get(client) {
            Some(note) if note.at.elapsed() < self.keep_for => {
                let unknown = note.unknown_until.is_some_and(|u| u > Instant::now());
                (if unknown { u64::MAX } else { note.position }, true)
            }
            _ => (0, false),
        }
    }

    #[cfg(test)]
    fn noted(&self) -> usize {
        self.lock().by_client.len()
    }
}

impl Notes {
    /// Drops the moot notes; if the map is still full, the oldest tenth of it besides, so that a
    /// flood of new clients costs one walk per tenth of the bound.
    fn prune(&mut self, now: Instant, keep_for: Duration, capacity: usize) {
        self.pruned_at = now;
        self.by_client
            .retain(|_, note| now.duration_since(note.at) < keep_for);
        let len = self.by_client.len();
        if len >= capacity {
            let excess = len - (capacity - capacity.div_ceil(10));
            let mut noted: Vec<Instant> = self.by_client.values().map(|n| n.at).collect();
            let (_, &mut newest_dropped, _) = noted.select_nth_unstable(excess - 1);
            self.by_client.retain(|_, note| note.at > newest_dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_reads_after_its_own_latest_write_and_others_anywhere() {
        let writes = OwnWrites::new(Some(Duration::from_secs(60)));
        let alice = Client::Token("alice".into());
        let bob = Client::Address("127.0.0.2".parse().unwrap());
        writes.wrote(&alice, 10);
        writes.wrote(&alice, 7);
        assert_eq!(writes.after(&alice), (10, true), "positions only grow");
        assert_eq!(writes.after(&bob), (0, false));
        writes.wrote(&bob, 0);
        assert_eq!(
            writes.after(&bob),
            (0, true),
            "no replicas: only the cache is skipped"
        );
    }

    #[test]
    fn a_note_is_forgotten_once_every_replica_must_have_passed_it() {
        let writes = OwnWrites::keeping_for(Duration::ZERO, MAX_NOTES);
        writes.wrote(&Client::Unknown, 10);
        assert_eq!(writes.after(&Client::Unknown), (0, false));
    }

    #[test]
    fn notes_stay_within_their_bound_and_moot_ones_go() {
        let client = |n: u32| Client::Token(n.to_string().into());
        let writes = OwnWrites::keeping_for(Duration::from_secs(600), 100);
        for n in 0..1_000 {
            writes.wrote(&client(n), 1);
            assert!(writes.noted() <= 100, "{} notes", writes.noted());
        }
        // The newest writes are noted, the oldest made room for them.
        assert_eq!(writes.after(&client(999)), (1, true));
        assert_eq!(writes.after(&client(0)), (0, false));

        let writes = OwnWrites::keeping_for(Duration::ZERO, 100);
        for n in 0..100 {
            writes.wrote(&client(n), 1);
        }
        // All moot: the next write finds the map full and drops them, not a tenth.
        writes.wrote(&client(100), 1);
        assert_eq!(writes.noted(), 1);
    }
}

#[cfg(test)]
mod unknown_tests {
    use super::*;

    #[test]
    fn an_unknown_position_is_moot_after_a_while_and_later_positions_count() {
        let writes = OwnWrites::keeping_for(Duration::from_millis(50), MAX_NOTES);
        let carol = Client::Token("carol".into());
        writes.wrote(&carol, u64::MAX);
        assert_eq!(writes.after(&carol).0, u64::MAX);
        std::thread::sleep(Duration::from_millis(60));
        writes.wrote(&carol, 40);
        assert_eq!(writes.after(&carol), (40, true), "the unknown mark expired");
    }
}
