//! `wisp events ...` and `wisp schedules ...`: buses and schedules from the
//! command line, through the EventBridge API the SDKs use and wisp's own
//! views (`/wisp/v1/schedules`, `/wisp/v1/buses/{bus}/tail`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::{EventsCommand, SchedulesCommand};

pub async fn run(client: &Client, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Put {
            bus,
            source,
            detail_type,
            detail,
        } => {
            let entry = json!({
                "EventBusName": bus,
                "Source": source,
                "DetailType": detail_type,
                "Detail": detail,
            });
            let out = client
                .events("PutEvents", &json!({ "Entries": [entry] }))
                .await?;
            let e = &out["Entries"][0];
            match e["EventId"].as_str() {
                Some(id) => println!("{id}"),
                None => anyhow::bail!(
                    "{}: {}",
                    e["ErrorCode"].as_str().unwrap_or("refused"),
                    e["ErrorMessage"].as_str().unwrap_or("")
                ),
            }
            Ok(())
        }
        EventsCommand::TestPattern { pattern, event } => {
            let event = complete_event(&event)?;
            let out = client
                .events(
                    "TestEventPattern",
                    &json!({ "EventPattern": pattern, "Event": event.to_string() }),
                )
                .await?;
            let matched = out["Result"] == true;
            println!("{}", if matched { "match" } else { "no match" });
            if !matched {
                std::process::exit(1);
            }
            Ok(())
        }
        EventsCommand::Tail { bus } => tail(client, &bus).await,
    }
}

/// An event for TestEventPattern: what is given, with the envelope fields
/// it leaves out filled in (so `{"source": "shop"}` can be tested).
fn complete_event(given: &str) -> anyhow::Result<Value> {
    let mut event: Value =
        serde_json::from_str(given).map_err(|e| anyhow::anyhow!("the event is not JSON: {e}"))?;
    let Some(fields) = event.as_object_mut() else {
        anyhow::bail!("the event must be a JSON object");
    };
    for (k, v) in [
        ("version", json!("0")),
        ("id", json!("00000000-0000-0000-0000-000000000000")),
        ("detail-type", json!("")),
        ("source", json!("")),
        ("account", json!("000000000000")),
        ("time", json!("2026-01-01T00:00:00Z")),
        ("region", json!("us-east-1")),
        ("resources", json!([])),
        ("detail", json!({})),
    ] {
        fields.entry(k).or_insert(v);
    }
    Ok(event)
}

/// Prints the events put on `bus` through this server as they come,
/// each with the rules it matched.
async fn tail(client: &Client, bus: &str) -> anyhow::Result<()> {
    let path = format!("/wisp/v1/buses/{}/tail", segment(bus));
    let mut after: Option<u64> = None;
    eprintln!("tailing bus {bus} (events put through this server); Ctrl-C to stop");
    loop {
        let query = after.map_or(String::new(), |a| format!("?after={a}"));
        let v = client
            .call("GET", &format!("{path}{query}"), None)
            .await?
            .json()?;
        for t in v["events"].as_array().into_iter().flatten() {
            let e = &t["event"];
            let rules: Vec<&str> = t["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "{} {} {} {}  → {}",
                e["time"].as_str().unwrap_or(""),
                e["source"].as_str().unwrap_or(""),
                e["detail-type"].as_str().unwrap_or(""),
                e["detail"],
                if rules.is_empty() {
                    "no rule".to_string()
                } else {
                    rules.join(", ")
                }
            );
        }
        after = v["last"].as_u64().or(after);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn when(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
        None => "-".into(),
    }
}

pub async fn schedules(client: &Client, command: SchedulesCommand) -> anyhow::Result<()> {
    match command {
        SchedulesCommand::Ls => {
            let v = client
                .call("GET", "/wisp/v1/schedules", None)
                .await?
                .json()?;
            println!(
                "{:<32} {:<28} {:<16} {:<9} {:<26} TARGET",
                "SCHEDULE", "EXPRESSION", "ZONE", "STATE", "NEXT"
            );
            for s in v["schedules"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<28} {:<16} {:<9} {:<26} {}",
                    format!(
                        "{}/{}",
                        s["group"].as_str().unwrap_or(""),
                        s["name"].as_str().unwrap_or("")
                    ),
                    s["expression"].as_str().unwrap_or(""),
                    s["timezone"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    match s["window_minutes"].as_u64() {
                        Some(m) => format!("{} +{m}m", when(s["next_ms"].as_i64())),
                        None => when(s["next_ms"].as_i64()),
                    },
                    s["target"].as_str().unwrap_or("")
                );
            }
            for r in v["rules"].as_array().into_iter().flatten() {
                let targets: Vec<&str> = r["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<32} {:<28} {:<16} {:<9} {:<26} {}",
                    format!("rule {}", r["name"].as_str().unwrap_or("")),
                    r["expression"].as_str().unwrap_or(""),
                    "UTC",
                    r["state"].as_str().unwrap_or(""),
                    when(r["next_ms"].as_i64()),
                    targets.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// A counter of `/metrics` for the labels given, 0 when absent.
/// The server's /metrics text (empty if it cannot be read: counts then
/// show as 0).
pub(crate) async fn metrics(client: &Client) -> String {
    client
        .call("GET", "/metrics", None)
        .await
        .ok()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default()
}

pub(crate) fn counter(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `wisp describe BUS`: the bus, its rules with their targets and counts.
/// `false` if there is no such bus.
pub async fn describe_bus(client: &Client, name: &str) -> anyhow::Result<bool> {
    let Ok(bus) = client
        .events("DescribeEventBus", &json!({ "Name": name }))
        .await
    else {
        return Ok(false);
    };
    println!("bus:         {name}");
    println!("arn:         {}", bus["Arn"].as_str().unwrap_or(""));
    if let Some(d) = bus["Description"].as_str() {
        println!("description: {d}");
    }
    let metrics = metrics(client).await;
    let on_bus = format!("bus=\"{name}\"");
    println!(
        "events:      {} in",
        counter(&metrics, "wisp_events_in_total", &on_bus)
    );
    let rules = client
        .events("ListRules", &json!({ "EventBusName": name }))
        .await?;
    for r in rules["Rules"].as_array().into_iter().flatten() {
        let rule = r["Name"].as_str().unwrap_or("");
        let what = r["EventPattern"]
            .as_str()
            .or(r["ScheduleExpression"].as_str())
            .unwrap_or("");
        println!(
            "rule:        {rule} ({}) {what}",
            r["State"].as_str().unwrap_or("")
        );
        let labels = format!("{on_bus},rule=\"{rule}\"");
        let count = |n: &str| counter(&metrics, n, &labels);
        println!(
            "               matched {}, delivered {}, retried {}, dead-lettered {}, failed {}",
            count("wisp_events_matched_total"),
            count("wisp_events_delivered_total"),
            count("wisp_events_retried_total"),
            count("wisp_events_dead_lettered_total"),
            count("wisp_events_failed_total"),
        );
        let targets = client
            .events(
                "ListTargetsByRule",
                &json!({ "Rule": rule, "EventBusName": name }),
            )
            .await?;
        for t in targets["Targets"].as_array().into_iter().flatten() {
            println!(
                "               → {} {}",
                t["Id"].as_str().unwrap_or(""),
                t["Arn"].as_str().unwrap_or("")
            );
        }
    }
    Ok(true)
}
