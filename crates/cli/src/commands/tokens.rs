//! `hive token create | list | revoke`: API tokens, through the hub's admin API.

use std::process::ExitCode;

use hive_proto::api::NewToken;

use super::Target;
use super::client::print_json;
use crate::args::TokenCommand;
use crate::table;
use crate::{Failure, Outcome};

pub async fn run(command: TokenCommand, hub: &Target) -> Outcome {
    let client = hub.client()?;
    match command {
        TokenCommand::Create(args) => {
            let some = |list: Vec<String>| (!list.is_empty()).then_some(list);
            let new = NewToken {
                name: args.name,
                role: args.role,
                capabilities: some(args.capabilities),
                groups: some(args.groups),
                expires_in_s: args.expires_in,
            };
            let created = client.create_token(&new).await.map_err(Failure::hub)?;
            if args.json {
                print_json(&created);
            } else {
                // The token alone on stdout, so `$(hive token create ...)` captures it.
                println!("{}", created.token);
                let expiry = created
                    .info
                    .expires_at
                    .as_deref()
                    .map_or(String::new(), |at| format!(", expires {at}"));
                eprintln!(
                    "token {:?} ({}{expiry}) created; it is shown this once",
                    created.info.name, created.info.role
                );
            }
        }
        TokenCommand::List(args) => {
            let tokens = client.tokens().await.map_err(Failure::hub)?;
            if args.json {
                print_json(&tokens);
            } else {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        let scope = [&t.capabilities, &t.groups]
                            .iter()
                            .map(|l| l.as_ref().map_or("*".into(), |l| l.join(",")))
                            .collect::<Vec<_>>()
                            .join(" / ");
                        vec![
                            t.name.clone(),
                            t.role.to_string(),
                            scope,
                            t.created_at.clone(),
                            t.expires_at.clone().unwrap_or_else(|| "-".into()),
                            t.revoked_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(
                        &[
                            "NAME",
                            "ROLE",
                            "CAPABILITIES / GROUPS",
                            "CREATED",
                            "EXPIRES",
                            "REVOKED"
                        ],
                        &rows
                    )
                );
            }
        }
        TokenCommand::Revoke(args) => {
            let revoked = client
                .revoke_token(&args.name)
                .await
                .map_err(Failure::hub)?;
            eprintln!("token {:?} revoked", revoked.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
