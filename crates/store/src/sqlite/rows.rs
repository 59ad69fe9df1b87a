//! Where unfinished tasks' rows are, for the writer: each task's `seq` (the integer key of
//! `tasks`, `migrations/0014_task_seq.sql`), so that an update finds the row by an integer instead
//! of walking the id index comparing 16-byte blobs (BENCHMARKS.md, "The task table's integer
//! key").
//!
//! The numbers are a hint, never the truth: every update by `seq` also names the id, and one that
//! matches no row falls back to finding the row by its id (`SqliteWriter`). So a number that is
//! missing or stale costs one indexed lookup, never a wrong row: missing when the map is full,
//! after a failed commit (which may have given numbers that were rolled back and will be given
//! again), or when two ids share a key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hive_core::TaskId;
use rusqlite::Connection;

use crate::StoreError;
use crate::codec::task_id;

/// The most numbers kept, a map of about 2 MB: the tasks of a longer backlog are found by id
/// when they are updated. Without a bound the map would add 20-40 bytes to every queued task,
/// whose whole cost in the hub is under 400 (BENCHMARKS.md). The tests' bound is small enough for a test to
/// pass it.
pub(super) const MOST: usize = if cfg!(test) { 16 } else { 100_000 };

/// The `seq` of tasks not yet ended that the writer inserted or found, by [`key`].
#[derive(Default)]
pub(super) struct TaskRows {
    seq: HashMap<u64, i64, BuildHasherDefault<IdHasher>>,
}

/// An id's key: its low half, random in a UUIDv7 (and distinct in the tests' small ids). Two
/// tasks of one key share an entry, which the id check in every update makes harmless.
fn key(task: TaskId) -> u64 {
    u128::from_be_bytes(*task.as_bytes()) as u64
}

impl TaskRows {
    /// The rows of the tasks not yet ended, up to [`MOST`], found through the index that holds
    /// them.
    pub(super) fn load(conn: &Connection) -> Result<TaskRows, StoreError> {
        let mut stmt =
            conn.prepare("SELECT id, seq FROM tasks WHERE finished_at IS NULL LIMIT ?1")?;
        let mut rows = stmt.query([MOST as i64])?;
        let mut found = TaskRows::default();
        while let Some(row) = rows.next()? {
            found.insert(task_id(&row.get::<_, Vec<u8>>(0)?)?, row.get(1)?);
        }
        Ok(found)
    }

    pub(super) fn get(&self, task: TaskId) -> Option<i64> {
        self.seq.get(&key(task)).copied()
    }

    /// Keeps `task`'s number, unless the map is full.
    pub(super) fn insert(&mut self, task: TaskId, seq: i64) {
        if self.seq.len() < MOST {
            self.seq.insert(key(task), seq);
        }
    }

    pub(super) fn remove(&mut self, task: TaskId) {
        self.seq.remove(&key(task));
    }

    /// Forgets every number: after a failed commit, whose inserts were rolled back.
    pub(super) fn clear(&mut self) {
        self.seq.clear();
    }
}

/// Hashes a key with one multiplication instead of SipHash, which showed in the profile (about
/// 1,000 instructions per task for a map's three uses). No one can craft keys that collide: the
/// hub makes the ids, and a crafted set would only make the map slower, never wrong.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0.rotate_left(29) ^ key).wrapping_mul(MIX);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads consecutive keys apart.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
