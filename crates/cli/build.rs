//! Links `hive` with its start-up and idle code together at the front of its text, in the order
//! of `start-up.order` (made by `hive-perf order`; see `hive_perf::order` for why): an idle hub
//! then keeps about half the memory resident (BENCHMARKS.md, "Idle memory").
//!
//! The order is an LLD option (`--symbol-ordering-file`) that GNU ld lacks, and which linker a
//! build uses depends on the compiler's own defaults and the build's settings. So the option is
//! tried first on an empty program, linked as this build links; only if that link succeeds is it
//! passed to `hive`'s. Elsewhere `hive` links as before, in the default order.
//! `HIVE_LINK_ORDER=0` leaves it out.
//!
//! Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR) where a probe linked so
//! runs here: the loader reads 8 KB of them at start instead of 690 KB (one 24-byte entry for
//! each of about 29,000 pointers in static data), 0.4-0.6 MB less resident for an idle hub
//! (BENCHMARKS.md). Such a binary needs glibc 2.36 or later wherever it runs: the probe only
//! answers for the building machine, so a build for another target (where the probe cannot
//! run) links as before, and a build meant for older systems than the one building it (an
//! older sysroot, a release for other distributions) should set `HIVE_PACK_RELOCS=0`, which
//! leaves it out. A linker that does not know the option (GNU ld before 2.38) ignores it with
//! a warning: the probe passes and nothing is packed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=start-up.order");
    for setting in [
        "HIVE_LINK_ORDER",
        "HIVE_PACK_RELOCS",
        "RUSTC_LINKER",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={setting}");
    }
    let out = PathBuf::from(env("OUT_DIR"));
    if env("HIVE_PACK_RELOCS") != "0" && packed_relocations_load(&out) {
        println!("cargo:rustc-link-arg-bin=hive=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("start-up.order");
    let off = env("HIVE_LINK_ORDER") == "0";
    if off || !order.is_file() || !linker_takes_an_order(&out) {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=hive=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Names the code no longer has are skipped; `hive-perf order --check` says when too many are.
    println!("cargo:rustc-link-arg-bin=hive=-Wl,--no-warn-symbol-ordering");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Whether an empty program links, with this build's compiler, flags, target and linker, when
/// given an (empty) symbol ordering file.
fn linker_takes_an_order(out: &Path) -> bool {
    let order = out.join("link_order_probe.order");
    std::fs::write(&order, "").is_ok()
        && probe(
            out,
            "link_order_probe",
            "fn main() {}\n",
            &[
                format!("-Wl,--symbol-ordering-file={}", order.display()),
                "-Wl,--no-warn-symbol-ordering".into(),
            ],
        )
        .is_some()
}

/// Whether a program with pointers in its static data, linked with packed relative relocations,
/// links and runs here with the right pointers (a loader that ignored them would leave them
/// unrelocated). Only for a build whose target is this machine.
fn packed_relocations_load(out: &Path) -> bool {
    if env("TARGET") != env("HOST") {
        return false;
    }
    let source = "static WORDS: [&str; 3] = [\"packed\", \"relative\", \"relocations\"];\n\
                  fn main() {\n\
                  let words = std::hint::black_box(&WORDS);\n\
                  std::process::exit(if words[2] == \"relocations\" { 0 } else { 1 });\n\
                  }\n";
    let flags = ["-Wl,-z,pack-relative-relocs".to_string()];
    probe(out, "relr_probe", source, &flags).is_some_and(|binary| {
        Command::new(binary)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Compiles `source` into `out/name` with this build's compiler, flags, target and linker, and
/// `link_args` for the linker; the binary's path if that succeeded.
fn probe(out: &Path, name: &str, source: &str, link_args: &[String]) -> Option<PathBuf> {
    let source_path = out.join(format!("{name}.rs"));
    std::fs::write(&source_path, source).ok()?;
    let binary = out.join(name);
    let rustc = Some(env("RUSTC")).filter(|r| !r.is_empty());
    let mut link = Command::new(rustc.as_deref().unwrap_or("rustc"));
    link.arg(&source_path)
        .arg("-o")
        .arg(&binary)
        .args(["--crate-type", "bin"]);
    for arg in link_args {
        link.arg(format!("-Clink-arg={arg}"));
    }
    // The flags and linker the build gives rustc (RUSTFLAGS, `.cargo/config.toml`).
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    link.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    let linker = env("RUSTC_LINKER");
    if !linker.is_empty() {
        link.arg(format!("-Clinker={linker}"));
    }
    if env("TARGET") != env("HOST") {
        link.args(["--target", &env("TARGET")]);
    }
    let linked = link
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    linked.then_some(binary)
}
