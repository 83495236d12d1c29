//! Where wisp keeps its state, one trait per concern: the registry
//! (functions, versions, aliases, routes, settings), code blobs, records
//! and logs, the async event queue, idempotency keys, SQS queues, and
//! documents (buses, rules, schedules), event archives, timers (schedules' ticks,
//! workflows' waits) and workflow executions.
//! `Store` is their union. SQLite implements each here; the clustered
//! store (`wisp-store-nats`) implements the same traits on JetStream, and
//! both pass the same checks (`conformance`).

mod archives;
#[cfg(feature = "conformance")]
pub mod conformance;
mod documents;
mod executions;
mod group_commit;
mod queue;
mod sqlite;
mod sqlite_archives;
mod sqlite_documents;
mod sqlite_executions;
mod sqlite_queue;
mod sqlite_sqs;
mod sqlite_timers;
pub mod sqs;
mod timers;

use std::path::PathBuf;

use wisp_core::route::Route;
use wisp_core::{Alias, Finished, FunctionVersion, InvocationRecord, LogEntry};

pub use archives::{ArchiveStore, Archived};
pub use documents::{Document, DocumentStore};
pub use executions::{Execution, ExecutionStore};
pub use queue::{
    undeliverable, Claim, Enqueued, FailedEvent, KeyOutcome, NewEvent, QueueStats, QueuedEvent,
    Settle, Settlement,
};
pub use sqlite::SqliteStore;
pub use sqs::QueueStore;
pub use timers::{LeasedTimer, Timer, TimerStore};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("revision mismatch: {0}")]
    PreconditionFailed(String),
    #[error("store failure: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Internal(format!("corrupt stored value: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `PreconditionFailed` unless the caller expects no revision or the
/// current one (Lambda's RevisionId check).
pub fn check_revision(current: &str, expected: Option<&str>, what: &str) -> Result<()> {
    match expected {
        Some(e) if e != current => Err(StoreError::PreconditionFailed(format!(
            "the revision id of {what} is {current}, not {e}; fetch it again and retry"
        ))),
        _ => Ok(()),
    }
}

/// Which log lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this function's lines (all functions when `None`).
    pub function: Option<String>,
    pub request_id: Option<String>,
    /// Only invocations that started at or after this time (ms since epoch).
    pub since_ms: Option<i64>,
    /// Only invocations after this sequence number (for following).
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// A per-function (or per-qualifier) setting stored as JSON: reserved
/// concurrency, provisioned concurrency, async invoke config. Deleted with
/// its function.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub function: String,
    /// `""` for function-wide settings, else a version or alias.
    pub qualifier: String,
    pub kind: String,
    pub value: serde_json::Value,
}

/// The kinds of settings wisp keeps.
pub mod setting_kinds {
    /// `{"reserved": N}`.
    pub const CONCURRENCY: &str = "concurrency";
    /// `{"requested": N, "last_modified_ms": T}`, per version or alias.
    pub const PROVISIONED: &str = "provisioned";
    /// Lambda's FunctionEventInvokeConfig fields, per qualifier.
    pub const EVENT_INVOKE: &str = "event-invoke";
    /// `{"key": "$.path", "ttl_secs": N}`, function-wide.
    pub const IDEMPOTENCY: &str = "idempotency";
}

/// Something another node changed, which this node may hold cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A function, its versions, aliases or settings.
    Function(String),
    /// Some app's routes.
    Routes,
    /// An SQS queue's attributes or tags, or the queue itself.
    Queue(String),
    /// Async events were queued for a function.
    Events(String),
    /// A document (kind, name) was written or removed.
    Document(String, String),
    /// Changes may have been missed (the feed broke and was made again):
    /// catch up with everything.
    Resync,
}

/// The registry: functions, versions, aliases, routes and per-function
/// settings.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Changes made through any node, as they happen, for a backend shared
    /// by several nodes; `None` for one only this process uses (it sees its
    /// own changes as it makes them).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// Creates or replaces a setting; `NotFound` if the function does not exist.
    async fn put_setting(&self, setting: Setting) -> Result<()>;

    async fn get_setting(
        &self,
        function: &str,
        kind: &str,
        qualifier: &str,
    ) -> Result<Option<serde_json::Value>>;

    /// Returns whether there was one.
    async fn delete_setting(&self, function: &str, kind: &str, qualifier: &str) -> Result<bool>;

    /// Settings of a kind, of one function or all.
    async fn list_settings(&self, kind: &str, function: Option<&str>) -> Result<Vec<Setting>>;

    /// Creates a function with its `$LATEST` version; `Conflict` if it exists.
    async fn create_function(&self, latest: FunctionVersion) -> Result<()>;

    /// Replaces `$LATEST`, if its revision is still `expected_revision` (when given).
    async fn update_latest(
        &self,
        latest: FunctionVersion,
        expected_revision: Option<&str>,
    ) -> Result<()>;

    async fn get_version(&self, function: &str, version: &str) -> Result<Option<FunctionVersion>>;

    /// Every function's `$LATEST`, by name.
    async fn list_latest(&self) -> Result<Vec<FunctionVersion>>;

    /// `$LATEST` and the published versions, in order.
    async fn list_versions(&self, function: &str) -> Result<Vec<FunctionVersion>>;

    /// Snapshots `$LATEST` as the next numbered version; returns the newest
    /// version unchanged when `$LATEST` has not changed since it.
    async fn publish_version(
        &self,
        function: &str,
        description: Option<String>,
        expected_revision: Option<&str>,
    ) -> Result<FunctionVersion>;

    /// Deletes a function with its versions, aliases and routes' targets stay.
    async fn delete_function(&self, function: &str) -> Result<()>;

    /// Deletes one published version; `Conflict` if an alias points at it.
    async fn delete_version(&self, function: &str, version: &str) -> Result<()>;

    async fn create_alias(&self, alias: Alias) -> Result<()>;

    async fn update_alias(&self, alias: Alias, expected_revision: Option<&str>) -> Result<()>;

    async fn get_alias(&self, function: &str, name: &str) -> Result<Option<Alias>>;

    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>>;

    async fn delete_alias(&self, function: &str, name: &str) -> Result<()>;

    /// Replaces all routes of `app` at once.
    async fn replace_routes(&self, app: &str, routes: Vec<Route>) -> Result<()>;

    /// Every route of every app.
    async fn list_routes(&self) -> Result<Vec<(String, Route)>>;
}

