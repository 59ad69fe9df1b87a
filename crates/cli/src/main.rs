//! `hive`: the command line. Glue only: parse arguments, set up logging, call into the crates,
//! and map the outcome to an exit code.
//!
//! Exit codes: 0 success; 1 the task ended unsuccessfully (or `--wait` ran out of time);
//! 2 a usage or configuration error; 3 the hub was unreachable or refused the request.

mod args;
mod commands;
mod config;
mod table;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use args::{Cli, Command};

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
        }
    }

    pub fn hub(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 3,
            error: error.into(),
        }
    }
}

pub type Outcome = Result<ExitCode, Failure>;

const DEFAULT_HUB: &str = "http://127.0.0.1:7700";

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut Cli::command()))
        .unwrap_or_else(|e| e.exit());
    // `hive bench` measures another hub only when told so on its command line: an exported
    // HIVE_HUB (as for the client commands) must not turn a local benchmark into a remote one.
    let hub_flag = matches.value_source("hub") == Some(clap::parser::ValueSource::CommandLine);
    // The benchmark's workers would log every (re)connect over its table; rmcp logs three lines
    // at info for every MCP request.
    let default_level = if matches!(cli.command, Command::Bench(_)) {
        "warn"
    } else {
        "info,rmcp=warn"
    };
    // `Targets`, not `EnvFilter`: the same `HIVE_LOG=info,hive_server=debug` syntax without a
    // regex engine, whose start-up was a measurable part of the hub's idle memory.
    let filter: tracing_subscriber::filter::Targets = std::env::var("HIVE_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| default_level.parse().expect("a valid level"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Colours only for a person at a terminal: a log file or journal gets plain lines (and
    // each line costs less to format). NO_COLOR (no-color.org) turns them off there too.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(colour)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let hub = commands::Target {
        url: cli.hub.clone().unwrap_or_else(|| DEFAULT_HUB.to_string()),
        token: cli.token.clone(),
        ca_file: cli.ca_file.clone(),
    };
    let hub = &hub;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Worker(args) => commands::worker::run(args, hub).await,
            Command::Submit(args) => commands::client::submit(args, hub).await,
            Command::Task(args) => commands::client::task(args, hub).await,
            Command::Cancel(args) => commands::client::cancel(args, hub).await,
            Command::Status(args) => commands::client::status(args, hub).await,
            Command::Tasks(args) => commands::client::tasks(args, hub).await,
            Command::Agents(args) => commands::client::agents(args, hub).await,
            Command::Hubs(args) => commands::client::hubs(args, hub).await,
            Command::Alerts(args) => commands::client::alerts(args, hub).await,
            Command::Drain(args) => commands::client::drain(args, hub).await,
            Command::Mcp => commands::mcp::run(hub).await,
            Command::Openapi => commands::openapi::run(),
            Command::Token(command) => commands::tokens::run(command, hub).await,
            Command::Bench(args) => commands::bench::run(args, hub_flag.then_some(hub)).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", one_line(&failure.error));
            if let Some(hint) = hint(&failure.error, hub.token.is_some()) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

/// What to do about a refusal the person at the command line can act on.
fn hint(error: &anyhow::Error, has_token: bool) -> Option<String> {
    // rustls refuses a server certificate marked as a CA's, which `openssl req -x509` makes by
    // default: the error's own words do not say what to change.
    if one_line(error).contains("CaUsedAsEndEntity") {
        return Some(
            "the hub's certificate is marked as a CA's: make it with `-addext basicConstraints=critical,CA:FALSE` (docs/security.md, \"Clients\")".into(),
        );
    }
    let status = match (error.downcast_ref(), error.downcast_ref()) {
        (Some(hive_client::ClientError::Api { status, .. }), _) => *status,
        // A worker's handshake refused.
        (_, Some(hive_client::worker::WorkerError::Refused { status, .. })) => *status,
        _ => return None,
    };
    match status.as_u16() {
        401 if !has_token => Some(format!(
            "this hub has authentication on: pass --token or set HIVE_TOKEN (the first admin token is in the hub's data directory, {}; `hive token create` makes others)",
            hive_server::auth::ADMIN_TOKEN_FILE
        )),
        401 => Some("the token was not accepted: it may be mistyped, revoked or expired".into()),
        _ => None,
    }
}

/// The error and its causes in one line, each said once: many errors put their cause's message
/// in their own (`cannot listen on ...: Address already in use`), and printing the chain after
/// it (anyhow's `{:#}`) would say it twice.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        // Said already when the line so far is it or ends with it (`context: {source}`).
        if line == text || line.ends_with(&format!(": {text}")) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_is_said_once_and_an_unrelated_one_is_kept() {
        let io = std::io::Error::other("Address already in use");
        let error =
            anyhow::Error::from(io).context("cannot listen on 127.0.0.1:1: Address already in use");
        assert_eq!(
            one_line(&error),
            "cannot listen on 127.0.0.1:1: Address already in use"
        );
        // "not found" appears earlier in the line, but it is a cause of its own.
        let error = anyhow::anyhow!("not found").context("reading /srv/not found/hive.toml");
        assert_eq!(
            one_line(&error),
            "reading /srv/not found/hive.toml: not found"
        );
    }
}
