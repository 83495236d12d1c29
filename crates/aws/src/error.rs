//! Errors in the shape botocore parses: status, `x-amzn-ErrorType`, and a
//! JSON body with `Type` and `message`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use wisp_store::StoreError;

/// An API error: AWS's type name, status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
        }
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
        let body = serde_json::json!({ "Type": kind, "message": self.message });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
