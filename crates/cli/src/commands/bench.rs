//! `hive bench`: run the benchmark (see the `hive-bench` crate), print the table, write the JSON
//! and the plot.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use hive_bench::target::Target;
use hive_bench::{BenchOptions, Workload};

use crate::args::BenchArgs;
use crate::{Failure, Outcome};

/// `hub`: an external hub given with `--hub` (with `--token` and `--ca-file` for it), or `None`
/// to start one.
pub async fn run(args: BenchArgs, hub: Option<&crate::commands::Target>) -> Outcome {
    if args.workers == 0
        || args.slots == 0
        || args.batch == 0
        || args.rate == Some(0)
        || args.routing_slots == 0
    {
        return Err(Failure::usage(anyhow!(
            "--workers, --slots, --batch, --rate and --routing-slots must be at least 1"
        )));
    }
    let workloads = args
        .workloads
        .iter()
        .map(|name| {
            Workload::parse(name).ok_or_else(|| {
                Failure::usage(anyhow!(
                    "--workloads: unknown workload {name:?}; expected batched, single, agents, swarm, latency, cpu, queued, soak, overload, routing, consensus or neural"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store = bench_store(&args)?;
    if args.hubs != 1 && (store.is_none() || hub.is_some() || !(1..=16).contains(&args.hubs)) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--hubs: 1-16, and several only with --store or a --hub-config that sets store.url (hubs share a PostgreSQL database) and without --hub"
        )));
    }
    if args.spread && args.hubs < 2 {
        return Err(Failure::usage(anyhow!(
            "--spread: spreads the load over several hubs, so it needs --hubs 2 or more"
        )));
    }
    // An unreadable --ca-file is the caller's to fix, said before anything runs.
    let hub = hub
        .map(|h| Target::external(&h.url, h.token.clone(), h.ca_file.clone()))
        .transpose()
        .map_err(Failure::usage)?;
    let hive = std::env::current_exe()
        .context("cannot find the hive executable")
        .map_err(Failure::usage)?;
    let options = BenchOptions {
        hub,
        hive,
        duration: args.duration,
        workers: args.workers,
        slots: args.slots,
        batch: args.batch,
        rate: args.rate,
        queued_tasks: args.queued_tasks,
        soak_tasks: args.soak_tasks,
        workloads,
        format: args.frames.format(),
        broadcasters: args.broadcasters,
        hub_config: args.hub_config.clone(),
        store,
        hubs: args.hubs,
        spread: args.spread,
        seed: args.seed,
        routing_slots: args.routing_slots,
    };
    let report = hive_bench::run(options)
        .await
        .map_err(|e| Failure { code: 1, error: e })?;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("serialisable");
        std::fs::write(path, text)
            .with_context(|| format!("--json {}", path.display()))
            .map_err(Failure::usage)?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, hive_bench::plot::svg(&report.timeline))
            .with_context(|| format!("--plot {}", path.display()))
            .map_err(Failure::usage)?;
        if let Some(routing) = &report.routing {
            let beside = path.with_file_name(format!(
                "{}-routing.svg",
                path.file_stem().unwrap_or_default().to_string_lossy()
            ));
            std::fs::write(&beside, hive_bench::routing::plot::svg(routing))
                .with_context(|| format!("--plot {}", beside.display()))
                .map_err(Failure::usage)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The database the bench's hubs use: `--store`, else the `[store] url` of `--hub-config`, else
/// none (SQLite). A database named in the file is treated as `--store` names one: the hubs
/// keep their state in a new schema of it, dropped after, so a benchmark never writes into the
/// tables a hub of that file serves, and the report names the database it measured. The file
/// may not give replicas, whichever flag names the database: the hubs would read from the
/// replicas' copy of the file's tables, not from their new schema.
fn bench_store(args: &BenchArgs) -> Result<Option<String>, Failure> {
    let Some(path) = &args.hub_config else {
        return Ok(args.store.clone());
    };
    let file = crate::config::load(path).map_err(|e| Failure::usage(e.context("--hub-config")))?;
    if file.has_replicas() {
        return Err(Failure::usage(anyhow!(
            "--hub-config {}: store.replicas / store.replica_max_lag_ms: the bench's hubs keep \
             their state in a new schema, which the replicas would not serve; leave them out \
             of the file",
            path.display()
        )));
    }
    Ok(args
        .store
        .clone()
        .or_else(|| file.store_url().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn bench_args(flags: &[&str]) -> BenchArgs {
        let cli = Cli::try_parse_from(["hive", "bench"].iter().chain(flags)).expect("valid flags");
        match cli.command {
            Command::Bench(args) => args,
            _ => unreachable!("parsed as bench"),
        }
    }

    #[test]
    fn the_store_comes_from_the_flag_then_the_hub_config() {
        let dir = tempfile::tempdir().unwrap();
        let with_store = dir.path().join("pg.toml");
        std::fs::write(&with_store, "[store]\nurl = \"postgres://hive@db/hive\"\n").unwrap();
        let without = dir.path().join("plain.toml");
        std::fs::write(&without, "[metrics]\nenabled = false\n").unwrap();
        let store = |flags: &[&str]| bench_store(&bench_args(flags)).ok().flatten();

        assert_eq!(store(&[]), None);
        assert_eq!(store(&["--hub-config", without.to_str().unwrap()]), None);
        assert_eq!(
            store(&["--hub-config", with_store.to_str().unwrap()]).as_deref(),
            Some("postgres://hive@db/hive")
        );
        assert_eq!(
            store(&[
                "--hub-config",
                with_store.to_str().unwrap(),
                "--store",
                "postgres://x@h/y"
            ])
            .as_deref(),
            Some("postgres://x@h/y")
        );
        let replicas = dir.path().join("replicas.toml");
        std::fs::write(
            &replicas,
            "[store]\nurl = \"postgres://hive@db/hive\"\nreplicas = [\"postgres://hive@r/hive\"]\n",
        )
        .unwrap();
        for flags in [
            &["--hub-config", replicas.to_str().unwrap()][..],
            &[
                "--hub-config",
                replicas.to_str().unwrap(),
                "--store",
                "postgres://x@h/y",
            ],
        ] {
            let err =
                bench_store(&bench_args(flags)).expect_err("replicas would read the file's tables");
            assert_eq!(err.code, 2);
            assert!(
                format!("{:#}", err.error).contains("store.replicas"),
                "{:#}",
                err.error
            );
        }
        let missing = dir.path().join("missing.toml");
        let err = bench_store(&bench_args(&["--hub-config", missing.to_str().unwrap()]))
            .expect_err("a missing file is an error");
        assert_eq!(err.code, 2);
        assert!(
            format!("{:#}", err.error).contains("--hub-config"),
            "{:#}",
            err.error
        );
    }
}
