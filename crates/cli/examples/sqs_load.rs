//! Load generator for `scripts/bench-queues.sh` and `bench-events.sh`:
//! drives any SQS endpoint (wisp, moto) over AWS JSON 1.0, or EventBridge
//! over 1.1, with SigV4, from many connections.
//!
//! ```text
//! sqs_load throughput ENDPOINT KEY SECRET QUEUE SECONDS SENDERS RECEIVERS
//! sqs_load fill       ENDPOINT KEY SECRET QUEUE COUNT SENDERS
//! sqs_load depth      ENDPOINT KEY SECRET QUEUE
//! sqs_load put-events ENDPOINT KEY SECRET SOURCE SECONDS SENDERS
//! sqs_load states-sync  ENDPOINT KEY SECRET MACHINE_ARN SECONDS SENDERS
//! sqs_load states-start ENDPOINT KEY SECRET MACHINE_ARN COUNT SENDERS
//! ```
//! `states-sync` runs StartSyncExecution back to back from each sender;
//! `states-start` starts COUNT executions, then waits until none runs.
//! `throughput` sends batches of 10 and, at the same time, receives 10 and
//! deletes them with DeleteMessageBatch, for SECONDS; it prints messages
//! per second end to end (deleted) and each call's latency percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wisp_aws::sigv4;
use wisp_aws::Credentials;

#[derive(Clone, Copy)]
enum Service {
    Sqs,
    Events,
    States,
}

struct Client {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    credentials: Credentials,
}

