//! `hive worker`: an agent that runs a shell command per task.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use hive_client::WorkerOptions;
use hive_client::exec::ExecExecutor;
use hive_client::worker::{WorkerExit, run_worker};

use crate::args::WorkerArgs;
use crate::{Failure, Outcome};

/// `NAME` or `NAME=LEVEL`.
fn parse_capability(text: &str) -> Result<(String, f64), Failure> {
    match text.split_once('=') {
        None => Ok((text.to_string(), 1.0)),
        Some((name, level)) => match level.parse::<f64>() {
            Ok(level) if (0.0..=1.0).contains(&level) => Ok((name.to_string(), level)),
            _ => Err(Failure::usage(anyhow!(
                "--capability {text:?}: the level after '=' must be a number from 0.0 to 1.0"
            ))),
        },
    }
}

pub async fn run(args: WorkerArgs, hub: &super::Target) -> Outcome {
    if args.slots == 0 {
        return Err(Failure::usage(anyhow!("--slots must be at least 1")));
    }
    let capabilities = args
        .capabilities
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<Vec<_>, _>>()?;
    // The default name (`HOST:CAPABILITIES`) is made from the capabilities' names.
    let names: Vec<&str> = capabilities.iter().map(|(name, _)| name.as_str()).collect();
    let mut options = WorkerOptions::new(&hub.url, &names, args.slots);
    options.token = hub.token.clone();
    options.ca_file = hub.ca_file.clone();
    options.capabilities = capabilities;
    options.groups = args.groups;
    options.format = args.frames.format();
    if let Some(name) = args.name {
        options.name = name;
    }
    options.grace = args.grace;
    let executor = Arc::new(ExecExecutor::new(args.exec));
    match run_worker(options, executor, super::stop_signal()).await {
        Ok(WorkerExit::Drained) => {
            eprintln!("drained by the hub; all tasks finished");
            Ok(ExitCode::SUCCESS)
        }
        Ok(WorkerExit::Shutdown) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure::hub(e)),
    }
}
