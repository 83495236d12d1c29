//! SQS's errors: the modeled name botocore maps to an exception class,
//! the query protocol's code it also reads, and whose fault it is.

use crate::attributes::AttributeError;
use crate::message::MessageError;

/// An SQS error as AWS sends it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct SqsError {
    /// The modeled error (`QueueDoesNotExist`), or the query code for the
    /// unmodeled ones (`InvalidParameterValue`).
    pub error_type: &'static str,
    /// The query protocol's code (`AWS.SimpleQueueService.NonExistentQueue`).
    pub query_code: &'static str,
    pub message: String,
    /// The service's fault (5xx) rather than the caller's.
    pub internal: bool,
}

impl SqsError {
    fn sender(error_type: &'static str, query_code: &'static str, message: String) -> SqsError {
        SqsError {
            error_type,
            query_code,
            message,
            internal: false,
        }
    }

    /// An error whose query code is its name.
    pub fn plain(code: &'static str, message: impl Into<String>) -> SqsError {
        SqsError::sender(code, code, message.into())
    }

    pub fn no_queue() -> SqsError {
        SqsError::sender(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.".into(),
        )
    }

    pub fn queue_exists(message: impl Into<String>) -> SqsError {
        SqsError::sender("QueueNameExists", "QueueAlreadyExists", message.into())
    }

    pub fn invalid(message: impl Into<String>) -> SqsError {
        SqsError::plain("InvalidParameterValue", message)
    }

    /// `Value <v> for parameter <name> is invalid. Reason: <why>`.
    pub fn invalid_value(name: &str, value: impl std::fmt::Display, why: &str) -> SqsError {
        SqsError::invalid(format!(
            "Value {value} for parameter {name} is invalid. Reason: {why}"
        ))
    }

    pub fn missing(name: &str) -> SqsError {
        SqsError::plain(
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    pub fn receipt_invalid(handle: &str) -> SqsError {
        SqsError::plain(
            "ReceiptHandleIsInvalid",
            format!(
                "The input receipt handle \"{}\" is not a valid receipt handle.",
                wisp_core::text::cut(handle, 200)
            ),
        )
    }

    pub fn not_in_flight() -> SqsError {
        SqsError::sender(
            "MessageNotInflight",
            "AWS.SimpleQueueService.MessageNotInflight",
            "The message referred to isn't in flight.".into(),
        )
    }

    pub fn purge_in_progress(queue: &str) -> SqsError {
        SqsError::sender(
            "PurgeQueueInProgress",
            "AWS.SimpleQueueService.PurgeQueueInProgress",
            format!("Only one PurgeQueue operation on {queue} is allowed every 60 seconds."),
        )
    }

    pub fn batch(error_type: &'static str, message: impl Into<String>) -> SqsError {
        let query_code = match error_type {
            "EmptyBatchRequest" => "AWS.SimpleQueueService.EmptyBatchRequest",
            "TooManyEntriesInBatchRequest" => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "BatchEntryIdsNotDistinct" => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "BatchRequestTooLong" => "AWS.SimpleQueueService.BatchRequestTooLong",
            _ => "AWS.SimpleQueueService.InvalidBatchEntryId",
        };
        SqsError::sender(error_type, query_code, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> SqsError {
        SqsError::plain("ResourceNotFoundException", message)
    }

    pub fn unsupported(message: impl Into<String>) -> SqsError {
        SqsError::sender(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            message.into(),
        )
    }

    pub fn internal(message: impl Into<String>) -> SqsError {
        SqsError {
            error_type: "InternalError",
            query_code: "InternalError",
            message: message.into(),
            internal: true,
        }
    }
}

impl From<AttributeError> for SqsError {
    fn from(e: AttributeError) -> Self {
        SqsError::plain(e.code, e.message)
    }
}

impl From<MessageError> for SqsError {
    fn from(e: MessageError) -> Self {
        SqsError::plain(e.code, e.message)
    }
}

impl From<wisp_store::StoreError> for SqsError {
    fn from(e: wisp_store::StoreError) -> Self {
        match e {
            wisp_store::StoreError::NotFound(_) => SqsError::no_queue(),
            e => SqsError::internal(e.to_string()),
        }
    }
}
