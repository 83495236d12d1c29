//! Writes records and logs to the store in batches, off the request path.
//!
//! Invocations hand their record to a bounded channel; one task drains it
//! and commits everything waiting in one transaction, so a busy server
//! does one SQLite commit per batch, not per request.

use std::sync::Arc;

use tokio::sync::mpsc;
use wisp_core::limits::RECORD_QUEUE_DEPTH;
use wisp_core::{InvocationRecord, LogEntry};
use wisp_store::Store;

enum Item {
    Record(Box<InvocationRecord>, Vec<LogEntry>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the batching writer.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Item>,
}

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Item>(RECORD_QUEUE_DEPTH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let mut records = Vec::new();
                let mut logs = Vec::new();
                let mut waiters = Vec::new();
                for item in batch.drain(..) {
                    match item {
                        Item::Record(r, l) => {
                            records.push(*r);
                            logs.extend(l);
                        }
                        Item::Flush(done) => waiters.push(done),
                    }
                }
                if !records.is_empty() {
                    let count = records.len();
                    if let Err(e) = store.insert_invocations(records, logs).await {
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
    pub fn record(&self, record: InvocationRecord, logs: Vec<LogEntry>) {
        let tx = self.tx.clone();
        match tx.try_send(Item::Record(Box::new(record), logs)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                tokio::spawn(async move {
                    let _ = tx.send(item).await;
                });
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
