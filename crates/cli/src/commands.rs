//! The commands, each a client of the API except `up` and `serve`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value};
use wisp_server::{ListenerLimits, Running, ServerConfig, StoreBackend};

use crate::client::{segment, Client};
use crate::{deploy, template, Cli, Command, Listen};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir.clone();
    let client = || Client::discover(cli.endpoint.clone(), &data_dir);
    match cli.command {
        Command::Serve { listen } => {
            let running = start_server(&data_dir, &listen).await?;
            wait_for_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Up { dir, listen } => up(&data_dir, &dir, &listen).await,
        Command::Deploy { dir } => {
            let client = client()?;
            let manifest = deploy::deploy(&client, &dir).await?;
            print_routes(&client, &manifest).await
        }
        Command::Invoke {
            name,
            payload,
            qualifier,
            is_async,
            idempotency_key,
            log,
        } => {
            let options = InvokeOptions {
                qualifier,
                is_async,
                idempotency_key,
                log,
            };
            invoke(&client()?, &name, payload, options).await
        }
        Command::Logs {
            name,
            follow,
            since,
            request_id,
            format,
            level,
        } => {
            let shown = Shown::new(&format, level.as_deref())?;
            logs(&client()?, &name, follow, since, request_id, shown).await
        }
        Command::Ls => ls(&client()?).await,
        Command::Describe { name } => describe(&client()?, &name).await,
        Command::Queue { command } => crate::queues::run(&client()?, command).await,
        Command::Events { command } => crate::events::run(&client()?, command).await,
        Command::Schedules { command } => crate::events::schedules(&client()?, command).await,
        Command::Workflows { command } => crate::workflows::run(&client()?, command).await,
        Command::Executions { name, status } => {
            crate::workflows::executions(&client()?, &name, status.as_deref()).await
        }
        Command::History { execution } => crate::workflows::history(&client()?, &execution).await,
        Command::Start {
            name,
            input,
            is_async,
        } => crate::workflows::start(&client()?, &name, &input, is_async).await,
        Command::Rm { name } => {
            client()?
                .call(
                    "DELETE",
                    &format!("/2015-03-31/functions/{}", segment(&name)),
                    None,
                )
                .await?;
            println!("deleted {name}");
            Ok(())
        }
        Command::New { name, template } => {
            let dir = Path::new(&name);
            template::create(dir, &name, &template)?;
            println!(
                "created {}/ from template {template}\n  cd {name} && wisp up",
                dir.display()
            );
            Ok(())
        }
    }
}

