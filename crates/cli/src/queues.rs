//! `wisp queue ...`: SQS queues from the command line, through the same
//! SQS API the SDKs use, and the queue overview of `/wisp/v1/queues`.

use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use crate::client::Client;
use crate::QueueCommand;

pub async fn run(client: &Client, command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Ls => ls(client).await,
        QueueCommand::Send {
            name,
            body,
            group,
            dedup,
            delay,
        } => {
            let mut input = json!({ "QueueUrl": url(client, &name).await?, "MessageBody": body });
            if let Some(g) = group {
                input["MessageGroupId"] = json!(g);
            }
            if let Some(d) = dedup {
                input["MessageDeduplicationId"] = json!(d);
            }
            if let Some(d) = delay {
                input["DelaySeconds"] = json!(d);
            }
            let sent = client.sqs("SendMessage", &input).await?;
            println!("{}", sent["MessageId"].as_str().unwrap_or(""));
            Ok(())
        }
        QueueCommand::Receive {
            name,
            max,
            wait,
            delete,
        } => {
            let queue_url = url(client, &name).await?;
            let got = client
                .sqs(
                    "ReceiveMessage",
                    &json!({
                        "QueueUrl": queue_url,
                        "MaxNumberOfMessages": max,
                        "WaitTimeSeconds": wait,
                        "MessageSystemAttributeNames": ["All"],
                        "MessageAttributeNames": ["All"],
                    }),
                )
                .await?;
            let messages = got["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                eprintln!("no messages");
            }
            for m in &messages {
                let a = &m["Attributes"];
                println!(
                    "{}  receives: {}  sent: {}{}",
                    m["MessageId"].as_str().unwrap_or(""),
                    a["ApproximateReceiveCount"].as_str().unwrap_or("?"),
                    a["SentTimestamp"].as_str().unwrap_or("?"),
                    a["MessageGroupId"]
                        .as_str()
                        .map(|g| format!("  group: {g}"))
                        .unwrap_or_default(),
                );
                println!("  {}", m["Body"].as_str().unwrap_or(""));
            }
            if delete && !messages.is_empty() {
                let entries: Vec<Value> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({ "Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"] }))
                    .collect();
                let r = client
                    .sqs(
                        "DeleteMessageBatch",
                        &json!({ "QueueUrl": queue_url, "Entries": entries }),
                    )
                    .await?;
                eprintln!("deleted {}", r["Successful"].as_array().map_or(0, Vec::len));
            }
            Ok(())
        }
        QueueCommand::Purge { name } => {
            client
                .sqs(
                    "PurgeQueue",
                    &json!({ "QueueUrl": url(client, &name).await? }),
                )
                .await?;
            eprintln!("purged {name}");
            Ok(())
        }
        QueueCommand::Redrive { name, to } => redrive(client, &name, to.as_deref()).await,
    }
}

async fn url(client: &Client, name: &str) -> anyhow::Result<String> {
    let v = client
        .sqs("GetQueueUrl", &json!({ "QueueName": name }))
        .await?;
    Ok(v["QueueUrl"].as_str().unwrap_or_default().to_string())
}

