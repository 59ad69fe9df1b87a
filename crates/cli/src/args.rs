//! The command-line grammar (clap derive). Every flag has help; `HIVE_HUB` sets the hub URL.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hive",
    version,
    about = "Hive: an AI orchestrator hub. Agents, tasks, routing, durably."
)]
pub struct Cli {
    /// URL of the hub, for the client commands [default: http://127.0.0.1:7700]. For `bench`, on
    /// the command line only (HIVE_HUB does not count): measure this hub instead of starting one
    /// (with an admin --token and --ca-file as it needs).
    #[arg(long, global = true, env = "HIVE_HUB")]
    pub hub: Option<String>,
    /// API token for a hub with authentication on (sent as `Authorization: Bearer`); prefer the
    /// environment variable, which stays out of the shell history.
    #[arg(long, global = true, env = "HIVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust the certificates in this PEM file (besides the system's) for an https:// hub, e.g.
    /// one with a self-signed certificate.
    #[arg(long, global = true, env = "HIVE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Run an agent that executes a command for each task.
    Worker(WorkerArgs),
    /// Submit a task.
    Submit(SubmitArgs),
    /// Show one task; --follow streams its progress until it finishes.
    Task(ShowTaskArgs),
    /// Cancel a task.
    Cancel(TaskArgs),
    /// Counts of tasks and agents, queue depths.
    Status(OutputArgs),
    /// List tasks, newest first.
    Tasks(TasksArgs),
    /// List agents.
    Agents(OutputArgs),
    /// List the hubs sharing the hub's store (several on PostgreSQL), their loads and leases.
    Hubs(OutputArgs),
    /// Stop giving an agent new tasks.
    Drain(DrainArgs),
    /// Alerts pending or firing, and the recent history.
    Alerts(OutputArgs),
    /// Serve the Model Context Protocol on stdin and stdout, for an LLM client that starts it
    /// (a desktop app, an IDE): its tools submit, follow and cancel tasks on the hub at --hub,
    /// with --token. The hub itself serves the same tools at /mcp (streamable HTTP).
    Mcp,
    /// Print this binary's OpenAPI document (the REST API, as a hub with the default limits
    /// serves it at /api/openapi.json), for client generators; needs no hub.
    Openapi,
    /// API tokens (admin): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure a hub: throughput, latency, memory, CPU; prints the plan's metrics table.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How long each workload runs (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Worker connections (tasks in this process, over real sockets).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Slots per worker.
    #[arg(long, default_value_t = 64)]
    pub slots: u32,
    /// Tasks per request in the batched workload.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Offered rate of the open-loop latency workloads (latency, cpu), tasks per second
    /// [default: a quarter of the single-task capacity measured in the same run].
    #[arg(long)]
    pub rate: Option<u64>,
    /// A config file for the hub the bench starts (`hive serve --config FILE`), e.g. to compare
    /// `[metrics] enabled = false`. A `[store] url` in it is used as --store is (unless
    /// --store is given too).
    #[arg(long)]
    pub hub_config: Option<PathBuf>,
    /// Run the hub the bench starts on PostgreSQL: a server URL whose user may create schemas
    /// (each hub gets a new schema, dropped after; a password in the URL shows on the hub's
    /// command line). The routing and consensus workloads' own hubs stay on SQLite.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With --store: start this many hubs on the one schema (1-16); the workers are spread
    /// across them, the load is submitted to the first (as a client behind no load balancer)
    /// unless --spread.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub hubs: usize,
    /// With --hubs 2 or more: the submitters spread over every hub, as behind a load balancer
    /// (submitter i to hub i mod N, so the batched workload's four over three hubs are 2, 1,
    /// 1; the open-loop requests to each hub in turn).
    #[arg(long)]
    pub spread: bool,
    /// Swarm broadcasts in flight at once (each sender waits for all replies before its next).
    #[arg(long, default_value_t = 128)]
    pub broadcasters: usize,
    /// Tasks the `soak` workload processes, to measure memory growth under steady load.
    #[arg(long, default_value_t = 10_000_000)]
    pub soak_tasks: u64,
    /// Tasks the `queued` workload leaves queued, to measure memory per queued task.
    #[arg(long, default_value_t = 1_000_000)]
    pub queued_tasks: u64,
    /// Seeds the routing workload: arrivals, failures, the agents' join order, the policies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Slots of each agent in the routing workload's pools.
    #[arg(long, default_value_t = 1)]
    pub routing_slots: u32,
    /// Workloads to run, comma-separated: batched, single, agents, swarm, latency, cpu, queued,
    /// soak, overload, routing, consensus, neural (default: all but soak, which processes
    /// --soak-tasks tasks and takes minutes, overload, which offers 50-300% of the capacity for
    /// four durations, routing, which runs a hub per routing policy on two scenarios (seven
    /// durations), consensus, which compares plain and 3-replica tasks on a hub of its own for
    /// two, and neural, which times the routing model's forward pass and training in-process).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "batched,single,agents,swarm,latency,cpu,queued"
    )]
    pub workloads: Vec<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency over time into this SVG file; with the routing workload, the
    /// share of traffic per agent into FILE-routing.svg beside it.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The frames the bench's workers and swarm members ask the hub for.
    #[command(flatten)]
    pub frames: FrameArgs,
}

