//! Cluster mode: three `wisp serve --store nats://…` nodes on one NATS
//! JetStream cluster of three servers (R3, file storage), started by the
//! test. Every node serves every function; a change through one node is
//! seen by the others; async events and queue messages are taken by
//! whichever node has room; a node killed with -9 loses nothing that was
//! acknowledged.

use std::time::Duration;

use serde_json::{json, Value};
use wisp_store_nats::testing::NatsCluster;

use crate::harness::{guest, lambda_body, wait_until, Server};

fn nodes(cluster: &NatsCluster, root: &std::path::Path, n: usize) -> Vec<Server> {
    let urls = cluster.urls();
    (0..n)
        .map(|i| {
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            Server::start_with(&dir, &["--store", &urls, "--nats-replicas", "3"])
        })
        .collect()
}

/// The guest `name`, zipped as the handler `testkit.wasm`.
fn wasm_zip(name: &str) -> Vec<u8> {
    wisp_core::codezip::single_file("testkit.wasm", &std::fs::read(guest(name)).unwrap())
}

/// Invokes `function` through `node`; the status and the body.
fn invoke(node: &Server, function: &str, payload: &Value) -> (u16, String) {
    let r = node.api(
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        payload.to_string().as_bytes(),
        &[],
    );
    let status = r.status().as_u16();
    (status, r.text().unwrap())
}

