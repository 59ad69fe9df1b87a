//! The whole path's instruction count: a real `hive serve` under callgrind, driven over loopback
//! by this process running natively (its HTTP clients and an in-process no-op worker speak the
//! real protocols), with the profile dumped between phases so that each phase's instructions are
//! counted apart from the hub's start-up and from each other.
//!
//! The phases, in order, on one hub with the default configuration (SQLite, least loaded):
//! - `startup`: from exec until the API answers and the worker is registered (reported only);
//! - `batched`: [`BATCHED`] tasks in requests of [`BATCH`], four submitters, until every result
//!   is committed;
//! - `single`: [`SINGLE`] tasks one per request, [`SINGLE_SUBMITTERS`] submitters, likewise;
//! - `agents`: [`AGENT_ROUNDS`] agent rounds (connect and register, read, drain, disconnect);
//! - `listings`: [`LISTINGS`] `GET /agents`, each of the agents the rounds left (offline), the
//!   worker and the hub's own `builtin`, counted per agent listed (`hive bench`'s agent
//!   workload lists every tenth round).
//!
//! What is counted is the hub binary's own instructions: Hive, the standard library, SQLite
//! (compiled in), not the C library's `malloc` and `memcpy` nor the kernel's system calls, which
//! differ by machine (see `callgrind`). The hub's timers run during each phase too; idle, they
//! cost about 0.4 M instructions a second under callgrind (about 1% of the shortest phases, the
//! agent rounds and the listings). Before each dump the driver waits 1.5 s for the hub's
//! background WAL checkpoint (every 250 ms), so that a phase pays for copying the pages it wrote
//! and not for those of the phase before. A task phase's end is confirmed with `GET /status` (a
//! count by status over every task): two or three such calls per phase, under 1% of its
//! instructions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hive_client::worker::{Outcome, WorkerExit, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;
use tokio_tungstenite::tungstenite::Message;

use crate::callgrind;
use crate::stages::{STAGES, stage_of};

pub const BATCHED: u64 = 20_000;
pub const BATCH: usize = 500;
pub const BATCH_SUBMITTERS: u64 = 4;
pub const SINGLE: u64 = 2_000;
pub const SINGLE_SUBMITTERS: u64 = 16;
pub const AGENT_ROUNDS: u64 = 200;
pub const AGENT_CONNECTIONS: usize = 4;
/// Enough that the hub's idle timers and the pause before the dump (below 1M instructions) are
/// under 1% of the phase (about 0.8M instructions a listing).
pub const LISTINGS: u64 = 200;
// Whole requests only: a remainder would never be sent and its phase would wait it out.
const _: () = assert!(BATCHED.is_multiple_of(BATCH as u64));

const CAPABILITY: &str = "perf";
/// Idle time before each dump, for the hub's background WAL checkpoint (every 250 ms).
const SETTLE: Duration = Duration::from_millis(1500);
/// Under callgrind the hub runs 50-100 times slower than natively: generous, but bounded.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

/// One phase's instructions: the hub binary's own, and all of them (with the C library).
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub own: u64,
    pub with_libraries: u64,
}

impl Count {
    /// Per unit of work (task, round).
    pub fn per(self, units: u64) -> Count {
        Count {
            own: self.own / units,
            with_libraries: self.with_libraries / units,
        }
    }
}

