//! Event buses through the real binary where the Python checks cannot
//! reach: kill -9 while events are being put, on both stores' terms.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A rule on the default bus sending every `load` event to queue `sink`;
/// the queue's URL.
pub fn rule_to_queue(server: &Server, source: &str, queue: &str) -> String {
    let (status, v) = server.sqs("CreateQueue", &json!({"QueueName": queue}));
    assert_eq!(status, 200, "{v}");
    let url = v["QueueUrl"].as_str().unwrap().to_string();
    let pattern = json!({"source": [source]}).to_string();
    let (status, v) = server.events(
        "PutRule",
        &json!({"Name": format!("to-{queue}"), "EventPattern": pattern}),
    );
    assert_eq!(status, 200, "{v}");
    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{queue}");
    let (status, v) = server.events(
        "PutTargets",
        &json!({"Rule": format!("to-{queue}"), "Targets": [{"Id": "q", "Arn": arn}]}),
    );
    assert_eq!((status, &v["FailedEntryCount"]), (200, &json!(0)), "{v}");
    url
}

/// The ids of the events delivered to `url`, received until every one of
/// `want` came or `within` passed.
pub fn delivered_ids(
    server: &Server,
    url: &str,
    want: &HashSet<String>,
    within: Duration,
) -> HashSet<String> {
    let mut got = HashSet::new();
    let deadline = Instant::now() + within;
    while !want.is_subset(&got) && Instant::now() < deadline {
        let (status, v) = server.sqs(
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 600, "WaitTimeSeconds": 1}),
        );
        assert_eq!(status, 200, "{v}");
        for m in v["Messages"].as_array().into_iter().flatten() {
            let event: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
            got.insert(event["id"].as_str().unwrap().to_string());
        }
    }
    got
}

/// Puts batches of 10 `source` events through `server` from 4 threads
/// until `stop`; the ids PutEvents acknowledged.
pub fn put_until(
    server: Arc<Server>,
    source: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|t| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let entries: Vec<Value> = (0..10)
                        .map(|j| {
                            json!({"Source": source, "DetailType": "t",
                                   "Detail": json!({"n": format!("{t}-{i}-{j}")}).to_string()})
                        })
                        .collect();
                    let Ok((200, v)) = server.try_events("PutEvents", &json!({"Entries": entries}))
                    else {
                        break;
                    };
                    acked.extend(
                        v["Entries"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|e| e["EventId"].as_str().map(String::from)),
                    );
                }
                acked
            })
        })
        .collect()
}

#[test]
fn no_acknowledged_event_is_lost_to_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(tmp.path()));
    let url = rule_to_queue(&server, "load", "sink");
    let stop = Arc::new(AtomicBool::new(false));
    let putters = put_until(server.clone(), "load", stop.clone());
    std::thread::sleep(Duration::from_millis(700));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: HashSet<String> = putters
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() >= 50,
        "put {} before the kill",
        acknowledged.len()
    );

    // Deliveries stored before the kill go on after the restart
    // (one a deliverer held comes back after its visibility).
    let server = Server::start(tmp.path());
    let delivered = delivered_ids(&server, &url, &acknowledged, Duration::from_secs(60));
    let lost: Vec<_> = acknowledged.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost: {:?}",
        lost.len(),
        acknowledged.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "{} events acknowledged before the kill, all delivered",
        acknowledged.len()
    );
}

/// An `at()` expression `seconds` from now, in UTC.
pub fn at_in(seconds: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!("at({})", t.format(&f).unwrap())
}

/// A one-time schedule sending `input` to queue `queue`.
pub fn schedule_to_queue(server: &Server, name: &str, expression: &str, queue: &str, input: &str) {
    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{queue}");
    let (status, v) = server.api_json(
        "POST",
        &format!("/schedules/{name}"),
        &json!({
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/r", "Input": input},
        }),
    );
    assert_eq!(status, 200, "{v}");
}

/// The bodies received from `url` within `within`.
pub fn bodies(server: &Server, url: &str, within: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let (status, v) = server.sqs(
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 600, "WaitTimeSeconds": 1}),
        );
        assert_eq!(status, 200, "{v}");
        for m in v["Messages"].as_array().into_iter().flatten() {
            got.push(m["Body"].as_str().unwrap().to_string());
        }
    }
    got
}

