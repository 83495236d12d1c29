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

/// Why an invocation failed. Whose fault it is, the status a caller gets,
/// the AWS error type and the metric label all follow from it, each in one
/// exhaustive `match`: a new cause cannot be mapped by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cause {
    /// The function, or its runtime, reported an error of its own type
    /// (a thrown exception, an error post, the runtime exiting).
    Unhandled,
    /// It ran past its timeout and was stopped.
    Timeout,
    /// It tried to grow past its memory limit.
    OutOfMemory,
    /// A wasm guest trapped (panic, unreachable, bad memory access).
    Trap,
    /// A wasm guest answered with a 5xx status.
    ErrorStatus,
    /// Its response was larger than allowed, or broke off.
    BadResponse,
    /// It never produced a response.
    NoResponse,
    /// The request was malformed or not acceptable to the function.
    InvalidRequest,
    /// The request or payload was larger than allowed.
    PayloadTooLarge,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The function's code cannot run (not a component, no handler).
    InvalidCode,
    /// The function's runtime is unknown or not on this server.
    InvalidRuntime,
    /// No such function or version.
    NotFound,
    /// Throttled: the function's reserved concurrency is in use (or 0).
    ReservedConcurrency,
    /// Throttled: the account's unreserved concurrency is in use.
    AccountConcurrency,
    /// The call conflicts with another (an idempotency key that is held).
    Conflict,
    /// Something in wisp went wrong.
    Platform,
}

impl Cause {
    /// Whose fault a failure of this cause is.
    pub fn kind(self) -> ErrorKind {
        use Cause::*;
        match self {
            Unhandled | Timeout | OutOfMemory | Trap | ErrorStatus | BadResponse | NoResponse => {
                ErrorKind::Guest
            }
            InvalidRequest | PayloadTooLarge | RequestTimeout | InvalidCode | InvalidRuntime
            | NotFound | ReservedConcurrency | AccountConcurrency | Conflict => ErrorKind::Caller,
            Platform => ErrorKind::Platform,
        }
    }

    /// The error type wisp records and shows for this cause (a function's
    /// own type replaces it for [`Cause::Unhandled`]).
    pub fn error_type(self) -> &'static str {
        use Cause::*;
        match self {
            Unhandled => "Unhandled",
            Timeout => error_types::TIMEOUT,
            OutOfMemory => error_types::OUT_OF_MEMORY,
            Trap => error_types::TRAP,
            ErrorStatus => error_types::FUNCTION_ERROR,
            BadResponse => error_types::RESPONSE_TOO_LARGE,
            NoResponse => error_types::NO_RESPONSE,
            InvalidRequest => "InvalidRequest",
            PayloadTooLarge => error_types::PAYLOAD_TOO_LARGE,
            RequestTimeout => "RequestTimeout",
            InvalidCode => "InvalidCode",
            InvalidRuntime => "InvalidRuntime",
            NotFound => "ResourceNotFoundException",
            ReservedConcurrency => error_types::THROTTLED_RESERVED,
            AccountConcurrency => error_types::THROTTLED_ACCOUNT,
            Conflict => error_types::CONFLICT,
            Platform => error_types::PLATFORM,
        }
    }

    /// The HTTP status a caller gets: on the gateway for every cause, on
    /// the Lambda API for the caller's and the platform's (a function's
    /// error is a 200 with `X-Amz-Function-Error` there).
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        use Cause::*;
        match self {
            Timeout => S::GATEWAY_TIMEOUT,
            Unhandled | OutOfMemory | Trap | ErrorStatus | BadResponse | NoResponse => {
                S::BAD_GATEWAY
            }
            InvalidRequest | InvalidCode | InvalidRuntime => S::BAD_REQUEST,
            PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            RequestTimeout => S::REQUEST_TIMEOUT,
            NotFound => S::NOT_FOUND,
            ReservedConcurrency | AccountConcurrency => S::TOO_MANY_REQUESTS,
            Conflict => S::CONFLICT,
            Platform => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The AWS error type the Lambda API answers with. For the function's
    /// own failures it is the `errorType` of the function error document
    /// (`None`: the function's own type).
    pub fn aws_error_type(self) -> Option<&'static str> {
        use Cause::*;
        Some(match self {
            Unhandled | Trap | ErrorStatus | NoResponse => return None,
            Timeout => "Sandbox.Timedout",
            OutOfMemory => "Runtime.OutOfMemory",
            BadResponse => "Function.ResponseSizeTooLarge",
            InvalidRequest | InvalidCode | InvalidRuntime => "InvalidParameterValueException",
            // What Lambda sends, though botocore models RequestTooLargeException.
            PayloadTooLarge => "RequestEntityTooLargeException",
            RequestTimeout => "RequestTimeoutException",
            NotFound => "ResourceNotFoundException",
            ReservedConcurrency | AccountConcurrency => "TooManyRequestsException",
            Conflict => "ResourceConflictException",
            Platform => "ServiceException",
        })
    }

    /// Whether a delivery that failed this way should be tried again later
    /// without counting as an attempt: the function never ran.
    pub fn is_throttle(self) -> bool {
        matches!(self, Cause::ReservedConcurrency | Cause::AccountConcurrency)
    }

    /// Every cause, for tests and documentation.
    pub const ALL: [Cause; 17] = {
        use Cause::*;
        [
            Unhandled,
            Timeout,
            OutOfMemory,
            Trap,
            ErrorStatus,
            BadResponse,
            NoResponse,
            InvalidRequest,
            PayloadTooLarge,
            RequestTimeout,
            InvalidCode,
            InvalidRuntime,
            NotFound,
            ReservedConcurrency,
            AccountConcurrency,
            Conflict,
            Platform,
        ]
    };
}

