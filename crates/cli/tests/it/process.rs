//! The process runtime: unchanged Lambda code (Node, Python, a `provided`
//! Rust binary) behind the Lambda Runtime API, with Lambda's semantics for
//! warm reuse, errors, timeouts, memory, crashes and logs.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{lambda_body, lambda_dir, rust_provided_zip, zip_dir, Server};

fn create(server: &Server, name: &str, runtime: &str, handler: &str, dir: &str) {
    create_with(server, name, runtime, handler, dir, json!({}));
}

/// Creates a function with `settings` (`Timeout`, `Environment`, ...)
/// over the defaults of `lambda_body`.
fn create_with(
    server: &Server,
    name: &str,
    runtime: &str,
    handler: &str,
    dir: &str,
    settings: Value,
) {
    let mut body = lambda_body(name, runtime, handler, &zip_dir(&lambda_dir(dir)));
    for (key, value) in settings.as_object().expect("settings are an object") {
        body[key] = value.clone();
    }
    let (status, body) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "creating {name}: {body}");
}

/// Invokes and returns (status, function error header, payload, request id).
fn invoke(server: &Server, name: &str, payload: &Value) -> (u16, Option<String>, Value, String) {
    let r = server.api(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        payload.to_string().as_bytes(),
        &[],
    );
    let status = r.status().as_u16();
    let error = r
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap().to_string());
    let id = r.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let text = r.text().unwrap();
    (
        status,
        error,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        id,
    )
}

fn tail(server: &Server, name: &str, payload: &Value) -> String {
    let r = server.api(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        payload.to_string().as_bytes(),
        &[("x-amz-log-type", "Tail")],
    );
    assert_eq!(r.status(), 200);
    let tail = r.headers()["x-amz-log-result"]
        .to_str()
        .unwrap()
        .to_string();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn seed_handlers_run_unchanged_and_keep_state_while_warm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(
        &server,
        "warmup",
        "nodejs20.x",
        "index.handler",
        "node-seed-warmup",
    );
    create(
        &server,
        "once",
        "nodejs20.x",
        "index.handler",
        "node-seed-idempotent",
    );

    let (status, err, v, first) = invoke(
        &server,
        "warmup",
        &json!({"source": "serverless-plugin-warmup"}),
    );
    assert_eq!((status, err, v), (200, None, json!("Lambda is warm")));
    let (_, _, v, second) = invoke(&server, "warmup", &json!({"source": "aws.events"}));
    assert_eq!(v, Value::Null);
    let (cold, warm) = (server.record(&first), server.record(&second));
    assert_eq!(cold["cold"], true, "{cold}");
    assert!(cold["init_duration_us"].as_u64().unwrap() > 0);
    assert_eq!(warm["cold"], false, "{warm}");
    assert_eq!(warm["init_duration_us"], Value::Null);

    let (_, _, v, _) = invoke(&server, "once", &json!({"transactionId": "t-1"}));
    assert_eq!(v, Value::Null);
    let (_, _, v, _) = invoke(&server, "once", &json!({"transactionId": "t-1"}));
    assert_eq!(v, json!("Already processed"));
}

#[test]
fn a_relative_data_dir_works_for_process_functions() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_relative(&tmp.path().join("data"));
    create(
        &server,
        "rel",
        "nodejs20.x",
        "index.handler",
        "node-seed-warmup",
    );
    let (status, err, v, _) = invoke(
        &server,
        "rel",
        &json!({"source": "serverless-plugin-warmup"}),
    );
    assert_eq!((status, err, v), (200, None, json!("Lambda is warm")));
}

