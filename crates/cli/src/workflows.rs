//! `wisp workflows ls`, `wisp start NAME`, `wisp executions NAME` and
//! `wisp history EXECUTION`: state machines from the command line,
//! through the Step Functions API the SDKs use.

use serde_json::{json, Value};

use crate::client::Client;
use crate::WorkflowsCommand;

pub async fn run(client: &Client, command: WorkflowsCommand) -> anyhow::Result<()> {
    match command {
        WorkflowsCommand::Ls => {
            let listed = client.states("ListStateMachines", &json!({})).await?;
            println!("{:<40} {:<9} ARN", "WORKFLOW", "TYPE");
            for m in listed["stateMachines"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<9} {}",
                    m["name"].as_str().unwrap_or(""),
                    m["type"].as_str().unwrap_or(""),
                    m["stateMachineArn"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

/// The ARN of the workflow named `name`, and its type.
async fn machine(client: &Client, name: &str) -> anyhow::Result<(String, String)> {
    let listed = client.states("ListStateMachines", &json!({})).await?;
    listed["stateMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"].as_str() == Some(name))
        .map(|m| {
            (
                m["stateMachineArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .ok_or_else(|| anyhow::anyhow!("no workflow named `{name}`"))
}

/// `wisp start NAME`: runs a workflow to its end and prints its output
/// (exit status 1 if it failed); a STANDARD one is started and watched.
/// With `async`, starts it and prints the execution's ARN.
pub async fn start(client: &Client, name: &str, input: &str, is_async: bool) -> anyhow::Result<()> {
    if serde_json::from_str::<Value>(input).is_err() {
        anyhow::bail!("--input is not JSON: {input}");
    }
    let (arn, kind) = machine(client, name).await?;
    let request = json!({ "stateMachineArn": arn, "input": input });
    if is_async || kind == "STANDARD" {
        let r = client.states("StartExecution", &request).await?;
        let execution = r["executionArn"].as_str().unwrap_or("").to_string();
        if is_async {
            println!("{execution}");
            return Ok(());
        }
        eprintln!("started {execution}");
        loop {
            let d = client
                .states("DescribeExecution", &json!({ "executionArn": execution }))
                .await?;
            if d["status"] != "RUNNING" {
                return finished(&d);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let r = client.states("StartSyncExecution", &request).await?;
    finished(&r)
}

/// Prints an ended execution's output, or its error (exit status 1).
fn finished(r: &Value) -> anyhow::Result<()> {
    let status = r["status"].as_str().unwrap_or("");
    match r["output"].as_str() {
        Some(out) if status == "SUCCEEDED" => println!("{out}"),
        _ => eprintln!(
            "{status}: {}: {}",
            r["error"].as_str().unwrap_or(""),
            r["cause"].as_str().unwrap_or("")
        ),
    }
    if status != "SUCCEEDED" {
        std::process::exit(1);
    }
    Ok(())
}

fn seconds(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn clock(epoch: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos((epoch * 1e9) as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `wisp executions NAME`: a STANDARD workflow's executions, newest
/// first, with their status and how long they ran.
pub async fn executions(client: &Client, name: &str, status: Option<&str>) -> anyhow::Result<()> {
    let (arn, _) = machine(client, name).await?;
    let mut request = json!({ "stateMachineArn": arn, "maxResults": 1000 });
    if let Some(s) = status {
        request["statusFilter"] = json!(s.to_ascii_uppercase());
    }
    let listed = client.states("ListExecutions", &request).await?;
    println!(
        "{:<40} {:<10} {:<19} {:>10}  ARN",
        "EXECUTION", "STATUS", "STARTED", "DURATION"
    );
    for e in listed["executions"].as_array().into_iter().flatten() {
        let started = seconds(&e["startDate"]);
        let duration = match e.get("stopDate") {
            Some(stop) => format!("{:.3}s", seconds(stop) - started),
            None => "-".into(),
        };
        println!(
            "{:<40} {:<10} {:<19} {:>10}  {}",
            e["name"].as_str().unwrap_or(""),
            e["status"].as_str().unwrap_or(""),
            clock(started),
            duration,
            e["executionArn"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// The data an event carries (input, output, error), short.
fn detail(event: &Value) -> String {
    let Some(details) = event
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.ends_with("EventDetails")))
        .map(|(_, d)| d)
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    for field in ["input", "output", "error", "cause", "workerName"] {
        if let Some(v) = details[field].as_str() {
            let v: String = v.chars().take(120).collect();
            parts.push(format!("{field} {v}"));
        }
    }
    parts.join("  ")
}

/// `wisp history EXECUTION`: an execution's history as a timeline: each
/// state with when it was entered and how long it took, and what its
/// tasks did, with their input, output and errors.
pub async fn history(client: &Client, execution: &str) -> anyhow::Result<()> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({ "executionArn": execution, "maxResults": 1000 });
        if let Some(t) = &token {
            request["nextToken"] = json!(t);
        }
        let page = client.states("GetExecutionHistory", &request).await?;
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let start = events
        .first()
        .map(|e| seconds(&e["timestamp"]))
        .unwrap_or(0.0);
    let mut entered: std::collections::HashMap<String, f64> = Default::default();
    for e in &events {
        let at = seconds(&e["timestamp"]);
        let kind = e["type"].as_str().unwrap_or("");
        let name = e["stateEnteredEventDetails"]["name"]
            .as_str()
            .or_else(|| e["stateExitedEventDetails"]["name"].as_str());
        let took = match (kind.ends_with("StateExited"), name) {
            (true, Some(n)) => entered
                .get(n)
                .map(|t| format!(" ({:.0} ms)", (at - t) * 1000.0))
                .unwrap_or_default(),
            (false, Some(n)) => {
                entered.insert(n.to_string(), at);
                String::new()
            }
            _ => String::new(),
        };
        println!(
            "{:>9.3}s  {:<24} {}{}  {}",
            at - start,
            kind,
            name.unwrap_or(""),
            took,
            detail(e)
        );
    }
    Ok(())
}

/// `wisp describe WORKFLOW`: the machine, its states, what its Tasks
/// call, and its executions by outcome with its state transitions (from
/// /metrics). `false` if there is no such workflow.
pub async fn describe(client: &Client, name: &str) -> anyhow::Result<bool> {
    let Ok((arn, kind)) = machine(client, name).await else {
        return Ok(false);
    };
    let m = client
        .states("DescribeStateMachine", &json!({ "stateMachineArn": arn }))
        .await?;
    println!("workflow:    {name} ({kind})");
    println!("arn:         {arn}");
    let definition: Value =
        serde_json::from_str(m["definition"].as_str().unwrap_or("{}")).unwrap_or_default();
    if let Some(c) = definition["Comment"].as_str() {
        println!("comment:     {c}");
    }
    println!(
        "starts at:   {}",
        definition["StartAt"].as_str().unwrap_or("")
    );
    for (state, body) in definition["States"].as_object().into_iter().flatten() {
        let what = body["Resource"]
            .as_str()
            .map(|r| {
                let function = body["Parameters"]["FunctionName"].as_str();
                match function {
                    Some(f) => format!(" → {r} ({f})"),
                    None => format!(" → {r}"),
                }
            })
            .unwrap_or_default();
        println!(
            "state:       {state} ({}){what}",
            body["Type"].as_str().unwrap_or("")
        );
    }
    let metrics = crate::events::metrics(client).await;
    let on = format!("state_machine=\"{name}\"");
    let count = |n: &str, status: &str| {
        crate::events::counter(&metrics, n, &format!("{on},status=\"{status}\""))
    };
    println!(
        "executions:  {} started, {} succeeded, {} failed, {} timed out, {} aborted",
        crate::events::counter(&metrics, "wisp_executions_started_total", &on),
        count("wisp_executions_total", "SUCCEEDED"),
        count("wisp_executions_total", "FAILED"),
        count("wisp_executions_total", "TIMED_OUT"),
        count("wisp_executions_total", "ABORTED"),
    );
    println!(
        "transitions: {}",
        crate::events::counter(&metrics, "wisp_state_transitions_total", &on)
    );
    Ok(true)
}
