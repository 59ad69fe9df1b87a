//! `hive openapi`: this binary's OpenAPI document on stdout, without a hub, for client
//! generators. The dashboard's TypeScript types are generated from it (`dashboard/openapi.json`,
//! `npm run types`).

use std::io::Write;
use std::process::ExitCode;

use crate::{Failure, Outcome};

pub fn run() -> Outcome {
    let document = hive_server::routes::openapi::document();
    let mut text = serde_json::to_string_pretty(document).expect("a JSON value serialises");
    text.push('\n');
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure {
            code: 1,
            error: anyhow::anyhow!("cannot write the document to stdout: {e}"),
        })?;
    Ok(ExitCode::SUCCESS)
}
