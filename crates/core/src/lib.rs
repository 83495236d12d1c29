//! wisp's vocabulary: functions, versions, invocation records, the manifest,
//! routes, limits and the `Runtime` seam. Nothing here does I/O.

pub mod apigw;
pub mod async_invoke;
pub mod clock;
pub mod codezip;
pub mod duration;
pub mod error;
pub mod function;
pub mod idempotency;
pub mod limits;
pub mod logbuf;
pub mod manifest;
pub mod outbound;
pub mod record;
pub mod route;
pub mod runtime;

pub use error::{ErrorKind, InvokeError};
pub use function::{Alias, FunctionConfig, FunctionVersion, RuntimeKind};
pub use record::{InvocationRecord, LogEntry, LogStream, Outcome};

/// The account id in every ARN wisp shows (the one LocalStack users know).
pub const ACCOUNT_ID: &str = "000000000000";

/// A fresh request id, in the shape Lambda uses (a UUID v4).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
