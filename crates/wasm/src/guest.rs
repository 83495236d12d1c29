//! One prepared version and the per-request store that runs it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wisp_core::limits::MAX_ERROR_MESSAGE_BYTES;
use wisp_core::outbound::OutboundPolicy;
use wisp_core::runtime::{Body, BoxError, Completion, Invocation, Prepared};
use wisp_core::Cause;
use wisp_core::{FunctionVersion, InvokeError, LogStream};

use crate::engine::EPOCH_TICK;
use crate::logs::LogCapture;
use crate::outbound::OutboundHooks;

/// The data of one request's `Store`.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    limiter: MemoryLimiter,
    logs: LogCapture,
    /// When the current request must have finished.
    deadline: Instant,
    timed_out: bool,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Holds linear memory to the function's `memory_mb` and remembers the peak.
struct MemoryLimiter {
    cap: usize,
    peak: usize,
    exceeded: bool,
}

/// Most table elements a guest may grow to.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit exceeded: the guest asked to grow its memory from {current} to {desired} bytes, past its cap of {} bytes",
                self.cap
            );
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// An instance kept between requests (`instance_reuse`).
struct Warm {
    store: Store<GuestState>,
    proxy: Proxy,
    /// Requests it has served.
    uses: u32,
}

/// Most instances kept idle per version in reuse mode; more run under
/// load, the rest are dropped when they finish.
const MAX_IDLE_INSTANCES: usize = 64;

/// A linked component, ready to instantiate per request.
pub(crate) struct WasmPrepared {
    engine: Engine,
    pre: ProxyPre<GuestState>,
    memory_cap: usize,
    env: Vec<(String, String)>,
    policy: Arc<OutboundPolicy>,
    /// Serve up to this many requests per instance; 0 = a fresh one each time.
    reuse: u32,
    warm: Arc<Mutex<Vec<Warm>>>,
}

