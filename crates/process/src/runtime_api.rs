//! The AWS Lambda Runtime API (`/2018-06-01/runtime/...`) that one
//! worker's process polls, on its own loopback port. Each call becomes a
//! message to the worker's task, which answers it and drives the
//! connections too.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime_api::Call;
use wisp_core::streaming::{self, StreamSender};
use wisp_core::text;

use crate::worker::{error_body, ApiReply, Msg, NextEvent, Posted};

/// Serves the Runtime API on one connection from the worker's process.
/// The future is polled by the worker's own task, beside everything else
/// the worker waits on: a call from the process and the worker's answer
/// wake no other task, so a warm invocation crosses threads only to enter
/// and to leave the worker.
///
/// A bootstrap that sends its `GET /next` right behind each result, in the
/// same write, says so with [`NEXT_FOLLOWS`] on the result's post. That
/// post then counts as the `next` call too, and its 202 is held until the
/// next event is ready: both answers leave in the same turn of the
/// worker's task, and the process wakes once per invocation instead of
/// twice. wisp's own bootstraps do this; any other client gets Lambda's
/// plain request/answer exchange.
pub(crate) async fn connection(stream: tokio::net::TcpStream, worker: mpsc::Sender<Msg>) {
    let _ = stream.set_nodelay(true);
    let pipelined = PipelinedNext::default();
    let service = hyper::service::service_fn(move |req| {
        let worker = worker.clone();
        let pipelined = pipelined.clone();
        async move { Ok::<_, Infallible>(handle(req, &worker, &pipelined).await) }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The header on a result's post that announces a pipelined `GET /next`.
pub(crate) const NEXT_FOLLOWS: &str = "wisp-next-follows";

/// The event for a connection's announced `GET /next`, once its post is
/// answered: the worker took the post as that call.
#[derive(Clone, Default)]
struct PipelinedNext(Arc<Mutex<Option<Announced>>>);

enum Announced {
    Ready(NextEvent),
    Waiting(oneshot::Receiver<NextEvent>),
}

impl PipelinedNext {
    /// Keeps the call's event unless the worker refused the announcement
    /// (it dropped the sender).
    fn set(&self, mut rx: oneshot::Receiver<NextEvent>) {
        let announced = match rx.try_recv() {
            Ok(event) => Announced::Ready(event),
            Err(oneshot::error::TryRecvError::Empty) => Announced::Waiting(rx),
            Err(oneshot::error::TryRecvError::Closed) => return,
        };
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(announced);
        }
    }

    fn take(&self) -> Option<Announced> {
        self.0.lock().ok()?.take()
    }
}

/// Answers a connection from outside the worker 403 and closes it.
pub(crate) async fn refuse(stream: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, Infallible>(reply(ApiReply::error(
            403,
            "AccessDeniedException",
            "this Runtime API serves only its own worker's processes",
        )))
    });
    let answered = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // A client that sends nothing is not waited on for long.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), answered).await;
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn reply(r: ApiReply) -> Response<Full<Bytes>> {
    json_response(r.status, &r.body)
}

fn worker_gone() -> Response<Full<Bytes>> {
    reply(ApiReply::error(
        500,
        "ServiceException",
        "the worker is shutting down; exit",
    ))
}

/// Past the payload limit a body is still read (and dropped) up to this,
/// so the connection stays in step and the process hears its 413; beyond
/// it the connection is closed.
const DRAIN_LIMIT: usize = 8 * MAX_SYNC_PAYLOAD_BYTES;

async fn read_body(mut body: Incoming) -> Result<Posted, Response<Full<Bytes>>> {
    let mut kept = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            reply(ApiReply::error(
                400,
                "InvalidRequest",
                format!("could not read the body: {e}"),
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total <= MAX_SYNC_PAYLOAD_BYTES {
            kept.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_SYNC_PAYLOAD_BYTES {
        return Ok(Posted::TooLarge);
    }
    Ok(Posted::Body(kept.freeze()))
}

/// Sends a post to the worker and waits for its answer. An announced
/// `GET /next` goes with it; the worker drops that sender unless it takes
/// the post as the call, and then the real `GET /next` asks it instead.
async fn ask(
    worker: &mpsc::Sender<Msg>,
    next_follows: bool,
    pipelined: &PipelinedNext,
    make: impl FnOnce(oneshot::Sender<ApiReply>, Option<oneshot::Sender<NextEvent>>) -> Msg,
) -> Response<Full<Bytes>> {
    let (tx, rx) = oneshot::channel();
    let (next_tx, next_rx) = next_follows.then(oneshot::channel).unzip();
    if worker.send(make(tx, next_tx)).await.is_err() {
        return worker_gone();
    }
    let answer = match rx.await {
        Ok(r) => reply(r),
        Err(_) => return worker_gone(),
    };
    if let Some(next) = next_rx {
        pipelined.set(next);
    }
    answer
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(
    req: Request<Incoming>,
    worker: &mpsc::Sender<Msg>,
    pipelined: &PipelinedNext,
) -> Response<Full<Bytes>> {
    let call = Call::parse(req.method().as_str(), req.uri().path());
    match call {
        Call::Next => {
            let rx = match pipelined.take() {
                Some(Announced::Ready(event)) => return next_response(event),
                Some(Announced::Waiting(rx)) => rx,
                None => {
                    let (tx, rx) = oneshot::channel();
                    if worker.send(Msg::Next(tx)).await.is_err() {
                        return worker_gone();
                    }
                    rx
                }
            };
            match rx.await {
                Ok(event) => next_response(event),
                Err(_) => worker_gone(),
            }
        }
        Call::Response { request_id } if is_streaming(&req) => {
            let request_id = request_id.to_string();
            let content_type = header(&req, "content-type")
                .unwrap_or_else(|| "application/octet-stream".to_string());
            let follows = req.headers().contains_key(NEXT_FOLLOWS);
            stream(
                req.into_body(),
                request_id,
                content_type,
                follows,
                worker,
                pipelined,
            )
            .await
        }
        Call::Response { request_id } => {
            let request_id = request_id.to_string();
            let follows = req.headers().contains_key(NEXT_FOLLOWS);
            let body = match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            ask(worker, follows, pipelined, |reply, next| Msg::Response {
                request_id,
                body,
                reply,
                next,
            })
            .await
        }
        Call::Error { request_id } => {
            let request_id = request_id.to_string();
            let error_type = header(&req, "lambda-runtime-function-error-type");
            let follows = req.headers().contains_key(NEXT_FOLLOWS);
            let body = match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            ask(worker, follows, pipelined, |reply, next| Msg::Error {
                request_id,
                error_type,
                body,
                reply,
                next,
            })
            .await
        }
        Call::InitError => {
            let error_type = header(&req, "lambda-runtime-function-error-type");
            let body = match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            ask(worker, false, pipelined, |reply, _| Msg::InitError {
                error_type,
                body,
                reply,
            })
            .await
        }
        Call::Unknown => reply(ApiReply::error(
            404,
            "NotFound",
            format!(
                "{} {} is not a Runtime API call",
                req.method(),
                text::shown(req.uri().path(), 200)
            ),
        )),
    }
}

fn is_streaming(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(streaming::RESPONSE_MODE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"))
}

/// A result posted as a stream: the caller gets its head at once and each
/// chunk as it arrives; an error in its trailers ends it.
async fn stream(
    body: Incoming,
    request_id: String,
    content_type: String,
    follows: bool,
    worker: &mpsc::Sender<Msg>,
    pipelined: &PipelinedNext,
) -> Response<Full<Bytes>> {
    let (sender, out) = streaming::channel(STREAM_CHUNKS);
    let (tx, rx) = oneshot::channel();
    let start = Msg::StreamStart {
        request_id: request_id.clone(),
        content_type,
        body: out,
        sender: sender.clone(),
        reply: tx,
    };
    if worker.send(start).await.is_err() {
        return worker_gone();
    }
    match rx.await {
        Ok(None) => {}
        Ok(Some(refusal)) => return reply(refusal),
        Err(_) => return worker_gone(),
    }
    let error = pump(body, &sender).await;
    if let Some((error_type, doc)) = &error {
        sender
            .trailers(streaming::error_trailers(error_type, doc))
            .await;
    }
    drop(sender);
    ask(worker, follows, pipelined, |reply, next| Msg::StreamEnd {
        request_id,
        error,
        reply,
        next,
    })
    .await
}

/// How many chunks may wait for a slow caller before the process waits.
const STREAM_CHUNKS: usize = 16;

/// Moves a streamed result's chunks to the caller, up to the streaming
/// limit (past it the rest is read and dropped); the error it ended with,
/// if any. A caller that went away does not stop the function: the
/// stream is read to its end.
async fn pump(mut body: Incoming, sender: &StreamSender) -> Option<(String, Bytes)> {
    let mut total = 0usize;
    let mut listening = true;
    let mut error = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let message = format!("the function's response stream broke: {e}");
                return Some((
                    "Runtime.TruncatedResponse".into(),
                    error_body("Runtime.TruncatedResponse", &message),
                ));
            }
        };
        match frame.into_data() {
            Ok(data) => {
                total = total.saturating_add(data.len());
                if total > streaming::MAX_STREAMED_BYTES {
                    if error.is_none() {
                        let limit = streaming::MAX_STREAMED_BYTES;
                        let message = format!("Response payload size exceeded maximum allowed payload size ({limit} bytes).");
                        error = Some((
                            "Function.ResponseSizeTooLarge".to_string(),
                            error_body("Function.ResponseSizeTooLarge", &message),
                        ));
                    }
                    if total > DRAIN_LIMIT.max(2 * streaming::MAX_STREAMED_BYTES) {
                        break;
                    }
                    continue;
                }
                if listening && !sender.data(data).await {
                    listening = false;
                }
            }
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    error = error.or_else(|| streaming::trailer_error(trailers));
                }
            }
        }
    }
    error
}

fn next_response(event: NextEvent) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(event.payload));
    let h = r.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &event.request_id);
    set("lambda-runtime-deadline-ms", &event.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &event.function_arn);
    set("lambda-runtime-trace-id", &event.trace_id);
    if let Some(c) = &event.client_context {
        set("lambda-runtime-client-context", c);
    }
    if let Some(c) = &event.cognito_identity {
        set("lambda-runtime-cognito-identity", c);
    }
    r
}