/// Why an invocation failed: its [`Cause`], the error type shown (the
/// cause's own, or the function's for an unhandled error) and a message
/// for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct InvokeError {
    pub cause: Cause,
    pub error_type: String,
    pub message: String,
}

impl InvokeError {
    pub fn new(cause: Cause, message: impl Into<String>) -> Self {
        InvokeError {
            cause,
            error_type: cause.error_type().to_string(),
            message: message.into(),
        }
    }

    /// The function's (or its runtime's) own error, of its own type.
    pub fn unhandled(error_type: &str, message: impl Into<String>) -> Self {
        InvokeError {
            cause: Cause::Unhandled,
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    pub fn platform(message: impl Into<String>) -> Self {
        Self::new(Cause::Platform, message)
    }

    /// Whose fault it is.
    pub fn kind(&self) -> ErrorKind {
        self.cause.kind()
    }

    /// The `errorType` of Lambda's function error document.
    pub fn lambda_error_type(&self) -> &str {
        self.cause.aws_error_type().unwrap_or(&self.error_type)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_one_kind_status_and_type() {
        for cause in Cause::ALL {
            let status = cause.status();
            match cause.kind() {
                ErrorKind::Guest => assert!(status.is_server_error(), "{cause:?}"),
                ErrorKind::Caller => assert!(status.is_client_error(), "{cause:?}"),
                ErrorKind::Platform => assert_eq!(status, 500, "{cause:?}"),
            }
            assert!(!cause.error_type().is_empty());
            if cause.kind() != ErrorKind::Guest {
                assert!(cause.aws_error_type().is_some(), "{cause:?}");
            }
        }
        let types: std::collections::HashSet<_> =
            Cause::ALL.iter().map(|c| c.error_type()).collect();
        assert_eq!(types.len(), Cause::ALL.len(), "each cause has its own type");
    }

    #[test]
    fn a_functions_own_type_shows_unless_lambda_names_the_cause() {
        let thrown = InvokeError::unhandled("TypeError", "bad");
        assert_eq!(
            (thrown.kind(), thrown.lambda_error_type()),
            (ErrorKind::Guest, "TypeError")
        );
        let timeout = InvokeError::new(Cause::Timeout, "late");
        assert_eq!(timeout.lambda_error_type(), "Sandbox.Timedout");
        assert_eq!(timeout.error_type, "Timeout");
    }
}
