//! The durable async queue and the idempotency table, as the store sees
//! them: rows and transitions. What the transitions mean lives in
//! `wisp_core::async_invoke` and the dispatcher.

/// An event to put on a function's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub request_id: String,
    pub function: String,
    /// The qualifier it was invoked with (`$LATEST`, a version or an alias).
    pub qualifier: String,
    pub payload: Vec<u8>,
    /// How it was invoked (JSON: source, invoked ARN, client context).
    pub context: String,
    pub idempotency_key: Option<String>,
    pub enqueued_ms: i64,
    pub due_ms: i64,
}

/// What became of an event offered to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored durably.
    Accepted,
    /// Its idempotency key is already queued, running or done: not stored
    /// again; the first event's request id.
    Duplicate { request_id: String },
    /// The function no longer exists.
    NoFunction,
}

/// A queued event handed out for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    pub id: i64,
    pub request_id: String,
    pub function: String,
    pub qualifier: String,
    pub payload: Vec<u8>,
    pub context: String,
    pub idempotency_key: Option<String>,
    pub enqueued_ms: i64,
    /// Attempts so far that ended in a function error.
    pub errors: u32,
    /// Attempts so far that were throttled.
    pub throttles: u32,
    /// The last attempt's response (JSON), for a failure record.
    pub last_response: Option<String>,
}

/// How a delivered event leaves the queue or goes back on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Finished: success, or given up (with `failed` set).
    Remove,
    /// Back on the queue, due at `due_ms`.
    Retry {
        due_ms: i64,
        errors: u32,
        throttles: u32,
        last_response: Option<String>,
    },
}

/// An event given up without a destination to take it: kept, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    pub request_id: String,
    pub function: String,
    pub failed_ms: i64,
    /// The destination record (JSON).
    pub record: String,
}

/// The end of an idempotent run.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOutcome {
    /// Done: replay `result` until `expires_ms`.
    Done { result: Vec<u8>, expires_ms: i64 },
    /// Failed: forget the claim so a retry runs again.
    Release,
}

/// The end of one delivery, applied in one transaction with the others of
/// its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: i64,
    pub settle: Settle,
    /// Events this one causes: destination records for other functions.
    /// One whose function is gone is kept as a failed event of this one.
    pub follow_ups: Vec<NewEvent>,
    pub failed: Option<FailedEvent>,
    pub key: Option<(String, String, KeyOutcome)>,
}

/// A function's queue, as `describe` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub function: String,
    pub depth: u64,
    pub oldest_enqueued_ms: Option<i64>,
    pub failed: u64,
}

/// Where an idempotency key stands when a call claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This call owns the key now and runs the function.
    Claimed,
    /// Another call with the key is running.
    Running { request_id: String },
    /// A call with the key finished; its stored result.
    Done { request_id: String, result: Vec<u8> },
    /// A call with the key was running when the server stopped (a crash,
    /// a kill -9): whether its function's effects happened is unknown, so
    /// the key is held, unrun, until it expires.
    Interrupted { request_id: String },
}

/// The failed-event record of a destination record whose function is
/// gone: the record, with a note saying so.
pub fn undeliverable(e: &NewEvent) -> String {
    let mut record: serde_json::Value =
        serde_json::from_slice(&e.payload).unwrap_or(serde_json::Value::Null);
    if let Some(o) = record.as_object_mut() {
        o.insert(
            "undeliverable".into(),
            format!("destination function `{}` does not exist", e.function).into(),
        );
    }
    record.to_string()
}
