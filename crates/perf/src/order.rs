//! The link order of `hive`'s start-up code: which functions a hub runs to start and while it
//! idles, written to `crates/cli/start-up.order`, which `crates/cli/build.rs` hands to the linker
//! (`--symbol-ordering-file`) so that they lie together at the front of the code.
//!
//! Why: the kernel maps a binary's cached code 64 KiB around each page a process touches
//! (`fault_around_bytes`), and start-up runs ~2,300 functions (about 2 MB) scattered over a 19 MB
//! text: an idle hub kept 9 MB of code resident, most of it never run again. Linked together they
//! keep about 2.4 MB resident (BENCHMARKS.md, "Idle memory").
//!
//! The names are the symbols as the linker sees them (mangled), read from a callgrind profile of
//! a real `hive serve` from exec until it has idled [`IDLE`], most instructions first. They go
//! stale as the code changes (new start-up functions, and ThinLTO's `.llvm.<hash>` names, which
//! change with the code around them): the linker ignores names it does not find and leaves
//! unnamed functions where they were, each costing up to 64 KiB resident. So the file is remade
//! with `hive-perf order` as the last step of a change to start-up code, and `.ci/run` checks
//! that the binary still has most of its names, together ([`Placement::serves`]); a few missing
//! names pass that check (BENCHMARKS.md, "The file goes stale").

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::callgrind;
use crate::end_to_end::{HubProcess, object_of, ready};

/// How long the hub idles in the profile: its periodic work (WAL checkpoint every 250 ms,
/// metrics snapshot and alert rules every second, lease and membership timers) runs many times.
pub const IDLE: Duration = Duration::from_secs(12);

/// Below this share of its names present in the binary, the order file is called stale.
pub const FRESH_ENOUGH: f64 = 0.75;

/// The functions of `hive` that ran from exec through [`IDLE`] of idling, most instructions
/// first.
pub fn measure(hive: &Path) -> anyhow::Result<Vec<String>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("hive.callgrind");
    let log = dir.path().join("valgrind.log");
    // Mangled names: the linker's names for the functions.
    let (mut hub, url) = HubProcess::spawn(
        hive,
        &out,
        &log,
        &dir.path().join("data"),
        &["--demangle=no"],
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        ready(&url, &mut hub).await?;
        tokio::time::sleep(IDLE).await;
        anyhow::Ok(())
    })?;
    // The profile up to now: what stopping runs is not what an idle hub keeps resident.
    let dumped = dir.path().join("hive.callgrind.1");
    hub.dump(&dumped)?;
    hub.stop()?;
    let text = std::fs::read_to_string(&dumped)?;
    let object = object_of(hive)?;
    let order = functions_by_cost(&text, &object);
    if order.is_empty() {
        bail!("no function of {object} in the profile");
    }
    Ok(order)
}

/// The symbols of `object`'s functions in a callgrind profile (`--demangle=no`), most
/// instructions first: callgrind's recursion suffixes (`f'2`) folded into their function, and
/// what is not a symbol left out (unnamed addresses, `(below main)`).
pub fn functions_by_cost(profile: &str, object: &str) -> Vec<String> {
    let mut cost: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (function, n) in callgrind::read(profile, object).by_function {
        let symbol = function.split('\'').next().unwrap_or(function);
        let is_symbol = !symbol.is_empty()
            && !symbol.starts_with("0x")
            && !symbol.contains(|c: char| c.is_whitespace() || c == '(');
        if is_symbol {
            *cost.entry(symbol).or_default() += n;
        }
    }
    let mut order: Vec<(&str, u64)> = cost.into_iter().collect();
    // Ties by name, so that the same profile always gives the same file.
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    order.into_iter().map(|(f, _)| f.to_string()).collect()
}

/// The order file's text: two comment lines, the second naming the compiler that built the
/// profiled hub (symbol names change with it), then the symbols. The linker skips `#` comments.
pub fn file_text(order: &[String], compiler: &str) -> String {
    let mut text = format!(
        "# hive's start-up and idle functions, most run first: `hive-perf order` remakes this file\n\
         {COMPILER}{compiler}\n"
    );
    for symbol in order {
        text.push_str(symbol);
        text.push('\n');
    }
    text
}

/// The comment that names the compiler an order file was made with.
const COMPILER: &str = "# made with ";

/// The compiler an order file names, if it names one.
pub fn made_with(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix(COMPILER))
}

/// The Rust compiler that built `binary`, as its `.comment` section names it (`rustc version
/// 1.95.0 (...)`), read with `readelf`; `None` when the section does not name one.
pub fn compiler_of(binary: &Path) -> anyhow::Result<Option<String>> {
    let text = binutils("readelf", &["-p", ".comment"], binary)?;
    Ok(text.lines().find_map(|line| {
        let at = line.find("rustc version ")?;
        Some(line[at..].trim().to_string())
    }))
}

/// The symbols an order file lists (its comment lines left out).
pub fn listed(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Where an order file's functions lie in a binary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The file's symbols the binary defines, of `listed`.
    pub found: usize,
    pub listed: usize,
    /// Bytes from the first of the found functions to the one 95% of the way through them by
    /// address (a few local names are defined twice, once elsewhere).
    pub span: u64,
    /// Bytes from the binary's first function to its last.
    pub text: u64,
}

impl Placement {
    /// Whether the file still serves: most of its names are in the binary, and they lie
    /// together (the linker applied the order) in under [`TOGETHER`] of the code.
    pub fn serves(&self) -> bool {
        self.fresh() && self.together()
    }

    /// At least [`FRESH_ENOUGH`] of the file's names are in the binary.
    pub fn fresh(&self) -> bool {
        self.found as f64 >= FRESH_ENOUGH * self.listed as f64
    }