/// Code blobs, by sha256.
#[async_trait::async_trait]
pub trait CodeStore: Send + Sync + 'static {
    /// Stores a code blob by its sha256 (hex), returned.
    async fn put_code(&self, bytes: Vec<u8>) -> Result<String>;

    /// A local file holding the blob with this sha256.
    async fn code_path(&self, sha256: &str) -> Result<PathBuf>;
}

/// Invocation records and their logs, with a retention.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Writes a batch of finished invocations (record and log lines, one
    /// row each) in one transaction. Each attempt of a retried async event
    /// is a row of its own, under the same request id.
    async fn insert_invocations(&self, finished: Vec<Finished>) -> Result<()>;

    /// The record of a request id; of a retried event, its latest attempt.
    async fn get_invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>>;

    /// A function's records, newest first.
    async fn list_invocations(&self, function: &str, limit: usize)
        -> Result<Vec<InvocationRecord>>;

    /// Log lines, whole invocations at a time (START to REPORT), in the
    /// order the invocations finished; every line of an invocation has its
    /// `seq`. Stops after the invocation that reaches `limit` lines.
    async fn query_logs(&self, query: LogQuery) -> Result<Vec<LogEntry>>;

    /// The `seq` of the newest invocation in the log (0 when it is empty):
    /// where a follower that wants only new lines starts.
    async fn last_log_seq(&self) -> Result<i64>;

    /// Drops records and logs older than `before_ms`; returns how many went.
    async fn purge_records_before(&self, before_ms: i64) -> Result<u64>;
}

/// The durable queue of async invocations, with their given-up events.
#[async_trait::async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// Stores events durably (one transaction, synced to disk) before
    /// returning; one answer per event, in order.
    async fn enqueue_events(&self, events: Vec<NewEvent>, now_ms: i64) -> Result<Vec<Enqueued>>;

    /// Hands out up to `limit` of a function's events due by `now_ms`, which
    /// stay on the queue, leased, until settled. Also returns when the
    /// function's next unleased event is due, if it has one.
    async fn lease_events(
        &self,
        function: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Vec<QueuedEvent>, Option<i64>)>;

    /// Applies a batch of delivery outcomes in one transaction.
    async fn settle_events(&self, settlements: Vec<Settlement>) -> Result<()>;

    /// Startup after a stop or crash: every lease is returned to the queue
    /// and every running idempotency claim marked interrupted, since their
    /// runs died with the old process (perhaps after their effects).
    /// Returns each function with unleased events and when its first one
    /// is due.
    async fn recover_queue(&self) -> Result<Vec<(String, i64)>>;

    async fn queue_stats(&self) -> Result<Vec<QueueStats>>;

    /// A function's given-up events, newest first.
    async fn list_failed_events(&self, function: &str, limit: usize) -> Result<Vec<FailedEvent>>;
}

/// Idempotency keys: claims, results, expiry.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Claims `key` of `function` for a run, unless a live claim holds it.
    async fn claim_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Claim>;

    /// Who holds `key` of `function` now, if anyone (claims nothing).
    async fn key_holder(&self, function: &str, key: &str, now_ms: i64) -> Result<Option<Claim>>;

    /// Ends the claim `request_id` holds on `key`.
    async fn finish_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        outcome: KeyOutcome,
    ) -> Result<()>;

    /// Drops finished keys expired by `now_ms`; returns how many went. A
    /// backend whose keys carry their own TTL has nothing to do here.
    async fn purge_keys(&self, now_ms: i64) -> Result<u64>;
}

/// Every concern at once: what the dispatcher and the API hold. Each
/// backend implements the concerns one by one; this is their union.
pub trait Store:
    Registry
    + CodeStore
    + RecordStore
    + EventQueue
    + KeyStore
    + QueueStore
    + DocumentStore
    + TimerStore
    + ArchiveStore
    + ExecutionStore
{
}

impl<T> Store for T where
    T: Registry
        + CodeStore
        + RecordStore
        + EventQueue
        + KeyStore
        + QueueStore
        + DocumentStore
        + TimerStore
        + ArchiveStore
        + ExecutionStore
{
}