#[test]
fn node_context_environment_logs_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_with(
        &server,
        "kit",
        "nodejs20.x",
        "index.handler",
        "node-kit",
        json!({ "Environment": { "Variables": { "STAGE": "test" } } }),
    );

    let (status, err, v, id) = invoke(&server, "kit", &json!({"action": "echo", "n": 1}));
    assert_eq!((status, err), (200, None), "{v}");
    assert_eq!(v["requestId"], id);
    assert_eq!(v["functionName"], "kit");
    assert_eq!(v["functionVersion"], "$LATEST");
    assert_eq!(v["memoryLimitInMB"], "128");
    assert_eq!(
        v["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:kit"
    );
    assert_eq!(v["stage"], "test");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["handler"], "index.handler");
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 3000, "{remaining}");

    let log = tail(&server, "kit", &json!({"action": "log", "n": 7}));
    assert!(log.contains("START RequestId"), "{log}");
    assert!(log.contains("INFO\thello from node 7"), "{log}");
    assert!(log.contains("to stderr"), "{log}");
    assert!(log.contains("REPORT RequestId"), "{log}");

    let (status, err, v, _) = invoke(&server, "kit", &json!({"action": "throw", "what": "x"}));
    assert_eq!((status, err.as_deref()), (200, Some("Unhandled")));
    assert_eq!(v["errorType"], "TypeError");
    assert_eq!(v["errorMessage"], "bad input: x");
    assert!(v["trace"].is_array() || v["stackTrace"].is_array(), "{v}");

    // A result past the 6 MB limit fails its own call (the Runtime API
    // answers 413 before taking it all); the same worker serves on.
    let (_, _, first, _) = invoke(&server, "kit", &json!({"action": "echo"}));
    let (status, err, v, _) = invoke(
        &server,
        "kit",
        &json!({"action": "big", "bytes": 7_000_000}),
    );
    assert_eq!((status, err.as_deref()), (200, Some("Unhandled")), "{v}");
    assert_eq!(v["errorType"], "Function.ResponseSizeTooLarge", "{v}");
    let (status, err, again, _) = invoke(&server, "kit", &json!({"action": "echo"}));
    assert_eq!((status, err), (200, None), "{again}");
    assert_eq!(again["pid"], first["pid"], "the worker was replaced");

    // A callback-style handler in the same file.
    create(&server, "cb", "nodejs20.x", "index.callback", "node-kit");
    let (_, err, v, _) = invoke(&server, "cb", &json!({}));
    assert_eq!((err, v["via"].clone()), (None, json!("callback")));
    let (_, err, v, _) = invoke(&server, "cb", &json!({"fail": true}));
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorMessage"], "callback failed");
}

/// A worker's Runtime API is on loopback, where any process can reach it:
/// it serves only the worker's own processes. Another function polling it,
/// or any other process on the host, gets a 403 and takes nothing.
#[test]
fn a_runtime_api_refuses_processes_outside_its_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(&server, "victim", "nodejs20.x", "index.handler", "node-kit");
    create(&server, "thief", "nodejs20.x", "index.handler", "node-kit");
    let (status, _, victim, _) = invoke(&server, "victim", &json!({"action": "echo"}));
    assert_eq!(status, 200, "{victim}");
    let target = victim["runtimeApi"].as_str().unwrap().to_string();

    let (status, err, stolen, _) = invoke(
        &server,
        "thief",
        &json!({"action": "poll", "target": target}),
    );
    assert_eq!((status, err), (200, None), "{stolen}");
    assert_eq!(stolen["status"], 403, "{stolen}");
    assert!(
        stolen["body"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{stolen}"
    );

    // This test process is a stranger too.
    let r = reqwest::blocking::get(format!(
        "http://{target}/2018-06-01/runtime/invocation/next"
    ))
    .unwrap();
    assert_eq!(r.status(), 403);

    // The victim's worker lost nothing and serves on.
    let (status, err, again, _) = invoke(&server, "victim", &json!({"action": "echo", "n": 2}));
    assert_eq!((status, err), (200, None), "{again}");
    assert_eq!(again["event"]["n"], 2);
    assert_eq!(again["pid"], victim["pid"], "the worker was replaced");
}

#[test]
fn timeouts_kill_the_process_group_and_the_worker_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let timeout = json!({ "Timeout": 1 });
    create_with(
        &server,
        "slow",
        "nodejs20.x",
        "index.handler",
        "node-kit",
        timeout,
    );

    let (_, _, before, _) = invoke(&server, "slow", &json!({"action": "echo"}));
    let started = Instant::now();
    let (status, err, v, id) = invoke(&server, "slow", &json!({"action": "child"}));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((status, err.as_deref()), (200, Some("Unhandled")), "{v}");
    assert_eq!(v["errorType"], "Sandbox.Timedout", "{v}");
    let record = server.record(&id);
    assert_eq!(record["error_type"], "Timeout", "{record}");
    assert_eq!(record["error_kind"], "guest");

    // The grandchild (`sleep 600`) went with the group. (Reaped within
    // seconds; 15 s of patience for a 2-core machine running every e2e
    // test at once, where one run saw it outlive 5 s.)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "^sleep 600$"])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if pids.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's child survived: {pids}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, err, after, _) = invoke(&server, "slow", &json!({"action": "echo"}));
    assert_eq!((status, err), (200, None));
    assert_ne!(
        after["pid"], before["pid"],
        "a new worker serves after a timeout"
    );
}

