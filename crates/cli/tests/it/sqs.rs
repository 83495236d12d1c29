//! SQS through the real binary where the Python checks cannot reach:
//! kill -9 while messages are being sent, and leases across a restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn create(server: &Server, name: &str) -> String {
    let (status, v) = server.sqs("CreateQueue", &json!({"QueueName": name}));
    assert_eq!(status, 200, "{v}");
    v["QueueUrl"].as_str().unwrap().to_string()
}

/// Receives until the queue answers empty; the bodies.
fn drain(server: &Server, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let (status, v) = server.sqs(
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 600}),
        );
        assert_eq!(status, 200, "{v}");
        let Some(messages) = v["Messages"].as_array() else {
            return bodies;
        };
        bodies.extend(
            messages
                .iter()
                .map(|m| m["Body"].as_str().unwrap().to_string()),
        );
    }
}

#[test]
fn no_acknowledged_message_is_lost_to_kill_9_and_leases_survive_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(tmp.path()));
    let url = create(&server, "orders");
    // One message leased for ten minutes before the crash.
    server.sqs(
        "SendMessage",
        &json!({"QueueUrl": url, "MessageBody": "leased"}),
    );
    let (_, got) = server.sqs(
        "ReceiveMessage",
        &json!({"QueueUrl": url, "VisibilityTimeout": 600}),
    );
    let receipt = got["Messages"][0]["ReceiptHandle"]
        .as_str()
        .unwrap()
        .to_string();

    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (server, url, acknowledged, stop) =
                (server.clone(), url.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let entries: Vec<Value> = (0..10)
                        .map(|j| json!({"Id": format!("e{j}"), "MessageBody": format!("{t}-{i}-{j}")}))
                        .collect();
                    let Ok((200, v)) = server.try_sqs(
                        "SendMessageBatch",
                        &json!({"QueueUrl": url, "Entries": entries}),
                    ) else {
                        break;
                    };
                    let mut acked = acknowledged.lock().unwrap();
                    for e in v["Successful"].as_array().unwrap() {
                        let j = e["Id"].as_str().unwrap().trim_start_matches('e');
                        acked.insert(format!("{t}-{i}-{j}"));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 100,
        "sent {} before the kill",
        acknowledged.len()
    );

    let server = Server::start(tmp.path());
    let (_, attrs) = server.sqs(
        "GetQueueAttributes",
        &json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessagesNotVisible"]}),
    );
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"], "1",
        "the lease taken before the crash still holds"
    );
    let bodies: HashSet<String> = drain(&server, &url).into_iter().collect();
    let lost: Vec<_> = acknowledged.difference(&bodies).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    assert!(!bodies.contains("leased"), "a leased message stays leased");
    // The receipt from before the crash still deletes it.
    let (status, v) = server.sqs(
        "DeleteMessage",
        &json!({"QueueUrl": url, "ReceiptHandle": receipt}),
    );
    assert_eq!(status, 200, "{v}");
    let (_, attrs) = server.sqs(
        "GetQueueAttributes",
        &json!({"QueueUrl": url, "AttributeNames": ["All"]}),
    );
    // What is in flight now is exactly what the drain received.
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"],
        bodies.len().to_string()
    );
}

const REGION_ACCOUNT: &str = "us-east-1:000000000000";

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION_ACCOUNT}:{name}")
}

fn queue_url(server: &Server, name: &str) -> String {
    let (status, v) = server.sqs("GetQueueUrl", &json!({"QueueName": name}));
    assert_eq!(status, 200, "{v}");
    v["QueueUrl"].as_str().unwrap().to_string()
}

fn create_with(server: &Server, name: &str, attributes: Value) -> String {
    let (status, v) = server.sqs(
        "CreateQueue",
        &json!({"QueueName": name, "Attributes": attributes}),
    );
    assert_eq!(status, 200, "{v}");
    v["QueueUrl"].as_str().unwrap().to_string()
}

fn create_function(server: &Server, name: &str, fixture: &str, runtime: &str, handler: &str) {
    let zip = zip_dir(&lambda_dir(fixture));
    let (status, v) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &lambda_body(name, runtime, handler, &zip),
    );
    assert_eq!(status, 201, "{v}");
}

