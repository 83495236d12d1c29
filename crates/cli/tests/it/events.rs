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
