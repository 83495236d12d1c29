//! What every invocation leaves behind: a record and its log lines.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, InvokeError};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Error,
}

/// The record of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    pub version: String,
    /// What started it: `gateway`, `api`, ...
    pub trigger: String,
    /// Milliseconds since the epoch when it started.
    pub started_at_ms: i64,
    /// Whether this invocation had to prepare the function first.
    pub cold: bool,
    /// Time spent preparing (loading the compiled artifact, starting a worker), if cold.
    pub init_duration_us: Option<u64>,
    pub duration_us: u64,
    /// Duration rounded up to the millisecond, as Lambda bills.
    pub billed_ms: u64,
    pub memory_limit_mb: u32,
    pub max_memory_bytes: u64,
    pub outcome: Outcome,
    pub error_kind: Option<ErrorKind>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// HTTP status the function answered with, when it answered.
    pub status: Option<u16>,
}

impl InvocationRecord {
    pub fn error(&self) -> Option<InvokeError> {
        Some(InvokeError {
            kind: self.error_kind?,
            error_type: self.error_type.clone()?,
            message: self.error_message.clone().unwrap_or_default(),
        })
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines wisp writes about the invocation (START, END, REPORT, denials).
    Platform,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<LogStream> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            "platform" => Some(LogStream::Platform),
            _ => None,
        }
    }
}

/// One line of output, keyed by request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, assigned by the store; 0 before it is stored.
    #[serde(default)]
    pub seq: i64,
    pub request_id: String,
    pub function: String,
    pub ts_ms: i64,
    pub stream: LogStream,
    pub message: String,
}
