//! SQS through the real binary where the Python checks cannot reach:
//! kill -9 while messages are being sent, and leases across a restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Server;

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
