//! What an invocation record costs the SQLite store: batches of `BATCH`
//! records (with no log lines, as a quiet function writes), committed one
//! batch at a time as the recorder does. Prints µs of wall time per record.
//! `cargo run --release -p wisp-store --example record-bench [BATCH] [TOTAL]`

use std::time::Instant;

use wisp_core::{Finished, InvocationRecord};
use wisp_store::{RecordStore, SqliteStore};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(400);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(dir.path()).expect("the store opens");
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let finished = (0..batch)
            .map(|i| Finished {
                record: InvocationRecord {
                    request_id: uuid::Uuid::now_v7().to_string(),
                    function: "reuse".into(),
                    version: "$LATEST".into(),
                    trigger: "gateway".into(),
                    started_at_ms: 1_764_000_000_000 + (n + i) as i64 / 50,
                    duration_us: 21,
                    billed_ms: 1,
                    memory_limit_mb: 128,
                    max_memory_bytes: 1_179_648,
                    status: Some(200),
                    ..InvocationRecord::default()
                },
                lines: Vec::new(),
            })
            .collect();
        store
            .insert_invocations(finished)
            .await
            .expect("the records are stored");
        n += batch;
    }
    let elapsed = started.elapsed();
    println!(
        "{n} records in batches of {batch}: {:.2} µs per record",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}