/// Instructions of each phase.
#[derive(Debug, Clone)]
pub struct Phases {
    pub startup: Count,
    pub batched: Count,
    pub single: Count,
    pub agents: Count,
    pub listings: Count,
    /// Agents in each listing.
    pub listed: u64,
    /// The hub's own instructions by [`STAGES`]: per batched task, per single task, per agent
    /// round.
    pub by_stage: Vec<(&'static str, [u64; 3])>,
}

impl Phases {
    pub fn per_batched_task(&self) -> Count {
        self.batched.per(BATCHED)
    }
    pub fn per_single_task(&self) -> Count {
        self.single.per(SINGLE)
    }
    pub fn per_agent_round(&self) -> Count {
        self.agents.per(AGENT_ROUNDS)
    }
    pub fn per_agent_listed(&self) -> Count {
        self.listings.per(LISTINGS * self.listed.max(1))
    }
}

/// Runs the phases against `hive` under callgrind; `keep`: a folder to leave the profiles in
/// (for `callgrind_annotate`), else they are removed.
pub fn measure(hive: &Path, keep: Option<&Path>) -> anyhow::Result<Phases> {
    let dir = tempfile::tempdir()?;
    let profiles = keep
        .map(Path::to_path_buf)
        .unwrap_or(dir.path().join("profiles"));
    std::fs::create_dir_all(&profiles)?;
    let out = profiles.join("hive.callgrind");
    // A profile left by an earlier run in a kept folder must not pass for this run's.
    for entry in std::fs::read_dir(&profiles)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("hive.callgrind") || name == "valgrind.log" {
            std::fs::remove_file(&path)?;
        }
    }
    let log = profiles.join("valgrind.log");
    let (mut hub, url) = HubProcess::spawn(hive, &out, &log, &dir.path().join("data"), &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let object = object_of(hive)?;
    let dump =
        |hub: &HubProcess, n: usize| -> anyhow::Result<(Count, HashMap<&'static str, u64>)> {
            // The hub checkpoints the WAL every 250 ms on a thread of its own: the pages a phase
            // wrote are copied in that phase, not in whichever comes next.
            std::thread::sleep(SETTLE);
            let file = PathBuf::from(format!("{}.{n}", out.display()));
            hub.dump(&file)?;
            let text = std::fs::read_to_string(&file)?;
            let profile = callgrind::read(&text, &object);
            let (own, with_libraries) = (profile.own(), profile.total.unwrap_or(0));
            if own == 0 || with_libraries == 0 {
                bail!("no instructions of {object} in {}", file.display());
            }
            let mut by_stage = HashMap::new();
            for (function, cost) in profile.by_function {
                *by_stage.entry(stage_of(function)).or_default() += cost;
            }
            let count = Count {
                own,
                with_libraries,
            };
            Ok((count, by_stage))
        };
    let executed = Arc::new(AtomicU64::new(0));
    let (stop_worker, worker) = runtime.block_on(async {
        ready(&url, &mut hub).await?;
        start_worker(&url, executed.clone()).await
    })?;
    let (startup, _) = dump(&hub, 1)?;
    let batched_tasks = run_tasks(&url, &executed, BATCHED, BATCH, BATCH_SUBMITTERS);
    runtime.block_on(within_limit(batched_tasks))?;
    let (batched, batched_stages) = dump(&hub, 2)?;
    let single_tasks = run_tasks(&url, &executed, SINGLE, 1, SINGLE_SUBMITTERS);
    runtime.block_on(within_limit(single_tasks))?;
    let (single, single_stages) = dump(&hub, 3)?;
    runtime.block_on(within_limit(agent_rounds(&url)))?;
    let (agents, agent_stages) = dump(&hub, 4)?;
    let listed = runtime.block_on(within_limit(listings(&url)))?;
    let (listings, _) = dump(&hub, 5)?;
    let by_stage = STAGES
        .iter()
        .map(|(stage, _)| *stage)
        .chain(["other"])
        .map(|stage| {
            let per = |stages: &HashMap<&str, u64>, units: u64| {
                stages.get(stage).copied().unwrap_or(0) / units
            };
            let row = [
                per(&batched_stages, BATCHED),
                per(&single_stages, SINGLE),
                per(&agent_stages, AGENT_ROUNDS),
            ];
            (stage, row)
        })
        .collect();

    let _ = stop_worker.send(());
    runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(60), worker).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(anyhow::anyhow!("the worker failed: {e}")),
            Ok(Err(e)) => Err(anyhow::anyhow!("the worker panicked: {e}")),
            Err(_) => Err(anyhow::anyhow!("the worker did not stop")),
        }
    })?;
    hub.stop()?;
    Ok(Phases {
        startup,
        batched,
        single,
        agents,
        listings,
        listed,
        by_stage,
    })
}