    /// The found functions lie in under [`TOGETHER`] of the binary's code.
    pub fn together(&self) -> bool {
        (self.span as f64) < TOGETHER * self.text as f64
    }
}

/// The found functions must lie in less than this share of the binary's code: linked in order
/// they take about a tenth of it, left where they were they spread over all of it.
pub const TOGETHER: f64 = 0.3;

/// Where `symbols` lie in the binary at `binary`, from its symbol table (read with `nm`).
pub fn placement(binary: &Path, symbols: &[&str]) -> anyhow::Result<Placement> {
    let nm = binutils("nm", &["--defined-only"], binary)?;
    Ok(placement_in(&nm, symbols))
}

/// What `tool args binary` prints; its failure, with what it said, is an error.
fn binutils(tool: &str, args: &[&str], binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(tool)
        .args(args)
        .arg(binary)
        .output()
        .with_context(|| format!("cannot run {tool} (it comes with binutils)"))?;
    if !output.status.success() {
        bail!(
            "{tool} {} {} failed: {}",
            args.join(" "),
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// [`placement`] from `nm`'s output (`address type name` per line).
fn placement_in(nm: &str, symbols: &[&str]) -> Placement {
    let wanted: std::collections::HashSet<&str> = symbols.iter().copied().collect();
    let mut found = std::collections::HashSet::new();
    let mut at = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0);
    for line in nm.lines() {
        let mut fields = line.split_whitespace();
        let (Some(address), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(address, 16) else {
            continue;
        };
        if !matches!(kind, "T" | "t") {
            continue;
        }
        (first, last) = (first.min(address), last.max(address));
        if wanted.contains(name) {
            found.insert(name);
            at.push(address);
        }
    }
    at.sort_unstable();
    let span = match at.first() {
        Some(start) => at[(at.len() - 1) * 95 / 100] - start,
        None => 0,
    };
    Placement {
        found: found.len(),
        listed: wanted.len(),
        span,
        text: last.saturating_sub(first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile of two objects; `hot` recursed (`hot'2`), one unnamed address, `(below main)`.
    const PROFILE: &str = "\
events: Ir
summary: 1000
ob=(1) /usr/lib/libc.so.6
fn=(1) memcpy
1 500
ob=(2) /work/target/release/hive
fn=(2) _ZN4hive3hot17h0123456789abcdefE
1 100
fn=(3) _ZN4hive3hot17h0123456789abcdefE'2
1 50
fn=(4) _ZN4hive4warm17hfedcba9876543210E
1 120
cfn=(1)
calls=1 1
1 500
fn=(5) 0x0000000000012345
1 10
fn=(6) (below main)
1 5
fn=(7) sqlite3RunParser
1 120
";

    #[test]
    fn functions_come_most_run_first_as_symbols() {
        let order = functions_by_cost(PROFILE, "/hive");
        assert_eq!(
            order,
            [
                "_ZN4hive3hot17h0123456789abcdefE",
                "_ZN4hive4warm17hfedcba9876543210E",
                "sqlite3RunParser",
            ]
        );
    }

    #[test]
    fn the_file_lists_what_it_was_made_from() {
        let order = functions_by_cost(PROFILE, "/hive");
        let text = file_text(&order, "rustc 1.95.0 (59807616e 2026-04-14)");
        assert!(text.starts_with("# "));
        assert_eq!(
            made_with(&text),
            Some("rustc 1.95.0 (59807616e 2026-04-14)")
        );
        assert_eq!(listed(&text), order);
    }

    /// `nm` output: code from 0x1000 to 0x100000, the `listed` functions at the given addresses,
    /// and a data symbol (not code) beyond it.
    fn nm(listed: &[(u64, &str)]) -> String {
        let mut text = String::from("0000000000001000 T _start\n0000000000100000 T last\n");
        for (address, name) in listed {
            text.push_str(&format!("{address:016x} t {name}\n"));
        }
        text + "0000000000200000 D data\n"
    }

    #[test]
    fn functions_linked_together_serve_and_spread_or_missing_ones_do_not() {
        let names: Vec<String> = (0..40).map(|n| format!("f{n}")).collect();
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        // Forty functions in 40 KiB, and one local name defined twice, far away: the 95% span
        // leaves the stray copy out.
        let mut together: Vec<(u64, &str)> = (0..40)
            .map(|n| (0x2000 + n * 0x400, listed[n as usize]))
            .collect();
        together.push((0xf0000, "f3"));
        let placed = placement_in(&nm(&together), &listed);
        assert_eq!((placed.found, placed.listed), (40, 40));
        assert_eq!(placed.text, 0xff000);
        assert_eq!(placed.span, 38 * 0x400);
        assert!(placed.serves(), "{placed:?}");
        // The same functions spread over the whole text.
        let spread: Vec<(u64, &str)> = (0..40)
            .map(|n| (0x2000 + n * 0x6000, listed[n as usize]))
            .collect();
        let placed = placement_in(&nm(&spread), &listed);
        assert!(!placed.serves(), "{placed:?}");
        // Together, but half of the names gone from the binary.
        let placed = placement_in(&nm(&together[..20]), &listed);
        assert_eq!(placed.found, 20);
        assert!(!placed.serves(), "{placed:?}");
    }

    #[test]
    fn symbols_are_read_from_a_real_binary() {
        // This test binary defines `main` and not a made-up name.
        let me = std::env::current_exe().unwrap();
        let placed = placement(&me, &["main", "_ZN4hive9not_there17h0000000000000000E"])
            .expect("nm reads a test binary");
        assert_eq!((placed.found, placed.listed), (1, 2));
        assert!(placed.text > 0);
    }
}
