//! `ExecExecutor`: runs a shell command per task, the heart of `hive worker --exec`.
//!
//! The payload (JSON) goes to the command's stdin; its stdout is the output, parsed as JSON when
//! it is JSON and kept as a JSON string otherwise. A non-zero exit is a failure (retryable) whose
//! error is the command's stderr.
//!
//! Each command runs in a process group of its own, and the whole group is killed when the attempt
//! ends in any way: cancelled, timed out, stopped by the worker's shutdown, or finished (what it
//! left running in the background goes with it). Killing only the `sh -c` would leave its
//! children running, re-parented to PID 1.
//! `HIVE_TASK_ID`, `HIVE_ATTEMPT` and `HIVE_CAPABILITY` are set in its environment.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;

use hive_proto::RawValue;
use hive_proto::protocol::Assignment;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::worker::{Executor, Outcome};

pub struct ExecExecutor {
    command: String,
}

impl ExecExecutor {
    pub fn new(command: impl Into<String>) -> Self {
        ExecExecutor {
            command: command.into(),
        }
    }

    async fn run(command: String, task: Assignment) -> Outcome {
        let child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("HIVE_TASK_ID", &task.task_id)
            .env("HIVE_ATTEMPT", task.attempt.to_string())
            .env("HIVE_CAPABILITY", &task.capability)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => return Outcome::failure(format!("cannot start {command:?}: {e}"), true),
        };
        let _group = child.id().and_then(ProcessGroup::of_leader);
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin closes the pipe early; that is fine.
            let _ = stdin.write_all(task.payload.get().as_bytes()).await;
        }
        let output = match child.wait_with_output().await {
            Ok(output) => output,
            Err(e) => return Outcome::failure(format!("waiting for {command:?}: {e}"), true),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            let error = if stderr.is_empty() {
                format!("{command:?} exited with {}", output.status)
            } else {
                stderr
            };
            return Outcome::failure(error, true);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let trimmed = stdout.trim();
        let output = RawValue::from_string(trimmed.to_string()).unwrap_or_else(|_| {
            let as_string = serde_json::to_string(trimmed).expect("a string serialises");
            RawValue::from_string(as_string).expect("a JSON string")
        });
        Outcome::Success(output)
    }
}

/// Kills its process group when dropped: when the attempt's future ends or is dropped.
struct ProcessGroup(rustix::process::Pid);

impl ProcessGroup {
    fn of_leader(pid: u32) -> Option<Self> {
        rustix::process::Pid::from_raw(i32::try_from(pid).ok()?).map(ProcessGroup)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // ESRCH (the group is gone already) is the usual answer, and fine.
        let _ = rustix::process::kill_process_group(self.0, rustix::process::Signal::KILL);
    }
}

impl Executor for ExecExecutor {
    fn execute(&self, task: Assignment) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(Self::run(self.command.clone(), task))
    }
}
