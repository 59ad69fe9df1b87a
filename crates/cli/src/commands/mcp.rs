//! `hive mcp`: the Model Context Protocol on stdin and stdout, for a desktop LLM client that
//! starts it as a subprocess. Its tools call the hub at `--hub` over the REST API with
//! `--token`; their schemas come from that hub's OpenAPI document (this binary's own when the
//! hub cannot be reached at start, so the client still sees the tools).

use std::time::Duration;

use hive_client::{ClientError, HubClient};
use hive_mcp::{Api, Call, Failure, HiveMcp};
use serde_json::{Value, json};

use super::Target;
use crate::{Failure as CliFailure, Outcome};

/// The REST API of a hub over the network.
struct Remote(HubClient);

impl Api for Remote {
    async fn call(
        &self,
        call: Call,
        _caller: Option<&http::request::Parts>,
    ) -> Result<Value, Failure> {
        // A long poll gets its own time and then some; anything else a minute.
        let timeout = call
            .waits
            .map_or(Duration::from_secs(60), |w| w + Duration::from_secs(10));
        self.0
            .json(call.method, &call.target, call.body.as_ref(), Some(timeout))
            .await
            .map_err(|error| match error {
                ClientError::Api {
                    status,
                    code,
                    message,
                    field,
                } => Failure::Api {
                    status: status.as_u16(),
                    body: json!({"error": {"code": code, "message": message, "field": field}}),
                },
                other => Failure::Unreachable(other.to_string()),
            })
    }
}

pub async fn run(hub: &Target) -> Outcome {
    let client = hub.client()?;
    let document = match client.openapi().await {
        Ok(document) => document,
        Err(error) => {
            tracing::warn!(%error, "cannot read the hub's OpenAPI document; the tools use this binary's");
            hive_server::routes::openapi::document().clone()
        }
    };
    let server = HiveMcp::new(Remote(client), &document).map_err(|e| {
        CliFailure::hub(anyhow::anyhow!(
            "the hub at {} does not offer what the tools need: {e}",
            hub.url
        ))
    })?;
    hive_mcp::serve_stdio(server)
        .await
        .map_err(|e| CliFailure::hub(anyhow::anyhow!(e)))?;
    Ok(std::process::ExitCode::SUCCESS)
}
