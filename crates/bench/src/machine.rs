//! The machine a report was measured on, as the report prints it beside its figures: cores and
//! CPU model, how long the disk under the temporary directory (where the bench's own hub keeps
//! its data) takes to make 4 KiB durable, and the kernel's writeback settings when the database is
//! on this machine.
//!
//! Machines here differ in speed by up to 3x, most of it in fsync and system calls; and a
//! database host's writeback settings decided PostgreSQL's latency tail (BENCHMARKS.md). A figure
//! without these beside it cannot be compared with another machine's.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

/// Writes of 4 KiB, each made durable before the next: enough for a stable mean (about 50 ms
/// on a fast disk), as `dd bs=4k count=200 oflag=dsync` would do.
const FSYNC_WRITES: u32 = 200;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    /// Mean time of a 4 KiB write made durable (`fdatasync`), in the temporary directory.
    pub fsync_4k_ms: Option<f64>,
    /// The kernel's writeback settings; `None` when the database is on another machine (a
    /// PostgreSQL URL naming another host) or they cannot be read.
    pub writeback: Option<Writeback>,
}

impl Machine {
    /// Reads this machine. `store` is the PostgreSQL URL the hubs used, `None` for SQLite
    /// (whose data is on this machine).
    pub fn read(store: Option<&str>) -> Machine {
        let database_here =
            store.is_none_or(|url| hive_store::postgres::is_on_this_machine(url).unwrap_or(false));
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
            fsync_4k_ms: fsync_ms(&std::env::temp_dir()).ok(),
            writeback: database_here.then(Writeback::read).flatten(),
        }
    }

    /// One line: "2 cores (model); fsync of 4 KiB 0.24 ms; writeback ...".
    pub fn describe(&self) -> String {
        let fsync = self.fsync_4k_ms.map_or("fsync not measured".into(), |ms| {
            format!("fsync of 4 KiB {ms:.2} ms (mean of {FSYNC_WRITES} in the temporary directory)")
        });
        let writeback = self.writeback.as_ref().map_or(
            "the database host's writeback not read (not this machine)".into(),
            Writeback::describe,
        );
        format!("{} cores ({}); {fsync}; {writeback}", self.cores, self.cpu)
    }
}

/// The kernel settings that decide when dirty pages go to disk (`/proc/sys/vm`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Writeback {
    /// Background writeback starts at this many dirty bytes; 0 when the ratio applies.
    pub dirty_background_bytes: u64,
    /// Background writeback starts at this share of memory (percent), unless the bytes are set.
    pub dirty_background_ratio: u64,
    /// Dirty pages older than this are written back, in hundredths of a second.
    pub dirty_expire_centisecs: u64,
}

impl Writeback {
    fn read() -> Option<Writeback> {
        let setting = |name: &str| -> Option<u64> {
            std::fs::read_to_string(Path::new("/proc/sys/vm").join(name))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(Writeback {
            dirty_background_bytes: setting("dirty_background_bytes")?,
            dirty_background_ratio: setting("dirty_background_ratio")?,
            dirty_expire_centisecs: setting("dirty_expire_centisecs")?,
        })
    }

    pub fn describe(&self) -> String {
        let from = if self.dirty_background_bytes > 0 {
            format!(
                "from {} MiB dirty",
                self.dirty_background_bytes as f64 / (1 << 20) as f64
            )
        } else {
            format!("from {}% of memory dirty", self.dirty_background_ratio)
        };
        format!(
            "kernel writeback {from}, or after {} s",
            self.dirty_expire_centisecs as f64 / 100.0
        )
    }
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Mean milliseconds of [`FSYNC_WRITES`] sequential 4 KiB writes to a new file in `dir`, each
/// followed by `fdatasync`. The file is removed when done.
fn fsync_ms(dir: &Path) -> std::io::Result<f64> {
    let mut file: File = tempfile::tempfile_in(dir)?;
    let block = [0u8; 4096];
    // The first write allocates the file's first blocks; a warm-up like dd's first block.
    file.write_all(&block)?;
    file.sync_data()?;
    file.seek(SeekFrom::Start(0))?;
    let started = Instant::now();
    for _ in 0..FSYNC_WRITES {
        file.write_all(&block)?;
        file.sync_data()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / f64::from(FSYNC_WRITES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_says_which_threshold_applies() {
        let ratio = Writeback {
            dirty_background_bytes: 0,
            dirty_background_ratio: 10,
            dirty_expire_centisecs: 3000,
        };
        assert_eq!(
            ratio.describe(),
            "kernel writeback from 10% of memory dirty, or after 30 s"
        );
        let bytes = Writeback {
            dirty_background_bytes: 32 << 20,
            ..ratio
        };
        assert_eq!(
            bytes.describe(),
            "kernel writeback from 32 MiB dirty, or after 30 s"
        );
    }

    #[test]
    fn a_remote_database_leaves_writeback_unread() {
        let remote = Machine::read(Some("postgres://hive@db.example:5432/hive"));
        assert_eq!(remote.writeback, None);
        assert!(remote.describe().contains("not this machine"));
        let here = Machine::read(None);
        // Linux has these settings; the report is built for it.
        assert!(here.writeback.is_some(), "{here:?}");
    }

    #[test]
    fn fsync_is_measured_in_the_given_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ms = fsync_ms(dir.path()).unwrap();
        assert!(ms > 0.0, "{ms}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(fsync_ms(&dir.path().join("missing")).is_err());
    }
}
