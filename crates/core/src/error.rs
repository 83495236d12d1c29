//! The three kinds of failure, kept apart from the runtime to the HTTP
//! status and the metric label.

use serde::{Deserialize, Serialize};

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The function's code: it trapped, threw, timed out or ran out of memory.
    Guest,
    /// The caller's: bad input, throttled, not found, not allowed.
    Caller,
    /// wisp's own: disk full, a bug.
    Platform,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Guest => "guest",
            ErrorKind::Caller => "caller",
            ErrorKind::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        match s {
            "guest" => Some(ErrorKind::Guest),
            "caller" => Some(ErrorKind::Caller),
            "platform" => Some(ErrorKind::Platform),
            _ => None,
        }
    }
}

/// Why an invocation failed: whose fault, a stable machine-readable type
/// (`Timeout`, `OutOfMemory`, `Trap`, ...) and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct InvokeError {
    pub kind: ErrorKind,
    pub error_type: String,
    pub message: String,
}

impl InvokeError {
    pub fn new(kind: ErrorKind, error_type: &str, message: impl Into<String>) -> Self {
        InvokeError {
            kind,
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    pub fn guest(error_type: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Guest, error_type, message)
    }

    pub fn caller(error_type: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Caller, error_type, message)
    }

    pub fn platform(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Platform, error_types::PLATFORM, message)
    }
}

/// A request body that did not arrive in time (the listener's body read
/// timeout): the caller's fault, answered 408 and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// The error types wisp itself reports.
pub mod error_types {
    /// The guest ran past its timeout and was stopped.
    pub const TIMEOUT: &str = "Timeout";
    /// The guest tried to grow past its memory limit.
    pub const OUT_OF_MEMORY: &str = "OutOfMemory";
    /// The guest trapped (panic, unreachable, bad memory access).
    pub const TRAP: &str = "Trap";
    /// The guest answered with a 5xx status.
    pub const FUNCTION_ERROR: &str = "FunctionError";
    /// The guest's response was larger than allowed.
    pub const RESPONSE_TOO_LARGE: &str = "ResponseSizeTooLarge";
    /// The guest never produced a response.
    pub const NO_RESPONSE: &str = "NoResponse";
    /// The request or payload was larger than allowed.
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
    /// Something in wisp went wrong.
    pub const PLATFORM: &str = "PlatformError";
    /// The call conflicts with another (an idempotency key that is held).
    pub const CONFLICT: &str = "ResourceConflictException";
    /// Throttled: the function's reserved concurrency is in use (or 0).
    pub const THROTTLED_RESERVED: &str = "ReservedFunctionConcurrentInvocationLimitExceeded";
    /// Throttled: the account's unreserved concurrency is in use.
    pub const THROTTLED_ACCOUNT: &str = "ConcurrentInvocationLimitExceeded";

    /// Whether an error type says the call was throttled (429).
    pub fn is_throttle(error_type: &str) -> bool {
        error_type == THROTTLED_RESERVED || error_type == THROTTLED_ACCOUNT
    }
}
