//! `hive serve`: resolve the configuration, start the hub, stop it gracefully on SIGINT/SIGTERM.

use std::process::ExitCode;

use hive_server::Hub;

use crate::args::ServeArgs;
use crate::config;
use crate::{Failure, Outcome};

pub async fn run(args: ServeArgs) -> Outcome {
    let file = match &args.config {
        Some(path) => config::load(path).map_err(Failure::usage)?,
        None => config::RawConfig::default(),
    };
    let config = config::resolve(&args, file).map_err(Failure::usage)?;
    let place = match &config.postgres {
        Some(pg) => hive_server::redact_url(&pg.url),
        None => config.data_dir.display().to_string(),
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let drain_grace = config.postgres.as_ref().map(|pg| pg.drain_grace);
    let hub = Hub::start(config).await.map_err(|e| Failure {
        code: 1,
        error: e.into(),
    })?;
    eprintln!(
        "hive listening on {scheme}://{} (data in {place}, {} unfinished tasks recovered)",
        hub.addr(),
        hub.recovered()
    );
    let mut lost = tokio::select! {
        _ = super::stop_signal() => false,
        _ = hub.lease_lost() => true,
    };
    if !lost && let Some(grace) = drain_grace {
        eprintln!(
            "draining: queued work goes to the other hubs, running tasks finish (up to {}s)",
            grace.as_secs()
        );
        tokio::select! {
            left = hub.drain(grace) => if left > 0 {
                eprintln!("{left} attempts still running: the other hubs take them over");
            },
            _ = hub.lease_lost() => lost = true,
        }
    }
    eprintln!("shutting down: finishing commits");
    hub.shutdown().await;
    if lost {
        // Another hub took this one's tasks over (its lease ran out): a supervisor starts it
        // again, as a new member.
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!("this hub lost its lease among the hubs of its database"),
        });
    }
    Ok(ExitCode::SUCCESS)
}