#[test]
fn out_of_memory_and_crashes_fail_only_their_own_invocation() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create_with(
        &server,
        "hog",
        "python3.11",
        "app.handler",
        "python-kit",
        json!({ "MemorySize": 64, "Timeout": 10 }),
    );
    create(&server, "crashy", "nodejs20.x", "index.handler", "node-kit");

    let (_, err, v, id) = invoke(&server, "hog", &json!({"action": "oom"}));
    assert_eq!(err.as_deref(), Some("Unhandled"), "{v}");
    let record = server.record(&id);
    assert!(
        record["error_type"] == "OutOfMemory" || v["errorType"] == "MemoryError",
        "{record} {v}"
    );
    let (_, err, v, _) = invoke(&server, "hog", &json!({"action": "echo"}));
    assert_eq!(err, None, "{v}");

    let (_, err, v, id) = invoke(&server, "crashy", &json!({"action": "crash"}));
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorType"], "Runtime.ExitError", "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{v}"
    );
    assert_eq!(server.record(&id)["error_kind"], "guest");
    let (_, err, _, _) = invoke(&server, "crashy", &json!({"action": "echo"}));
    assert_eq!(err, None);
}

#[test]
fn python_runs_with_context_logs_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(&server, "py", "python3.12", "app.handler", "python-kit");
    let (status, err, v, id) = invoke(&server, "py", &json!({"action": "echo"}));
    assert_eq!((status, err), (200, None), "{v}");
    assert_eq!(v["requestId"], id);
    assert_eq!(v["functionName"], "py");
    assert_eq!(v["memoryLimitInMB"], "128");
    let log = tail(&server, "py", &json!({"action": "log", "n": 3}));
    assert!(log.contains("hello from python 3"), "{log}");
    assert!(log.contains("logged via logging"), "{log}");
    let (_, err, v, _) = invoke(&server, "py", &json!({"action": "throw", "what": "y"}));
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "bad input: y");
    // Past the 6 MB limit: that call fails, the same worker serves on.
    let (_, _, first, _) = invoke(&server, "py", &json!({"action": "echo"}));
    let (_, err, v, _) = invoke(&server, "py", &json!({"action": "big", "bytes": 7_000_000}));
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorType"], "Function.ResponseSizeTooLarge", "{v}");
    let (_, err, again, _) = invoke(&server, "py", &json!({"action": "echo"}));
    assert_eq!(err, None, "{again}");
    assert_eq!(again["pid"], first["pid"], "the worker was replaced");
}

#[test]
fn provided_runtime_runs_a_lambda_runtime_rust_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let zip = rust_provided_zip();
    let (status, created) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &lambda_body("rusty", "provided.al2023", "bootstrap", &zip),
    );
    assert_eq!(status, 201, "{created}");
    let (status, err, v, id) = invoke(&server, "rusty", &json!({"hello": "rust"}));
    assert_eq!((status, err), (200, None), "{v}");
    assert_eq!(v["echo"], json!({"hello": "rust"}));
    assert_eq!(v["requestId"], id);
    assert_eq!(v["function"], "rusty");
    let (_, err, v, _) = invoke(&server, "rusty", &json!({"fail": true}));
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorMessage"], "asked to fail", "{v}");

    // A zip without `bootstrap` is refused at deploy.
    let (status, refused) = server.api_json(
        "POST",
        "/2015-03-31/functions",
        &lambda_body(
            "nobootstrap",
            "provided.al2",
            "x",
            &zip_dir(&lambda_dir("node-kit")),
        ),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("bootstrap"));
}

