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
    let data_dir = config.data_dir.clone();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let hub = Hub::start(config).await.map_err(|e| Failure {
        code: 1,
        error: e.into(),
    })?;
    eprintln!(
        "hive listening on {scheme}://{} (data in {}, {} unfinished tasks recovered)",
        hub.addr(),
        data_dir.display(),
        hub.recovered()
    );
    super::stop_signal().await;
    eprintln!("shutting down: finishing commits");
    hub.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
