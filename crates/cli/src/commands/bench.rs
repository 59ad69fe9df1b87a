//! `hive bench`: run the benchmark (see the `hive-bench` crate), print the table, write the JSON
//! and the plot.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use hive_bench::{BenchOptions, Workload};

use crate::args::BenchArgs;
use crate::{Failure, Outcome};

pub async fn run(args: BenchArgs, hub: Option<&str>) -> Outcome {
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
    if args.hubs != 1 && (args.store.is_none() || hub.is_some() || !(1..=16).contains(&args.hubs)) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--hubs: 1-16, and several only with --store (hubs share a PostgreSQL database) and without --hub"
        )));
    }
    let hive = std::env::current_exe()
        .context("cannot find the hive executable")
        .map_err(Failure::usage)?;
    let options = BenchOptions {
        hub: hub.map(str::to_string),
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
        store: args.store.clone(),
        hubs: args.hubs,
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
