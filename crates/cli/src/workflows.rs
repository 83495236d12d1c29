//! `wisp workflows ls` and `wisp start NAME`: state machines from the
//! command line, through the Step Functions API the SDKs use.

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

/// `wisp start NAME`: runs an EXPRESS workflow to its end and prints its
/// output (exit status 1 if it failed), or with `async` starts it and
/// prints the execution's ARN.
pub async fn start(client: &Client, name: &str, input: &str, is_async: bool) -> anyhow::Result<()> {
    if serde_json::from_str::<Value>(input).is_err() {
        anyhow::bail!("--input is not JSON: {input}");
    }
    let listed = client.states("ListStateMachines", &json!({})).await?;
    let arn = listed["stateMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"].as_str() == Some(name))
        .and_then(|m| m["stateMachineArn"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no workflow named `{name}`"))?
        .to_string();
    let request = json!({ "stateMachineArn": arn, "input": input });
    if is_async {
        let r = client.states("StartExecution", &request).await?;
        println!("{}", r["executionArn"].as_str().unwrap_or(""));
        return Ok(());
    }
    let r = client.states("StartSyncExecution", &request).await?;
    let status = r["status"].as_str().unwrap_or("");
    match r["output"].as_str() {
        Some(out) => println!("{out}"),
        None => eprintln!(
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