/// How callgrind names the hub's own object (`/hive`): what [`callgrind::read`] selects by.
pub(crate) fn object_of(hive: &Path) -> anyhow::Result<String> {
    let name = hive.file_name().and_then(|n| n.to_str());
    Ok(format!("/{}", name.context("the hub's file name")?))
}

/// A `hive serve` under callgrind, and valgrind's log; killed if the measurement fails half way.
pub(crate) struct HubProcess(Child, PathBuf);

impl HubProcess {
    /// Starts `hive serve` under callgrind on a free loopback port, with its data in `data`, the
    /// profile written to `out` and valgrind's log to `log`; `callgrind_args` are added to
    /// callgrind's own. Returns the hub and its URL (answering once [`ready`] says so).
    pub(crate) fn spawn(
        hive: &Path,
        out: &Path,
        log: &Path,
        data: &Path,
        callgrind_args: &[&str],
    ) -> anyhow::Result<(HubProcess, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(format!("--log-file={}", log.display()))
            .args(callgrind_args)
            .arg(hive)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            // The default log level, whatever the caller's environment says.
            .env_remove("HIVE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run valgrind (install it: apt-get install valgrind)")?;
        let hub = HubProcess(child, log.to_path_buf());
        Ok((hub, format!("http://127.0.0.1:{port}")))
    }