/// The frame format a worker asks for in its hello (docs/protocol.md, "Encodings").
#[derive(Debug, Args)]
pub struct FrameArgs {
    /// json (text frames) or msgpack (binary frames).
    #[arg(long, default_value = "json", value_parser = ["json", "msgpack"])]
    pub encoding: String,
    /// none, or lz4 for frames over 512 bytes.
    #[arg(long, default_value = "none", value_parser = ["none", "lz4"])]
    pub compression: String,
    /// Accept many messages per frame (`batch` frames).
    #[arg(long)]
    pub batch_frames: bool,
}

impl FrameArgs {
    pub fn format(&self) -> hive_proto::codec::FrameFormat {
        use hive_proto::codec::{Compression, Encoding, FrameFormat};
        FrameFormat {
            encoding: match self.encoding.as_str() {
                "msgpack" => Encoding::Msgpack,
                _ => Encoding::Json,
            },
            compression: match self.compression.as_str() {
                "lz4" => Compression::Lz4,
                _ => Compression::None,
            },
            batch: self.batch_frames,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default). [config: server.listen]
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory of the SQLite database. [config: server.data_dir; default ./hive-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the state in PostgreSQL instead of SQLite: postgres://USER[:PASSWORD]@HOST:PORT/DB.
    /// [config: store.url; pool bounds store.pool_min (5), store.pool_max (20)]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With --store: this hub's name among the hubs sharing the database, unique to it; a hub
    /// restarted under its name takes its earlier run's tasks over at once.
    /// [config: store.hub_name; default: the machine's name and the port (made from the hub's
    /// id when the machine's name cannot be read); lease store.hub_lease_s (10)]
    #[arg(long, value_name = "NAME")]
    pub hub_name: Option<String>,
    /// With --store: a streaming replica of the database (repeat for several); listings and
    /// status counts read there, a client's reads after its own writes on the primary.
    /// [config: store.replicas; lag bound store.replica_max_lag_ms (2000)]
    #[arg(long, value_name = "URL")]
    pub replica: Vec<String>,
    /// A TOML configuration file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// full (fsync per commit, survives power loss) or normal (survives a crash of the process).
    /// [config: store.durability]
    #[arg(long)]
    pub durability: Option<String>,
    /// Require API tokens (always required on a non-loopback address). [config: auth.enabled]
    #[arg(long)]
    pub auth: bool,
    /// Serve HTTPS and WSS with this certificate chain (PEM). [config: server.tls_cert]
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). [config: server.tls_key]
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Routing policy: least_loaded, p2c_ewma, learned or neural. [config: routing.policy]
    #[arg(long)]
    pub routing: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown this once; the hub keeps only its hash).
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    List(OutputArgs),
    /// Revoke a token by name: it stops working at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// A unique name: recorded as `submitted_by` on the tasks it submits.
    #[arg(long)]
    pub name: String,
    /// admin, client, agent or read.
    #[arg(long)]
    pub role: hive_proto::api::Role,
    /// Agent tokens: a capability it may offer; repeat for several (default: any).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Agent tokens: a swarm it may join; repeat for several (default: any).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Refuse the token after this long, e.g. 30d, 12h; 1s to 10 years (default: it never
    /// expires).
    #[arg(long, value_parser = token_lifetime_s)]
    pub expires_in: Option<u64>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--expires-in`: a duration in whole seconds within the bounds the hub takes.
fn token_lifetime_s(text: &str) -> Result<u64, String> {
    let seconds = humantime::parse_duration(text)
        .map_err(|e| e.to_string())?
        .as_secs();
    let max = hive_proto::api::MAX_TOKEN_LIFETIME_S;
    if (1..=max).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{text} is outside 1s to 10 years ({max} s)"))
    }
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A capability this worker has; repeat for several. NAME or NAME=LEVEL (0.0-1.0).
    #[arg(long = "capability", required = true)]
    pub capabilities: Vec<String>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Shell command run per task: payload JSON on stdin, output on stdout.
    #[arg(long)]
    pub exec: String,
    /// The worker's identity: shown in the agent list, and what routing learns about (success
    /// rate, latency; kept across restarts). Default: HOST:CAPABILITIES, e.g. box:shout+echo.
    #[arg(long)]
    pub name: Option<String>,
    /// A swarm to join; repeat for several. Broadcasts to it run CMD too, and its output is the
    /// reply (HIVE_CAPABILITY is then swarm:NAME).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// On SIGTERM or Ctrl-C: how long running commands may still finish (no new work is taken)
    /// before their process groups are killed and the tasks handed back for a retry.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    #[command(flatten)]
    pub frames: FrameArgs,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Capability the task needs.
    #[arg(long)]
    pub capability: String,
    /// Payload as JSON; `@FILE` reads it from a file, `-` from stdin (neither is JSON, so
    /// neither can be meant as a payload).
    #[arg(long, default_value = "null")]
    pub payload: String,
    /// 0-9, 9 most urgent.
    #[arg(long)]
    pub priority: Option<u8>,
    /// Attempts before the task fails for good, 1-100 (default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Lease of one attempt, in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The first retry's delay in milliseconds, doubled at each retry (default 1000).
    #[arg(long)]
    pub backoff_ms: Option<u64>,
    /// A task submitted again with the same key is not created again: the first one's id is
    /// returned.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Id of a task that must end first (and succeed, unless --on-parent-failure run); repeat
    /// for several. The task's assignment carries their results as `inputs` (`hive worker
    /// --exec` puts them in HIVE_INPUTS).
    #[arg(long = "depends-on")]
    pub depends_on: Vec<String>,
    /// When a parent fails or is cancelled: `fail` this task too (the default), or `run` it with
    /// the parent's error among its inputs.
    #[arg(long, value_parser = ["fail", "run"])]
    pub on_parent_failure: Option<String>,
    /// Consensus: run this many attempts at once on agents of distinct names (1-16).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Consensus: succeed once this many results agree (default: a majority of --replicas).
    #[arg(long)]
    pub quorum: Option<u32>,
    /// Consensus: vote with the value at this JSON pointer of each result (e.g. /answer), not
    /// the whole result.
    #[arg(long)]
    pub vote: Option<String>,
    /// A numeric hint for the neural routing policy, NAME=NUMBER (e.g. tokens=1200); repeat for
    /// several.
    #[arg(long = "feature", value_name = "NAME=NUMBER")]
    pub features: Vec<String>,
    /// Wait for the task to finish and print it as JSON; exit 0 only if it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (default: wait as long as it takes).
    #[arg(long)]
    pub wait_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ShowTaskArgs {
    /// The task id.
    pub id: String,
    /// Follow the task until it finishes: the text its attempt streams goes to stdout as it
    /// arrives, its status changes, fractions and messages to stderr, then the finished task
    /// as JSON.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The agent id.
    pub id: String,
    /// Undo an earlier drain: the agent takes work again.
    #[arg(long)]
    pub undo: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// waiting, queued, running, succeeded, failed or cancelled.
    #[arg(long)]
    pub status: Option<hive_proto::api::TaskStatus>,
    /// Only tasks of this capability.
    #[arg(long)]
    pub capability: Option<String>,
    /// At most this many (1-1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// The next page: where an earlier listing stopped (its `next_cursor`; the table prints the
    /// command for it on stderr). Give the same filters.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