fn map(server: &Server, body: Value) -> (u16, Value) {
    server.api_json("POST", "/2015-03-31/event-source-mappings/", &body)
}

fn send(server: &Server, url: &str, body: &str, group: Option<&str>) {
    let mut input = json!({"QueueUrl": url, "MessageBody": body});
    if let Some(g) = group {
        input["MessageGroupId"] = json!(g);
        input["MessageDeduplicationId"] = json!(body);
    }
    let (status, v) = server.sqs("SendMessage", &input);
    assert_eq!(status, 200, "{v}");
}

/// The records a consumer logged as processed, in the order it did.
fn processed(server: &Server, function: &str) -> Vec<Value> {
    function_logs(server, function)
        .iter()
        .filter_map(|l| {
            l.split_once("SQS ")
                .map(|(_, j)| serde_json::from_str(j.trim()).unwrap())
        })
        .collect()
}

fn bodies(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .collect()
}

fn depth(server: &Server, url: &str) -> (u64, u64) {
    let (_, v) = server.sqs(
        "GetQueueAttributes",
        &json!({"QueueUrl": url, "AttributeNames": ["All"]}),
    );
    let n = |k: &str| v["Attributes"][k].as_str().unwrap().parse::<u64>().unwrap();
    (
        n("ApproximateNumberOfMessages"),
        n("ApproximateNumberOfMessagesNotVisible"),
    )
}

#[test]
fn mappings_deliver_batches_report_failures_and_dead_letter_poison() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_function(&server, "stock", "node-sqs", "nodejs20.x", "index.handler");
    create_with(&server, "orders-dlq", json!({}));
    let url = create_with(
        &server,
        "orders",
        json!({
            "VisibilityTimeout": "3",
            "RedrivePolicy": json!({"deadLetterTargetArn": queue_arn("orders-dlq"), "maxReceiveCount": 2}).to_string(),
        }),
    );

    // Refused as Lambda refuses them.
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("orders"), "FunctionName": "stock", "BatchSize": 11}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("batch window"),
        "{v}"
    );
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("nope"), "FunctionName": "stock"}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("orders"), "FunctionName": "ghost"}),
    );
    assert_eq!(status, 404, "{v}");
    let short = create_with(&server, "short", json!({"VisibilityTimeout": "1"}));
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("short"), "FunctionName": "stock"}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("visibility timeout"),
        "{v}"
    );
    drop(short);

    let (status, created) = map(
        &server,
        json!({
            "EventSourceArn": queue_arn("orders"),
            "FunctionName": "stock",
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }),
    );
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["State"], "Creating");
    let uuid = created["UUID"].as_str().unwrap().to_string();
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("orders"), "FunctionName": "stock"}),
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already exists"),
        "{v}"
    );

    // A poison message among good ones: the good ones are processed, the
    // poison reaches the DLQ after two receives.
    send(&server, &url, "fail", None);
    let (_, batch) = server.sqs(
        "SendMessageBatch",
        &json!({"QueueUrl": url, "Entries": (0..10).map(|i| json!({
            "Id": format!("m{i}"), "MessageBody": format!("ok-{i}"),
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "order"}},
        })).collect::<Vec<_>>()}),
    );
    assert_eq!(batch["Successful"].as_array().unwrap().len(), 10, "{batch}");
    let done = wait_until("ten messages processed", Duration::from_secs(20), || {
        let p = processed(&server, "stock");
        (p.len() >= 10).then_some(p)
    });
    let mut got = bodies(&done);
    got.sort();
    assert_eq!(got, (0..10).map(|i| format!("ok-{i}")).collect::<Vec<_>>());
    let r = &done[0];
    assert_eq!(r["eventSource"], "aws:sqs");
    assert_eq!(r["eventSourceARN"], queue_arn("orders"));
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
    assert!(r["attributes"]["SentTimestamp"].is_string(), "{r}");
    assert_eq!(r["messageAttributes"]["kind"]["stringValue"], "order");
    assert_eq!(r["messageAttributes"]["kind"]["dataType"], "String");
    assert!(
        r["md5OfBody"].is_string() && r["md5OfMessageAttributes"].is_string(),
        "{r}"
    );
    assert!(
        r["receiptHandle"].is_string() && r["messageId"].is_string(),
        "{r}"
    );

    let dlq = queue_url(&server, "orders-dlq");
    wait_until(
        "the poison message in the DLQ",
        Duration::from_secs(30),
        || (depth(&server, &dlq).0 == 1).then_some(()),
    );
    assert_eq!(depth(&server, &url), (0, 0), "the source queue is empty");

    let (_, got) = server.api_json(
        "GET",
        &format!("/2015-03-31/event-source-mappings/{uuid}"),
        &Value::Null,
    );
    assert_eq!(got["State"], "Enabled", "{got}");
    assert_eq!(
        got["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );

    // Disabled, messages wait; enabled again, they are taken.
    let (status, v) = server.api_json(
        "PUT",
        &format!("/2015-03-31/event-source-mappings/{uuid}"),
        &json!({"Enabled": false}),
    );
    assert_eq!(status, 202, "{v}");
    std::thread::sleep(Duration::from_millis(300));
    send(&server, &url, "while-disabled", None);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        depth(&server, &url),
        (1, 0),
        "nothing takes it while disabled"
    );
    server.api_json(
        "PUT",
        &format!("/2015-03-31/event-source-mappings/{uuid}"),
        &json!({"Enabled": true}),
    );
    wait_until(
        "the waiting message processed",
        Duration::from_secs(20),
        || {
            bodies(&processed(&server, "stock"))
                .contains(&"while-disabled".to_string())
                .then_some(())
        },
    );

    let (status, v) = server.api_json(
        "DELETE",
        &format!("/2015-03-31/event-source-mappings/{uuid}"),
        &Value::Null,
    );
    assert_eq!(
        (status, v["State"].as_str()),
        (202, Some("Deleting")),
        "{v}"
    );
    let (status, _) = server.api_json(
        "GET",
        &format!("/2015-03-31/event-source-mappings/{uuid}"),
        &Value::Null,
    );
    assert_eq!(status, 404);
}