impl WasmPrepared {
    pub(crate) fn new(
        engine: Engine,
        pre: ProxyPre<GuestState>,
        version: &FunctionVersion,
    ) -> Result<WasmPrepared, InvokeError> {
        let config = &version.config;
        let policy = OutboundPolicy::new(&config.allowed_outbound_hosts)
            .map_err(|e| InvokeError::new(Cause::InvalidRequest, e))?;
        let mut env: Vec<(String, String)> = config
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("WISP_FUNCTION_NAME".into(), version.function.clone()));
        env.push(("WISP_FUNCTION_VERSION".into(), version.version.clone()));
        env.push((
            "WISP_FUNCTION_MEMORY_MB".into(),
            config.memory_mb.to_string(),
        ));
        Ok(WasmPrepared {
            engine,
            pre,
            memory_cap: config.memory_mb as usize * 1024 * 1024,
            env,
            policy: Arc::new(policy),
            reuse: config.instance_reuse,
            warm: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn new_store(&self, deadline: Instant) -> Store<GuestState> {
        let logs = LogCapture::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(logs.pipe(LogStream::Stdout))
            .stderr(logs.pipe(LogStream::Stderr))
            .envs(&self.env);
        let state = GuestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                policy: self.policy.clone(),
                logs: logs.clone(),
            },
            limiter: MemoryLimiter {
                cap: self.memory_cap,
                peak: 0,
                exceeded: false,
            },
            logs,
            deadline,
            timed_out: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to other tasks every tick so a busy guest cannot starve the
        // runtime, and trap once past the request's deadline.
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                wasmtime::bail!("the function timed out");
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// A kept instance, in reuse mode.
    fn take_warm(&self) -> Option<Warm> {
        if self.reuse == 0 {
            return None;
        }
        self.warm.lock().ok()?.pop()
    }
}

/// Starts a request on a store: its deadline and a clean timeout flag.
fn arm(store: &mut Store<GuestState>, deadline: Instant) {
    let data = store.data_mut();
    data.deadline = deadline;
    data.timed_out = false;
    store.set_epoch_deadline(1);
}

/// Turns a request body failure (a client gone, a size limit hit) into the
/// error wasi:http hands the guest.
fn body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<http_body_util::LengthLimitError>() {
        wasmtime_wasi_http::Error::HttpRequestBodySize(None)
    } else {
        wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
    }
}

fn timeout_error(timeout: Duration) -> InvokeError {
    InvokeError::new(
        Cause::Timeout,
        format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
    )
}

/// Names what went wrong, from the store's flags first (they do not depend
/// on error message wording), then the error itself.
fn classify(
    result: Option<wasmtime::Result<()>>,
    state: &GuestState,
    timeout: Duration,
    memory_mb: usize,
) -> Option<InvokeError> {
    if state.timed_out || result.is_none() {
        return Some(timeout_error(timeout));
    }
    if state.limiter.exceeded {
        return Some(InvokeError::new(
            Cause::OutOfMemory,
            format!("the function ran out of memory: its limit is {memory_mb} MB"),
        ));
    }
    match result {
        Some(Err(e)) => {
            let mut message = format!("{e:#}");
            wisp_core::text::cut_owned(&mut message, MAX_ERROR_MESSAGE_BYTES);
            Some(InvokeError::new(Cause::Trap, message))
        }
        _ => None,
    }
}

/// The function's response head, or why there is none.
type ResponseSlot = Arc<Mutex<Option<oneshot::Sender<Result<http::Response<Body>, InvokeError>>>>>;

/// Answers the caller once: the guest's response, or the error that ended
/// it without one.
fn answer(slot: &ResponseSlot, response: Result<http::Response<Body>, InvokeError>) {
    if let Some(tx) = slot.lock().ok().and_then(|mut s| s.take()) {
        let _ = tx.send(response);
    }
}

#[async_trait::async_trait]
impl Prepared for WasmPrepared {
    async fn invoke(&self, invocation: Invocation) -> Result<http::Response<Body>, InvokeError> {
        let Invocation {
            request_id: _,
            mut request,
            timeout,
            done,
        } = invocation;
        // One reading of the clock gives the duration's start and both deadlines.
        let started = Instant::now();
        let deadline = started + timeout;
        let (mut store, mut proxy, uses) = match self.take_warm() {
            Some(w) => (w.store, Some(w.proxy), w.uses),
            None => (self.new_store(deadline), None, 0),
        };
        arm(&mut store, deadline);
        let logs = store.data().logs.clone();

        if request.uri().authority().is_none()
            && !request.headers().contains_key(http::header::HOST)
        {
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let status = Arc::new(AtomicU16::new(0));
        let (response_tx, mut response_rx) = oneshot::channel();
        let slot: ResponseSlot = Arc::new(Mutex::new(Some(response_tx)));
        let setup = (|| -> wasmtime::Result<_> {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request.map(|body| body.map_err(body_error)))?;
            let status = status.clone();
            let slot = slot.clone();
            let out = store
                .data_mut()
                .http()
                .new_response_outparam_from_callback(move |response| {
                    let response = match response {
                        Ok(r) => {
                            status.store(r.status().as_u16(), Ordering::Relaxed);
                            Ok(r.map(|body| {
                                body.map_err(|e| -> BoxError { e.to_string().into() })
                                    .boxed_unsync()
                            }))
                        }
                        Err(code) => Err(InvokeError::new(
                            Cause::ErrorStatus,
                            format!("the function answered with an error: {code:?}"),
                        )),
                    };
                    answer(&slot, response);
                })?;
            Ok((req, out))
        })();
        let (req, out) = match setup {
            Ok(v) => v,
            Err(e) => {
                let error = InvokeError::new(Cause::InvalidRequest, format!("{e:#}"));
                done.fail(error.clone());
                return Err(error);
            }
        };

        let pre = self.pre.clone();
        let memory_mb = self.memory_cap >> 20;
        let status_done = status.clone();
        let reuse = self.reuse;
        let warm = self.warm.clone();
        let guest = Box::pin(async move {
            let run = async {
                let proxy = match proxy.take() {
                    Some(p) => p,
                    None => pre.instantiate_async(&mut store).await?,
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await?;
                Ok::<_, wasmtime::Error>(proxy)
            };
            // The epoch deadline stops guest code; this also stops a guest
            // parked in a host call (an outbound request that never answers).
            let hard_stop = tokio::time::Instant::from_std(deadline + EPOCH_TICK * 4);
            let result = tokio::time::timeout_at(hard_stop, run).await.ok();
            let (result, finished) = match result {
                Some(Ok(proxy)) => (Some(Ok(())), Some(proxy)),
                Some(Err(e)) => (Some(Err(e)), None),
                None => (None, None),
            };
            let mut error = classify(result, store.data(), timeout, memory_mb);
            let status = status_done.load(Ordering::Relaxed);
            if error.is_none() && status == 0 {
                error = Some(InvokeError::new(
                    Cause::NoResponse,
                    "the function returned without setting a response",
                ));
            }
            // A guest that ended without answering: its error is the answer
            // (given after the completion, so the record is queued first).
            let unanswered = error.clone();
            if error.is_none() && status >= 500 {
                error = Some(InvokeError::new(
                    Cause::ErrorStatus,
                    format!("the function answered with status {status}"),
                ));
            }
            if let Some(e) = &error {
                if e.cause != Cause::ErrorStatus {
                    logs.platform(format!("{}: {}", e.error_type, e.message));
                }
            }
            let max_memory_bytes = store.data().limiter.peak as u64;
            let completion = Completion {
                error: error.clone(),
                status: (status != 0).then_some(status),
                duration: started.elapsed(),
                init_duration: None,
                max_memory_bytes,
                // Taken before the instance can serve anyone else.
                logs: logs.take(),
            };
            // Keep the instance for the next request only when it ended
            // cleanly and has uses left; anything else is thrown away.
            if let (Some(proxy), None) = (finished, &error) {
                if uses + 1 < reuse {
                    if let Ok(mut w) = warm.lock() {
                        if w.len() < MAX_IDLE_INSTANCES {
                            w.push(Warm {
                                store,
                                proxy,
                                uses: uses + 1,
                            });
                        }
                    }
                }
            }
            done.complete(completion);
            if let Some(e) = unanswered {
                answer(&slot, Err(e));
            }
        });

        // The guest runs on the caller's task until it answers; most finish
        // in that same poll, with no task spawned and no thread woken.
        let mut running = Running(Some(guest));
        let answered = std::future::poll_fn(|cx| {
            running.poll(cx);
            Pin::new(&mut response_rx).poll(cx)
        })
        .await;
        // One still running (a streamed body, work after answering) goes on
        // by itself when `running` drops.
        drop(running);
        answered
            .unwrap_or_else(|_| {
                Err(InvokeError::platform(
                    "the function's task ended without an answer",
                ))
            })
            .map(|response| response.map(crate::settle::settle))
    }
}

/// A guest's run, from instantiation to its completion report.
type GuestRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A guest driven by its caller. Dropped before it finishes (it answered
/// and goes on streaming, or the caller went away), the rest of the run is
/// spawned, so it still ends within its timeout and reports its completion.
struct Running(Option<GuestRun>);

impl Running {
    fn poll(&mut self, cx: &mut Context<'_>) {
        let Some(run) = self.0.as_mut() else { return };
        // A panic in the host's part of the run fails this invocation
        // (the answer and the completion report a platform error), not the
        // caller's connection.
        match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(())) => self.0 = None,
            Err(_) => {
                tracing::error!("a guest's run panicked");
                self.0 = None;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(run) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(run)),
            // No runtime to finish on: dropping the run reports a platform
            // error through its `Done`.
            Err(_) => drop(run),
        }
    }
}