async fn arn(client: &Client, name: &str) -> anyhow::Result<String> {
    let v = client
        .sqs(
            "GetQueueAttributes",
            &json!({ "QueueUrl": url(client, name).await?, "AttributeNames": ["QueueArn"] }),
        )
        .await?;
    Ok(v["Attributes"]["QueueArn"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn redrive(client: &Client, name: &str, to: Option<&str>) -> anyhow::Result<()> {
    let source = arn(client, name).await?;
    let mut input = json!({ "SourceArn": source });
    if let Some(to) = to {
        input["DestinationArn"] = json!(arn(client, to).await?);
    }
    client.sqs("StartMessageMoveTask", &input).await?;
    loop {
        let tasks = client
            .sqs("ListMessageMoveTasks", &json!({ "SourceArn": source }))
            .await?;
        let t = &tasks["Results"][0];
        match t["Status"].as_str() {
            Some("RUNNING") => tokio::time::sleep(Duration::from_millis(100)).await,
            Some("COMPLETED") => {
                eprintln!(
                    "moved {} messages from {name}",
                    t["ApproximateNumberOfMessagesMoved"]
                );
                return Ok(());
            }
            status => bail!(
                "the move stopped ({}): {} moved; {}",
                status.unwrap_or("?"),
                t["ApproximateNumberOfMessagesMoved"],
                t["FailureReason"].as_str().unwrap_or("no reason given")
            ),
        }
    }
}

/// `12s`, `3m`, `2h`: an age, short.
pub fn age(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{}s", ms / 1000),
        Some(ms) if ms < 3_600_000 => format!("{}m", ms / 60_000),
        Some(ms) => format!("{}h", ms / 3_600_000),
    }
}

async fn ls(client: &Client) -> anyhow::Result<()> {
    let v = client.call("GET", "/wisp/v1/queues", None).await?.json()?;
    println!(
        "{:<28} {:>8} {:>9} {:>8} {:>7}  DEAD-LETTER",
        "NAME", "VISIBLE", "IN-FLIGHT", "DELAYED", "OLDEST"
    );
    for q in v["queues"].as_array().cloned().unwrap_or_default() {
        let dead_letter = match q["dead_letter"].as_str() {
            Some(d) => format!("{d} ({})", q["dead_letter_depth"]),
            None => "-".into(),
        };
        println!(
            "{:<28} {:>8} {:>9} {:>8} {:>7}  {dead_letter}",
            q["name"].as_str().unwrap_or(""),
            q["visible"].as_u64().unwrap_or(0),
            q["in_flight"].as_u64().unwrap_or(0),
            q["delayed"].as_u64().unwrap_or(0),
            age(q["oldest_age_ms"].as_i64()),
        );
    }
    Ok(())
}

/// The triggers of `function`, with their queues' state, for `describe`.
pub async fn describe_triggers(client: &Client, function: &str) -> anyhow::Result<()> {
    let v = client.call("GET", "/wisp/v1/queues", None).await?.json()?;
    for q in v["queues"].as_array().cloned().unwrap_or_default() {
        for m in q["mappings"].as_array().cloned().unwrap_or_default() {
            if m["function"].as_str() != Some(function) {
                continue;
            }
            println!(
                "trigger:     queue {} ({})  {}",
                q["name"].as_str().unwrap_or(""),
                m["uuid"].as_str().unwrap_or(""),
                if m["enabled"] == true {
                    "enabled"
                } else {
                    "disabled"
                }
            );
            println!(
                "  queue:     {} visible, {} in flight, {} delayed, oldest {}{}",
                q["visible"],
                q["in_flight"],
                q["delayed"],
                age(q["oldest_age_ms"].as_i64()),
                q["dead_letter"]
                    .as_str()
                    .map(|d| format!(", dead-letter {d}: {}", q["dead_letter_depth"]))
                    .unwrap_or_default()
            );
            println!(
                "  processed: {} batches, {} messages, {} failed, {} filtered out; {} pollers",
                m["batches"], m["messages"], m["failures"], m["filtered"], m["pollers"]
            );
        }
    }
    Ok(())
}

/// `wisp describe NAME` for a queue.
pub async fn describe_queue(client: &Client, name: &str) -> anyhow::Result<bool> {
    let v = client.call("GET", "/wisp/v1/queues", None).await?.json()?;
    let Some(q) = v["queues"]
        .as_array()
        .and_then(|a| a.iter().find(|q| q["name"].as_str() == Some(name)))
        .cloned()
    else {
        return Ok(false);
    };
    println!("queue:       {name}");
    println!("url:         {}", q["url"].as_str().unwrap_or(""));
    println!(
        "messages:    {} visible, {} in flight, {} delayed, oldest {}",
        q["visible"],
        q["in_flight"],
        q["delayed"],
        age(q["oldest_age_ms"].as_i64())
    );
    if let Some(d) = q["dead_letter"].as_str() {
        println!("dead-letter: {d} ({} messages)", q["dead_letter_depth"]);
    }
    for m in q["mappings"].as_array().cloned().unwrap_or_default() {
        println!(
            "trigger:     → {} ({}): {} batches, {} messages, {} failed; {} pollers",
            m["function"].as_str().unwrap_or(""),
            if m["enabled"] == true {
                "enabled"
            } else {
                "disabled"
            },
            m["batches"],
            m["messages"],
            m["failures"],
            m["pollers"]
        );
    }
    Ok(true)
}
