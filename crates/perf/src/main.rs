//! `hive-perf`: runs one fixed workload (`run NAME`), counts the whole path's instructions in a
//! real hub (`end-to-end`: see `hive_perf::end_to_end`), or checks the instruction counts of all
//! of them under `valgrind --tool=callgrind` against the committed baseline (`check`); and makes
//! or checks the link order of the hub's start-up code (`order [--check]`: `hive_perf::order`).
//!
//! Instruction counts do not depend on how busy the machine is, so the check can gate CI where a
//! timing could not: it fails when a workload needs more than 10% more instructions than its
//! baseline. The count is of this binary's own instructions, on its own allocator, so that it
//! does not depend on the machine either (`callgrind`, `size_classes`); the total with the C
//! library is printed beside it. The end-to-end counts are the `hive` binary's own instructions
//! per task, per agent round and per agent listed. A change that makes a path slower on purpose updates the
//! baseline in the same commit (`hive-perf check --update`). Counts depend on the compiler too:
//! update the baseline when the toolchain changes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use hive_perf::size_classes::SizeClasses;
use hive_perf::{callgrind, end_to_end, order};

#[global_allocator]
static HEAP: SizeClasses = SizeClasses::new();

/// The workloads, with sizes small enough for valgrind and large enough to dwarf start-up.
type Workload = (&'static str, fn() -> usize);

const WORKLOADS: &[Workload] = &[
    ("scheduler", || {
        hive_perf::scheduler_round_trip(100, 10, 20_000)
    }),
    ("scheduler_learned", || {
        hive_perf::learned_round_trip(100, 10, 20_000)
    }),
    ("codec", || hive_perf::codec_round_trip(1_000)),
    ("store_writer", || {
        hive_perf::store::writer_round_trip(10_000) as usize
    }),
    ("store_raw", || {
        hive_perf::store::raw_round_trip(10_000) as usize
    }),
];

const TOLERANCE: f64 = 0.10;

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("instructions.json")
}

/// This binary's own instructions for `workload`, and the total with the libraries it called.
fn count(workload: &str) -> anyhow::Result<(u64, u64)> {
    let me = std::env::current_exe()?;
    let profile = std::env::temp_dir().join(format!(
        "hive-perf-{}-{workload}.callgrind",
        std::process::id()
    ));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(&me)
        .args(["run", workload])
        .output()
        .context("cannot run valgrind (install it: apt-get install valgrind)")?;
    let text = std::fs::read_to_string(&profile);
    let _ = std::fs::remove_file(&profile);
    if !output.status.success() {
        bail!(
            "valgrind failed on {workload}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text =
        text.with_context(|| format!("valgrind wrote no profile to {}", profile.display()))?;
    let name = me
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("hive-perf");
    callgrind::instructions_in(&text, &format!("/{name}"))
        .with_context(|| format!("no instruction summary in {}", profile.display()))
}

/// The hub binary the end-to-end count and the start-up order use: `hive` beside this binary (both built by
/// `cargo build --release -p hive-cli -p hive-perf`), or `HIVE_PERF_HIVE`.
fn hive_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("HIVE_PERF_HIVE") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("hive"),
    };
    if !path.is_file() {
        bail!(
            "no hub binary at {} (the end-to-end count and the start-up order profile one): build it with \
             `cargo build --release -p hive-cli`, or name one in HIVE_PERF_HIVE",
            path.display()
        );
    }
    Ok(path)
}

/// The end-to-end counts as the baseline names them, per task, per agent round and per agent
/// listed: the hub's own instructions, and all of them.
fn end_to_end_counts(keep: Option<&Path>) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let phases = end_to_end::measure(&hive_binary()?, keep)?;
    println!(
        "end to end: start-up {} instructions ({} with the C library)",
        phases.startup.own, phases.startup.with_libraries
    );
    println!(
        "{:>32} {:>10} {:>10} {:>12}",
        "the hub's own, by stage", "batched", "single", "agent round"
    );
    for (stage, [batched, single, round]) in &phases.by_stage {
        println!("{stage:>32} {batched:>10} {single:>10} {round:>12}");
    }
    Ok([
        ("end_to_end_batched_per_task", phases.per_batched_task()),
        ("end_to_end_single_per_task", phases.per_single_task()),
        ("end_to_end_agent_round", phases.per_agent_round()),
        ("end_to_end_agent_listed", phases.per_agent_listed()),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_string(), count.own, count.with_libraries))
    .collect())
}

