//! `wisp`: runs the server (`up`, `serve`) and drives it over its HTTP API
//! (`deploy`, `invoke`, `logs`, `ls`, `describe`, `rm`), like `aws lambda`.

mod client;
mod commands;
mod deploy;
mod deploy_events;
mod events;
mod queues;
mod template;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use wisp_server::ListenerLimits;

#[derive(Parser)]
#[command(
    name = "wisp",
    version,
    about = "Self-hosted serverless: WebAssembly and Lambda functions on your own machines"
)]
struct Cli {
    /// Data directory: store, code, compiled cache, credentials, endpoints.json.
    #[arg(long, global = true, env = "WISP_DATA_DIR", default_value = ".wisp")]
    data_dir: PathBuf,
    /// API endpoint for client commands (default: from DATA_DIR/endpoints.json).
    #[arg(long, global = true, env = "WISP_ENDPOINT")]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Listen {
    /// Where state is kept: `sqlite` (the data dir, one node) or
    /// `nats://host:4222[,nats://host2:4222,…]` (NATS JetStream, shared by
    /// every node pointed at it: a cluster).
    #[arg(long, env = "WISP_STORE", default_value = "sqlite")]
    store: String,
    /// With a NATS store: copies of each bucket and stream (1, or 3 so
    /// that losing a NATS server loses nothing and stops nothing).
    #[arg(long, env = "WISP_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
    /// With a NATS store: `file` (durable) or `memory`.
    #[arg(long, env = "WISP_NATS_STORAGE", default_value = "file", value_parser = ["file", "memory"])]
    nats_storage: String,
    /// With a NATS store: prefix of every bucket, stream and subject, so
    /// several wisp clusters can share one NATS cluster.
    #[arg(long, env = "WISP_NATS_NAMESPACE", default_value = "wisp")]
    nats_namespace: String,
    /// Gateway listener (public function routes).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// API listener (control plane, AWS-compatible APIs).
    #[arg(long, default_value = "127.0.0.1:9070")]
    api: SocketAddr,
    /// How long an idle process worker is kept warm before it is stopped.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    keep_warm: std::time::Duration,
    /// Account-wide concurrency limit: invocations running at once.
    #[arg(long, env = "WISP_CONCURRENCY", default_value_t = 1000)]
    concurrency: usize,
    /// AWS region reported to functions (AWS_REGION) and in ARNs.
    #[arg(long, env = "WISP_REGION", default_value = "us-east-1")]
    region: String,
    /// First wait before an async event is retried; each retry waits a
    /// random time up to twice the last ceiling (full jitter), at most 5m.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    async_backoff: std::time::Duration,
    /// Most async deliveries running at once, over all functions.
    #[arg(long, default_value_t = 64)]
    async_in_flight: usize,
    /// Run each process function (Node, Python, provided) as an
    /// unprivileged user of its own: uids BASE, BASE+1, ... (gid the same,
    /// no passwd entry needed). Needs the server to run as root.
    #[arg(long, env = "WISP_WORKER_UID_BASE", value_name = "BASE")]
    worker_uid_base: Option<u32>,
    /// Longest a client may take to send a request's head, from its first
    /// byte (both listeners) [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    header_read_timeout: Option<std::time::Duration>,
    /// Longest a connection may stay open with no request in progress
    /// (both listeners) [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle_timeout: Option<std::time::Duration>,
    /// Time a request body has after its head, plus 1s for every 64 KiB
    /// that arrives (both listeners) [default: 20s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    body_read_timeout: Option<std::time::Duration>,
    /// Most open gateway connections; past them new ones get 503 [default: 8192].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most open API connections; past them new ones get 503 [default: 1024].
    #[arg(long, value_name = "N")]
    max_api_connections: Option<usize>,
}