#[test]
fn fifo_mappings_keep_group_order_through_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_function(&server, "ledger", "node-sqs", "nodejs20.x", "index.handler");
    let url = create_with(
        &server,
        "ledger.fifo",
        json!({"FifoQueue": "true", "VisibilityTimeout": "3"}),
    );
    for (body, group) in [
        ("a1", "A"),
        ("failonce-a2", "A"),
        ("b1", "B"),
        ("a3", "A"),
        ("b2", "B"),
    ] {
        send(&server, &url, body, Some(group));
    }
    let (status, v) = map(
        &server,
        json!({
            "EventSourceArn": queue_arn("ledger.fifo"),
            "FunctionName": "ledger",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }),
    );
    assert_eq!(status, 202, "{v}");
    let all = wait_until("every message processed", Duration::from_secs(30), || {
        let p = processed(&server, "ledger");
        (p.len() >= 5).then_some(p)
    });
    let order = bodies(&all);
    let a: Vec<_> = order.iter().filter(|b| b.contains('a')).cloned().collect();
    let b: Vec<_> = order
        .iter()
        .filter(|b| b.starts_with('b'))
        .cloned()
        .collect();
    assert_eq!(
        a,
        ["a1", "failonce-a2", "a3"],
        "group A in order after a failure: {order:?}"
    );
    assert_eq!(b, ["b1", "b2"], "{order:?}");
    // The retried message was received twice; group B never waited for it.
    let retried = all.iter().find(|r| r["body"] == "failonce-a2").unwrap();
    assert_eq!(retried["attributes"]["ApproximateReceiveCount"], "2");
    assert!(retried["attributes"]["SequenceNumber"].is_string());
    assert_eq!(retried["attributes"]["MessageGroupId"], "A");
}

/// Maps a new queue to `function`, sends a message, and checks the
/// function took it: the queue empties and its record says `sqs`, success.
fn consumes(server: &Server, function: &str, queue: &str) {
    let url = create_with(server, queue, json!({}));
    let (status, v) = map(
        server,
        json!({"EventSourceArn": queue_arn(queue), "FunctionName": function}),
    );
    assert_eq!(status, 202, "{v}");
    send(server, &url, &format!("to {function}"), None);
    wait_until(
        &format!("{function} took the message"),
        Duration::from_secs(30),
        || (depth(server, &url) == (0, 0)).then_some(()),
    );
    let (_, records) = server.api_json(
        "GET",
        &format!("/wisp/v1/functions/{function}/invocations?limit=10"),
        &Value::Null,
    );
    let r = &records["invocations"][0];
    assert_eq!(
        (r["trigger"].as_str(), r["outcome"].as_str()),
        (Some("sqs"), Some("success")),
        "{r}"
    );
}

