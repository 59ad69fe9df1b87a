//! `hive-perf`: runs one fixed workload (`run NAME`), or checks the instruction counts of all of
//! them under `valgrind --tool=callgrind` against the committed baseline (`check`).
//!
//! Instruction counts do not depend on how busy the machine is, so the check can gate CI where a
//! timing could not: it fails when a workload needs more than 10% more instructions than its
//! baseline. The count is of this binary's own instructions, on its own allocator, so that it
//! does not depend on the machine either (`callgrind`, `size_classes`); the total with the C
//! library is printed beside it. A change that makes a path slower on purpose updates the baseline in the same
//! commit (`hive-perf check --update`). Counts depend on the compiler too: update the baseline
//! when the toolchain changes.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use hive_perf::callgrind;
use hive_perf::size_classes::SizeClasses;

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

fn check(update: bool) -> anyhow::Result<bool> {
    let path = baseline_path();
    let baseline: serde_json::Map<String, serde_json::Value> = match std::fs::read_to_string(&path)
    {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?,
        Err(_) if update => serde_json::Map::new(),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let mut ok = true;
    let mut counts = serde_json::Map::new();
    for (name, _) in WORKLOADS {
        let (now, total) = count(name)?;
        counts.insert(name.to_string(), now.into());
        match baseline.get(*name).and_then(|v| v.as_u64()) {
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
                    "{name:>10}: {now:>14} instructions, baseline {base:>14} ({:+.2}%) {verdict} \
                     ({total} with the C library)",
                    change * 100.0
                );
            }
            None => {
                println!("{name:>10}: {now:>14} instructions, no baseline");
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
        ["check", "--update"] => check(true),
        _ => Err(anyhow::anyhow!(
            "usage: hive-perf run <scheduler|codec> | hive-perf check [--update]"
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
