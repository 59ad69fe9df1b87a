//! The command line end to end: `serve`, `worker --exec`, `submit --wait`, the listings, and a
//! graceful stop on SIGTERM.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::util::*;

/// `hive ARGS` against the hub at `hub`: exit code, stdout, stderr.
pub async fn run(args: &[&str], hub: &str) -> (i32, String, String) {
    let output = hive()
        .args(args)
        .env("HIVE_HUB", hub)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_worker_and_submit_wait_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // An alert rule that fires while anything is queued, checked quickly.
    let config = dir.path().join("hive.toml");
    std::fs::write(
        &config,
        "[metrics]\ninterval_ms = 100\n[alerts]\ndefaults = false\n[[alerts.rules]]\nname = \"any_queue\"\nmetric = \"queued_tasks\"\nabove = 0.0\n",
    )
    .unwrap();
    let hub = HubProcess::start_with(
        dir.path(),
        free_port(),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let url = hub.url.clone();
    let _cat = hive()
        .args([
            "worker",
            "--capability",
            "echo",
            "--slots",
            "2",
            "--exec",
            "cat",
        ])
        .env("HIVE_HUB", &url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _boom = hive()
        .args([
            "worker",
            "--capability",
            "boom",
            "--exec",
            "echo oops >&2; exit 3",
        ])
        .env("HIVE_HUB", &url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let (code, out, err) = run(
        &[
            "submit",
            "--capability",
            "echo",
            "--payload",
            r#"{"a":[1,"two"]}"#,
            "--wait",
        ],
        &url,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["result"], json!({"a": [1, "two"]}));

    // The built-in executor needs no worker.
    let (code, out, err) = run(
        &[
            "submit",
            "--capability",
            "hive.sha256",
            "--payload",
            r#"{"data":"abc"}"#,
            "--wait",
        ],
        &url,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        task["result"]["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let (code, out, _) = run(
        &[
            "submit",
            "--capability",
            "boom",
            "--max-attempts",
            "1",
            "--wait",
        ],
        &url,
    )
    .await;
    assert_eq!(code, 1, "a failed task exits 1");
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (task["status"].as_str(), task["error"].as_str()),
        (Some("failed"), Some("oops"))
    );

    let (code, out, _) = run(
        &["submit", "--capability", "later", "--priority", "7"],
        &url,
    )
    .await;
    assert_eq!(code, 0);
    let id = out.trim().to_string();
    let (_, out, _) = run(&["task", &id], &url).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "queued"
    );

    let (code, out, _) = run(&["status", "--json"], &url).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            status["tasks"]["succeeded"].as_u64(),
            status["tasks"]["failed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(status["queue_depth"]["later"], 1);
    // The queued task fires the rule; `hive alerts` shows it.
    let mut firing = false;
    for _ in 0..100 {
        let (code, out, err) = run(&["alerts", "--json"], &url).await;
        assert_eq!(code, 0, "{err}");
        let alerts: Value = serde_json::from_str(&out).unwrap();
        if alerts["active"][0]["state"] == "firing" {
            assert_eq!(alerts["active"][0]["rule"], "any_queue");
            assert_eq!(alerts["recent"][0]["state"], "firing");
            firing = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(firing, "the any_queue alert fired");
    let (code, out, _) = run(&["alerts"], &url).await;
    assert_eq!(code, 0);
    assert!(out.contains("any_queue") && out.contains("firing"), "{out}");
    let (_, out, _) = run(&["agents"], &url).await;
    assert_eq!(
        out.lines().count(),
        4,
        "a header, two workers and the built-in agent:\n{out}"
    );
    assert!(out.contains("builtin"), "{out}");
    // Each worker is named after its host and its capabilities (what routing learns about).
    for capability in ["echo", "boom"] {
        let named = out.lines().any(|l| {
            let name = l.split_whitespace().nth(1).unwrap_or_default();
            name.ends_with(&format!(":{capability}")) && name.len() > capability.len() + 1
        });
        assert!(named, "a worker named HOST:{capability}:\n{out}");
    }
    let (_, out, _) = run(&["tasks", "--status", "succeeded"], &url).await;
    assert_eq!(out.lines().count(), 3, "{out}");
    // Page by page: the table's stderr names the next page's cursor.
    let (code, first, err) = run(&["tasks", "--limit", "1"], &url).await;
    assert_eq!(code, 0, "{err}");
    let cursor = err
        .split("--cursor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next page named: {err}"));
    let (code, second, _) = run(&["tasks", "--limit", "1", "--cursor", cursor], &url).await;
    assert_eq!(code, 0);
    let id = |table: &str| {
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(id(&first), id(&second), "{first}\n{second}");
    assert_eq!(
        id(&first),
        cursor,
        "a cursor stands for the last task listed"
    );

    // Refused before any request, naming the flag and the words it takes.
    let (code, _, err) = run(&["tasks", "--status", "bogus"], &url).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("--status") && err.contains("not one of waiting, queued"),
        "{err}"
    );
    let (code, _, err) = run(
        &["submit", "--capability", "echo", "--payload", "{not json"],
        &url,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--payload"), "{err}");

    let exit = hub.terminate().await;
    assert!(exit.success(), "SIGTERM stops the hub cleanly: {exit:?}");
}

/// `--payload @FILE` and `--payload -` (stdin): the task carries the JSON they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_comes_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(&dir.path().join("data"), free_port()).await;
    let payload_of = |id: String| {
        let url = hub.url.clone();
        async move {
            let (code, out, err) = run(&["task", id.trim()], &url).await;
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<Value>(&out).unwrap()["payload"].clone()
        }
    };
    let file = dir.path().join("payload.json");
    std::fs::write(&file, "{\"from\": \"a file\"}\n").unwrap();
    let at_file = format!("@{}", file.display());
    let (code, id, err) = run(
        &["submit", "--capability", "x", "--payload", &at_file],
        &hub.url,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(payload_of(id).await, json!({"from": "a file"}));

    let mut submit = hive()
        .args(["submit", "--capability", "x", "--payload", "-"])
        .env("HIVE_HUB", &hub.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = submit.stdin.take().unwrap();
    stdin.write_all(b"[1, \"from stdin\"]").await.unwrap();
    drop(stdin);
    let output = submit.wait_with_output().await.unwrap();
    assert!(output.status.success());
    let id = String::from_utf8(output.stdout).unwrap();
    assert_eq!(payload_of(id).await, json!([1, "from stdin"]));

    let missing = format!("@{}", dir.path().join("missing.json").display());
    let (code, _, err) = run(
        &["submit", "--capability", "x", "--payload", &missing],
        &hub.url,
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("--payload {missing}: cannot read it")),
        "{err}"
    );
    assert!(hub.terminate().await.success());
}

/// A port already taken: `serve` says so in one line, the reason once (each cause once); the
/// new store it made first logged one line.
#[tokio::test]
async fn a_taken_port_is_named_with_the_reason_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = hive()
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .env("HIVE_LOG", "info")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8(output.stderr).unwrap();
    // The store was made first: a new one is one line, not one per migration.
    assert!(err.contains("creating the database schema"), "{err}");
    assert!(!err.contains("applying database migration"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains(&format!("cannot listen on {listen}")),
        "{line}"
    );
    assert_eq!(line.matches("in use").count(), 1, "{line}");
}

/// A hub that is not there: exit status 3 and one line that says where and why, each cause once.
#[tokio::test]
async fn an_unreachable_hub_is_named_with_the_reason_once() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, out, err) = run(&["status"], &url).await;
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    let expected = format!("error: cannot reach the hub at {url}/api/v1/status: ");
    assert!(err.starts_with(&expected), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches(&url).count(), 1, "the URL once: {err}");
}

#[tokio::test]
async fn a_bad_config_file_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hive.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[scheduler]\nageing_ms = 10\n",
    )
    .unwrap();
    let output = hive()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("line 5") && err.contains("ageing_ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_writes_every_key_of_its_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let svg_path = dir.path().join("bench.svg");
    let output = hive()
        .args([
            "bench",
            "--duration",
            "1s",
            "--workers",
            "2",
            "--slots",
            "8",
            "--batch",
            "10",
            "--rate",
            "300",
            "--queued-tasks",
            "2000",
            "--json",
        ])
        .arg(&json_path)
        .arg("--plot")
        .arg(&svg_path)
        // Exported for the client commands, as the README shows: the bench still starts and
        // measures a hub of its own (only --hub on its command line points it elsewhere).
        .env("HIVE_HUB", format!("http://127.0.0.1:{}", free_port()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("task ops, batched, end to end"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    for key in [
        "task_ops_per_sec",
        "task_ops_single_per_sec",
        "agent_ops_per_sec",
        "idle_rss_bytes",
        "peak_rss_bytes",
        "rss_growth_bytes_per_million_tasks",
        "cpu_us_per_task",
        "load_avg",
        "rss_per_queued_task_bytes",
        "error_rate",
        "timeout_rate",
    ] {
        assert!(report[key].is_number(), "{key} is {}", report[key]);
    }
    assert!(
        report["swarm_deliveries_per_sec"].as_f64().unwrap() > 0.0,
        "the swarm workload delivered"
    );
    for key in ["assign_latency_ms", "result_latency_ms"] {
        for p in ["p50", "p95", "p99", "max"] {
            assert!(report[key][p].is_number(), "{key}.{p}");
        }
    }
    assert!(report["batched"]["tasks"].as_u64().unwrap() > 0);
    assert!(
        report["assign_latency_ms"]["count"].as_u64().unwrap() > 0,
        "the open loop measured latencies"
    );
    assert_eq!(report["error_rate"], 0.0);
    assert!(
        std::fs::read_to_string(&svg_path)
            .unwrap()
            .starts_with("<svg")
    );
}

/// `hive bench ARGS` with no hub in the environment, expected to stop at once with a usage
/// error (exit 2): what it wrote to stderr.
async fn bench_usage_error(args: &[&str]) -> String {
    let output = hive()
        .arg("bench")
        .args(args)
        .env_remove("HIVE_HUB")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn bench_refuses_to_spread_the_load_over_one_hub() {
    let err = bench_usage_error(&["--spread"]).await;
    assert!(err.contains("--spread") && err.contains("--hubs"), "{err}");
}

#[tokio::test]
async fn bench_refuses_an_unknown_workload_by_name() {
    let err = bench_usage_error(&["--workloads", "batched,teleport"]).await;
    assert!(
        err.contains("--workloads") && err.contains("teleport"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hub_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path(), free_port()).await;
    let output = hive()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.contains("another hub is using the data directory"),
        "{err}"
    );
    assert!(
        hub.terminate().await.success(),
        "the first hub is unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_command_line_and_who_submitted_what() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start_with(dir.path(), free_port(), &["--auth"]).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let as_admin = |args: &'static [&'static str]| {
        let url = hub.url.clone();
        let admin = admin.trim().to_string();
        async move {
            let output = hive()
                .args(args)
                .env("HIVE_HUB", &url)
                .env("HIVE_TOKEN", admin)
                .output()
                .await
                .unwrap();
            (
                output.status.code(),
                String::from_utf8(output.stdout).unwrap(),
            )
        }
    };
    // Without a token, or with a wrong one: refused, and told what to do.
    let (code, _, err) = run(&["status"], &hub.url).await;
    assert_eq!(code, 3);
    assert!(
        err.contains("401") && err.contains("hint: ") && err.contains("HIVE_TOKEN"),
        "{err}"
    );
    let (code, _, err) = run(&["--token", "hive_wrong", "status"], &hub.url).await;
    assert_eq!(code, 3);
    assert!(err.contains("hint: the token was not accepted"), "{err}");
    // A worker's handshake refused gets the same hint.
    let (code, _, err) = run(&["worker", "--capability", "x", "--exec", "cat"], &hub.url).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("401 Unauthorized") && err.contains("hint: ") && err.contains("HIVE_TOKEN"),
        "{err}"
    );
    let (code, token) = as_admin(&["token", "create", "--role", "client", "--name", "ci"]).await;
    assert_eq!(code, Some(0));
    let token = token.trim().to_string();
    assert!(token.starts_with("hive_"));
    let submitted = hive()
        .args(["submit", "--capability", "x", "--payload", "1"])
        .env("HIVE_HUB", &hub.url)
        .env("HIVE_TOKEN", &token)
        .output()
        .await
        .unwrap();
    assert!(submitted.status.success());
    // A client's token cannot run a worker: refused at the handshake, the hub's reason as text.
    let worker = hive()
        .args(["worker", "--capability", "x", "--exec", "cat"])
        .env("HIVE_HUB", &hub.url)
        .env("HIVE_TOKEN", &token)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8(worker.stderr).unwrap();
    assert_eq!(worker.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused this worker: 403 Forbidden: the token \"ci\" has the role client")
            && !err.contains("{\""),
        "{err}"
    );
    let (code, listing) = as_admin(&["tasks"]).await;
    assert_eq!(code, Some(0));
    assert!(
        listing.contains("BY") && listing.contains(" ci"),
        "{listing}"
    );
    let brief = &[
        "token",
        "create",
        "--role",
        "read",
        "--name",
        "brief",
        "--expires-in",
        "30d",
    ];
    assert_eq!(as_admin(brief).await.0, Some(0));
    let (code, tokens) = as_admin(&["token", "list"]).await;
    assert_eq!(code, Some(0));
    assert!(
        tokens.contains("ci") && tokens.contains("client") && tokens.contains("EXPIRES"),
        "{tokens}"
    );
    let brief_row = tokens.lines().find(|l| l.starts_with("brief")).unwrap();
    let ci_row = tokens.lines().find(|l| l.starts_with("ci ")).unwrap();
    // The brief token's row has an expiry where ci's has '-' (never).
    assert!(
        brief_row.matches('Z').count() > ci_row.matches('Z').count(),
        "{tokens}"
    );
    // A lifetime out of bounds is refused before anything is sent, naming the flag.
    let (code, _, err) = run(
        &[
            "token",
            "create",
            "--role",
            "read",
            "--name",
            "x",
            "--expires-in",
            "0s",
        ],
        &hub.url,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--expires-in"), "{err}");
    // The longest lifetime is ten years as the flag reads them.
    let decade = &[
        "token",
        "create",
        "--role",
        "read",
        "--name",
        "decade",
        "--expires-in",
        "10y",
    ];
    assert_eq!(as_admin(decade).await.0, Some(0));
    // Without a token: refused, and the error says what is missing.
    let (code, _, err) = run(&["status"], &hub.url).await;
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    assert_eq!(as_admin(&["token", "revoke", "ci"]).await.0, Some(0));
    hub.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_overload_offers_shares_of_the_measured_capacity_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("overload.json");
    let output = hive()
        .args([
            "bench",
            "--duration",
            "1s",
            "--workers",
            "2",
            "--slots",
            "8",
            "--workloads",
            "latency,overload",
            "--json",
        ])
        .arg(&json_path)
        .env_remove("HIVE_HUB")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let capacity = report["overload"]["capacity_per_sec"].as_f64().unwrap();
    assert!(capacity > 0.0);
    // No --rate: the latency workload offered a quarter of the measured capacity.
    assert_eq!(report["settings"]["rate_from_capacity"], true);
    assert_eq!(
        report["settings"]["rate"].as_u64().unwrap(),
        (capacity * 0.25).round() as u64
    );
    let steps = report["overload"]["steps"].as_array().unwrap();
    let shares: Vec<f64> = steps.iter().map(|s| s["share"].as_f64().unwrap()).collect();
    assert_eq!(shares, vec![0.5, 1.0, 1.5, 3.0]);
    for step in steps {
        assert_eq!(step["lost"], 0, "an accepted task was lost: {step}");
        assert!(step["accepted"].as_u64().unwrap() > 0, "{step}");
        assert!(step["generator_wait_ms"]["p99"].is_number(), "{step}");
    }
}

/// `hive serve` over TLS on a free loopback port (not waited for): the process and its URL.
fn tls_hub(
    data: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    more: &[&str],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let hub = hive()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(more)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (hub, format!("https://127.0.0.1:{port}"))
}

/// A hub whose self-signed certificate is marked as a CA's (what `openssl req -x509` makes
/// unless told otherwise): the clients refuse it, and the command says what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_certificate_marked_as_a_cas_is_named_in_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (_hub, url) = tls_hub(&dir.path().join("data"), &cert_path, &key_path, &[]);
    let ca_file = cert_path.to_str().unwrap();
    // Until the hub listens (before, the connection is refused).
    for _ in 0..300 {
        let (code, _, err) = run(&["status", "--ca-file", ca_file], &url).await;
        if err.contains("CaUsedAsEndEntity") {
            assert_eq!(code, 3, "{err}");
            assert!(err.contains("hint: ") && err.contains("CA:FALSE"), "{err}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the TLS hub never answered");
}

/// `hive bench --hub` against a hub with authentication and TLS on: every client, worker and
/// WebSocket of the bench shows the token and trusts the CA file. Without the token the bench
/// stops at once, naming the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_an_external_hub_with_a_token_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let (_hub, url) = tls_hub(&data, &cert_path, &key_path, &["--auth"]);
    let admin = async {
        for _ in 0..300 {
            if let Ok(token) = std::fs::read_to_string(data.join("admin.token")) {
                let client = hive_client::HubClient::with_ca_file(&url, Some(&cert_path))
                    .unwrap()
                    .with_token(Some(token.trim().to_string()));
                if client.status().await.is_ok() {
                    return token.trim().to_string();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the TLS hub did not become ready");
    }
    .await;
    let bench = |token: Option<&str>, workloads: &str| {
        let json = dir.path().join(format!("{workloads}.json"));
        let mut command = hive();
        command
            .args(["bench", "--hub", &url, "--ca-file"])
            .arg(&cert_path)
            .args(["--duration", "1s", "--workers", "2", "--slots", "8"])
            .args(["--batch", "10", "--rate", "100", "--workloads", workloads])
            .arg("--json")
            .arg(&json)
            .env_remove("HIVE_TOKEN");
        if let Some(token) = token {
            command.env("HIVE_TOKEN", token);
        }
        async move { (command.output().await.unwrap(), json) }
    };
    let (output, json) = bench(Some(&admin), "batched,agents,swarm,latency").await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["batched"]["tasks"].as_u64().unwrap() > 0, "{report}");
    assert!(report["agent_ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["swarm_deliveries_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["assign_latency_ms"]["count"].as_u64().unwrap() > 0);
    assert_eq!(report["error_rate"], 0.0, "{report}");

    let (output, _) = bench(None, "batched").await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn bench_names_an_unreadable_ca_file_before_it_runs() {
    let output = hive()
        .args([
            "bench",
            "--hub",
            "https://127.0.0.1:9",
            "--ca-file",
            "/nonexistent/hub.pem",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("--ca-file") && err.contains("hub.pem"),
        "{err}"
    );
}

/// The soft and hard limits on open files of process `pid`, from /proc.
fn open_file_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// A hub started under a low soft limit on open files raises it to the hard limit, so that its
/// connection bound (docs/security.md) is not the shell's default of 1,024; with
/// `limits.max_connections` set too, since a set bound may be above the soft limit.
#[tokio::test]
async fn the_hub_raises_its_open_file_limit_to_the_hard_limit() {
    let (_, hard) = open_file_limits("self");
    if hard <= 512 {
        eprintln!("skipped: the hard limit here is {hard}, no room to start lower");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hive.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 100\n").unwrap();
    for more in [
        vec![],
        vec!["--config".to_string(), config.display().to_string()],
    ] {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = tokio::process::Command::new("sh")
            .args(["-c", r#"ulimit -Sn 512 && exec "$0" "$@""#])
            .arg(env!("CARGO_BIN_EXE_hive"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data.path())
            .args(&more)
            .env("HIVE_LOG", "warn")
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let hub = HubProcess::ready(child, port).await;
        let pid = hub.child.id().unwrap().to_string();
        assert_eq!(open_file_limits(&pid), (hard, hard), "serve {more:?}");
        assert!(hub.terminate().await.success());
    }
}