#[test]
fn mappings_feed_python_and_wasm_functions_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_function(
        &server,
        "pyc",
        "python-sqs",
        "python3.11",
        "handler.handler",
    );
    create_with(&server, "py-in", json!({}));
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("py-in"), "FunctionName": "pyc", "FunctionResponseTypes": ["ReportBatchItemFailures"]}),
    );
    assert_eq!(status, 202, "{v}");
    let url = queue_url(&server, "py-in");
    send(&server, &url, "from python", None);
    let got = wait_until("the python consumer", Duration::from_secs(20), || {
        let p = processed(&server, "pyc");
        (!p.is_empty()).then_some(p)
    });
    assert_eq!(got[0]["body"], "from python");
    assert_eq!(got[0]["eventSource"], "aws:sqs");

    // A wasm component gets the event as its request body.
    let zip =
        wisp_core::codezip::single_file("testkit.wasm", &std::fs::read(guest("testkit")).unwrap());
    let mut body = lambda_body("wasmc", "wasm", "testkit.wasm", &zip);
    body["Timeout"] = json!(3);
    let (status, v) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{v}");
    consumes(&server, "wasmc", "wasm-in");

    // A `provided` function (AWS's lambda_runtime crate) alike.
    let body = lambda_body(
        "rustc",
        "provided.al2023",
        "bootstrap",
        &rust_provided_zip(),
    );
    let (status, v) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{v}");
    consumes(&server, "rustc", "rust-in");
}

pub fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wisp {args:?} failed:\n{text}");
    text
}

const SHOP: &str = r#"
[app]
name = "shop"

[function.stock]
runtime = "nodejs20.x"
source = "stock"
handler = "index.handler"
timeout = "3s"
async = { max_retries = 0, on_failure = "queue:failed" }

[queue.orders]
visibility_timeout = "4s"
dead_letter = { queue = "orders-dlq", max_receive_count = 1 }

[queue.orders-dlq]
retention = "14d"

[queue.failed]

[[trigger]]
queue = "orders"
function = "stock"
report_batch_item_failures = true
filter = { body = [{ prefix = "keep" }, "fail"] }
"#;

