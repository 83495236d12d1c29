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

    // An alias moved through node 2 is followed by node 1 within a second.
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
    let (status, v) = nodes[2].api_json(
        "PUT",
        "/2015-03-31/functions/kit/aliases/live",
        &json!({"FunctionVersion": "2"}),
    );
    assert_eq!(status, 200, "{v}");
    wait_until("node 1 follows the alias", Duration::from_secs(1), || {
        invoke(&nodes[1], "kit:live", &json!(3))
            .1
            .starts_with("Hello, wisp!")
            .then_some(())
    });

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
