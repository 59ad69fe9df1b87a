//! The client subcommands: submit, task, cancel, status, tasks, agents, drain, alerts.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hive_client::http::ListQuery;
use hive_proto::RawValue;
use hive_proto::api::{NewTask, OnParentFailure, Task, TaskStatus};

use crate::args::{DrainArgs, OutputArgs, ShowTaskArgs, SubmitArgs, TaskArgs, TasksArgs};
use crate::table;
use crate::{Failure, Outcome};

pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

/// `--feature NAME=NUMBER`.
fn parse_feature(text: &str) -> anyhow::Result<(String, f64)> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("--feature {text:?} is not NAME=NUMBER"))?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| anyhow!("--feature {name}: {value:?} is not a finite number"))?;
    Ok((name.trim().to_string(), value))
}

/// `--payload`: JSON as given, or read from `@FILE` or `-` (stdin), without a byte-order mark
/// or the whitespace around it. (The hub bounds its size: `tasks.max_payload_bytes`.)
fn read_payload(given: &str) -> Result<String, Failure> {
    let read = |text: std::io::Result<String>| {
        text.map_err(|e| Failure::usage(anyhow!("--payload {given}: cannot read it: {e}")))
    };
    let text = if given == "-" {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            eprintln!("reading the payload from stdin; end it with Ctrl-D");
        }
        read(std::io::read_to_string(std::io::stdin()))?
    } else if let Some(path) = given.strip_prefix('@') {
        if path.is_empty() {
            return Err(Failure::usage(anyhow!(
                "--payload @ needs a file name: @FILE"
            )));
        }
        read(std::fs::read_to_string(path))?
    } else {
        return Ok(given.to_string());
    };
    Ok(text.trim_start_matches('\u{feff}').trim().to_string())
}