#[test]
fn the_manifest_declares_queues_and_triggers_and_the_cli_works_them() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("stock")).unwrap();
    std::fs::copy(
        lambda_dir("node-sqs").join("index.js"),
        app.join("stock/index.js"),
    )
    .unwrap();
    std::fs::write(app.join("wisp.toml"), SHOP).unwrap();
    let out = cli_ok(&server, &["deploy", app.to_str().unwrap()]);
    assert!(
        out.contains("queue orders created") && out.contains("trigger orders → stock"),
        "{out}"
    );
    // Deploying again updates in place.
    let out = cli_ok(&server, &["deploy", app.to_str().unwrap()]);
    assert!(out.contains("queue orders updated"), "{out}");

    cli_ok(&server, &["queue", "send", "orders", "keep-1"]);
    cli_ok(&server, &["queue", "send", "orders", "drop-me"]);
    cli_ok(&server, &["queue", "send", "orders", "fail"]);
    wait_until("keep-1 processed", Duration::from_secs(20), || {
        bodies(&processed(&server, "stock"))
            .contains(&"keep-1".to_string())
            .then_some(())
    });
    let url = queue_url(&server, "orders");
    let dlq = queue_url(&server, "orders-dlq");
    // The failing message goes to the dead-letter queue after one receive;
    // the filtered one was deleted unseen.
    wait_until("the failure dead-lettered", Duration::from_secs(30), || {
        (depth(&server, &dlq).0 == 1 && depth(&server, &url) == (0, 0)).then_some(())
    });
    assert!(!bodies(&processed(&server, "stock")).contains(&"drop-me".to_string()));

    let ls = cli_ok(&server, &["queue", "ls"]);
    assert!(ls.contains("orders-dlq (1)"), "{ls}");
    let described = cli_ok(&server, &["describe", "stock"]);
    assert!(
        described.contains("trigger:     queue orders"),
        "{described}"
    );
    assert!(described.contains("1 filtered out"), "{described}");
    let queue = cli_ok(&server, &["describe", "orders"]);
    assert!(
        queue.contains("dead-letter: orders-dlq (1 messages)"),
        "{queue}"
    );

    // /metrics has each queue's gauges (published every few seconds) and
    // each mapping's counters.
    let mut text = String::new();
    for _ in 0..150 {
        text = reqwest::blocking::get(format!("{}/metrics", server.api))
            .and_then(|r| r.text())
            .unwrap_or_default();
        // wisp's own queues have gauges from the start: wait for this one's.
        if text.contains("wisp_queue_messages{queue=\"orders\"")
            && text.contains("wisp_esm_batches_total{")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        text.contains("wisp_queue_messages{queue=\"orders\"")
            && text.contains("wisp_esm_batches_total{"),
        "{text}"
    );

    // Redrive back: the message fails again and returns to the DLQ.
    let moved = cli_ok(&server, &["queue", "redrive", "orders-dlq"]);
    assert!(moved.contains("moved 1 messages"), "{moved}");

    // An async invocation that fails lands in the on_failure queue with
    // Lambda's destination record.
    cli_ok(
        &server,
        &[
            "invoke",
            "stock",
            "--async",
            "-p",
            r#"{"Records":[{"body":"throw","attributes":{}}]}"#,
        ],
    );
    let record = wait_until("the destination record", Duration::from_secs(20), || {
        let out = cli_ok(
            &server,
            &["queue", "receive", "failed", "--wait", "1", "--delete"],
        );
        out.contains("requestContext").then_some(out)
    });
    assert!(
        record.contains("RetriesExhausted") && record.contains("the batch fails"),
        "{record}"
    );

    // Dropping the trigger from the manifest removes the mapping.
    let without = SHOP.split("[[trigger]]").next().unwrap();
    std::fs::write(app.join("wisp.toml"), without).unwrap();
    let out = cli_ok(&server, &["deploy", app.to_str().unwrap()]);
    assert!(out.contains("removed"), "{out}");
    let (_, listed) = server.api_json("GET", "/2015-03-31/event-source-mappings/", &Value::Null);
    assert_eq!(listed["EventSourceMappings"], json!([]));

    cli_ok(&server, &["queue", "purge", "orders-dlq"]);
}

#[test]
fn a_throttled_batch_waits_in_the_queue_until_concurrency_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_function(&server, "held", "node-sqs", "nodejs20.x", "index.handler");
    let concurrency = "/2017-10-31/functions/held/concurrency";
    let (status, v) = server.api_json(
        "PUT",
        concurrency,
        &json!({"ReservedConcurrentExecutions": 0}),
    );
    assert_eq!(status, 200, "{v}");
    let url = create_with(&server, "held-in", json!({"VisibilityTimeout": "3"}));
    let (status, v) = map(
        &server,
        json!({"EventSourceArn": queue_arn("held-in"), "FunctionName": "held"}),
    );
    assert_eq!(status, 202, "{v}");
    for body in ["one", "two", "three"] {
        send(&server, &url, body, None);
    }
    // Throttled: nothing runs, nothing is lost.
    wait_until("a throttled batch", Duration::from_secs(20), || {
        let text = reqwest::blocking::get(format!("{}/metrics", server.api))
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("wisp_esm_throttles_total{") && !l.ends_with(" 0"))
            .then_some(())
    });
    assert!(processed(&server, "held").is_empty());
    let (visible, in_flight) = depth(&server, &url);
    assert_eq!(visible + in_flight, 3);

    // The reservation lifted, the waiting messages run.
    let (status, _) = server.api_json("DELETE", concurrency, &Value::Null);
    assert_eq!(status, 204);
    let done = wait_until("every message processed", Duration::from_secs(40), || {
        let p = processed(&server, "held");
        (p.len() >= 3).then_some(p)
    });
    let mut got = bodies(&done);
    got.sort();
    assert_eq!(got, ["one", "three", "two"]);
}
