//! The README's map-reduce, run as it is written there: `hive worker --exec` commands read their
//! parents' results from `HIVE_INPUTS`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::util::*;

/// The shell block that follows the map-reduce marker in the README.
fn readme_block() -> String {
    let readme = include_str!("../../../../README.md");
    let marker = readme
        .find("<!-- map-reduce")
        .expect("the README's map-reduce marker");
    let start = marker + readme[marker..].find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + readme[start..].find("```").expect("the block's end");
    readme[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_map_reduce_adds_up_the_mapped_counts() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path(), free_port()).await;
    let block = readme_block();
    assert!(block.contains("HIVE_INPUTS"), "{block}");
    let script = block.replace("./target/release/hive", env!("CARGO_BIN_EXE_hive"));
    let run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("HIVE_HUB", &hub.url)
        .env("HIVE_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the block finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let task: Value = serde_json::from_str(&stdout).expect("the reducer as JSON");
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["depends_on"].as_array().unwrap().len(), 3);
    assert_eq!(task["result"], 9, "4 + 2 + 3 words");
    hub.terminate().await;
}