pub async fn submit(args: SubmitArgs, hub: &super::Target) -> Outcome {
    let text = read_payload(&args.payload)?;
    let payload = RawValue::from_string(text).map_err(|e| {
        Failure::usage(anyhow!("--payload {} is not valid JSON: {e}", args.payload))
    })?;
    let features = args
        .features
        .iter()
        .map(|f| parse_feature(f))
        .collect::<Result<std::collections::BTreeMap<_, _>, _>>()
        .map_err(Failure::usage)?;
    let task = NewTask {
        payload: Some(payload),
        priority: args.priority,
        max_attempts: args.max_attempts,
        timeout_ms: args.timeout_ms,
        backoff_ms: args.backoff_ms,
        idempotency_key: args.idempotency_key,
        depends_on: (!args.depends_on.is_empty()).then_some(args.depends_on),
        on_parent_failure: args.on_parent_failure.as_deref().map(|when| match when {
            "run" => OnParentFailure::Run,
            _ => OnParentFailure::Fail,
        }),
        replicas: args.replicas,
        quorum: args.quorum,
        vote: args.vote,
        features: (!features.is_empty()).then_some(features),
        ..NewTask::new(args.capability)
    };
    let client = hub.client()?;
    let created = client.submit(&task).await.map_err(Failure::hub)?;
    if !args.wait {
        println!("{}", created.id);
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = args
        .wait_timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let task = loop {
        let left = deadline.map_or(Duration::from_secs(60), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let task = client
            .wait(&created.id, left.min(Duration::from_secs(60)))
            .await
            .map_err(Failure::hub)?;
        let finished = task.status.is_finished();
        if finished || deadline.is_some_and(|d| Instant::now() >= d) {
            break task;
        }
    };
    print_json(&task);
    Ok(if task.status == TaskStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn task(args: ShowTaskArgs, hub: &super::Target) -> Outcome {
    let client = hub.client()?;
    if !args.follow {
        print_json(&client.task(&args.id).await.map_err(Failure::hub)?);
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write;
    // The attempt whose text is on the screen: a retry's text starts on a line of its own.
    let mut writing = None;
    let mut show = |name: &str, event: &serde_json::Value| match name {
        "progress" => {
            let attempt = event["attempt"].as_u64();
            if writing.is_some_and(|w| Some(w) != attempt) && event["output"].is_string() {
                println!();
                eprintln!("[attempt {}: its text starts over]", attempt.unwrap_or(0));
            }
            if event["output"].is_string() {
                writing = attempt;
            }
            if let Some(text) = event["output"].as_str() {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
            let fraction = event["fraction"]
                .as_f64()
                .map(|f| format!("{:.0}%", f * 100.0));
            let parts: Vec<String> = fraction
                .into_iter()
                .chain(event["message"].as_str().map(str::to_owned))
                .collect();
            if !parts.is_empty() {
                eprintln!("[progress] {}", parts.join(" "));
            }
        }
        "status" => eprintln!(
            "[{}] attempt {}{}",
            event["status"].as_str().unwrap_or("?"),
            event["attempt"],
            event["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        "task" => eprintln!(
            "[{}] following task {}",
            event["status"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or("?")
        ),
        "skipped" => eprintln!("[skipped {} events: the hub went ahead]", event["count"]),
        _ => {}
    };
    // The hub ends a stream after its max_wait: open it again until the task finishes.
    let task = loop {
        if let Some(task) = client
            .follow(&args.id, &mut show)
            .await
            .map_err(Failure::hub)?
        {
            break task;
        }
    };
    println!();
    let ok = task.status == TaskStatus::Succeeded;
    print_json(&task);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn cancel(args: TaskArgs, hub: &super::Target) -> Outcome {
    print_json(&hub.client()?.cancel(&args.id).await.map_err(Failure::hub)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: OutputArgs, hub: &super::Target) -> Outcome {
    let status = hub.client()?.status().await.map_err(Failure::hub)?;
    if args.json {
        print_json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    let counts = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("tasks:   {}", counts(&status.tasks));
    println!("agents:  {}", counts(&status.agents));
    println!(
        "queued:  {}",
        if status.queue_depth.is_empty() {
            "none".into()
        } else {
            counts(&status.queue_depth)
        }
    );
    println!("routing: {}", status.routing_policy);
    Ok(ExitCode::SUCCESS)
}

fn task_row(task: &Task) -> Vec<String> {
    vec![
        task.id.clone(),
        task.status.to_string(),
        task.capability.clone(),
        task.priority.to_string(),
        task.attempts.len().to_string(),
        task.created_at.clone(),
        task.submitted_by.clone().unwrap_or_else(|| "-".into()),
    ]
}

pub async fn tasks(args: TasksArgs, hub: &super::Target) -> Outcome {
    // The next page's command, with this one's hub and filters.
    let mut next_page = "hive tasks".to_string();
    if hub.url != crate::DEFAULT_HUB {
        next_page += &format!(" --hub {}", hub.url);
    }
    next_page += &format!(" --limit {}", args.limit);
    if let Some(status) = &args.status {
        next_page += &format!(" --status {status}");
    }
    if let Some(capability) = &args.capability {
        next_page += &format!(" --capability '{capability}'");
    }
    let query = ListQuery {
        status: args.status,
        capability: args.capability,
        limit: Some(args.limit),
        cursor: args.cursor,
    };
    let list = hub.client()?.tasks(&query).await.map_err(Failure::hub)?;
    if args.json {
        print_json(&list);
    } else {
        let rows: Vec<_> = list.items.iter().map(task_row).collect();
        print!(
            "{}",
            table::render(
                &[
                    "ID",
                    "STATUS",
                    "CAPABILITY",
                    "PRIO",
                    "ATTEMPTS",
                    "CREATED",
                    "BY"
                ],
                &rows
            )
        );
        // On stderr, so that the table alone goes down a pipe.
        if let Some(next) = &list.next_cursor {
            eprintln!("next page: {next_page} --cursor {next}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn agents(args: OutputArgs, hub: &super::Target) -> Outcome {
    let agents = hub.client()?.agents().await.map_err(Failure::hub)?;
    if args.json {
        print_json(&agents);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<_> = agents
        .iter()
        .map(|a| {
            let done: u64 = a.stats.values().map(|s| s.completed).sum();
            let failed: u64 = a.stats.values().map(|s| s.failed).sum();
            vec![
                a.id.clone(),
                a.name.clone(),
                a.state.to_string(),
                format!("{}/{}", a.running, a.slots),
                a.capabilities.keys().cloned().collect::<Vec<_>>().join(","),
                done.to_string(),
                failed.to_string(),
                routing_beliefs(a),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "NAME",
                "STATE",
                "RUNNING",
                "CAPABILITIES",
                "DONE",
                "FAILED",
                "ROUTING (success, latency, share)"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// What routing believes of an agent, per capability: `echo 98% 12.3ms 31%`.
fn routing_beliefs(agent: &hive_proto::api::Agent) -> String {
    agent
        .routing
        .iter()
        .map(|(capability, r)| {
            let latency = r.latency_ms.map_or("-".into(), |l| format!("{l:.1}ms"));
            format!(
                "{capability} {:.0}% {latency} {:.0}%",
                r.success_probability * 100.0,
                r.share * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn alerts(args: OutputArgs, hub: &super::Target) -> Outcome {
    let alerts = hub.client()?.alerts().await.map_err(Failure::hub)?;
    if args.json {
        print_json(&alerts);
        return Ok(ExitCode::SUCCESS);
    }
    let value = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let active: Vec<_> = alerts
        .active
        .iter()
        .map(|a| {
            vec![
                a.rule.clone(),
                a.state.to_string(),
                a.severity.clone(),
                value(a.value),
                a.threshold.to_string(),
                a.since.clone(),
            ]
        })
        .collect();
    println!("active:");
    print!(
        "{}",
        table::render(
            &["RULE", "STATE", "SEVERITY", "VALUE", "THRESHOLD", "SINCE"],
            &active
        )
    );
    let recent: Vec<_> = alerts
        .recent
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.rule.clone(),
                e.state.to_string(),
                e.severity.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    println!("\nrecent:");
    print!(
        "{}",
        table::render(&["AT", "RULE", "STATE", "SEVERITY", "MESSAGE"], &recent)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn drain(args: DrainArgs, hub: &super::Target) -> Outcome {
    let client = hub.client()?;
    let agent = if args.undo {
        client.undrain(&args.id).await
    } else {
        client.drain(&args.id).await
    };
    print_json(&agent.map_err(Failure::hub)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn hubs(args: OutputArgs, hub: &super::Target) -> Outcome {
    let hubs = hub.client()?.hubs().await.map_err(Failure::hub)?;
    if args.json {
        print_json(&hubs);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<_> = hubs
        .items
        .iter()
        .map(|h| {
            vec![
                format!("{}{}", h.name, if h.this { " *" } else { "" }),
                h.address.clone(),
                h.lease.to_string(),
                h.agents.to_string(),
                h.slots.to_string(),
                h.tasks.to_string(),
                h.queued.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "HUB", "ADDRESS", "LEASE", "AGENTS", "SLOTS", "TASKS", "QUEUED"
            ],
            &rows
        )
    );
    println!(
        "store: {}; pooled (held by no hub): {}; * = the hub that answered",
        hubs.store, hubs.pooled
    );
    Ok(ExitCode::SUCCESS)
}
