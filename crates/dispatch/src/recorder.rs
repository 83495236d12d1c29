//! Writes records and logs to the store in batches, off the request path.
//!
//! Invocations hand their record to a bounded channel; one task drains it
//! and commits everything waiting in one transaction, so a busy server
//! does one SQLite commit per batch, not per request. A batch lingers a
//! few milliseconds to gather more, unless someone waits for a flush:
//! commits, not rows, are what cost.

use std::sync::Arc;

use tokio::sync::mpsc;
use wisp_core::limits::RECORD_QUEUE_DEPTH;
use wisp_core::{Finished, InvocationRecord, LogLine};
use wisp_store::Store;

enum Item {
    Record(Box<Finished>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the batching writer.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Item>,
}

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

/// How long a batch waits for more records before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Item>(RECORD_QUEUE_DEPTH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let deadline = tokio::time::Instant::now() + LINGER;
                let is_flush = |i: &Item| matches!(i, Item::Flush(_));
                let mut flushing = batch.iter().any(is_flush);
                while !flushing && batch.len() < MAX_BATCH {
                    let seen = batch.len();
                    let more = rx.recv_many(&mut batch, MAX_BATCH - seen);
                    match tokio::time::timeout_at(deadline, more).await {
                        Ok(n) if n > 0 => flushing = batch[seen..].iter().any(is_flush),
                        _ => break,
                    }
                }
                let mut finished = Vec::new();
                let mut waiters = Vec::new();
                for item in batch.drain(..) {
                    match item {
                        Item::Record(f) => finished.push(*f),
                        Item::Flush(done) => waiters.push(done),
                    }
                }
                if !finished.is_empty() {
                    let count = finished.len();
                    if let Err(e) = store.insert_invocations(finished).await {
                        metrics::counter!("wisp_record_write_errors_total").increment(count as u64);
                        tracing::error!(error = %e, count, "could not store invocation records");
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        Recorder { tx }
    }

    /// Queues a record; waits only when the writer is `RECORD_QUEUE_DEPTH` behind.
    pub fn record(&self, record: InvocationRecord, lines: Vec<LogLine>) {
        let tx = self.tx.clone();
        match tx.try_send(Item::Record(Box::new(Finished { record, lines }))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                // Completions may arrive from a runtime's drop glue, outside
                // any task: wait on the runtime only when there is one.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            let _ = tx.send(item).await;
                        });
                    }
                    Err(_) => tracing::error!(
                        "recorder full outside the runtime; an invocation record was lost"
                    ),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("recorder stopped; an invocation record was lost");
            }
        }
    }

    /// Waits until everything queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Item::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
