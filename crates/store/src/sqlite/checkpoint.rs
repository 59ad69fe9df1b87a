//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the threshold: with a large
//! database that commit, and every request waiting on it, stalls for tens of milliseconds (seen
//! in `hive bench` as a 100 ms p99 spike after a million-task run). So this thread runs a
//! PASSIVE checkpoint on its own connection every interval: in WAL mode that copies pages while
//! the writer keeps committing. The writer keeps a far higher threshold of its own as a backstop,
//! because only a checkpoint that reaches the last frame lets the WAL restart (see `writer`).

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

pub struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn spawn(path: PathBuf, every: Duration) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hive-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
                // On the way out, fold the whole WAL back so the next start reads a small one.
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer { stop, thread })
    }

    /// Stops the thread after a last, full checkpoint.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