/// `lambda_runtime`'s streaming example, unchanged: its chunks arrive as
/// separate events of InvokeWithResponseStream's event stream, after the
/// prelude the crate writes.
#[test]
fn provided_runtime_streams_a_lambda_runtime_response() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let mut body = lambda_body(
        "rstream",
        "provided.al2023",
        "bootstrap",
        &rust_provided_zip(),
    );
    body["Environment"] = json!({"Variables": {"STREAM": "1"}});
    let (status, created) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{created}");
    let r = server.api(
        "POST",
        "/2021-11-15/functions/rstream/response-streaming-invocations",
        b"{}",
        &[],
    );
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().unwrap();
    let events = decode_event_stream(&bytes);
    let chunks: Vec<&[u8]> = events
        .iter()
        .filter(|(kind, _)| kind == "PayloadChunk")
        .map(|(_, p)| p.as_slice())
        .collect();
    // The prelude (JSON, then eight zero bytes), then one chunk per message.
    assert!(chunks[0].starts_with(b"{\"statusCode\":200"), "{chunks:?}");
    assert_eq!(chunks[1], &[0u8; 8][..]);
    assert_eq!(
        chunks[2..].to_vec(),
        vec![&b"Hello\n"[..], b"world\n", b"from\n", b"Lambda!\n"]
    );
    assert_eq!(
        events.last().unwrap(),
        &("InvokeComplete".to_string(), b"{}".to_vec())
    );
}

/// The (event type, payload) of each message of an event stream, each
/// message's length and CRCs checked.
fn decode_event_stream(mut bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let (message, rest) = bytes.split_at(total);
        let crc = u32::from_be_bytes(message[total - 4..].try_into().unwrap());
        assert_eq!(crc, crc32(&message[..total - 4]), "message CRC");
        let headers = &message[12..12 + headers_len];
        let mut kind = String::new();
        let mut at = 0;
        while at < headers.len() {
            let n = headers[at] as usize;
            let name = std::str::from_utf8(&headers[at + 1..at + 1 + n]).unwrap();
            let len = u16::from_be_bytes([headers[at + 2 + n], headers[at + 3 + n]]) as usize;
            let value = std::str::from_utf8(&headers[at + 4 + n..at + 4 + n + len]).unwrap();
            if name == ":event-type" {
                kind = value.to_string();
            }
            at += 4 + n + len;
        }
        out.push((kind, message[12 + headers_len..total - 4].to_vec()));
        bytes = rest;
    }
    out
}

/// CRC-32 (IEEE), bit by bit: the test's own, to check the server's.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn provided_runtime_runs_awslambdaric() {
    let ric = std::process::Command::new("python3")
        .args(["-c", "import awslambdaric"])
        .status()
        .unwrap();
    assert!(
        ric.success(),
        "awslambdaric is missing: `python3 -m pip install awslambdaric` (.ci/run does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(
        &server,
        "ric",
        "provided.al2023",
        "app.handler",
        "python-ric",
    );
    let (status, err, v, id) = invoke(&server, "ric", &json!({"n": 1}));
    assert_eq!((status, err), (200, None), "{v}");
    assert_eq!(v, json!({"ric": true, "echo": {"n": 1}, "requestId": id}));
}

/// A result posted with `Wisp-Next-Follows` and a `GET /next` behind it:
/// the caller has its answer at once, the post's 202 waits for the next
/// event and comes with it; plain posts and error posts work beside it.
#[test]
fn a_pipelined_next_gets_its_answer_with_the_next_event() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(&server, "raw", "provided.al2023", "none", "raw-pipelined");
    let (status, err, v, id) = invoke(&server, "raw", &json!({"mode": "pipelined"}));
    assert_eq!((status, err), (200, None), "{v}");
    assert_eq!(v, json!({"echo": {"mode": "pipelined"}, "requestId": id}));
    // Longer than the bootstrap looks for an event behind a 202 that was
    // not held.
    std::thread::sleep(Duration::from_millis(700));
    let logs = tail(&server, "raw", &json!({"mode": "plain"}));
    assert!(logs.contains("answer=202 held=True"), "{logs}");
    let logs = tail(&server, "raw", &json!({"mode": "pipelined"}));
    assert!(logs.contains("answer=202 plain"), "{logs}");
    std::thread::sleep(Duration::from_millis(700));
    let (status, err, v, _) = invoke(&server, "raw", &json!({"mode": "fail"}));
    assert_eq!(
        (status, err.as_deref(), v["errorType"].as_str()),
        (200, Some("Unhandled"), Some("Raw.Failure")),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(700));
    let logs = tail(&server, "raw", &json!({"mode": "plain"}));
    assert!(logs.contains("answer=202 held=True"), "{logs}");
}

