//! Async invocation end to end: the durable queue, retries, destinations,
//! idempotency, and a SIGKILL of the server while events are accepted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn create_node(server: &Server, name: &str) {
    let zip = zip_dir(&lambda_dir("node-kit"));
    let (status, body) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &lambda_body(name, "nodejs20.x", "index.handler", &zip),
    );
    assert_eq!(status, 201, "{body}");
}

fn arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:000000000000:function:{name}")
}

/// Sends an Event invoke; returns (status, request id, replayed).
fn send_event(
    server: &Server,
    name: &str,
    payload: &Value,
    key: Option<&str>,
) -> (u16, String, bool) {
    let mut headers = vec![("x-amz-invocation-type", "Event")];
    if let Some(k) = key {
        headers.push(("x-wisp-idempotency-key", k));
    }
    let r = server.api(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        payload.to_string().as_bytes(),
        &headers,
    );
    let replayed = r.headers().contains_key("x-wisp-idempotent-replay");
    let id = r
        .headers()
        .get("x-amzn-requestid")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), id, replayed)
}

/// The destination records a node-kit function has logged.
fn destination_records(server: &Server, name: &str) -> Vec<Value> {
    function_logs(server, name)
        .iter()
        .filter_map(|l| {
            l.split_once("DESTINATION ")
                .map(|(_, j)| serde_json::from_str(j.trim()).unwrap())
        })
        .collect()
}