fn check(update: bool) -> anyhow::Result<bool> {
    let path = baseline_path();
    let baseline: serde_json::Map<String, serde_json::Value> = match std::fs::read_to_string(&path)
    {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?,
        Err(_) if update => serde_json::Map::new(),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let mut measured = Vec::new();
    for (name, _) in WORKLOADS {
        let (now, total) = count(name)?;
        measured.push((name.to_string(), now, total));
    }
    measured.extend(end_to_end_counts(None)?);
    let mut ok = true;
    let mut counts = serde_json::Map::new();
    for (name, now, total) in measured {
        counts.insert(name.clone(), now.into());
        let with_libraries = format!(" ({total} with the C library)");
        match baseline.get(&name).and_then(|v| v.as_u64()) {
            Some(base) => {
                let change = now as f64 / base as f64 - 1.0;
                let verdict = if change > TOLERANCE {
                    ok = false;
                    "FAIL: over the 10% allowance"
                } else if change < -TOLERANCE {
                    "faster: consider `hive-perf check --update`"
                } else {
                    "ok"
                };
                println!(
                    "{name:>28}: {now:>12} instructions, baseline {base:>12} ({:+.2}%) \
                     {verdict}{with_libraries}",
                    change * 100.0
                );
            }
            None => {
                println!("{name:>28}: {now:>12} instructions, no baseline{with_libraries}");
                ok &= update;
            }
        }
    }
    if update {
        std::fs::write(&path, serde_json::to_string_pretty(&counts)? + "\n")?;
        println!("baseline written to {}", path.display());
        return Ok(true);
    }
    Ok(ok)
}

fn print_counts(counts: &[(String, u64, u64)]) -> bool {
    for (name, now, total) in counts {
        println!("{name:>28}: {now:>12} instructions ({total} with the C library)");
    }
    true
}

/// `crates/cli/start-up.order`, the link order of the hub's start-up code (`hive_perf::order`).
fn order_path() -> PathBuf {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    crates
        .unwrap_or(Path::new("crates"))
        .join("cli/start-up.order")
}

/// Remakes the order file from a profile of the hub beside this binary.
fn write_order() -> anyhow::Result<bool> {
    let hive = hive_binary()?;
    let compiler = order::compiler_of(&hive)?
        .with_context(|| format!("{} names no rustc in its .comment section", hive.display()))?;
    let order = order::measure(&hive)?;
    let path = order_path();
    std::fs::write(&path, order::file_text(&order, &compiler))?;
    println!(
        "{} functions written to {}: rebuild `hive` to link them together",
        order.len(),
        path.display()
    );
    Ok(true)
}

/// Fails when the order file no longer serves the hub beside this binary: more than a quarter of
/// its symbols gone (the code changed under it), or its functions not together (the build did
/// not apply the order). A hub built by another compiler than the file names is not checked
/// (every symbol name differs), unless `HIVE_REQUIRE_LINK_ORDER=1` (`.ci/run`) makes that a
/// failure too.
fn check_order() -> anyhow::Result<bool> {
    let path = order_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let hive = hive_binary()?;
    let compiler = order::compiler_of(&hive)?;
    let made_with = order::made_with(&text);
    if compiler.as_deref() != made_with {
        let required = std::env::var("HIVE_REQUIRE_LINK_ORDER").is_ok_and(|v| v == "1");
        println!(
            "start-up order: made with {}, the hub with {}: {}",
            made_with.unwrap_or("an unnamed compiler"),
            compiler.as_deref().unwrap_or("an unnamed compiler"),
            if required {
                "FAIL: remake it with `hive-perf order` (HIVE_REQUIRE_LINK_ORDER=1)"
            } else {
                "not checked; `hive-perf order` remakes it for this compiler"
            }
        );
        return Ok(!required);
    }
    let placed = order::placement(&hive, &order::listed(&text))?;
    let verdict = if placed.serves() {
        "ok"
    } else if placed.fresh() {
        "FAIL: not linked together (a linker without --symbol-ordering-file, or \
         HIVE_LINK_ORDER=0, when `hive` was built)"
    } else {
        "FAIL: stale; remake it with `hive-perf order` and rebuild `hive`"
    };
    println!(
        "start-up order: {} of {} functions found in the hub ({:.0}%), 95% of them within {:.2} MB \
         of its {:.2} MB of code: {verdict}",
        placed.found,
        placed.listed,
        placed.found as f64 * 100.0 / placed.listed.max(1) as f64,
        placed.span as f64 / 1e6,
        placed.text as f64 / 1e6,
    );
    Ok(placed.serves())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run", name] => match WORKLOADS.iter().find(|(n, _)| n == name) {
            Some((_, workload)) => {
                std::hint::black_box(workload());
                Ok(true)
            }
            None => Err(anyhow::anyhow!("unknown workload {name:?}")),
        },
        ["check"] => check(false),
        ["end-to-end"] => end_to_end_counts(None).map(|counts| print_counts(&counts)),
        ["end-to-end", "--keep", dir] => {
            end_to_end_counts(Some(Path::new(dir))).map(|counts| print_counts(&counts))
        }
        ["check", "--update"] => check(true),
        ["order"] => write_order(),
        ["order", "--check"] => check_order(),
        _ => Err(anyhow::anyhow!(
            "usage: hive-perf run <scheduler|scheduler_learned|codec|store_writer|store_raw> | \
             hive-perf check [--update] | hive-perf end-to-end [--keep DIR] | \
             hive-perf order [--check]"
        )),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
