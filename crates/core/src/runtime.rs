//! The seam between the dispatcher and the runtimes: `prepare` does the
//! cold part once per version, `invoke` runs one request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::error::{Cause, InvokeError};
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

/// An Invoke payload as a function gets it. Like Lambda, a payload that is
/// not JSON is refused (the caller's error, not the function's: Lambda
/// answers 400 InvalidRequestContentException); an empty one is `{}` for
/// Lambda code, whose runtime clients parse every event, and stays empty
/// for a component, which gets it as an HTTP body.
pub fn invoke_payload(kind: crate::RuntimeKind, payload: Bytes) -> Result<Bytes, String> {
    if payload.is_empty() {
        return Ok(match kind {
            crate::RuntimeKind::Process => Bytes::from_static(b"{}"),
            crate::RuntimeKind::Wasm => payload,
        });
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        Ok(_) => Ok(payload),
        Err(e) => Err(format!(
            "Could not parse request body into json: Could not parse payload into json: {e}"
        )),
    }
}

/// Where a request body streamed to a function notes why it failed, so a
/// function that failed because its caller's body did not arrive (too
/// large, too slow, cut off) is not blamed for it: the dispatcher records
/// the caller's error instead, and the gateway answers with it. Carried in
/// the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct BodyFailure(Arc<std::sync::OnceLock<InvokeError>>);

impl BodyFailure {
    /// The caller's error, once the body has failed.
    pub fn get(&self) -> Option<&InvokeError> {
        self.0.get()
    }

    /// `body`, with its first error noted here.
    pub fn watch<B>(&self, body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        let slot = self.clone();
        body.map_err(move |e| {
            let e: BoxError = e.into();
            let _ = slot.0.set(caller_body_error(e.as_ref()));
            e
        })
        .boxed_unsync()
    }
}

/// The caller's error for a body that failed with `e`.
fn caller_body_error(e: &(dyn std::error::Error + 'static)) -> InvokeError {
    if e.is::<crate::error::BodyTimeout>() {
        InvokeError::new(Cause::RequestTimeout, e.to_string())
    } else if e.is::<http_body_util::LengthLimitError>() {
        InvokeError::new(
            Cause::PayloadTooLarge,
            format!("the request body is too large: {e}"),
        )
    } else {
        InvokeError::new(
            Cause::InvalidRequest,
            format!("the request body could not be read: {e}"),
        )
    }
}

/// Runs functions of one kind (wasm components, Lambda Runtime API processes).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Does the cold part for a version: load or compile its artifact,
    /// link it, start workers. `artifact` is the code zip on local disk,
    /// `layers` the zips of its layers, in order.
    async fn prepare(
        &self,
        version: &FunctionVersion,
        artifact: &Path,
        layers: &[std::path::PathBuf],
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
    /// A body whose first frame is an error.
    struct Failing(Option<BoxError>);

    impl http_body::Body for Failing {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            std::task::Poll::Ready(self.0.take().map(Err))
        }
    }

    fn first_frame(mut body: Body) -> Option<Result<http_body::Frame<Bytes>, BoxError>> {
        use http_body::Body as _;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => panic!("these bodies are ready"),
        }
    }

    #[test]
    fn an_invoke_payload_must_be_json() {
        use crate::RuntimeKind::{Process, Wasm};
        let ok = |kind, p: &'static [u8]| invoke_payload(kind, Bytes::from_static(p));
        assert_eq!(ok(Process, b""), Ok(Bytes::from_static(b"{}")));
        assert_eq!(ok(Wasm, b""), Ok(Bytes::new()));
        assert_eq!(
            ok(Process, b" [1, 2] "),
            Ok(Bytes::from_static(b" [1, 2] "))
        );
        assert_eq!(ok(Wasm, b"\"s\""), Ok(Bytes::from_static(b"\"s\"")));
        for bad in [&b"not json"[..], b"\xff\xfe", b"{} {}", b"{"] {
            let e = invoke_payload(Process, Bytes::copy_from_slice(bad)).unwrap_err();
            assert!(
                e.starts_with("Could not parse request body into json"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_failed_body_names_the_callers_error() {
        let watched = |f: &BodyFailure, error: &'static str| match error {
            "timeout" => f.watch(Failing(Some(crate::error::BodyTimeout.into()))),
            "too large" => f.watch(http_body_util::Limited::new(full_body("too long"), 2)),
            _ => f.watch(Failing(Some(error.into()))),
        };
        for (error, cause) in [
            ("timeout", Cause::RequestTimeout),
            ("too large", Cause::PayloadTooLarge),
            ("connection reset", Cause::InvalidRequest),
        ] {
            let failure = BodyFailure::default();
            assert!(first_frame(watched(&failure, error)).unwrap().is_err());
            assert_eq!(failure.get().map(|e| e.cause), Some(cause), "{error}");
            assert_eq!(
                failure.get().map(InvokeError::kind),
                Some(crate::ErrorKind::Caller)
            );
        }
        let failure = BodyFailure::default();
        assert!(first_frame(failure.watch(full_body("fine")))
            .unwrap()
            .is_ok());
        assert!(failure.get().is_none());
    }

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