fn queue(server: &Server, name: &str) -> Value {
    let (status, v) = server.api_json(
        "GET",
        &format!("/wisp/v1/functions/{name}/async"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{v}");
    v
}

fn invocations(server: &Server, name: &str) -> Vec<Value> {
    let (_, v) = server.api_json(
        "GET",
        &format!("/wisp/v1/functions/{name}/invocations?limit=1000"),
        &Value::Null,
    );
    v["invocations"].as_array().unwrap().clone()
}

#[test]
fn async_events_retry_then_reach_their_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--async-backoff", "20ms"]);
    for f in ["failing", "works", "lonely", "sink"] {
        create_node(&server, f);
    }
    let config = |name: &str, body: Value| {
        let (status, v) = server.api_json(
            "PUT",
            &format!("/2019-09-25/functions/{name}/event-invoke-config"),
            &body,
        );
        assert_eq!(status, 200, "{v}");
    };
    config(
        "failing",
        json!({ "MaximumRetryAttempts": 1, "DestinationConfig": { "OnFailure": { "Destination": arn("sink") } } }),
    );
    config(
        "works",
        json!({ "DestinationConfig": { "OnSuccess": { "Destination": arn("sink") } } }),
    );
    config("lonely", json!({ "MaximumRetryAttempts": 0 }));

    let failing_payload = json!({ "action": "throw", "what": "disk" });
    let (status, failed_id, _) = send_event(&server, "failing", &failing_payload, None);
    assert_eq!(status, 202);
    let (status, ok_id, _) = send_event(&server, "works", &json!({ "action": "plain" }), None);
    assert_eq!(status, 202);
    let (status, lonely_id, _) = send_event(&server, "lonely", &json!({ "action": "throw" }), None);
    assert_eq!(status, 202);
    // Not found and too large are refused before anything is queued.
    assert_eq!(send_event(&server, "nope", &json!({}), None).0, 404);
    let big = json!({ "x": "y".repeat(300 * 1024) });
    assert_eq!(send_event(&server, "works", &big, None).0, 413);

    let records = wait_until("two destination records", Duration::from_secs(30), || {
        let r = destination_records(&server, "sink");
        (r.len() >= 2).then_some(r)
    });
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["requestContext"]["requestId"] == id)
            .unwrap_or_else(|| panic!("no record for {id}: {records:?}"))
            .clone()
    };
    let failure = by_id(&failed_id);
    assert_eq!(failure["version"], "1.0");
    assert_eq!(failure["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(failure["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(
        failure["requestContext"]["functionArn"],
        format!("{}:$LATEST", arn("failing"))
    );
    assert_eq!(failure["requestPayload"], failing_payload);
    assert_eq!(failure["responseContext"]["statusCode"], 200);
    assert_eq!(failure["responseContext"]["executedVersion"], "$LATEST");
    assert_eq!(failure["responseContext"]["functionError"], "Unhandled");
    assert_eq!(failure["responsePayload"]["errorType"], "TypeError");
    assert!(
        failure["responsePayload"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("bad input: disk"),
        "{failure}"
    );
    assert!(failure["timestamp"].as_str().unwrap().ends_with('Z'));
    // Both attempts keep their record and lines under the event's request
    // id: the first failure is not overwritten by the retry.
    // Records come newest first; each says which delivery it was, and a
    // lookup by the id gives the latest.
    let attempts = invocations(&server, "failing");
    let numbers: Vec<&Value> = attempts
        .iter()
        .filter(|r| r["request_id"] == failed_id.as_str())
        .map(|r| &r["attempt"])
        .collect();
    assert_eq!(numbers, [&json!(2), &json!(1)], "{attempts:?}");
    assert_eq!(server.record(&failed_id)["attempt"], 2);
    assert_eq!(server.record(&ok_id)["attempt"], 1);
    let lines = server.logs(&failed_id);
    for marker in ["START RequestId", "REPORT RequestId", "bad input: disk"] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(marker)).count(),
            2,
            "{marker}: {lines:?}"
        );
    }

    let success = by_id(&ok_id);
    assert_eq!(success["requestContext"]["condition"], "Success");
    assert_eq!(success["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(success["responsePayload"], json!({ "hello": "world" }));
    assert!(success["responseContext"].get("functionError").is_none());

    // Without a destination, a given-up event is kept, never dropped.
    let lonely = wait_until("the kept failure", Duration::from_secs(30), || {
        let q = queue(&server, "lonely");
        (!q["failed_events"].as_array().unwrap().is_empty()).then_some(q)
    });
    let kept = &lonely["failed_events"][0];
    assert_eq!(kept["request_id"], lonely_id);
    assert_eq!(
        kept["record"]["requestContext"]["condition"],
        "RetriesExhausted"
    );
    assert_eq!(lonely["queue"]["kept_failed"], 1);
    assert_eq!(lonely["queue"]["failed"], 1);

    let failing = queue(&server, "failing")["queue"].clone();
    assert_eq!(failing["depth"], 0);
    assert_eq!(failing["accepted"], 1);
    assert_eq!(failing["retries"], 1);
    assert_eq!(failing["to_on_failure"], 1);
    assert_eq!(queue(&server, "works")["queue"]["to_on_success"], 1);
    assert_eq!(
        server.metric("wisp_async_retries_total{function=\"failing\"}"),
        1.0
    );
    wait_until("the depth gauge", Duration::from_secs(10), || {
        (server.metric("wisp_async_queue_depth{function=\"failing\"}") == 0.0
            && server.metric("wisp_async_failed_events{function=\"lonely\"}") == 1.0)
            .then_some(())
    });

    // `wisp describe` shows the queue.
    let out = server.cli(&["describe", "failing"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("async queue:"), "{text}");
    assert!(text.contains("1 accepted"), "{text}");
    assert!(text.contains("1 retried"), "{text}");
    assert!(text.contains("1 to on-failure"), "{text}");
}

#[test]
fn an_idempotency_key_runs_the_function_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    create_node(&server, "once");
    let invoke = |payload: &Value, key: Option<&str>| {
        let mut headers = vec![];
        if let Some(k) = key {
            headers.push(("x-wisp-idempotency-key", k));
        }
        let r = server.api(
            "POST",
            "/2015-03-31/functions/once/invocations",
            payload.to_string().as_bytes(),
            &headers,
        );
        let replayed = r.headers().contains_key("x-wisp-idempotent-replay");
        let failed = r.headers().contains_key("x-amz-function-error");
        let id = r.headers()["x-amzn-requestid"]
            .to_str()
            .unwrap()
            .to_string();
        (r.status().as_u16(), id, replayed, failed, r.text().unwrap())
    };

    // Eight concurrent calls with one key: one run, one result for all.
    let slow = json!({ "action": "sleep", "ms": 400 });
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let r = invoke(&slow, Some("order-1"));
                results.lock().unwrap().push(r);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let ids: HashSet<&str> = results.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| r.0 == 200 && r.4 == "\"slept\""),
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| !r.2).count(), 1, "{results:?}");
    assert_eq!(invocations(&server, "once").len(), 1);

    // An async event with the same key queues nothing new.
    let (status, id, replayed) = send_event(&server, "once", &slow, Some("order-1"));
    assert_eq!((status, replayed), (202, true));
    assert!(ids.contains(id.as_str()));

    // A failed run is not kept: its retry runs again.
    let throw = json!({ "action": "throw", "what": "x" });
    let first = invoke(&throw, Some("bad-1"));
    assert!(first.3 && !first.2, "{first:?}");
    let second = invoke(&throw, Some("bad-1"));
    assert!(second.3 && !second.2, "{second:?}");
    assert_ne!(first.1, second.1);

    // The key can come from the payload, through a JSONPath.
    let (status, v) = server.api_json(
        "PUT",
        "/wisp/v1/functions/once/idempotency",
        &json!({ "key": "$.order.id", "ttl_secs": 600 }),
    );
    assert_eq!(status, 200, "{v}");
    let before = invocations(&server, "once").len();
    let order = json!({ "action": "log", "n": 5, "order": { "id": "o-9" } });
    let a = invoke(&order, None);
    let b = invoke(&order, None);
    assert_eq!((a.2, b.2), (false, true));
    assert_eq!(a.1, b.1);
    assert_eq!(invocations(&server, "once").len(), before + 1);
    let (status, _) = server.api_json(
        "PUT",
        "/wisp/v1/functions/once/idempotency",
        &json!({ "key": "order.id" }),
    );
    assert_eq!(status, 400);
    let long = "k".repeat(300);
    assert_eq!(invoke(&json!({}), Some(&long)).0, 400);
}

