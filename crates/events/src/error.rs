//! EventBridge's errors: a modeled type and a message.

/// Why an EventBridge operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct EventsError {
    /// The modeled exception (`ResourceNotFoundException`).
    pub error_type: &'static str,
    pub message: String,
    /// A fault of the server (500) rather than of the request (400).
    pub internal: bool,
}

impl EventsError {
    fn new(error_type: &'static str, message: impl Into<String>) -> EventsError {
        EventsError {
            error_type,
            message: message.into(),
            internal: false,
        }
    }

    pub fn validation(message: impl Into<String>) -> EventsError {
        EventsError::new("ValidationException", message)
    }

    pub fn not_found(message: impl Into<String>) -> EventsError {
        EventsError::new("ResourceNotFoundException", message)
    }

    pub fn exists(message: impl Into<String>) -> EventsError {
        EventsError::new("ResourceAlreadyExistsException", message)
    }

    pub fn pattern(message: impl Into<String>) -> EventsError {
        EventsError::new("InvalidEventPatternException", message)
    }

    pub fn conflict(message: impl Into<String>) -> EventsError {
        EventsError::new("ConcurrentModificationException", message)
    }

    pub fn limit(message: impl Into<String>) -> EventsError {
        EventsError::new("LimitExceededException", message)
    }

    /// A replay in a state that does not allow the call.
    pub fn illegal_status(message: impl Into<String>) -> EventsError {
        EventsError::new("IllegalStatusException", message)
    }

    /// EventBridge Scheduler's conflict (a name taken).
    pub fn scheduler_conflict(message: impl Into<String>) -> EventsError {
        EventsError::new("ConflictException", message)
    }

    /// EventBridge Scheduler's quota error.
    pub fn quota(message: impl Into<String>) -> EventsError {
        EventsError::new("ServiceQuotaExceededException", message)
    }

    pub fn internal(message: impl Into<String>) -> EventsError {
        EventsError {
            internal: true,
            ..EventsError::new("InternalException", message)
        }
    }
}

impl From<wisp_store::StoreError> for EventsError {
    fn from(e: wisp_store::StoreError) -> EventsError {
        match e {
            wisp_store::StoreError::Conflict(m) => EventsError::conflict(m),
            wisp_store::StoreError::NotFound(m) => EventsError::not_found(m),
            other => EventsError::internal(other.to_string()),
        }
    }
}

impl From<wisp_queues::SqsError> for EventsError {
    fn from(e: wisp_queues::SqsError) -> EventsError {
        EventsError::internal(e.message)
    }
}