#[test]
fn idle_workers_scale_to_zero_and_provisioned_ones_stay_warm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(tmp.path(), &["--keep-warm", "1s"]);
    create(&server, "idle", "nodejs20.x", "index.handler", "node-kit");
    let (_, _, _, first) = invoke(&server, "idle", &json!({"action": "echo"}));
    assert_eq!(server.record(&first)["cold"], true);
    let (_, _, _, warm) = invoke(&server, "idle", &json!({"action": "echo"}));
    assert_eq!(server.record(&warm)["cold"], false);
    std::thread::sleep(Duration::from_millis(2500));
    let (_, _, _, again) = invoke(&server, "idle", &json!({"action": "echo"}));
    assert_eq!(
        server.record(&again)["cold"],
        true,
        "the idle worker was stopped"
    );

    // Provisioned concurrency on a published version keeps a worker ready.
    let (status, v) = server.api_json("POST", "/2015-03-31/functions/idle/versions", &json!({}));
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.api_json(
        "PUT",
        "/2019-09-30/functions/idle/provisioned-concurrency?Qualifier=1",
        &json!({"ProvisionedConcurrentExecutions": 1}),
    );
    assert_eq!(status, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = server.api_json(
            "GET",
            "/2019-09-30/functions/idle/provisioned-concurrency?Qualifier=1",
            &Value::Null,
        );
        if v["Status"] == "READY" {
            break;
        }
        assert!(Instant::now() < deadline, "never READY: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let r = server.api(
        "POST",
        "/2015-03-31/functions/idle/invocations?Qualifier=1",
        b"{}",
        &[],
    );
    let id = r.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        server.record(&id)["cold"],
        false,
        "provisioned workers are warm"
    );
}

#[test]
fn reserved_concurrency_zero_throttles_with_429() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    create(&server, "off", "nodejs20.x", "index.handler", "node-kit");
    let (status, v) = server.api_json(
        "PUT",
        "/2017-10-31/functions/off/concurrency",
        &json!({"ReservedConcurrentExecutions": 0}),
    );
    assert_eq!(
        (status, v),
        (200, json!({"ReservedConcurrentExecutions": 0}))
    );
    let r = server.api("POST", "/2015-03-31/functions/off/invocations", b"{}", &[]);
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-amzn-errortype"], "TooManyRequestsException");
    let v: Value = r.json().unwrap();
    assert_eq!(
        v["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    let (status, _) = server.api_json(
        "DELETE",
        "/2017-10-31/functions/off/concurrency",
        &Value::Null,
    );
    assert_eq!(status, 204);
    let (status, err, _, _) = invoke(&server, "off", &json!({"action": "echo"}));
    assert_eq!((status, err), (200, None));
}