/// Kills the server with SIGKILL while clients send async events, then
/// restarts it: every event that got a 202 is delivered, and every event
/// with an idempotency key runs exactly once, even though clients resend
/// the ones they are unsure of.
#[test]
fn sigkill_while_accepting_loses_no_event_and_runs_keyed_ones_once() {
    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--async-backoff", "20ms"]);
    create_node(&server, "effect");
    // Disabled while events arrive, so every effect happens after the
    // restart, where the test can see all of them.
    let (status, v) = server.api_json(
        "PUT",
        "/2017-10-31/functions/effect/concurrency",
        &json!({ "ReservedConcurrentExecutions": 0 }),
    );
    assert_eq!(status, 200, "{v}");

    let payload = |n: usize| json!({ "action": "log", "n": n });
    let key = |n: usize| n.is_multiple_of(2).then(|| format!("event-{n}"));
    let acked = Mutex::new(HashSet::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= EVENTS {
                    return;
                }
                let mut headers = vec![("x-amz-invocation-type", "Event")];
                let k = key(n);
                if let Some(k) = &k {
                    headers.push(("x-wisp-idempotency-key", k.as_str()));
                }
                match server.try_api(
                    "POST",
                    "/2015-03-31/functions/effect/invocations",
                    payload(n).to_string().as_bytes(),
                    &headers,
                ) {
                    Ok(r) if r.status() == 202 => {
                        acked.lock().unwrap().insert(n);
                    }
                    // Killed: the rest go unanswered.
                    _ => return,
                }
            });
        }
        // Kill mid-stream.
        wait_until("some acknowledged events", Duration::from_secs(30), || {
            (acked.lock().unwrap().len() >= EVENTS / 3).then_some(())
        });
        server.kill9();
    });
    server.stop();
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() >= EVENTS / 3 && acked.len() < EVENTS,
        "{}",
        acked.len()
    );

    let server = Server::start_with(&data, &["--async-backoff", "20ms"]);
    // Clients resend what they did not hear back about, and, being
    // unsure, every keyed event once more.
    for n in 0..EVENTS {
        if !acked.contains(&n) || key(n).is_some() {
            let (status, _, replayed) =
                send_event(&server, "effect", &payload(n), key(n).as_deref());
            assert_eq!(status, 202);
            if acked.contains(&n) {
                assert!(replayed, "event {n} was accepted before the kill");
            }
        }
    }
    let (status, _) = server.api_json(
        "DELETE",
        "/2017-10-31/functions/effect/concurrency",
        &Value::Null,
    );
    assert_eq!(status, 204);

    wait_until("the queue to drain", Duration::from_secs(120), || {
        (queue(&server, "effect")["queue"]["depth"] == 0).then_some(())
    });
    let mut runs: HashMap<usize, usize> = HashMap::new();
    for line in function_logs(&server, "effect") {
        if let Some(n) = line.split("hello from node ").nth(1) {
            *runs.entry(n.trim().parse().unwrap()).or_default() += 1;
        }
    }
    for n in 0..EVENTS {
        let count = runs.get(&n).copied().unwrap_or(0);
        assert!(count >= 1, "event {n} was never delivered");
        if key(n).is_some() {
            assert_eq!(count, 1, "keyed event {n} ran {count} times");
        }
    }
    assert!(queue(&server, "effect")["failed_events"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// A run cut off by a SIGKILL of the server has an unknown outcome: an
/// unkeyed event runs again (at least once), but a keyed one must not
/// apply twice, so it is given up as `Interrupted`, visibly, and its key
/// stays held: a resend is a duplicate, a synchronous call a conflict.
#[test]
fn a_keyed_run_cut_off_by_sigkill_is_given_up_not_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let mark_file = |name: &str| marks.join(name).to_string_lossy().into_owned();
    let runs = |name: &str| {
        std::fs::read_to_string(marks.join(name))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut server = Server::start_with(&data, &["--async-backoff", "20ms"]);
    let zip = zip_dir(&lambda_dir("node-kit"));
    let mut body = lambda_body("cut", "nodejs20.x", "index.handler", &zip);
    body["Timeout"] = json!(120);
    let (status, v) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{v}");

    let event =
        |file: &str| json!({ "action": "mark", "n": 1, "file": mark_file(file), "ms": 60_000 });
    let (status, keyed_id, _) = send_event(&server, "cut", &event("keyed"), Some("pay-1"));
    assert_eq!(status, 202);
    let (status, _, _) = send_event(&server, "cut", &event("plain"), None);
    assert_eq!(status, 202);
    wait_until("both runs under way", Duration::from_secs(60), || {
        (runs("keyed") == 1 && runs("plain") == 1).then_some(())
    });
    server.kill9();
    server.stop();

    let server = Server::start_with(&data, &["--async-backoff", "20ms"]);
    wait_until("the unkeyed run again", Duration::from_secs(60), || {
        (runs("plain") == 2).then_some(())
    });
    let q = wait_until("the keyed event given up", Duration::from_secs(60), || {
        let q = queue(&server, "cut");
        (!q["failed_events"].as_array().unwrap().is_empty()).then_some(q)
    });
    let kept = &q["failed_events"][0];
    assert_eq!(kept["request_id"], keyed_id.as_str());
    assert_eq!(kept["record"]["requestContext"]["condition"], "Interrupted");
    assert_eq!(runs("keyed"), 1);

    // The key is held: a resend is a duplicate and runs nothing...
    let (status, first, replayed) = send_event(&server, "cut", &event("keyed"), Some("pay-1"));
    assert_eq!((status, replayed), (202, true));
    assert_eq!(first, keyed_id);
    // ...and a synchronous call with it is refused.
    let r = server.api(
        "POST",
        "/2015-03-31/functions/cut/invocations",
        event("keyed").to_string().as_bytes(),
        &[("x-wisp-idempotency-key", "pay-1")],
    );
    assert_eq!(r.status(), 409);
    let text = r.text().unwrap();
    assert!(text.contains("whether it took effect is unknown"), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs("keyed"), 1);
}