impl Listen {
    /// A listener's limits: its defaults, with what the flags set.
    fn limits(&self, defaults: ListenerLimits, max_connections: Option<usize>) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: self
                .header_read_timeout
                .unwrap_or(defaults.header_read_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
            body_read_timeout: self.body_read_timeout.unwrap_or(defaults.body_read_timeout),
            max_connections: max_connections.unwrap_or(defaults.max_connections).max(1),
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    wisp_core::duration::parse(s)
}

#[derive(Subcommand)]
enum Command {
    /// Start the server and deploy DIR's wisp.toml; stays in the foreground.
    Up {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        listen: Listen,
    },
    /// Run the server.
    Serve {
        #[command(flatten)]
        listen: Listen,
    },
    /// Build and deploy DIR's wisp.toml to a running server.
    Deploy {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Invoke a function and print its result.
    Invoke {
        name: String,
        /// JSON payload, or @FILE to read it from a file.
        #[arg(long, short)]
        payload: Option<String>,
        /// Version or alias.
        #[arg(long, short)]
        qualifier: Option<String>,
        /// Queue the invocation and return at once (InvocationType=Event).
        #[arg(long = "async")]
        is_async: bool,
        /// Run the function once per key: a repeat gets the first result
        /// (or, with --async, queues nothing new).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Also print the invocation's log tail.
        #[arg(long)]
        log: bool,
    },
    /// Show a function's logs.
    Logs {
        name: String,
        /// Keep following new lines.
        #[arg(long, short)]
        follow: bool,
        /// Only lines newer than this (e.g. 10m, 1h).
        #[arg(long)]
        since: Option<String>,
        /// Only this invocation's lines.
        #[arg(long)]
        request_id: Option<String>,
        /// `text` (the default) or `json`: one JSON object per line.
        #[arg(long, default_value = "text")]
        format: String,
        /// Only lines at this level or above (trace, debug, info, warn,
        /// error, fatal).
        #[arg(long)]
        level: Option<String>,
    },
    /// List functions.
    Ls,
    /// Show a function's configuration and its latest invocation.
    Describe { name: String },
    /// Delete a function.
    Rm { name: String },
    /// Work with SQS queues.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Work with event buses: put events, test patterns, tail a bus.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Work with schedules (EventBridge Scheduler and scheduled rules).
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
    /// Work with workflows (state machines).
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// A STANDARD workflow's executions, newest first.
    Executions {
        name: String,
        /// Only those with this status (running, succeeded, failed,
        /// timed_out, aborted).
        #[arg(long)]
        status: Option<String>,
    },
    /// An execution's history as a timeline: states, durations, input,
    /// output, errors.
    History { execution: String },
    /// Run a workflow to its end and print its output (or, with --async,
    /// start it and print the execution's ARN).
    Start {
        name: String,
        /// The execution's input, JSON.
        #[arg(long, short, default_value = "{}")]
        input: String,
        #[arg(long = "async")]
        is_async: bool,
    },
    /// Create a new function project.
    New {
        name: String,
        #[arg(long, short, default_value = "rust-wasm")]
        template: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Put one event on a bus; prints its id.
    Put {
        /// The bus (`default` for the default bus).
        bus: String,
        #[arg(long)]
        source: String,
        #[arg(long)]
        detail_type: String,
        /// The detail, a JSON object.
        #[arg(long, default_value = "{}")]
        detail: String,
    },
    /// Says whether an event matches a pattern (exit status 1 if not);
    /// envelope fields the event leaves out are filled in.
    TestPattern { pattern: String, event: String },
    /// Shows the events put on a bus through this server as they arrive,
    /// each with the rules it matched.
    Tail {
        #[arg(default_value = "default")]
        bus: String,
    },
}

#[derive(Subcommand)]
enum WorkflowsCommand {
    /// Every state machine and its type.
    Ls,
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Every schedule and scheduled rule, with when it fires next.
    Ls,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queues: depth, in flight, delayed, oldest message, dead-letter depth.
    Ls,
    /// Send a message.
    Send {
        name: String,
        /// The message body.
        body: String,
        /// FIFO queues: the message group.
        #[arg(long)]
        group: Option<String>,
        /// FIFO queues: the deduplication id (else the queue's content-based one).
        #[arg(long)]
        dedup: Option<String>,
        /// Seconds before it can be received (standard queues).
        #[arg(long)]
        delay: Option<u32>,
    },
    /// Receive messages and print them; they come back after the visibility
    /// timeout unless --delete.
    Receive {
        name: String,
        /// Most messages (1 to 10).
        #[arg(long, default_value_t = 10)]
        max: u32,
        /// Seconds to wait for a first message (0 to 20).
        #[arg(long, default_value_t = 0)]
        wait: u32,
        /// Delete what was received.
        #[arg(long)]
        delete: bool,
    },
    /// Delete every message of a queue.
    Purge { name: String },
    /// Move a dead-letter queue's messages back to where they came from
    /// (or to --to QUEUE), and wait until they are moved.
    Redrive {
        name: String,
        #[arg(long)]
        to: Option<String>,
    },
}

/// Request handling allocates many small, short-lived objects across
/// threads; mimalloc serves those with less contention than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WISP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