/// Runs `wisp serve` expecting it to refuse to start; returns its stderr.
fn refused_start(data_dir: &std::path::Path, extra: &[&str]) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("wisp started where it should have refused to: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The data dir is the server's alone; with `--worker-uid-base` each
/// function's workers run as an unprivileged user of their own, which can
/// read its code and /tmp but not the credentials, the database, the data
/// dir's listing or the server's environment.
#[test]
fn workers_run_as_users_of_their_own_and_cannot_read_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    {
        let _server = Server::start(&plain);
        assert_eq!(mode(&plain), 0o700);
        assert_eq!(mode(&plain.join("credentials")), 0o600);
        assert_eq!(mode(&plain.join("wisp.db")), 0o600);
        assert_eq!(mode(&plain.join("code")), 0o700);
        assert_eq!(mode(&plain.join("compiled")), 0o700);
    }

    let root = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        let err = refused_start(
            &tmp.path().join("data"),
            &["--worker-uid-base", "2000000000"],
        );
        assert!(err.contains("needs the server to run as root"), "{err}");
        return;
    }
    // A data dir behind a directory others cannot enter: refused at start.
    let hidden = tmp.path().join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let err = refused_start(&hidden.join("data"), &["--worker-uid-base", "2000000000"]);
    assert!(
        err.contains("cannot reach the data dir") && err.contains("hidden"),
        "{err}"
    );
    assert!(refused_start(&plain, &["--worker-uid-base", "0"]).contains("out of range"));

    let data = tmp.path().join("data");
    let server = Server::start_with(&data, &["--worker-uid-base", "2000000000"]);
    assert_eq!(mode(&data), 0o711);
    for name in ["a", "b"] {
        create(&server, name, "nodejs20.x", "index.handler", "node-probe");
    }
    let probe = |name: &str| {
        let (status, err, v, _) = invoke(
            &server,
            name,
            &json!({ "dataDir": data.display().to_string() }),
        );
        assert_eq!((status, err), (200, None), "{v}");
        v
    };
    let a = probe("a");
    assert_eq!(
        a,
        json!({
            "uid": 2_000_000_000u32, "gid": 2_000_000_000u32, "groups": [],
            "credentials": "EACCES", "database": "EACCES", "listing": "EACCES",
            "serverEnviron": "EACCES", "ownCode": "ok", "tmp": "ok",
        })
    );
    // Another function, another user; the same function keeps its own.
    assert_eq!(probe("b")["uid"], json!(2_000_000_001u32));
    assert_eq!(probe("a")["uid"], json!(2_000_000_000u32));

    // The server still stops a worker that is no longer its own user.
    let timeout = json!({ "Timeout": 1 });
    create_with(
        &server,
        "spin",
        "nodejs20.x",
        "index.handler",
        "node-kit",
        timeout,
    );
    let (_, _, before, _) = invoke(&server, "spin", &json!({"action": "echo"}));
    let (status, err, v, _) = invoke(&server, "spin", &json!({"action": "spin"}));
    assert_eq!((status, err.as_deref()), (200, Some("Unhandled")), "{v}");
    assert_eq!(v["errorType"], "Sandbox.Timedout", "{v}");
    let (status, err, after, _) = invoke(&server, "spin", &json!({"action": "echo"}));
    assert_eq!((status, err), (200, None));
    assert_ne!(
        after["pid"], before["pid"],
        "a new worker serves after a timeout"
    );
}

/// LoggingConfig JSON: the platform lines are Lambda's JSON records (no
/// END); `wisp logs --format json` prints a JSON object per line and
/// `--level` keeps what is at that level or above.
#[test]
fn json_logs_through_wisp_logs_by_level() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let code = tmp.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("index.js"),
        "exports.handler = async () => { console.debug('d'); console.info('i'); \
         console.warn('w'); console.error('e'); return 'ok'; };",
    )
    .unwrap();
    let mut body = lambda_body("jlog", "nodejs20.x", "index.handler", &zip_dir(&code));
    body["LoggingConfig"] =
        json!({"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"});
    let (status, created) = server.api_json("POST", "/2015-03-31/functions", &body);
    assert_eq!(status, 201, "{created}");
    let (status, _, _, id) = invoke(&server, "jlog", &json!({}));
    assert_eq!(status, 200);

    let out = server.cli(&["logs", "jlog", "--format", "json", "--request-id", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            l["message"]["type"]
                .as_str()
                .or(l["message"]["message"].as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["platform.start", "d", "i", "w", "e", "platform.report"],
        "{lines:?}"
    );
    assert_eq!(lines[3]["level"], "WARN");
    assert_eq!(lines[5]["message"]["record"]["requestId"], id.as_str());
    assert_eq!(lines[5]["message"]["record"]["status"], "success");

    let out = server.cli(&["logs", "jlog", "--level", "warn", "--request-id", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    let shown: Vec<&str> = text.lines().collect();
    assert_eq!(shown.len(), 2, "{text}");
    assert!(
        shown[0].contains("\"message\":\"w\"") && shown[1].contains("\"message\":\"e\""),
        "{text}"
    );
    let out = server.cli(&["logs", "jlog", "--level", "loud"]);
    assert!(!out.status.success());
}
