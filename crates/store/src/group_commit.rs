//! Group commit: writes from many callers run in one transaction, with
//! one fsync, and each caller hears back only once that transaction is on
//! disk. Each write runs in a savepoint of its own, so one that fails
//! leaves the others of its group standing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Most writes in one transaction.
const MAX_GROUP: usize = 512;

/// Called once the group's transaction ended: `Ok` when it committed.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// A write: runs on the connection, says whether it succeeded (else its
/// savepoint is rolled back), and how to answer its caller.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// The committing thread's mailbox.
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the thread that commits on `writer`; it stops when this is
    /// dropped.
    pub(crate) fn start(writer: Arc<Mutex<Connection>>) -> Result<GroupCommit> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wisp-store-commit".into())
            .spawn(move || commit_loop(&writer, &rx))?;
        Ok(GroupCommit { jobs: tx })
    }

    /// Runs `f` in the next group; returns its result once committed.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (ok, finish)
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Internal("the store's committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the store's committer dropped a write".into()))?
    }
}

fn commit_loop(writer: &Mutex<Connection>, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Ok(conn) = writer.lock() else {
            fail_all(group, "store connection poisoned");
            continue;
        };
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            fail_all(group, &e.to_string());
            continue;
        }
        let mut finishes = Vec::with_capacity(group.len());
        for job in group {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                finishes.push(failed(e.to_string()));
                continue;
            }
            let (ok, finish) = job(&conn);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "could not end a write's savepoint");
            }
            finishes.push(finish);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        drop(conn);
        for finish in finishes {
            finish(
                committed
                    .clone()
                    .map_err(|e| StoreError::Internal(format!("commit failed: {e}"))),
            );
        }
    }
}

fn failed(message: String) -> Finish {
    Box::new(move |_| tracing::error!(error = %message, "a write could not start"))
}

fn fail_all(group: Vec<Job>, why: &str) {
    // Dropping a job drops its reply: its caller hears the committer
    // dropped the write, and nothing was stored.
    tracing::error!(error = %why, writes = group.len(), "a group of writes failed");
    drop(group);
}