    /// Asks callgrind for a profile of the instructions since the last dump, written to `file`.
    pub(crate) fn dump(&self, file: &Path) -> anyhow::Result<()> {
        let output = Command::new("callgrind_control")
            .arg("--dump")
            .arg(self.0.id().to_string())
            .stdin(Stdio::null())
            .output()
            .context("cannot run callgrind_control (it comes with valgrind)")?;
        // It exits 0 whether or not it reached the process: its answer says.
        let answer = String::from_utf8_lossy(&output.stdout);
        if !answer.contains("OK.") {
            bail!(
                "callgrind_control --dump {} failed: {} {}",
                self.0.id(),
                answer.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // Wait for the file to be complete (callgrind writes the totals last) rather than
        // trust that it is by the time the command returns.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = std::fs::read_to_string(file)
                .map(|text| text.contains("\ntotals:"))
                .unwrap_or(false);
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("callgrind wrote no profile to {}", file.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the hub's clean shutdown.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).context("the hub's pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(anyhow::anyhow!("the hub exited with {status}")),
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the hub did not stop within 120 s of SIGTERM")
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A phase's work, given up after [`PHASE_LIMIT`] (a request the hub never answers must not
/// hang the check).
async fn within_limit<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(PHASE_LIMIT, work).await {
        Ok(outcome) => outcome,
        Err(_) => bail!("a phase did not end within {} s", PHASE_LIMIT.as_secs()),
    }
}

pub(crate) async fn ready(url: &str, hub: &mut HubProcess) -> anyhow::Result<()> {
    let client = HubClient::new(url);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if client.status().await.is_ok() {
            return Ok(());
        }
        if let Some(status) = hub.0.try_wait()? {
            // The log may be in a temporary folder, gone once this fails: its end goes along.
            let log = std::fs::read_to_string(&hub.1).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            bail!(
                "the hub under callgrind exited before it was ready ({status}); valgrind's log \
                 ends:\n{}",
                lines[lines.len().saturating_sub(12)..].join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!("the hub under callgrind was not ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type WorkerHandle = tokio::task::JoinHandle<Result<WorkerExit, hive_client::worker::WorkerError>>;

/// One no-op worker of 64 slots, registered before it returns.
async fn start_worker(
    url: &str,
    executed: Arc<AtomicU64>,
) -> anyhow::Result<(tokio::sync::oneshot::Sender<()>, WorkerHandle)> {
    let null = RawValue::from_string("null".into())?;
    let executor = Arc::new(move |_: Assignment| {
        executed.fetch_add(1, Ordering::Relaxed);
        let output = null.clone();
        async move { Outcome::Success(output) }
    });
    let mut options = WorkerOptions::new(url, &[CAPABILITY], 64);
    options.name = "perf-worker".into();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(run_worker(options, executor, async move {
        let _ = stopped.await;
    }));
    let client = HubClient::new(url);
    let deadline = Instant::now() + Duration::from_secs(60);
    // By name: the hub's own `builtin` agent is listed before the API answers.
    let registered = |agents: Vec<hive_proto::api::Agent>| {
        agents
            .iter()
            .any(|a| a.name == "perf-worker" && a.state != hive_proto::api::AgentState::Offline)
    };
    while !registered(client.agents().await?) {
        if Instant::now() > deadline {
            bail!("the worker did not register within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((stop, handle))
}

fn task() -> NewTask {
    NewTask {
        payload: Some(
            RawValue::from_string(r#"{"text":"a short payload","n":1}"#.into())
                .expect("valid JSON"),
        ),
        ..NewTask::new(CAPABILITY)
    }
}

/// `count` tasks from `submitters` closed-loop submitters, `batch` per request (1: the
/// single-task endpoint); returns when the worker ran them all and the hub committed them.
async fn run_tasks(
    url: &str,
    executed: &AtomicU64,
    count: u64,
    batch: usize,
    submitters: u64,
) -> anyhow::Result<()> {
    let before = succeeded(url).await?;
    let executed_before = executed.load(Ordering::Relaxed);
    let requests = count / batch as u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..submitters {
        let (client, next) = (HubClient::new(url), next.clone());
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                if batch == 1 {
                    client.submit(&task()).await?;
                } else {
                    client
                        .submit_batch((0..batch).map(|_| task()).collect())
                        .await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    // The worker's own count first, then one confirmation per 100 ms: polling the hub in a
    // tight loop would count the polls.
    let deadline = Instant::now() + PHASE_LIMIT;
    while executed.load(Ordering::Relaxed) - executed_before < count {
        if Instant::now() > deadline {
            bail!("the worker ran only some of {count} tasks");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while succeeded(url).await? - before < count {
        if Instant::now() > deadline {
            bail!("the hub committed only some of {count} results");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn succeeded(url: &str) -> anyhow::Result<u64> {
    let status = HubClient::new(url).status().await?;
    Ok(status.tasks.get("succeeded").copied().unwrap_or(0))
}

/// Like `hive bench`'s agent workload: connect and register, read the agent, drain it,
/// disconnect; four at a time.
async fn agent_rounds(url: &str) -> anyhow::Result<()> {
    let ws_url = url.replace("http://", "ws://") + "/ws/agent";
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for connection in 0..AGENT_CONNECTIONS {
        let (client, ws_url, next) = (HubClient::new(url), ws_url.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < AGENT_ROUNDS {
                agent_round(&client, &ws_url, connection).await?;
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

/// [`LISTINGS`] `GET /agents`, one after another; answers how many agents each listed: the
/// rounds' agents, the worker and the hub's own (`builtin`), the same in each.
async fn listings(url: &str) -> anyhow::Result<u64> {
    let client = HubClient::new(url);
    let mut listed = Vec::new();
    for _ in 0..LISTINGS {
        listed.push(client.agents().await?.len() as u64);
    }
    match listed[..] {
        [first, ..] if first > AGENT_ROUNDS && listed.iter().all(|n| *n == first) => Ok(first),
        _ => bail!("listings of {listed:?} agents: expected the same, over {AGENT_ROUNDS}"),
    }
}

async fn agent_round(client: &HubClient, ws_url: &str, connection: usize) -> anyhow::Result<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let name = format!("perf-agent-{connection}");
    let hello = serde_json::json!({
        "type": "hello", "name": name, "capabilities": ["perf-agents"], "slots": 1,
    });
    socket.send(Message::Text(hello.to_string().into())).await?;
    let welcome = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(_)) => continue,
            _ => bail!("the hub closed the agent's socket before its welcome"),
        }
    };
    let welcome: serde_json::Value = serde_json::from_str(&welcome)?;
    let id = welcome["agent_id"]
        .as_str()
        .context("a welcome without agent_id")?;
    client.agent(id).await?;
    client.drain(id).await?;
    socket.close(None).await?;
    // Wait for the hub's close frame, so the round's disconnect is counted in this phase.
    while let Some(Ok(_)) = socket.next().await {}
    Ok(())
}
