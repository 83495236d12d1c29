//! Errors in the shape botocore parses: status, `x-amzn-ErrorType`, and a
//! JSON body with `Type` and `message`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use wisp_core::{ErrorKind, InvokeError};
use wisp_store::StoreError;

/// An API error: AWS's type name, status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    /// Lambda's `Reason` field (on throttles).
    pub reason: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
            reason: None,
        }
    }

    /// 429 TooManyRequestsException, with Lambda's reason code.
    pub fn throttled(reason: &str) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Rate Exceeded.",
        );
        e.reason = Some(reason.to_string());
        e
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            message,
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::PreconditionFailed(m) => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailedException",
                m,
            ),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store failure");
                ApiError::internal("wisp could not complete the request; see the server log")
            }
        }
    }
}

/// A failed invocation on the Lambda API: its cause decides the status and
/// AWS's error type. (A function's own failure is not an API error: Invoke
/// answers 200 with `X-Amz-Function-Error`; it comes here only from
/// calls that cannot report one, and is then a 502.)
impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let cause = e.cause;
        let error_type = cause.aws_error_type().unwrap_or("ServiceException");
        match cause.kind() {
            _ if cause.is_throttle() => ApiError::throttled(cause.error_type()),
            ErrorKind::Platform => {
                tracing::error!(error = %e.message, "invocation failed in wisp");
                ApiError::internal(e.message)
            }
            ErrorKind::Caller | ErrorKind::Guest => {
                ApiError::new(cause.status(), error_type, e.message)
            }
        }
    }
}

impl From<wisp_dispatch::ResolveError> for ApiError {
    fn from(e: wisp_dispatch::ResolveError) -> Self {
        match e {
            wisp_dispatch::ResolveError::NotFound(m) => ApiError::not_found(m),
            wisp_dispatch::ResolveError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        let mut body = serde_json::json!({ "Type": kind, "message": self.message });
        if let Some(reason) = &self.reason {
            body["Reason"] = reason.clone().into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
