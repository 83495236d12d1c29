//! The warm pool of one function version: idle workers wait in
//! `invocation/next`; a call takes the warmest, or starts one (a cold
//! start). Idle workers past the keep-warm period are stopped, down to the
//! provisioned count, which is kept initialised.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::oneshot;
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime::{
    collect_limited, full_body, Body, CollectError, Invocation, Prepared, PreparedStats,
};
use wisp_core::Cause;
use wisp_core::InvokeError;

use crate::idle::Idle;
use crate::sandbox::Sandbox;
use crate::worker::{self, Event, Job, Reply, Spec, WorkerHandle, INIT_LIMIT};

/// Most workers one version may run at once (concurrency limits come first).
const MAX_WORKERS: usize = 1000;

/// How many times a call moves on to another worker when the one it was
/// given went away before taking it.
const MAX_HANDOFFS: usize = 3;

pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    spec: Arc<Spec>,
    sandbox: Arc<Sandbox>,
    ids: Arc<AtomicU64>,
    idle: Arc<Idle>,
    provisioned: AtomicUsize,
    keep_warm: Duration,
    /// One top-up of provisioned workers at a time, so two never both
    /// start the same missing workers.
    filling: tokio::sync::Mutex<()>,
}

impl Pool {
    pub(crate) fn new(
        spec: Spec,
        sandbox: Arc<Sandbox>,
        ids: Arc<AtomicU64>,
        keep_warm: Duration,
    ) -> Pool {
        let inner = Arc::new(PoolInner {
            spec: Arc::new(spec),
            sandbox,
            ids,
            idle: Arc::new(Idle::default()),
            provisioned: AtomicUsize::new(0),
            keep_warm,
            filling: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(tend(Arc::downgrade(&inner)));
        Pool { inner }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in self.inner.idle.close() {
            w.stop();
        }
    }
}

/// Stops workers idle past keep-warm and keeps the provisioned ones up.
async fn tend(pool: Weak<PoolInner>) {
    let tick = {
        let Some(p) = pool.upgrade() else { return };
        (p.keep_warm / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(p) = pool.upgrade() else { return };
        let keep = p.provisioned.load(Ordering::Relaxed);
        if let Some(cutoff) = tokio::time::Instant::now().checked_sub(p.keep_warm) {
            for w in p.idle.expired(cutoff, keep) {
                w.stop();
            }
        }
        if let Err(e) = p.fill().await {
            tracing::warn!(error = %e, "could not start a provisioned worker");
        }
    }
}

impl PoolInner {
    /// Starts workers until the provisioned count is alive.
    async fn fill(&self) -> Result<(), InvokeError> {
        let _one_at_a_time = self.filling.lock().await;
        let keep = self.provisioned.load(Ordering::Relaxed);
        for _ in self.idle.live()..keep {
            self.start_worker().await?;
        }
        Ok(())
    }

    async fn start_worker(&self) -> Result<WorkerHandle, InvokeError> {
        if !self.idle.reserve(MAX_WORKERS) {
            return Err(InvokeError::new(
                Cause::ReservedConcurrency,
                format!("the function already runs {MAX_WORKERS} workers"),
            ));
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let sandbox = self.sandbox.clone();
        let memory_mb = self.spec.memory_mb;
        let limits = tokio::task::spawn_blocking(move || sandbox.worker(id, memory_mb))
            .await
            .map_err(|e| InvokeError::platform(format!("worker setup task failed: {e}")))
            .and_then(|r| {
                r.map_err(|e| {
                    InvokeError::platform(format!("cannot limit the worker's memory: {e}"))
                })
            });
        let limits = match limits {
            Ok(l) => l,
            Err(e) => {
                self.idle.release_reservation();
                return Err(e);
            }
        };
        worker::spawn(id, self.spec.clone(), limits, self.idle.clone())
            .await
            .inspect_err(|_| self.idle.release_reservation())
    }
}

fn header(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An X-Ray style trace id, as Lambda passes one to every invocation.
fn trace_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &random[..24],
        &random[16..32]
    )
}

/// The client context Lambda hands the runtime: decoded from the
/// caller's base64 `X-Amz-Client-Context`.
fn client_context(raw: Option<String>) -> Option<String> {
    let raw = raw?;
    match base64::engine::general_purpose::STANDARD.decode(raw.trim()) {
        Ok(bytes) => String::from_utf8(bytes).ok(),
        Err(_) => Some(raw),
    }
}

fn response(
    status: u16,
    body: Bytes,
    function_error: bool,
) -> http::Response<wisp_core::runtime::Body> {
    let mut r = http::Response::new(full_body(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if function_error {
        r.headers_mut().insert(
            "x-amz-function-error",
            http::HeaderValue::from_static("Unhandled"),
        );
    }
    r
}

#[async_trait::async_trait]
impl Prepared for Pool {
    async fn invoke(&self, invocation: Invocation) -> Result<http::Response<Body>, InvokeError> {
        let Invocation {
            request_id,
            request,
            timeout,
            mut done,
        } = invocation;
        let (parts, body) = request.into_parts();
        let payload = match collect_limited(body, MAX_SYNC_PAYLOAD_BYTES).await {
            Ok(b) => b,
            Err(CollectError::TooLarge(limit)) => {
                let e = InvokeError::new(
                    Cause::PayloadTooLarge,
                    format!("the payload is larger than {limit} bytes"),
                );
                done.fail(e.clone());
                return Err(e);
            }
            Err(e @ CollectError::Failed(_)) => {
                let e = InvokeError::new(Cause::InvalidRequest, e.to_string());
                done.fail(e.clone());
                return Err(e);
            }
        };
        let event = Event {
            request_id,
            payload,
            timeout,
            client_context: client_context(header(&parts, "x-wisp-client-context")),
            function_arn: header(&parts, "x-wisp-invoked-function-arn"),
            cognito_identity: None,
            trace_id: header(&parts, "x-amzn-trace-id").unwrap_or_else(trace_id),
        };

        for _ in 0..MAX_HANDOFFS {
            let worker = match self.inner.idle.pop() {
                Some(w) => w,
                None => match self.inner.start_worker().await {
                    Ok(w) => w,
                    Err(e) => {
                        done.fail(e.clone());
                        return Err(e);
                    }
                },
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            let job = Job {
                event: event.clone(),
                reply: reply_tx,
                done,
            };
            if let Err(job) = worker.invoke(job).await {
                done = job.done;
                continue;
            }
            // The worker enforces the init limit and the timeout itself; this
            // outer bound only guards against a worker task that hangs.
            let bound = timeout + INIT_LIMIT + Duration::from_secs(10);
            let reply = match tokio::time::timeout(bound, reply_rx).await {
                Ok(r) => r,
                Err(_) => {
                    let e = InvokeError::platform("the worker did not answer; it was killed");
                    worker.kill(e.clone()).await;
                    return Err(e);
                }
            };
            return match reply {
                // The process hears its 202 as `_ack` drops, after this
                // task has the result: the caller's answer goes out first.
                Ok(Reply::Response(body, _ack)) => Ok(response(200, body, false)),
                Ok(Reply::FunctionError { body, .. }) => Ok(response(500, body, true)),
                Ok(Reply::Failed(e)) => Err(e),
                Ok(Reply::Stream(response)) => Ok(response),
                Ok(Reply::NotStarted(taken_back)) => {
                    done = taken_back;
                    continue;
                }
                Err(_) => Err(InvokeError::platform("the worker dropped the invocation")),
            };
        }
        let e = InvokeError::platform("no worker could take the invocation");
        done.fail(e.clone());
        Err(e)
    }

    async fn provision(&self, count: usize) -> Result<(), InvokeError> {
        self.inner.provisioned.store(count, Ordering::Relaxed);
        self.inner.fill().await
    }

    fn stats(&self) -> PreparedStats {
        PreparedStats {
            workers: self.inner.idle.live(),
            idle: self.inner.idle.idle_count(),
        }
    }
}