/// A tick fires once: one fired before a kill -9 is not fired again after
/// the restart, and one that fell due while the server was down fires
/// once when it comes back.
#[test]
fn schedule_ticks_fire_once_across_kill_9_and_downtime() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let (status, v) = server.sqs("CreateQueue", &json!({"QueueName": "ticks"}));
    assert_eq!(status, 200, "{v}");
    let url = v["QueueUrl"].as_str().unwrap().to_string();
    schedule_to_queue(
        &server,
        "before",
        &at_in(1),
        "ticks",
        r#"{"tick": "before"}"#,
    );
    schedule_to_queue(
        &server,
        "during",
        &at_in(5),
        "ticks",
        r#"{"tick": "during"}"#,
    );
    let fired = wait_until("the first tick", Duration::from_secs(20), || {
        let got = bodies(&server, &url, Duration::from_secs(1));
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(fired, [r#"{"tick": "before"}"#]);
    server.kill9();
    // "during" falls due while nothing runs.
    std::thread::sleep(Duration::from_secs(6));
    let server = Server::start(tmp.path());
    let got = bodies(&server, &url, Duration::from_secs(8));
    assert_eq!(got, [r#"{"tick": "during"}"#], "once each, nothing twice");
}

const BUSES: &str = r#"
[app]
name = "billing"

[function.stock]
runtime = "nodejs20.x"
source = "stock"
handler = "index.handler"

[queue.invoices]
[queue.audit]
[queue.ticks]
[queue.flows]

[workflow.greet]
definition = "workflows/greet.asl.yaml"
type = "EXPRESS"

[bus.orders]
description = "what the shop says"

[[rule]]
bus = "orders"
name = "paid"
pattern = { source = ["shop"], detail = { total = [{ numeric = [">", 100] }] } }
targets = [
  { queue = "invoices", input_path = "$.detail" },
  { queue = "audit", transformer = { paths = { id = "$.detail.id" }, template = '{"audited": <id>}' } },
]

[[rule]]
bus = "orders"
name = "gone-next-time"
pattern = { source = ["old"] }
targets = [{ queue = "audit" }]

[[schedule]]
name = "soon"
expression = "AT"
queue = "ticks"
input = { job = "close-books" }

[[schedule]]
name = "nightly"
expression = "cron(0 3 * * ? *)"
timezone = "Europe/Berlin"
window = "15m"
function = "stock"
"#;

/// A manifest's buses, rules and schedules are deployed and pruned; the
/// CLI puts events, tests patterns, tails a bus, lists schedules and
/// describes a bus; the graph shows what feeds what.
#[test]
fn the_manifest_declares_buses_rules_and_schedules_and_the_cli_works_them() {
    use crate::sqs::cli_ok;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("stock")).unwrap();
    std::fs::copy(
        lambda_dir("node-sqs").join("index.js"),
        app.join("stock/index.js"),
    )
    .unwrap();
    let manifest = BUSES.replace("AT", &at_in(3));
    std::fs::write(app.join("wisp.toml"), &manifest).unwrap();
    std::fs::create_dir_all(app.join("workflows")).unwrap();
    // As Workflow Studio exports YAML.
    let greet = r#"
StartAt: Greet
States:
  Greet:
    Type: Pass
    Parameters:
      hello.$: $.who
    Next: Note
  Note:
    Type: Task
    Resource: arn:aws:states:::sqs:sendMessage
    Parameters:
      QueueUrl: http://wisp/000000000000/flows
      MessageBody.$: $.hello
    ResultPath: null
    End: true
"#;
    std::fs::write(app.join("workflows/greet.asl.yaml"), greet).unwrap();
    let out = cli_ok(&server, &["deploy", app.to_str().unwrap()]);
    for want in [
        "bus orders created",
        "rule orders/paid (2 targets)",
        "schedule soon created",
        "schedule nightly created",
        "workflow greet created (EXPRESS)",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }

    // Tail first, so the events put next are seen.
    let mut tail = std::process::Command::new(bin())
        .args(["events", "tail", "orders", "--data-dir"])
        .arg(&server.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let id = cli_ok(
        &server,
        &[
            "events",
            "put",
            "orders",
            "--source",
            "shop",
            "--detail-type",
            "Paid",
            "--detail",
            r#"{"id": 7, "total": 250}"#,
        ],
    );
    assert_eq!(id.trim().len(), 36, "{id}");
    let invoices = queue_url_of(&server, "invoices");
    let audit = queue_url_of(&server, "audit");
    let ticks = queue_url_of(&server, "ticks");
    assert_eq!(
        bodies(&server, &invoices, Duration::from_secs(3)),
        [r#"{"id":7,"total":250}"#]
    );
    assert_eq!(
        bodies(&server, &audit, Duration::from_secs(2)),
        [r#"{"audited": 7}"#]
    );
    assert_eq!(
        bodies(&server, &ticks, Duration::from_secs(4)),
        [r#"{"job":"close-books"}"#]
    );
    std::thread::sleep(Duration::from_millis(800));
    tail.kill().unwrap();
    let tailed = String::from_utf8_lossy(&tail.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        tailed.contains("shop Paid") && tailed.contains("→ paid"),
        "{tailed}"
    );

    let matched = cli_ok(
        &server,
        &[
            "events",
            "test-pattern",
            r#"{"detail": {"n": [{"numeric": [">", 1]}]}}"#,
            r#"{"detail": {"n": 5}}"#,
        ],
    );
    assert!(matched.contains("match"), "{matched}");
    let out = server.cli(&[
        "events",
        "test-pattern",
        r#"{"source": ["x"]}"#,
        r#"{"source": "y"}"#,
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("no match"));

    let ls = cli_ok(&server, &["schedules", "ls"]);
    assert!(
        ls.contains("billing/nightly") && ls.contains("Europe/Berlin"),
        "{ls}"
    );
    assert!(
        ls.contains("T0") || ls.contains("T1") || ls.contains("T2"),
        "a next time: {ls}"
    );

    let described = cli_ok(&server, &["describe", "orders"]);
    assert!(described.contains("bus:         orders"), "{described}");
    assert!(described.contains("rule:        paid"), "{described}");
    assert!(described.contains("matched 1, delivered 2"), "{described}");

    let out = cli_ok(&server, &["start", "greet", "--input", r#"{"who": "Ana"}"#]);
    assert_eq!(out.trim(), r#"{"hello":"Ana"}"#, "{out}");
    let flows = queue_url_of(&server, "flows");
    assert_eq!(bodies(&server, &flows, Duration::from_secs(2)), ["Ana"]);
    let ls = cli_ok(&server, &["workflows", "ls"]);
    assert!(ls.contains("greet") && ls.contains("EXPRESS"), "{ls}");

    let graph = server.api_json("GET", "/wisp/v1/graph", &Value::Null).1;
    let edges = graph["edges"].as_array().unwrap();
    let has = |from: &str, to: &str| edges.iter().any(|e| e["from"] == from && e["to"] == to);
    assert!(has("bus:orders", "rule:orders/paid"), "{graph}");
    assert!(has("rule:orders/paid", "queue:invoices"), "{graph}");
    assert!(has("schedule:billing/nightly", "function:stock"), "{graph}");
    assert!(has("workflow:greet", "queue:flows"), "{graph}");

    // Deploying without a rule and a schedule removes them.
    let trimmed = manifest
        .replace("[[rule]]\nbus = \"orders\"\nname = \"gone-next-time\"\npattern = { source = [\"old\"] }\ntargets = [{ queue = \"audit\" }]\n", "");
    let trimmed = trimmed[..trimmed.find("[[schedule]]\nname = \"nightly\"").unwrap()].to_string();
    std::fs::write(app.join("wisp.toml"), trimmed).unwrap();
    let out = cli_ok(&server, &["deploy", app.to_str().unwrap()]);
    assert!(out.contains("rule orders/gone-next-time removed"), "{out}");
    assert!(out.contains("schedule nightly removed"), "{out}");
    assert!(out.contains("schedule soon updated"), "{out}");
    assert!(out.contains("workflow greet updated"), "{out}");
    assert_eq!(
        bodies(&server, &ticks, Duration::from_secs(3)),
        Vec::<String>::new(),
        "a deploy does not fire a one-time schedule that is done"
    );
}

fn queue_url_of(server: &Server, name: &str) -> String {
    let (status, v) = server.sqs("GetQueueUrl", &json!({ "QueueName": name }));
    assert_eq!(status, 200, "{v}");
    v["QueueUrl"].as_str().unwrap().to_string()
}
