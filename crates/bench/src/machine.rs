//! The machine a report was measured on, as the report prints it beside its figures: cores and
//! CPU model, how long the disk under the temporary directory (where the bench's own hub keeps
//! its data on SQLite) takes to make 4 KiB durable, the kernel's writeback settings when the
//! database is on this machine, and a PostgreSQL server's settings that decide how long a
//! commit waits.
//!
//! Machines here differ in speed by up to 3x, most of it in fsync and system calls; and a
//! database host's writeback settings decided PostgreSQL's latency tail (BENCHMARKS.md). A figure
//! without these beside it cannot be compared with another machine's. Read once, before any hub
//! starts, so that no hub's writes are in the fsync timing.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use crate::BenchOptions;

/// Writes of 4 KiB, each made durable before the next: enough for a stable mean (about 50 ms
/// on a fast disk), as `dd bs=4k count=200 oflag=dsync` would do.
const FSYNC_WRITES: u32 = 200;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    /// Mean time of a 4 KiB write made durable (`fdatasync`), in the temporary directory.
    pub fsync_4k_ms: Option<f64>,
    /// Where the database of the hubs under test is.
    pub database: Database,
    /// The kernel's writeback settings, read when the database is on this machine (`None`
    /// otherwise, or when `/proc/sys/vm` cannot be read).
    pub writeback: Option<Writeback>,
    /// The PostgreSQL server's commit settings, when the bench's hubs use one.
    pub postgres: Option<ServerSettings>,
}

/// A database server's settings as the report gives them: read, or why not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ServerSettings {
    /// In the order they are printed; empty when they could not be read.
    pub settings: Vec<Setting>,
    /// Why they could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
}

impl ServerSettings {
    fn read_postgres(url: &str) -> ServerSettings {
        match hive_store::postgres::settings::commit_settings(url) {
            Ok(settings) => ServerSettings {
                settings: settings
                    .into_iter()
                    .map(|(name, value)| Setting { name, value })
                    .collect(),
                error: None,
            },
            Err(e) => ServerSettings {
                settings: Vec::new(),
                error: Some(e.to_string()),
            },
        }
    }

    /// "; PostgreSQL synchronous_commit on, ..." or why they were not read.
    fn describe(&self) -> String {
        match &self.error {
            Some(e) => format!("; PostgreSQL settings not read ({e})"),
            None => {
                let settings: Vec<String> = self
                    .settings
                    .iter()
                    .map(|s| format!("{} {}", s.name, s.value))
                    .collect();
                format!("; PostgreSQL {}", settings.join(", "))
            }
        }
    }
}

/// Where the database of the hubs under test is, as far as the bench can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Database {
    /// SQLite in the bench's own hub, or a PostgreSQL URL on loopback or a Unix socket.
    ThisMachine,
    /// A PostgreSQL URL naming another host (or one that does not parse).
    AnotherHost,
    /// A hub the bench did not start (`--hub`): its database could be anywhere.
    Unknown,
}

impl Database {
    /// Where the hubs' database is for these options. `store` is `--store`, or the `[store]
    /// url` of `--hub-config` when the flag is absent (the CLI resolves it).
    pub fn of(options: &BenchOptions) -> Database {
        let shared_hub = measures_a_shared_hub(options);
        match (&options.hub, &options.store) {
            // The routing, consensus and neural workloads run on SQLite hubs of their own.
            (Some(_), _) if shared_hub => Database::Unknown,
            (_, Some(url)) if shared_hub => match hive_store::postgres::is_on_this_machine(url) {
                Some(true) => Database::ThisMachine,
                _ => Database::AnotherHost,
            },
            _ => Database::ThisMachine,
        }
    }
}

/// The PostgreSQL server of the hub the bench starts and measures, if it uses one (not with
/// `--hub`, whose store is unknown, nor for workloads whose hubs are their own, on SQLite).
pub fn measured_postgres(options: &BenchOptions) -> Option<&str> {
    match (&options.hub, &options.store) {
        (None, Some(url)) if measures_a_shared_hub(options) => Some(url),
        _ => None,
    }
}

/// Whether a workload runs on the one hub the bench measures (`--hub`, or the one it starts on
/// `--store`): the routing, consensus and neural workloads run on SQLite hubs of their own.
fn measures_a_shared_hub(options: &BenchOptions) -> bool {
    !options.workloads.iter().all(|w| w.own_hub())
}

