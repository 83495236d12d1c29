//! wisp's vocabulary: functions, versions, invocation records, the manifest,
//! routes, limits and the `Runtime` seam. Nothing here does I/O.

pub mod apigw;
pub mod async_invoke;
pub mod bounds;
pub mod clock;
pub mod codezip;
pub mod duration;
pub mod error;
pub mod function;
pub mod function_url;
pub mod headers;
pub mod idempotency;
pub mod limits;
pub mod logbuf;
pub mod manifest;
pub mod outbound;
pub mod pattern;
pub mod record;
pub mod route;
pub mod runtime;
pub mod runtime_api;
pub mod schedule;
pub mod streaming;
pub mod text;

pub use error::{Cause, ErrorKind, InvokeError};
pub use function::{Alias, FunctionConfig, FunctionVersion, RuntimeKind};
pub use record::{
    DeliveryAttempt, Finished, InvocationRecord, LogEntry, LogLine, LogStream, Outcome,
};

/// The account id in every ARN wisp shows (the one LocalStack users know).
pub const ACCOUNT_ID: &str = "000000000000";

/// A fresh request id, in the shape Lambda uses (a UUID). Version 7: ids
/// rise with time, so the store appends them to its index instead of
/// writing all over it.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
