//! Writes records and logs to the store in batches, off the request path.
//!
//! Invocations hand their record to a bounded channel; one task drains it
//! and commits everything waiting in one transaction, so a busy server
//! does one SQLite commit per batch, not per request. A batch lingers a
//! few milliseconds to gather more, unless someone waits for a flush or
//! the batch is already full: commits, not rows, are what cost. While it
//! lingers the writer does not listen to the channel, so a busy server
//! wakes it once per batch, not once per record.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
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
    /// Cuts a lingering batch short: a flush, or a batch already full.
    hurry: Arc<Notify>,
}

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

/// How long a batch waits for more records before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Item>(RECORD_QUEUE_DEPTH);
        let hurry = Arc::new(Notify::new());
        let woken = hurry.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                // Linger without listening to the channel, so the records
                // that follow the first do not wake this task one by one;
                // only a flush or a full batch cuts the wait short.
                let flushing = batch.iter().any(|i| matches!(i, Item::Flush(_)));
                if !flushing && batch.len() + rx.len() < MAX_BATCH {
                    let _ = tokio::time::timeout(LINGER, woken.notified()).await;
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
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
                    // A shared store may be briefly unavailable (a server
                    // failing over): a few tries over about six seconds
                    // before the records are given up and counted.
                    let mut wait = std::time::Duration::from_millis(200);
                    let mut tries = 0;
                    while let Err(e) = store.insert_invocations(finished.clone()).await {
                        tries += 1;
                        if tries == 5 {
                            metrics::counter!("wisp_record_write_errors_total")
                                .increment(count as u64);
                            tracing::error!(error = %e, count, "could not store invocation records");
                            break;
                        }
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        Recorder { tx, hurry }
    }

    /// Queues a record; waits only when the writer is `RECORD_QUEUE_DEPTH` behind.
    pub fn record(&self, record: InvocationRecord, lines: Vec<LogLine>) {
        let tx = self.tx.clone();
        match tx.try_send(Item::Record(Box::new(Finished { record, lines }))) {
            Ok(()) => {
                if RECORD_QUEUE_DEPTH - tx.capacity() >= MAX_BATCH {
                    self.hurry.notify_one();
                }
            }
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
            self.hurry.notify_one();
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wisp_core::function::LATEST;
    use wisp_core::LogStream;
    use wisp_store::SqliteStore;

    fn record(id: usize) -> InvocationRecord {
        InvocationRecord {
            request_id: format!("r{id}"),
            function: "f".into(),
            version: LATEST.into(),
            trigger: "api".into(),
            started_at_ms: id as i64,
            duration_us: 10,
            billed_ms: 1,
            memory_limit_mb: 128,
            status: Some(200),
            ..InvocationRecord::default()
        }
    }

    /// More records than a batch holds, then a flush: every one is stored
    /// by the time the flush returns, with its lines.
    #[tokio::test]
    async fn a_flush_returns_once_everything_before_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let recorder = Recorder::start(store.clone());
        let n = MAX_BATCH * 3 + 7;
        for i in 0..n {
            recorder.record(record(i), vec![(LogStream::Stdout, 1, format!("line {i}"))]);
        }
        recorder.flush().await;
        assert_eq!(store.list_invocations("f", n + 10).await.unwrap().len(), n);
        let last = store.get_invocation(&format!("r{}", n - 1)).await.unwrap();
        assert_eq!(last, Some(record(n - 1)));
    }

    /// Nobody flushes: a lone record is still stored once its batch has
    /// lingered.
    #[tokio::test]
    async fn a_lone_record_is_stored_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let recorder = Recorder::start(store.clone());
        recorder.record(record(1), Vec::new());
        for _ in 0..200 {
            if store.get_invocation("r1").await.unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the record was never stored");
    }
}
