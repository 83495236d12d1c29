//! The seam between the dispatcher and the runtimes: `prepare` does the
//! cold part once per version, `invoke` runs one request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::error::InvokeError;
use crate::function::FunctionVersion;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streamed HTTP body, to and from functions.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` (or nothing).
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Runs functions of one kind (wasm components, Lambda Runtime API processes).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Does the cold part for a version: load or compile its artifact,
    /// link it, start workers. `artifact` is the code zip on local disk.
    async fn prepare(
        &self,
        version: &FunctionVersion,
        artifact: &Path,
    ) -> Result<Arc<dyn Prepared>, InvokeError>;
}

/// A version ready to serve requests.
#[async_trait::async_trait]
pub trait Prepared: Send + Sync + 'static {
    /// Runs one request. The response arrives as soon as the function sends
    /// its head; `invocation.done` gets the completion once it has finished
    /// (body sent, logs flushed).
    async fn invoke(&self, invocation: Invocation) -> Result<http::Response<Body>, InvokeError>;

    /// Keeps `count` workers initialised (provisioned concurrency); a
    /// runtime without workers has nothing to start.
    async fn provision(&self, _count: usize) -> Result<(), InvokeError> {
        Ok(())
    }

    /// What the version is running right now.
    fn stats(&self) -> PreparedStats {
        PreparedStats::default()
    }
}

/// Workers of a prepared version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreparedStats {
    /// Alive: starting, busy or idle.
    pub workers: usize,
    /// Waiting for an invocation.
    pub idle: usize,
}

/// One request to a function.
pub struct Invocation {
    pub request_id: String,
    pub request: http::Request<Body>,
    pub timeout: Duration,
    /// Takes the completion, after the response body has been produced or
    /// abandoned.
    pub done: Done,
}

/// Where an invocation's completion goes: called exactly once, by the
/// runtime that finished it, or on drop with a platform error if the
/// runtime lost it, so every admitted invocation gets its record and
/// frees its slot. A callback, not a channel: the completion is handled
/// on the thread that finished the work, with no task to wake.
pub struct Done(Option<Box<dyn FnOnce(Completion) + Send>>);

impl Done {
    pub fn new(f: impl FnOnce(Completion) + Send + 'static) -> Done {
        Done(Some(Box::new(f)))
    }

    /// A `Done` that drops the completion (for callers that keep no record).
    pub fn ignore() -> Done {
        Done(None)
    }

    pub fn complete(mut self, completion: Completion) {
        if let Some(f) = self.0.take() {
            f(completion);
        }
    }

    /// Completes with `error` and nothing else.
    pub fn fail(self, error: InvokeError) {
        self.complete(Completion {
            error: Some(error),
            ..Completion::default()
        });
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Completion {
                error: Some(InvokeError::platform("the runtime dropped the invocation")),
                ..Completion::default()
            });
        }
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Done(pending)"
        } else {
            "Done(taken)"
        })
    }
}

/// How an invocation ended, for its record and logs.
#[derive(Debug, Default)]
pub struct Completion {
    pub error: Option<InvokeError>,
    pub status: Option<u16>,
    pub duration: Duration,
    /// Time the runtime spent starting a fresh worker for this invocation
    /// (a process's INIT phase); `None` when a warm one served it.
    pub init_duration: Option<Duration>,
    pub max_memory_bytes: u64,
    /// Output lines with their capture time (ms since epoch).
    pub logs: Vec<crate::LogLine>,
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Failed(String),
}

/// Reads a whole body, failing as soon as it passes `limit` bytes.
pub async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, CollectError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(CollectError::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn catcher() -> (Done, Arc<Mutex<Vec<Completion>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Done::new(move |c| s.lock().unwrap().push(c)), seen)
    }

    #[test]
    fn done_is_called_once_with_the_completion() {
        let (done, seen) = catcher();
        done.complete(Completion {
            status: Some(201),
            ..Completion::default()
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].status, Some(201));
        assert!(seen[0].error.is_none());
    }

    #[test]
    fn a_dropped_done_reports_a_platform_error() {
        let (done, seen) = catcher();
        drop(done);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let error = seen[0].error.as_ref().expect("an error");
        assert_eq!(error.kind(), crate::ErrorKind::Platform);
    }
}
