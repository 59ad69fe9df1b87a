//! Links `hive` with its start-up and idle code together at the front of its text, in the order
//! of `start-up.order` (made by `hive-perf order`; see `hive_perf::order` for why): an idle hub
//! then keeps about half the memory resident (BENCHMARKS.md, "Idle memory").
//!
//! The order is an LLD option (`--symbol-ordering-file`) that GNU ld lacks, and which linker a
//! build uses depends on the compiler's own defaults and the build's settings. So the option is
//! tried first on an empty program, linked as this build links; only if that link succeeds is it
//! passed to `hive`'s. Elsewhere `hive` links as before, in the default order.
//! `HIVE_LINK_ORDER=0` leaves it out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=start-up.order");
    for setting in ["HIVE_LINK_ORDER", "RUSTC_LINKER", "CARGO_ENCODED_RUSTFLAGS"] {
        println!("cargo:rerun-if-env-changed={setting}");
    }
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("start-up.order");
    let off = env("HIVE_LINK_ORDER") == "0";
    if off || !order.is_file() || !linker_takes_an_order(&PathBuf::from(env("OUT_DIR"))) {
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
    let source = out.join("link_order_probe.rs");
    let order = out.join("link_order_probe.order");
    if std::fs::write(&source, "fn main() {}\n").is_err() || std::fs::write(&order, "").is_err() {
        return false;
    }
    let rustc = Some(env("RUSTC")).filter(|r| !r.is_empty());
    let mut link = Command::new(rustc.as_deref().unwrap_or("rustc"));
    link.arg(&source)
        .arg("-o")
        .arg(out.join("link_order_probe"))
        .args(["--crate-type", "bin"])
        .arg(format!(
            "-Clink-arg=-Wl,--symbol-ordering-file={}",
            order.display()
        ))
        .arg("-Clink-arg=-Wl,--no-warn-symbol-ordering");
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
    link.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