impl Machine {
    /// Reads this machine (blocking: it times [`FSYNC_WRITES`] durable writes), and the
    /// settings of `postgres`, the server the bench's hubs use, if any.
    pub fn read(database: Database, postgres: Option<&str>) -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
            fsync_4k_ms: fsync_ms(&std::env::temp_dir()).ok(),
            database,
            writeback: (database == Database::ThisMachine)
                .then(Writeback::read)
                .flatten(),
            postgres: postgres.map(ServerSettings::read_postgres),
        }
    }

    /// One line: "2 cores (model); fsync of 4 KiB 0.24 ms (...); kernel writeback ...".
    pub fn describe(&self) -> String {
        let fsync = self.fsync_4k_ms.map_or("fsync not measured".into(), |ms| {
            format!("fsync of 4 KiB {ms:.2} ms (mean of {FSYNC_WRITES} in the temporary directory)")
        });
        let writeback = match (self.database, &self.writeback) {
            (Database::ThisMachine, Some(writeback)) => writeback.describe(),
            (Database::ThisMachine, None) => "kernel writeback settings unreadable".into(),
            (Database::AnotherHost, _) => {
                "the database host's writeback not read (another host)".into()
            }
            (Database::Unknown, _) => {
                "the database host's writeback not read (a hub this bench did not start)".into()
            }
        };
        let postgres = self
            .postgres
            .as_ref()
            .map_or(String::new(), ServerSettings::describe);
        format!(
            "{} cores ({}); {fsync}; {writeback}{postgres}",
            self.cores, self.cpu
        )
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
    fn writeback_is_read_only_for_a_database_on_this_machine() {
        let remote = Machine::read(Database::AnotherHost, None);
        assert_eq!(remote.writeback, None);
        assert!(remote.describe().contains("(another host)"), "{remote:?}");
        let unknown = Machine::read(Database::Unknown, None);
        assert_eq!(unknown.writeback, None);
        assert!(unknown.describe().contains("did not start"), "{unknown:?}");
        let here = Machine::read(Database::ThisMachine, None);
        // Linux has these settings; the report is built for it.
        assert!(here.writeback.is_some(), "{here:?}");
        assert!(
            here.describe().contains("kernel writeback from"),
            "{here:?}"
        );
    }

    #[test]
    fn the_database_is_placed_by_the_hub_and_store_options() {
        use crate::Workload;
        let bench =
            |hub: Option<&str>, store: Option<&str>, workloads: Vec<Workload>| BenchOptions {
                hub: hub.map(crate::target::Target::plain),
                hive: "hive".into(),
                duration: std::time::Duration::from_secs(1),
                workers: 1,
                slots: 1,
                batch: 1,
                rate: None,
                queued_tasks: 0,
                soak_tasks: 0,
                workloads,
                format: Default::default(),
                broadcasters: 1,
                hub_config: None,
                store: store.map(String::from),
                hubs: 1,
                spread: false,
                seed: 0,
                routing_slots: 1,
            };
        let options = |hub, store, workloads| Database::of(&bench(hub, store, workloads));
        let single = || vec![Workload::Single];
        assert_eq!(options(None, None, single()), Database::ThisMachine);
        let local = Some("postgres://hive@127.0.0.1:54329/hive");
        assert_eq!(options(None, local, single()), Database::ThisMachine);
        let remote = Some("postgres://hive@db.example/hive");
        assert_eq!(options(None, remote, single()), Database::AnotherHost);
        let hub = Some("http://10.0.0.5:7700");
        assert_eq!(options(hub, None, single()), Database::Unknown);
        // The routing workload's hubs are the bench's own, on SQLite, whatever --store says.
        assert_eq!(
            options(None, remote, vec![Workload::Routing]),
            Database::ThisMachine
        );
        // Whose server settings the report prints: the measured hub's only.
        let measured = |hub, store, workloads| {
            measured_postgres(&bench(hub, store, workloads)).map(str::to_string)
        };
        assert_eq!(measured(None, remote, single()).as_deref(), remote);
        assert_eq!(measured(None, None, single()), None);
        assert_eq!(measured(hub, remote, single()), None);
        assert_eq!(measured(None, remote, vec![Workload::Routing]), None);
    }

    #[test]
    fn the_postgres_settings_are_printed_or_said_to_be_unread() {
        let mut machine = Machine::read(Database::AnotherHost, None);
        assert!(!machine.describe().contains("PostgreSQL"), "{machine:?}");
        let setting = |name: &str, value: &str| Setting {
            name: name.into(),
            value: value.into(),
        };
        machine.postgres = Some(ServerSettings {
            settings: vec![
                setting("synchronous_commit", "on"),
                setting("min_wal_size", "80MB"),
            ],
            error: None,
        });
        assert!(
            machine
                .describe()
                .ends_with("; PostgreSQL synchronous_commit on, min_wal_size 80MB"),
            "{}",
            machine.describe()
        );
        let unread = Machine::read(
            Database::AnotherHost,
            Some("postgres://nobody@127.0.0.1:1/x"),
        );
        assert!(
            unread.describe().contains("PostgreSQL settings not read (")
                && unread.describe().contains("cannot connect"),
            "{}",
            unread.describe()
        );
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
