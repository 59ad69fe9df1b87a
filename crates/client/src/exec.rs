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
//! `HIVE_TASK_ID`, `HIVE_ATTEMPT` and `HIVE_CAPABILITY` are set in its environment. A task with
//! parents (`depends_on`) also gets their results: `HIVE_INPUTS` holds the assignment's `inputs`
//! object, or, when that is over [`MAX_INPUTS_IN_ENV`] bytes (past what Linux lets one variable
//! hold), `HIVE_INPUTS_FILE` names a file holding it, removed when the command ends.
//! `HIVE_FAILED_INPUTS` lists, comma-separated, the parents that did not succeed (a task with
//! `on_parent_failure: "run"`).

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;

use hive_proto::RawValue;
use hive_proto::protocol::Assignment;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

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
        let mut child = Command::new("sh");
        child
            .arg("-c")
            .arg(&command)
            .env("HIVE_TASK_ID", &task.task_id)
            .env("HIVE_ATTEMPT", task.attempt.to_string())
            .env("HIVE_CAPABILITY", &task.capability);
        let _inputs_file = match pass_inputs(&mut child, &task) {
            Ok(file) => file,
            Err(e) => return Outcome::failure(format!("cannot write the inputs file: {e}"), true),
        };
        let child = child
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

/// The most bytes of inputs passed in `HIVE_INPUTS`; Linux refuses a variable over 128 KiB.
pub const MAX_INPUTS_IN_ENV: usize = 64 * 1024;

/// Puts the task's inputs in the command's environment, or in a file it names; the file (if any)
/// is removed when the returned guard drops.
fn pass_inputs(command: &mut Command, task: &Assignment) -> std::io::Result<Option<RemoveOnDrop>> {
    if !task.failed_inputs.is_empty() {
        command.env("HIVE_FAILED_INPUTS", task.failed_inputs.join(","));
    }
    let Some(inputs) = &task.inputs else {
        return Ok(None);
    };
    if inputs.get().len() <= MAX_INPUTS_IN_ENV {
        command.env("HIVE_INPUTS", inputs.get());
        return Ok(None);
    }
    // The id comes from the hub: only its safe characters go into a path.
    let id: String = task
        .task_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let name = format!(
        "hive-inputs-{id}-{}-{}.json",
        task.attempt,
        std::process::id()
    );
    let path = std::env::temp_dir().join(name);
    // Readable by this user only, and never another file at that path (no following a link
    // someone else placed there).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let guard = RemoveOnDrop(path);
    file.write_all(inputs.get().as_bytes())?;
    command.env("HIVE_INPUTS_FILE", &guard.0);
    Ok(Some(guard))
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(inputs: Option<String>, failed: &[&str]) -> Assignment {
        Assignment {
            task_id: "t-1".into(),
            attempt: 2,
            capability: "reduce".into(),
            payload: RawValue::from_string("null".into()).unwrap(),
            priority: 5,
            timeout_ms: 10_000,
            deadline_ms: None,
            inputs: inputs.map(|text| RawValue::from_string(text).unwrap()),
            failed_inputs: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    async fn output_of(command: &str, task: Assignment) -> String {
        match ExecExecutor::run(command.into(), task).await {
            Outcome::Success(output) => output.get().to_string(),
            Outcome::Failure { error, .. } => panic!("{command}: {error}"),
        }
    }

    #[tokio::test]
    async fn inputs_reach_the_command_in_its_environment() {
        let inputs = r#"{"a":[1,2],"b":{"status":"failed","error":"boom"}}"#;
        let command =
            r#"printf '{"inputs":%s,"failed":"%s"}' "$HIVE_INPUTS" "$HIVE_FAILED_INPUTS""#;
        let output = output_of(command, task(Some(inputs.into()), &["b"])).await;
        assert_eq!(output, format!(r#"{{"inputs":{inputs},"failed":"b"}}"#));
        let unset = r#"printf '"%s%s"' "${HIVE_INPUTS-unset}" "${HIVE_INPUTS_FILE-}""#;
        assert_eq!(output_of(unset, task(None, &[])).await, r#""unset""#);
    }

    #[tokio::test]
    async fn inputs_too_large_for_the_environment_come_in_a_file_removed_after() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_INPUTS_IN_ENV));
        let command = r#"f="$HIVE_INPUTS_FILE"; printf '{"env":"%s","path":"%s","bytes":%s,"head":"%s"}' "${HIVE_INPUTS-unset}" "$f" "$(wc -c < "$f")" "$(head -c 8 "$f" | tr -d '"{:')""#;
        let output = output_of(command, task(Some(big.clone()), &[])).await;
        let written: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(written["env"], "unset");
        assert_eq!(written["bytes"], big.len());
        assert_eq!(written["head"], "axx", "the file holds the inputs");
        let path = written["path"].as_str().unwrap();
        assert!(path.contains("hive-inputs-t-1-2-"), "{path}");
        assert!(
            !std::path::Path::new(path).exists(),
            "removed after the command ended"
        );
    }
}
