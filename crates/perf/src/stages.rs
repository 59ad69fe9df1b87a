//! Stages of the hub for the end-to-end count: which part of the program a function belongs to,
//! by its symbol.

/// Where an instruction ran, by the crate of the function it ran in (the first path segment of
/// its symbol; code inlined into a function counts as that function's, drop glue and other
/// generic standard-library functions count as the standard library's): (stage, crates). C
/// functions (no `::`) are nearly all SQLite's, the only C library compiled into the hub; a few
/// runtime helpers (`__rust_alloc`) and unnamed addresses count with them.
pub const STAGES: &[(&str, &[&str])] = &[
    ("C functions (SQLite, compiled in)", &[""]),
    (
        "store: Hive's writer, rusqlite",
        &["hive_store", "rusqlite", "libsqlite3_sys"],
    ),
    (
        "HTTP: hyper, axum, tower",
        &[
            "hyper",
            "hyper_util",
            "http",
            "http_body",
            "http_body_util",
            "httparse",
            "axum",
            "axum_core",
            "tower",
            "tower_http",
            "tower_layer",
            "tower_service",
        ],
    ),
    (
        "WebSocket framing: tungstenite",
        &["tungstenite", "tokio_tungstenite"],
    ),
    (
        "JSON: serde_json, serde",
        &["serde_json", "serde", "serde_core", "zmij", "itoa", "ryu"],
    ),
    ("scheduler: hive-core", &["hive_core"]),
    ("hub: hive-server", &["hive_server"]),
    ("protocol: hive-proto", &["hive_proto"]),
    (
        "metrics, cache, logging",
        &[
            "hive_metrics",
            "hdrhistogram",
            "moka",
            "tracing",
            "tracing_core",
            "tracing_subscriber",
            "nu_ansi_term",
        ],
    ),
    (
        "async runtime: tokio, futures",
        &[
            "tokio",
            "mio",
            "futures_util",
            "futures_core",
            "futures_channel",
            "parking_lot",
            "parking_lot_core",
            "crossbeam_channel",
            "crossbeam_utils",
            "crossbeam_epoch",
        ],
    ),
    (
        "Rust standard library",
        &[
            "std",
            "core",
            "alloc",
            "hashbrown",
            "foldhash",
            "bytes",
            "smallvec",
        ],
    ),
];

/// `<hyper::proto::h1::Conn<..> as ..>::poll` -> `hyper`; `sqlite3VdbeExec` -> `` (C);
/// `<[u8] as alloc::..>::to_vec` -> `alloc` (a primitive's methods: the trait's crate).
fn crate_of(symbol: &str) -> &str {
    let path = symbol.trim_start_matches(['<', '&', '*']);
    let path = ["dyn ", "mut ", "const "]
        .iter()
        .fold(path, |p, prefix| p.strip_prefix(prefix).unwrap_or(p));
    let path = match path.split_once(" as ") {
        Some((on, trait_path)) if !on.contains("::") => trait_path,
        _ => path,
    };
    match path.split_once("::") {
        Some((first, _)) => first,
        None => "",
    }
}

pub fn stage_of(symbol: &str) -> &'static str {
    let krate = crate_of(symbol);
    STAGES
        .iter()
        .find(|(_, crates)| crates.contains(&krate))
        .map_or("other", |(stage, _)| stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_belong_to_the_crate_they_name_first() {
        assert_eq!(
            crate_of("hive_store::sqlite::write::insert_task"),
            "hive_store"
        );
        assert_eq!(
            crate_of("<axum::util::MapIntoResponseFuture<F> as core::future::Future>::poll'2"),
            "axum"
        );
        assert_eq!(
            crate_of("<&mut serde_json::ser::Serializer<W> as x::S>::f"),
            "serde_json"
        );
        assert_eq!(
            crate_of("<[u8] as alloc::slice::hack::ConvertVec>::to_vec"),
            "alloc"
        );
        assert_eq!(crate_of("sqlite3VdbeExec"), "");
        assert_eq!(
            stage_of("sqlite3VdbeExec"),
            "C functions (SQLite, compiled in)"
        );
        assert_eq!(
            stage_of("tokio::runtime::park"),
            "async runtime: tokio, futures"
        );
        assert_eq!(stage_of("something_else::f"), "other");
    }
}