#[test]
fn three_nodes_serve_one_cluster() {
    let cluster = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = nodes(&cluster, root.path(), 3);
    // One set of credentials for the cluster: the first node's.
    for n in &nodes[1..] {
        assert_eq!(
            n.credentials.access_key_id,
            nodes[0].credentials.access_key_id
        );
    }

    // Deployed through node 0, served by all.
    let body = lambda_body("kit", "wasm", "testkit.wasm", &wasm_zip("testkit"));
    let (status, v) = nodes[0].api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{v}");
    for n in &nodes {
        let (status, out) = invoke(n, "kit", &json!({"n": 1}));
        assert_eq!((status, out.as_str()), (200, r#"{"n":1}"#));
    }

    // An alias moved through node 2 is followed by node 1.
    let (status, v) = nodes[0].api_json("POST", "/2015-03-31/functions/kit/versions", &json!({}));
    assert_eq!(status, 201, "{v}");
    let (status, v) = nodes[0].api_json(
        "POST",
        "/2015-03-31/functions/kit/aliases",
        &json!({"Name": "live", "FunctionVersion": "1"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(invoke(&nodes[1], "kit:live", &json!(2)).1, "2");
    let update = json!({"ZipFile": base64_zip(&wasm_zip("hello")), "Publish": true});
    let (status, v) = nodes[2].api_json("PUT", "/2015-03-31/functions/kit/code", &update);
    assert_eq!(status, 200, "{v}");
    // Version 2 ready on node 1 (fetched and compiled), so what follows
    // times the change reaching it, not a compile.
    assert!(invoke(&nodes[1], "kit:2", &json!(0))
        .1
        .starts_with("Hello, wisp!"));
    let (status, v) = nodes[2].api_json(
        "PUT",
        "/2015-03-31/functions/kit/aliases/live",
        &json!({"FunctionVersion": "2"}),
    );
    assert_eq!(status, 200, "{v}");
    // Typically milliseconds (a KV watch); the test allows for a loaded
    // machine rather than timing it, and prints what it took.
    let moved = std::time::Instant::now();
    wait_until("node 1 follows the alias", Duration::from_secs(10), || {
        invoke(&nodes[1], "kit:live", &json!(3))
            .1
            .starts_with("Hello, wisp!")
            .then_some(())
    });
    eprintln!("the alias change reached node 1 in {:?}", moved.elapsed());

    // Each node admits its share of the cluster's account limit (1000).
    let shares: Vec<f64> = nodes
        .iter()
        .map(|n| {
            wait_until("the node sees all three", Duration::from_secs(10), || {
                (n.metric("wisp_cluster_nodes") == 3.0).then_some(())
            });
            n.metric("wisp_concurrency_share")
        })
        .collect();
    assert_eq!(shares.iter().sum::<f64>(), 1000.0, "{shares:?}");
    // A reservation set through node 0 holds on node 1.
    let (status, v) = nodes[0].api_json(
        "PUT",
        "/2017-10-31/functions/kit/concurrency",
        &json!({"ReservedConcurrentExecutions": 0}),
    );
    assert_eq!(status, 200, "{v}");
    wait_until("node 1 throttles", Duration::from_secs(10), || {
        (invoke(&nodes[1], "kit", &json!(0)).0 == 429).then_some(())
    });
    let (status, _) = nodes[2].api_json(
        "DELETE",
        "/2017-10-31/functions/kit/concurrency",
        &Value::Null,
    );
    assert_eq!(status, 204);
    wait_until("node 1 runs it again", Duration::from_secs(10), || {
        (invoke(&nodes[1], "kit", &json!(0)).0 == 200).then_some(())
    });

    // Provisioned concurrency set through node 1 is spread over the
    // three: 4 workers kept warm as 2 + 1 + 1. Removed through node 2, it
    // is let go everywhere.
    let provisioned = "/2019-09-30/functions/kit/provisioned-concurrency?Qualifier=1";
    let (status, v) = nodes[1].api_json(
        "PUT",
        provisioned,
        &json!({"ProvisionedConcurrentExecutions": 4}),
    );
    assert_eq!(status, 202, "{v}");
    let warm = |n: &Server| n.metric(r#"wisp_provisioned_workers{function="kit",qualifier="1"}"#);
    wait_until(
        "every node keeps its share warm",
        // Starting Node workers on three nodes at once is slow on a
        // loaded 2-core machine.
        Duration::from_secs(30),
        || {
            let mut per_node: Vec<f64> = nodes.iter().map(warm).collect();
            per_node.sort_by(f64::total_cmp);
            (per_node == [1.0, 1.0, 2.0]).then_some(())
        },
    );
    let (_, v) = nodes[0].api_json("GET", provisioned, &Value::Null);
    assert_eq!(v["RequestedProvisionedConcurrentExecutions"], 4, "{v}");
    let (status, _) = nodes[2].api_json("DELETE", provisioned, &Value::Null);
    assert_eq!(status, 204);
    wait_until(
        "every node lets its share go",
        Duration::from_secs(10),
        || nodes.iter().all(|n| warm(n) == 0.0).then_some(()),
    );

    // Event buses: node 0 has compiled the default bus's rules (none)
    // when a rule is put through node 1; node 0 follows, and its events
    // are delivered by whichever node takes them.
    let put = |n: &Server, source: &str| {
        let entry = json!({"Source": source, "DetailType": "t", "Detail": "{}"});
        let (status, v) = n.events("PutEvents", &json!({"Entries": [entry]}));
        assert_eq!((status, &v["FailedEntryCount"]), (200, &json!(0)), "{v}");
        v["Entries"][0]["EventId"].as_str().unwrap().to_string()
    };
    put(&nodes[0], "cluster");
    let url = crate::events::rule_to_queue(&nodes[1], "cluster", "bus-sink");
    wait_until(
        "node 0 matches the new rule",
        Duration::from_secs(10),
        || {
            let want = std::collections::HashSet::from([put(&nodes[0], "cluster")]);
            let got = crate::events::delivered_ids(&nodes[2], &url, &want, Duration::from_secs(2));
            want.is_subset(&got).then_some(())
        },
    );

    // Schedules: each of three one-time schedules made through a
    // different node fires once, though every node watches the timers.
    let (status, v) = nodes[0].sqs("CreateQueue", &json!({"QueueName": "cluster-ticks"}));
    assert_eq!(status, 200, "{v}");
    let ticks = v["QueueUrl"].as_str().unwrap().to_string();
    for (i, n) in nodes.iter().enumerate() {
        let input = json!({ "node": i }).to_string();
        crate::events::schedule_to_queue(
            n,
            &format!("tick{i}"),
            &crate::events::at_in(2),
            "cluster-ticks",
            &input,
        );
    }
    let mut fired = crate::events::bodies(&nodes[1], &ticks, Duration::from_secs(8));
    fired.sort();
    assert_eq!(fired, [r#"{"node":0}"#, r#"{"node":1}"#, r#"{"node":2}"#]);

    // STANDARD executions on the cluster's store: started through each
    // node, a Wait and a Map of branches in each, all seen by another
    // node, and each step done once.
    let definition = json!({"StartAt": "Nap", "States": {
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Each"},
        "Each": {"Type": "Map", "ItemsPath": "$.items", "End": true,
                 "ItemProcessor": {"StartAt": "Note", "States": {"Note": {
                     "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl": ticks, "MessageBody.$": "States.JsonToString($)"},
                     "ResultPath": null, "End": true}}}}}});
    let (status, v) = nodes[0].states(
        "CreateStateMachine",
        &json!({"name": "spread", "definition": definition.to_string(),
                "roleArn": "arn:aws:iam::000000000000:role/states"}),
    );
    assert_eq!(status, 200, "{v}");
    let machine = v["stateMachineArn"].as_str().unwrap().to_string();
    let mut runs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let input = json!({"items": [format!("{i}a"), format!("{i}b")]}).to_string();
        let (status, v) = n.states(
            "StartExecution",
            &json!({"stateMachineArn": machine, "input": input}),
        );
        assert_eq!(status, 200, "{v}");
        runs.push(v["executionArn"].as_str().unwrap().to_string());
    }
    for arn in &runs {
        let done = crate::harness::wait_until("an execution done", Duration::from_secs(30), || {
            let (_, v) = nodes[2].states("DescribeExecution", &json!({"executionArn": arn}));
            (v["status"] != "RUNNING").then_some(v)
        });
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
    }
    let mut noted = crate::events::bodies(&nodes[0], &ticks, Duration::from_secs(3));
    noted.sort();
    assert_eq!(
        noted,
        [r#""0a""#, r#""0b""#, r#""1a""#, r#""1b""#, r#""2a""#, r#""2b""#]
    );

    // Two nodes deploying the same function at once: one wins, the other
    // is told of the conflict; then racing code updates leave one whole
    // version, never a mix.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            let body = lambda_body("race", "wasm", "testkit.wasm", &wasm_zip("testkit"));
            nodes[0].api_json("POST", "/2015-03-31/functions", &body).0
        });
        let b = scope.spawn(|| {
            let body = lambda_body("race", "wasm", "testkit.wasm", &wasm_zip("hello"));
            nodes[2].api_json("POST", "/2015-03-31/functions", &body).0
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let shas: Vec<String> = std::thread::scope(|scope| {
        let updates: Vec<_> = (0..6)
            .map(|i| {
                let node = &nodes[i % 3];
                scope.spawn(move || {
                    let zip = wasm_zip(if i % 2 == 0 { "testkit" } else { "hello" });
                    let body = json!({"ZipFile": base64_zip(&zip)});
                    let (status, v) =
                        node.api_json("PUT", "/2015-03-31/functions/race/code", &body);
                    assert!(status == 200 || status == 409, "{status} {v}");
                    v["CodeSha256"].as_str().unwrap_or_default().to_string()
                })
            })
            .collect();
        updates.into_iter().map(|u| u.join().unwrap()).collect()
    });
    let (_, now) = nodes[1].api_json("GET", "/2015-03-31/functions/race", &Value::Null);
    let sha = now["Configuration"]["CodeSha256"].as_str().unwrap();
    assert!(shas.iter().any(|s| s == sha), "{sha} is one that landed");

    // Async events accepted by every node all run, once each.
    let mut ids = Vec::new();
    for i in 0..30 {
        let node = &nodes[i % 3];
        let r = node.api(
            "POST",
            "/2015-03-31/functions/kit:1/invocations",
            json!({"event": i}).to_string().as_bytes(),
            &[("X-Amz-Invocation-Type", "Event")],
        );
        assert_eq!(r.status().as_u16(), 202);
        ids.push(
            r.headers()["x-amzn-requestid"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        let record = wait_until("the event ran", Duration::from_secs(30), || {
            let r = nodes[2].record(id);
            (r["outcome"] == "success").then_some(r)
        });
        assert_eq!(record["trigger"], "event:api", "{record}");
    }

    // A queue made through node 0; sent to through node 1; received and
    // deleted through node 2.
    let (status, v) = nodes[0].sqs("CreateQueue", &json!({"QueueName": "jobs"}));
    assert_eq!(status, 200, "{v}");
    let url = v["QueueUrl"].as_str().unwrap().to_string();
    for i in 0..5 {
        let (status, v) = nodes[1].sqs(
            "SendMessage",
            &json!({"QueueUrl": url, "MessageBody": format!("job {i}")}),
        );
        assert_eq!(status, 200, "{v}");
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let (status, v) = nodes[2].sqs(
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 2}),
        );
        assert_eq!(status, 200, "{v}");
        for m in v["Messages"].as_array().cloned().unwrap_or_default() {
            // Deleted through yet another node than the one that received it.
            let (status, d) = nodes[0].sqs(
                "DeleteMessage",
                &json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
            );
            assert_eq!(status, 200, "{d}");
            got.push(m["Body"].as_str().unwrap().to_string());
        }
    }
    got.sort();
    assert_eq!(got, ["job 0", "job 1", "job 2", "job 3", "job 4"]);
    let (_, attrs) = nodes[1].sqs(
        "GetQueueAttributes",
        &json!({"QueueUrl": url, "AttributeNames": ["All"]}),
    );
    assert_eq!(attrs["Attributes"]["ApproximateNumberOfMessages"], "0");
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"],
        "0"
    );
}

fn base64_zip(zip: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(zip)
}

/// Sends `request` through the live nodes in turn until one acknowledges
/// it (a node or NATS server going down makes some attempts fail: those
/// were never acknowledged); the node that did and its answer.
fn acknowledged(
    nodes: &[Server],
    live: &[usize],
    turn: usize,
    mut request: impl FnMut(&Server) -> Option<Value>,
) -> Value {
    for attempt in 0..200 {
        let node = &nodes[live[(turn + attempt) % live.len()]];
        if let Some(v) = request(node) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no node acknowledged the request");
}

#[test]
fn nothing_acknowledged_is_lost_when_a_node_or_a_nats_server_dies() {
    let mut cluster = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let nodes = nodes(&cluster, root.path(), 3);
    let body = lambda_body("kit", "wasm", "testkit.wasm", &wasm_zip("testkit"));
    let (status, v) = nodes[0].api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{v}");
    // Every run leaves a durable trace: its on-success record, on a queue.
    for q in ["done", "work"] {
        let (status, v) = nodes[0].sqs("CreateQueue", &json!({"QueueName": q}));
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = nodes[0].api_json(
        "PUT",
        "/2019-09-25/functions/kit/event-invoke-config",
        &json!({"DestinationConfig": {"OnSuccess": {
            "Destination": "arn:aws:sqs:us-east-1:000000000000:done"}}}),
    );
    assert_eq!(status, 200, "{v}");
    let url = |q: &str| format!("{}/000000000000/{q}", nodes[0].api);

    let mut live = vec![0, 1, 2];
    let mut plain = Vec::new();
    let mut keyed = Vec::new();
    let mut sent = Vec::new();
    for i in 0..90 {
        if i == 30 {
            nodes[1].kill9();
            live.retain(|n| *n != 1);
        }
        if i == 60 {
            cluster.servers[1].kill();
        }
        let key = format!("k{i}");
        let v = acknowledged(&nodes, &live, i, |node| {
            let mut headers = vec![("x-amz-invocation-type", "Event")];
            if i % 2 == 0 {
                headers.push(("x-wisp-idempotency-key", key.as_str()));
            }
            let r = node
                .try_api(
                    "POST",
                    "/2015-03-31/functions/kit/invocations",
                    json!({"i": i}).to_string().as_bytes(),
                    &headers,
                )
                .ok()?;
            (r.status().as_u16() == 202).then(|| {
                json!(r.headers()["x-amzn-requestid"]
                    .to_str()
                    .unwrap()
                    .to_string())
            })
        });
        let id = v.as_str().unwrap().to_string();
        if i % 2 == 0 {
            keyed.push(id)
        } else {
            plain.push(id)
        }
        let body = format!("job {i}");
        acknowledged(&nodes, &live, i, |node| {
            let (status, v) = node
                .try_sqs(
                    "SendMessage",
                    &json!({"QueueUrl": url("work"), "MessageBody": body}),
                )
                .ok()?;
            (status == 200).then_some(v)
        });
        sent.push(body);
    }
    // The dead server comes back and catches up; then another one may go.
    cluster.servers[1].launch();

    // Every acknowledged message is there, at least once.
    let drain =
        |q: &str, until: &dyn Fn(&[Value]) -> bool, missing: &dyn Fn(&[Value]) -> String| {
            let mut got: Vec<Value> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !until(&got) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{q}: only {} came; missing: {}",
                    got.len(),
                    missing(&got)
                );
                let Ok((200, v)) = nodes[0].try_sqs(
                    "ReceiveMessage",
                    &json!({"QueueUrl": url(q), "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
                ) else {
                    continue;
                };
                for m in v["Messages"].as_array().cloned().unwrap_or_default() {
                    let _ = nodes[0].try_sqs(
                        "DeleteMessage",
                        &json!({"QueueUrl": url(q), "ReceiptHandle": m["ReceiptHandle"]}),
                    );
                    got.push(m);
                }
            }
            got
        };
    let work = drain(
        "work",
        &|got| {
            sent.iter()
                .all(|b| got.iter().any(|m| m["Body"] == b.as_str()))
        },
        &|got| {
            let missing: Vec<&String> = sent
                .iter()
                .filter(|b| !got.iter().any(|m| m["Body"] == b.as_str()))
                .collect();
            format!("{missing:?}")
        },
    );
    assert!(work.len() >= sent.len());

    // Every acknowledged event ran: its on-success record arrived. A keyed
    // event ran at most once; one whose run was cut off by the kill is
    // kept as a failed event (its effects may have happened) instead.
    let ran = |got: &[Value], id: &str| {
        got.iter()
            .filter(|m| {
                let record: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
                record["requestContext"]["requestId"] == id
            })
            .count()
    };
    let failed = |id: &str| {
        let (_, q) = nodes[0].api_json("GET", "/wisp/v1/functions/kit/async", &Value::Null);
        q["failed_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["request_id"] == id)
    };
    let done = drain(
        "done",
        &|got| {
            plain.iter().all(|id| ran(got, id) > 0)
                && keyed.iter().all(|id| ran(got, id) > 0 || failed(id))
        },
        &|got| {
            let plain: Vec<&String> = plain.iter().filter(|id| ran(got, id) == 0).collect();
            let keyed: Vec<&String> = keyed
                .iter()
                .filter(|id| ran(got, id) == 0 && !failed(id))
                .collect();
            let (_, q) = nodes[0].api_json("GET", "/wisp/v1/functions/kit/async", &Value::Null);
            let records: Vec<Value> = plain
                .iter()
                .chain(keyed.iter())
                .map(|id| {
                    nodes[0]
                        .api_json("GET", &format!("/wisp/v1/invocations/{id}"), &Value::Null)
                        .1
                })
                .collect();
            format!("plain {plain:?} keyed {keyed:?} queue {q} records {records:?}")
        },
    );
    for id in &keyed {
        assert!(ran(&done, id) <= 1, "keyed event {id} ran twice");
    }
    // The survivors split the account limit between them.
    for n in [&nodes[0], &nodes[2]] {
        wait_until("the dead node is dropped", Duration::from_secs(30), || {
            (n.metric("wisp_cluster_nodes") == 2.0).then_some(())
        });
        assert_eq!(n.metric("wisp_concurrency_share"), 500.0);
    }
}