async fn start_server(data_dir: &Path, listen: &Listen) -> anyhow::Result<Running> {
    let store = match listen.store.as_str() {
        "sqlite" => StoreBackend::Embedded,
        url if url.starts_with("nats://") || url.starts_with("tls://") => StoreBackend::Nats {
            servers: url.to_string(),
            replicas: listen.nats_replicas,
            memory: listen.nats_storage == "memory",
            namespace: listen.nats_namespace.clone(),
        },
        other => anyhow::bail!(
            "--store {other}: `sqlite`, or NATS server URLs (`nats://host:4222[,...]`)"
        ),
    };
    let running = wisp_server::start(ServerConfig {
        data_dir: data_dir.to_path_buf(),
        store,
        http: listen.http,
        api: listen.api,
        retention: Duration::from_secs(wisp_core::limits::DEFAULT_RETENTION_SECS),
        keep_warm: listen.keep_warm,
        region: listen.region.clone(),
        concurrency: listen.concurrency,
        async_backoff: listen.async_backoff,
        async_in_flight: listen.async_in_flight,
        worker_uid_base: listen.worker_uid_base,
        gateway_limits: listen.limits(ListenerLimits::gateway(), listen.max_connections),
        api_limits: listen.limits(ListenerLimits::api(), listen.max_api_connections),
    })
    .await?;
    println!("gateway listening on {}", running.gateway_url());
    println!("api listening on {}", running.api_url());
    Ok(running)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn up(data_dir: &Path, dir: &Path, listen: &Listen) -> anyhow::Result<()> {
    // Check the manifest before starting anything.
    deploy::load_manifest(dir)?;
    let running = start_server(data_dir, listen).await?;
    let client = Client::new(running.api_url(), running.credentials.clone());
    let manifest = match deploy::deploy(&client, dir).await {
        Ok(m) => m,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    print_routes(&client, &manifest).await?;
    println!("ready; following logs (Ctrl-C to stop)");
    let names: Vec<String> = manifest.functions.iter().map(|f| f.name.clone()).collect();
    let follow = async {
        let mut after = latest_seq(&client).await.unwrap_or(0);
        loop {
            match fetch_logs(&client, None, None, None, after).await {
                Ok((events, next)) => {
                    for e in events
                        .iter()
                        .filter(|e| names.iter().any(|n| e["function"] == n.as_str()))
                    {
                        print_log_line(e, true);
                    }
                    after = next;
                }
                Err(e) => eprintln!("warning: cannot read logs: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = follow => {}
    }
    running.shutdown().await;
    Ok(())
}

async fn print_routes(
    client: &Client,
    manifest: &wisp_core::manifest::Manifest,
) -> anyhow::Result<()> {
    let info = client.call("GET", "/wisp/v1/info", None).await?.json()?;
    let gateway = info["gateway"].as_str().unwrap_or("");
    println!("app {} deployed:", manifest.app);
    for f in &manifest.functions {
        println!(
            "  function {} ({}, {} MB, timeout {})",
            f.name,
            f.config.runtime,
            f.config.memory_mb,
            wisp_core::duration::format(Duration::from_millis(f.config.timeout_ms))
        );
    }
    for r in &manifest.routes {
        println!("  {:<6} {gateway}{} -> {}", r.method, r.path, r.function);
    }
    Ok(())
}

struct InvokeOptions {
    qualifier: Option<String>,
    is_async: bool,
    idempotency_key: Option<String>,
    log: bool,
}

async fn invoke(
    client: &Client,
    name: &str,
    payload: Option<String>,
    options: InvokeOptions,
) -> anyhow::Result<()> {
    let InvokeOptions {
        qualifier,
        is_async,
        idempotency_key,
        log,
    } = options;
    let payload = match payload {
        Some(p) if p.starts_with('@') => {
            std::fs::read(&p[1..]).with_context(|| format!("cannot read {}", &p[1..]))?
        }
        Some(p) => p.into_bytes(),
        None => b"{}".to_vec(),
    };
    serde_json::from_slice::<Value>(&payload).context("the payload is not valid JSON")?;
    let mut path = format!("/2015-03-31/functions/{}/invocations", segment(name));
    if let Some(q) = qualifier {
        path.push_str(&format!("?Qualifier={}", segment(&q)));
    }
    let invocation_type = if is_async { "Event" } else { "RequestResponse" };
    let log_type = if log { "Tail" } else { "None" };
    let mut headers = vec![
        ("x-amz-invocation-type", invocation_type),
        ("x-amz-log-type", log_type),
    ];
    if let Some(k) = &idempotency_key {
        headers.push((wisp_core::idempotency::HEADER, k));
    }
    let reply = client.send("POST", &path, payload, &headers).await?;
    let replayed = reply
        .headers
        .contains_key(wisp_core::headers::IDEMPOTENT_REPLAY);
    if reply.status >= 300 {
        let body = reply.json().unwrap_or(json!({}));
        let kind = reply
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Error");
        bail!(
            "{kind} ({}): {}",
            reply.status,
            body["message"].as_str().unwrap_or("")
        );
    }
    let request_id = reply
        .headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_async && replayed {
        println!("already accepted with this idempotency key (request id {request_id})");
        return Ok(());
    }
    if is_async {
        println!("accepted (request id {request_id})");
        return Ok(());
    }
    if replayed {
        eprintln!("(replayed: the result of request {request_id}, the first call with this idempotency key)");
    }
    if let Some(tail) = reply
        .headers
        .get("x-amz-log-result")
        .and_then(|v| v.to_str().ok())
    {
        let text = base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&text));
    }
    println!("{}", String::from_utf8_lossy(&reply.body));
    if reply.headers.contains_key("x-amz-function-error") {
        bail!("the function failed (request id {request_id}); see `wisp logs {name} --request-id {request_id}`");
    }
    Ok(())
}

async fn fetch_logs(
    client: &Client,
    function: Option<&str>,
    request_id: Option<&str>,
    since_ms: Option<i64>,
    after: i64,
) -> anyhow::Result<(Vec<Value>, i64)> {
    let mut q = format!("/wisp/v1/logs?after={after}");
    if let Some(f) = function {
        q.push_str(&format!("&function={}", segment(f)));
    }
    if let Some(r) = request_id {
        q.push_str(&format!("&request_id={}", segment(r)));
    }
    if let Some(s) = since_ms {
        q.push_str(&format!("&since_ms={s}"));
    }
    let v = client.call("GET", &q, None).await?.json()?;
    let events = v["events"].as_array().cloned().unwrap_or_default();
    Ok((events, v["next"].as_i64().unwrap_or(after)))
}

/// Where the log ends now (`after=-1` asks for only that).
async fn latest_seq(client: &Client) -> anyhow::Result<i64> {
    Ok(fetch_logs(client, None, None, None, -1).await?.1)
}

fn print_log_line(e: &Value, with_function: bool) {
    let ts = e["ts_ms"].as_i64().unwrap_or(0);
    let secs = ts / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let prefix = if with_function {
        format!("{} ", e["function"].as_str().unwrap_or(""))
    } else {
        String::new()
    };
    println!(
        "{prefix}{h:02}:{m:02}:{s:02}.{:03} {:<8} {}",
        ts % 1000,
        e["stream"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    );
}

/// How `wisp logs` shows lines: as text or JSON, from a level up.
struct Shown {
    json: bool,
    at_least: u8,
}

const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn level_rank(level: &str) -> Option<u8> {
    let level = match level.to_ascii_uppercase().as_str() {
        "WARNING" => "WARN".to_string(),
        "CRITICAL" => "FATAL".to_string(),
        other => other.to_string(),
    };
    LEVELS.iter().position(|l| *l == level).map(|i| i as u8)
}

/// A line's level: a JSON record's `level`, the level field of Lambda's
/// text format (Node's `time\tid\tLEVEL\t…`, Python's `[LEVEL]\t…`), else
/// INFO.
fn line_level(message: &str) -> &str {
    if let Ok(v) = serde_json::from_str::<Value>(message) {
        if let Some(l) = v["level"].as_str().filter(|l| level_rank(l).is_some()) {
            return LEVELS[level_rank(l).unwrap_or(2) as usize];
        }
        return "INFO";
    }
    let mut parts = message.split('\t');
    let first = parts.next().unwrap_or_default();
    if let Some(l) = first.strip_prefix('[').and_then(|f| f.strip_suffix(']')) {
        if let Some(r) = level_rank(l) {
            return LEVELS[r as usize];
        }
    }
    match parts.nth(1).and_then(level_rank) {
        Some(r) => LEVELS[r as usize],
        None => "INFO",
    }
}

impl Shown {
    fn new(format: &str, level: Option<&str>) -> anyhow::Result<Shown> {
        let json = match format {
            "text" => false,
            "json" => true,
            other => anyhow::bail!("--format is text or json, not {other}"),
        };
        let at_least = match level {
            None => 0,
            Some(l) => level_rank(l).ok_or_else(|| {
                anyhow::anyhow!("--level is one of {}", LEVELS.join(", ").to_lowercase())
            })?,
        };
        Ok(Shown { json, at_least })
    }

    fn print(&self, e: &Value) {
        let message = e["message"].as_str().unwrap_or("");
        let level = line_level(message);
        if level_rank(level).unwrap_or(2) < self.at_least {
            return;
        }
        if !self.json {
            return print_log_line(e, false);
        }
        let ts = e["ts_ms"].as_i64().unwrap_or(0);
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let body = serde_json::from_str::<Value>(message)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::String(message.to_string()));
        println!(
            "{}",
            json!({
                "timestamp": time,
                "function": e["function"],
                "requestId": e["request_id"],
                "stream": e["stream"],
                "level": level,
                "message": body,
            })
        );
    }
}

async fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    since: Option<String>,
    request_id: Option<String>,
    shown: Shown,
) -> anyhow::Result<()> {
    let since_ms = match since {
        Some(s) => {
            let d = wisp_core::duration::parse(&s).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            Some(now - d.as_millis() as i64)
        }
        None => None,
    };
    // A workflow's executions log as `states:<name>`.
    let path = format!("/2015-03-31/functions/{name}");
    let is_function = client.call("GET", &path, None).await.is_ok();
    let target = if is_function || name.starts_with("states:") {
        name.to_string()
    } else {
        format!("states:{name}")
    };
    let name = target.as_str();
    let mut after = 0;
    loop {
        let (events, next) =
            fetch_logs(client, Some(name), request_id.as_deref(), since_ms, after).await?;
        for e in &events {
            shown.print(e);
        }
        after = next;
        if events.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn ls(client: &Client) -> anyhow::Result<()> {
    let v = client
        .call("GET", "/2015-03-31/functions/", None)
        .await?
        .json()?;
    let functions = v["Functions"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<24} {:<16} {:>7} {:>8} {:>9}  LAST MODIFIED",
        "NAME", "RUNTIME", "MEMORY", "TIMEOUT", "CODE"
    );
    for f in functions {
        println!(
            "{:<24} {:<16} {:>5}MB {:>7}s {:>7}KB  {}",
            f["FunctionName"].as_str().unwrap_or(""),
            f["Runtime"].as_str().unwrap_or(""),
            f["MemorySize"],
            f["Timeout"],
            f["CodeSize"].as_u64().unwrap_or(0).div_ceil(1024),
            f["LastModified"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn describe(client: &Client, name: &str) -> anyhow::Result<()> {
    let found = client
        .call(
            "GET",
            &format!("/2015-03-31/functions/{}", segment(name)),
            None,
        )
        .await;
    let f = match found {
        Ok(reply) => reply.json()?,
        // Not a function: perhaps a queue.
        Err(e)
            if e.downcast_ref::<crate::client::ApiFailure>()
                .is_some_and(|a| a.status == 404)
                && (crate::queues::describe_queue(client, name).await?
                    || crate::events::describe_bus(client, name).await?
                    || crate::workflows::describe(client, name).await?) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let c = &f["Configuration"];
    println!("name:        {}", c["FunctionName"].as_str().unwrap_or(""));
    println!("arn:         {}", c["FunctionArn"].as_str().unwrap_or(""));
    println!("runtime:     {}", c["Runtime"].as_str().unwrap_or(""));
    println!("handler:     {}", c["Handler"].as_str().unwrap_or(""));
    println!("memory:      {} MB", c["MemorySize"]);
    println!("timeout:     {} ms", c["WispConfig"]["TimeoutMs"]);
    println!(
        "code:        {} bytes, sha256 {}",
        c["CodeSize"],
        c["CodeSha256"].as_str().unwrap_or("")
    );
    println!("modified:    {}", c["LastModified"].as_str().unwrap_or(""));
    let env = &c["Environment"]["Variables"];
    println!(
        "environment: {}",
        if env.is_null() {
            json!({})
        } else {
            env.clone()
        }
    );
    println!("outbound:    {}", c["WispConfig"]["AllowedOutboundHosts"]);
    crate::queues::describe_triggers(client, name).await?;
    let records = client
        .call(
            "GET",
            &format!("/wisp/v1/functions/{}/invocations?limit=1", segment(name)),
            None,
        )
        .await?
        .json()?;
    match records["invocations"].as_array().and_then(|a| a.first()) {
        Some(r) => {
            println!("latest invocation:");
            println!("  request id:  {}", r["request_id"].as_str().unwrap_or(""));
            println!(
                "  version:     {}  trigger: {}",
                r["version"].as_str().unwrap_or(""),
                r["trigger"].as_str().unwrap_or("")
            );
            println!(
                "  start:       {}",
                if r["cold"] == true { "cold" } else { "warm" }
            );
            // A retry of an async event: which delivery this was.
            if let Some(n) = r["attempt"].as_u64().filter(|n| *n > 1) {
                println!("  attempt:     {n}");
            }
            if let Some(init) = r["init_duration_us"].as_u64() {
                println!("  init:        {:.2} ms", init as f64 / 1000.0);
            }
            println!(
                "  duration:    {:.2} ms (billed {} ms)",
                r["duration_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
                r["billed_ms"]
            );
            println!(
                "  max memory:  {:.1} MB of {} MB",
                r["max_memory_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0,
                r["memory_limit_mb"]
            );
            match r["outcome"].as_str() {
                Some("error") => println!(
                    "  outcome:     error ({} fault): {}: {}",
                    r["error_kind"].as_str().unwrap_or(""),
                    r["error_type"].as_str().unwrap_or(""),
                    r["error_message"].as_str().unwrap_or("")
                ),
                _ if r["status"].is_null() => println!("  outcome:     success"),
                _ => println!("  outcome:     success (status {})", r["status"]),
            }
        }
        None => println!("latest invocation: none yet"),
    }
    let a = client
        .call(
            "GET",
            &format!("/wisp/v1/functions/{}/async", segment(name)),
            None,
        )
        .await?
        .json()?;
    let q = &a["queue"];
    let n = |k: &str| q[k].as_u64().unwrap_or(0);
    println!("async queue:");
    println!(
        "  depth:       {} event(s){}",
        n("depth"),
        match q["oldest_age_ms"].as_i64() {
            Some(ms) => format!(", oldest {:.1} s old", ms as f64 / 1000.0),
            None => String::new(),
        }
    );
    println!(
        "  since start: {} accepted, {} duplicate(s), {} succeeded, {} retried, {} throttled",
        n("accepted"),
        n("duplicates"),
        n("succeeded"),
        n("retries"),
        n("throttles")
    );
    println!(
        "  delivered:   {} to on-success, {} to on-failure; {} given up and kept ({} stored)",
        n("to_on_success"),
        n("to_on_failure"),
        n("kept_failed"),
        n("failed")
    );
    Ok(())
}