impl Client {
    fn new(endpoint: &str, key: &str, secret: &str) -> Client {
        let url = reqwest::Url::parse(endpoint).expect("an endpoint URL");
        Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .expect("an HTTP client"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host: format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(80)
            ),
            credentials: Credentials {
                access_key_id: key.into(),
                secret_access_key: secret.into(),
            },
        }
    }

    async fn call(&self, operation: &str, input: &Value) -> Result<Value, String> {
        self.call_service(Service::Sqs, operation, input).await
    }

    async fn call_service(
        &self,
        service: Service,
        operation: &str,
        input: &Value,
    ) -> Result<Value, String> {
        let (prefix, content_type, signing_name) = match service {
            Service::Sqs => ("AmazonSQS", "application/x-amz-json-1.0", "sqs"),
            Service::Events => ("AWSEvents", "application/x-amz-json-1.1", "events"),
            Service::States => ("AWSStepFunctions", "application/x-amz-json-1.0", "states"),
        };
        let body = input.to_string().into_bytes();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", self.host.parse().unwrap());
        headers.insert(
            "x-amz-target",
            format!("{prefix}.{operation}").parse().unwrap(),
        );
        headers.insert("content-type", content_type.parse().unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        sigv4::sign(
            &self.credentials,
            "POST",
            "/",
            "",
            &mut headers,
            &body,
            "us-east-1",
            signing_name,
            now,
        );
        headers.remove("host");
        let r = self
            .http
            .post(format!("{}/", self.endpoint))
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{operation}: {status} {text}"));
        }
        serde_json::from_str(if text.is_empty() { "{}" } else { &text }).map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct Latencies(Mutex<Vec<Duration>>);

impl Latencies {
    fn add(&self, d: Duration) {
        self.0.lock().unwrap().push(d);
    }

    fn summary(&self) -> String {
        let mut v = self.0.lock().unwrap().clone();
        if v.is_empty() {
            return "no calls".into();
        }
        v.sort();
        let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
        format!(
            "{} calls, p50 {:.2} ms, p99 {:.2} ms",
            v.len(),
            at(0.5),
            at(0.99)
        )
    }
}

fn batch(n: u64) -> Value {
    let entries: Vec<Value> = (0..10)
        .map(|i| json!({"Id": format!("m{i}"), "MessageBody": format!("order {n}-{i}: {}", "x".repeat(80))}))
        .collect();
    json!(entries)
}

async fn queue_url(c: &Client, queue: &str) -> String {
    let v = c
        .call("CreateQueue", &json!({"QueueName": queue}))
        .await
        .expect("CreateQueue");
    v["QueueUrl"].as_str().unwrap().to_string()
}

async fn throughput(c: Arc<Client>, queue: &str, seconds: u64, senders: usize, receivers: usize) {
    let url = Arc::new(queue_url(&c, queue).await);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let deleted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let (send_lat, recv_lat, del_lat) = (
        Arc::new(Latencies::default()),
        Arc::new(Latencies::default()),
        Arc::new(Latencies::default()),
    );
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (c, url, stop, sent, errors, lat) = (
            c.clone(),
            url.clone(),
            stop.clone(),
            sent.clone(),
            errors.clone(),
            send_lat.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = s as u64 * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                match c
                    .call(
                        "SendMessageBatch",
                        &json!({"QueueUrl": *url, "Entries": batch(n)}),
                    )
                    .await
                {
                    Ok(v) => {
                        lat.add(t.elapsed());
                        let ok = v["Successful"].as_array().map_or(0, Vec::len);
                        sent.fetch_add(ok as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("send: {e}");
                        }
                    }
                }
            }
        }));
    }
    for _ in 0..receivers {
        let (c, url, stop, deleted, errors, rl, dl) = (
            c.clone(),
            url.clone(),
            stop.clone(),
            deleted.clone(),
            errors.clone(),
            recv_lat.clone(),
            del_lat.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = c
                    .call(
                        "ReceiveMessage",
                        &json!({"QueueUrl": *url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
                    )
                    .await;
                let messages = match got {
                    Ok(v) => {
                        rl.add(t.elapsed());
                        v["Messages"].as_array().cloned().unwrap_or_default()
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("receive: {e}");
                        }
                        continue;
                    }
                };
                if messages.is_empty() {
                    continue;
                }
                let entries: Vec<Value> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"]}))
                    .collect();
                let t = Instant::now();
                match c
                    .call(
                        "DeleteMessageBatch",
                        &json!({"QueueUrl": *url, "Entries": entries}),
                    )
                    .await
                {
                    Ok(v) => {
                        dl.add(t.elapsed());
                        let ok = v["Successful"].as_array().map_or(0, Vec::len);
                        deleted.fetch_add(ok as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("delete: {e}");
                        }
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (s, d) = (
        sent.load(Ordering::Relaxed),
        deleted.load(Ordering::Relaxed),
    );
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "sent {:.0}/s  received+deleted {:.0}/s  (end to end)  errors {}",
        s as f64 / elapsed,
        d as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    println!("  SendMessageBatch   {}", send_lat.summary());
    println!("  ReceiveMessage     {}", recv_lat.summary());
    println!("  DeleteMessageBatch {}", del_lat.summary());
    println!("RESULT {:.0}", d as f64 / elapsed);
}

async fn fill(c: Arc<Client>, queue: &str, count: u64, senders: usize) {
    let url = Arc::new(queue_url(&c, queue).await);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (c, url, next) = (c.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(10, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                c.call(
                    "SendMessageBatch",
                    &json!({"QueueUrl": *url, "Entries": batch(n)}),
                )
                .await
                .expect("SendMessageBatch");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "filled {queue} with {count} messages in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

async fn depth(c: Arc<Client>, queue: &str) {
    let url = queue_url(&c, queue).await;
    let v = c
        .call(
            "GetQueueAttributes",
            &json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]}),
        )
        .await
        .expect("GetQueueAttributes");
    let n = |k: &str| {
        v["Attributes"][k]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "{}",
        n("ApproximateNumberOfMessages") + n("ApproximateNumberOfMessagesNotVisible")
    );
}

/// PutEvents, 10 entries a call, from `senders` connections for
/// `seconds`, to the default bus; events/s accepted.
async fn put_events(c: Arc<Client>, source: &str, seconds: u64, senders: usize) {
    let accepted = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Latencies::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..senders {
        let (c, accepted, latencies) = (c.clone(), accepted.clone(), latencies.clone());
        let source = source.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let entries: Vec<Value> = (0..10)
                    .map(|j| {
                        json!({"Source": source, "DetailType": "load",
                               "Detail": json!({"sender": t, "n": i * 10 + j}).to_string()})
                    })
                    .collect();
                let sent = Instant::now();
                let v = c
                    .call_service(Service::Events, "PutEvents", &json!({"Entries": entries}))
                    .await
                    .expect("PutEvents");
                latencies.add(sent.elapsed());
                let failed = v["FailedEntryCount"].as_u64().unwrap_or(10);
                accepted.fetch_add(10 - failed, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = accepted.load(Ordering::Relaxed);
    println!(
        "accepted {:.0} events/s ({n} in {elapsed:.1}s)",
        n as f64 / elapsed
    );
    println!("  PutEvents {}", latencies.summary());
    println!("RESULT {:.0}", n as f64 / elapsed);
}

/// StartSyncExecution back to back from `senders` connections for
/// `seconds`: executions per second (SUCCEEDED ones) and latencies.
async fn states_sync(c: Arc<Client>, machine: &str, seconds: u64, senders: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latencies = Arc::new(Latencies::default());
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (c, stop, done, errors, latencies) = (
            c.clone(),
            stop.clone(),
            done.clone(),
            errors.clone(),
            latencies.clone(),
        );
        let input = json!({"stateMachineArn": machine, "input": "{\"n\": 1}"});
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c
                    .call_service(Service::States, "StartSyncExecution", &input)
                    .await
                {
                    Ok(v) if v["status"] == "SUCCEEDED" => {
                        latencies.add(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("StartSyncExecution: {other:?}");
                        }
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{:.0} executions/s ({n} in {elapsed:.1}s), errors {}",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    println!("  StartSyncExecution {}", latencies.summary());
    println!("RESULT {:.0}", n as f64 / elapsed);
}

/// Starts `count` executions from `senders` connections, then waits until
/// none of the machine's runs: seconds from the first start to the end.
async fn states_start(c: Arc<Client>, machine: &str, count: u64, senders: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (c, next, errors, machine) =
            (c.clone(), next.clone(), errors.clone(), machine.to_string());
        tasks.push(tokio::spawn(async move {
            let run = std::process::id();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                // Named: moto names every unnamed execution `None`.
                let input = json!({"stateMachineArn": machine, "name": format!("run{run}-{i}"), "input": "{\"n\": 1}"});
                if let Err(e) = c
                    .call_service(Service::States, "StartExecution", &input)
                    .await
                {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("StartExecution: {e}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let starting = started.elapsed().as_secs_f64();
    loop {
        let running = c
            .call_service(
                Service::States,
                "ListExecutions",
                &json!({"stateMachineArn": machine, "statusFilter": "RUNNING", "maxResults": 1}),
            )
            .await
            .map(|v| v["executions"].as_array().map_or(0, Vec::len))
            .unwrap_or(1);
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{count} executions started in {starting:.2}s, all ended after {elapsed:.2}s ({:.0} executions/s), errors {}",
        count as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    println!("SECONDS {elapsed:.3}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: sqs_load throughput|fill|depth|put-events ENDPOINT KEY SECRET QUEUE|SOURCE [...]";
    if args.len() < 6 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let c = Arc::new(Client::new(&args[2], &args[3], &args[4]));
    let queue = &args[5];
    let num = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args[1].as_str() {
        "throughput" => {
            throughput(
                c,
                queue,
                num(6, 10),
                num(7, 32) as usize,
                num(8, 32) as usize,
            )
            .await
        }
        "fill" => fill(c, queue, num(6, 100_000), num(7, 32) as usize).await,
        // The QUEUE argument is the events' source here.
        "put-events" => put_events(c, queue, num(6, 10), num(7, 16) as usize).await,
        "depth" => depth(c, queue).await,
        // The QUEUE argument is the state machine's ARN here.
        "states-sync" => states_sync(c, queue, num(6, 10), num(7, 32) as usize).await,
        "states-start" => states_start(c, queue, num(6, 1000), num(7, 32) as usize).await,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
