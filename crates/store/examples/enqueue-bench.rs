//! How fast the SQLite store accepts async events: batches of `BATCH`
//! events, each committed (synchronous=FULL) before the next.
//! `cargo run --release -p wisp-store --example enqueue-bench [BATCH] [TOTAL]`

use std::time::Instant;

use wisp_core::{FunctionConfig, FunctionVersion};
use wisp_store::{EventQueue, NewEvent, Registry, SqliteStore};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(dir.path()).expect("the store opens");
    store
        .create_function(FunctionVersion {
            function: "f".into(),
            version: "$LATEST".into(),
            config: FunctionConfig::new("wasm", "f.wasm"),
            code_sha256: "x".into(),
            code_size: 1,
            artifact_sha256: "x".into(),
            last_modified_ms: 1,
            revision_id: "r".into(),
        })
        .await
        .expect("the function is created");
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let events = (0..batch)
            .map(|i| NewEvent {
                request_id: uuid::Uuid::new_v4().to_string(),
                function: "f".into(),
                qualifier: "$LATEST".into(),
                payload: format!("{{\"id\":{}}}", n + i).into_bytes(),
                context: r#"{"source":"api","invoked_arn":"arn:aws:lambda:us-east-1:000000000000:function:f","client_context":null}"#.into(),
                idempotency_key: None,
                enqueued_ms: 1,
                due_ms: 1,
            })
            .collect();
        store.enqueue_events(events, 1).await.expect("enqueued");
        n += batch;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} events in batches of {batch}: {:.0} events/s, {:.1} µs per event, {:.2} ms per commit",
        n as f64 / secs,
        secs * 1e6 / n as f64,
        secs * 1e3 / (n / batch) as f64
    );
}
