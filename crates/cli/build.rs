//! Links `hive` with its start-up and idle code together at the front of its text, in the order
//! of `start-up.order` (made by `hive-perf order`; see `hive_perf::order` for why): an idle hub
//! then keeps about half the memory resident (BENCHMARKS.md, "Idle memory").
//!
//! The order is an option of LLD's that GNU ld lacks: it is passed where Rust links
//! with its own LLD by default (x86_64 Linux, Rust 1.90 and later) and the build chose no other
//! linker; elsewhere `hive` links as before, in the default order. `HIVE_LINK_ORDER=0` turns it
//! off.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=start-up.order");
    println!("cargo:rerun-if-env-changed=HIVE_LINK_ORDER");
    let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("start-up.order");
    let off = std::env::var("HIVE_LINK_ORDER").is_ok_and(|v| v == "0");
    if off || !order.is_file() || !links_with_rust_lld() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=hive=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Names the code no longer has are skipped; `hive-perf order --check` says when too many are.
    println!("cargo:rustc-link-arg-bin=hive=-Wl,--no-warn-symbol-ordering");
}

/// Whether this build links with the LLD that Rust ships: the default for
/// `x86_64-unknown-linux-gnu` since Rust 1.90, unless the build names a linker of its own.
fn links_with_rust_lld() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let chose_linker = flags.contains("linker")
        || flags.contains("link-self-contained")
        || flags.contains("fuse-ld")
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    target == "x86_64-unknown-linux-gnu" && !chose_linker && rustc_minor().is_some_and(|m| m >= 90)
}

/// The compiler's minor version (`rustc 1.95.0 (...)` -> 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    let mut numbers = version.split_whitespace().nth(1)?.split('.');
    (numbers.next()? == "1").then_some(())?;
    numbers.next()?.parse().ok()
}
