//! One worker: a function's process, the Runtime API it polls, and the
//! task that owns both.
//!
//! Everything about a worker happens in one task (an actor): jobs from the
//! pool, calls from the process through the Runtime API, its output, its
//! exit and its deadlines arrive as events, so there are no locks and the
//! order of events is the order they are handled. Output is drained from
//! the pipes before every Runtime API call is answered: whatever the
//! process wrote before calling is in the pipe by then, so each line is
//! kept under the request id it belongs to.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use wisp_core::clock::{Clock, SystemClock};
use wisp_core::limits::MAX_RUNTIME_API_CONNECTIONS;
use wisp_core::logbuf::{Lines, LogLines};
use wisp_core::runtime::{Body, Completion, Done};
use wisp_core::runtime_api::ErrorDocument;
use wisp_core::streaming::{self, StreamSender};
use wisp_core::Cause;
use wisp_core::{InvokeError, LogStream};

use crate::idle::Idle;
use crate::repoll::Repoll;
use crate::sandbox::{MemoryGauge, WorkerLimits};
use crate::users::WorkerUser;
use crate::{peer, runtime_api};

/// How long a worker may take from start to its first `invocation/next`.
pub(crate) const INIT_LIMIT: Duration = Duration::from_secs(10);

/// What to run for a function version.
#[derive(Debug)]
pub(crate) struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment of the process (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Who the process runs as; `None`: the server's own user.
    pub user: Option<WorkerUser>,
    pub memory_mb: u32,
    pub function_arn: String,
}

/// What the process receives for one invocation.
#[derive(Clone)]
pub(crate) struct Event {
    pub request_id: String,
    pub payload: Bytes,
    pub timeout: Duration,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub trace_id: String,
    /// The ARN the caller named (with its qualifier); else the version's.
    pub function_arn: Option<String>,
}

/// One invocation handed to a worker.
pub(crate) struct Job {
    pub event: Event,
    pub reply: oneshot::Sender<Reply>,
    pub done: Done,
}

/// How a job ended, as soon as it is known.
pub(crate) enum Reply {
    /// The result, and the process's 202 for it, sent when dropped.
    Response(Bytes, Ack),
    /// The function failed; `body` is Lambda's error document.
    FunctionError { body: Bytes },
    /// Stopped by wisp (timeout) or failed in wisp.
    Failed(InvokeError),
    /// The worker went away before the process took the job: run it on
    /// another, with the same completion sender.
    NotStarted(Done),
    /// The result, streamed as the process writes it.
    Stream(http::Response<Body>),
}

/// A Runtime API answer to the process, sent when this is dropped (so it
/// is sent whatever becomes of its holder).
pub(crate) struct Ack(Option<(oneshot::Sender<ApiReply>, ApiReply)>);

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some((tx, reply)) = self.0.take() {
            let _ = tx.send(reply);
        }
    }
}

/// The event an `invocation/next` call receives.
pub(crate) struct NextEvent {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: i64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

/// The Runtime API's answer to a post.
pub(crate) struct ApiReply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl ApiReply {
    fn accepted() -> ApiReply {
        ApiReply {
            status: 202,
            body: json!({ "status": "OK" }),
        }
    }

    pub(crate) fn error(status: u16, error_type: &str, message: impl Into<String>) -> ApiReply {
        ApiReply {
            status,
            body: json!({ "errorType": error_type, "errorMessage": message.into() }),
        }
    }
}

/// A posted body, or why it was refused.
pub(crate) enum Posted {
    Body(Bytes),
    TooLarge,
}

pub(crate) enum Msg {
    Invoke(Job),
    /// Stop quietly (idle for too long, or the version is gone).
    Stop,
    /// Kill now; the current job (if any) fails with this error.
    Kill(InvokeError),
    Next(oneshot::Sender<NextEvent>),
    /// A result; `next` when a `GET /next` follows it on its connection
    /// (the post then is that call too, and its answer waits for the
    /// next event).
    Response {
        request_id: String,
        body: Posted,
        reply: oneshot::Sender<ApiReply>,
        next: Option<oneshot::Sender<NextEvent>>,
    },
    Error {
        request_id: String,
        error_type: Option<String>,
        body: Posted,
        reply: oneshot::Sender<ApiReply>,
        next: Option<oneshot::Sender<NextEvent>>,
    },
    InitError {
        error_type: Option<String>,
        body: Posted,
        reply: oneshot::Sender<ApiReply>,
    },
    /// A result that streams: its chunks go to `body` as they come.
    /// `reply` gets a refusal, or nothing if the stream may go on.
    StreamStart {
        request_id: String,
        content_type: String,
        body: Body,
        sender: StreamSender,
        reply: oneshot::Sender<Option<ApiReply>>,
    },
    /// The streamed result ended (`error`: its trailers' error type and
    /// document).
    StreamEnd {
        request_id: String,
        error: Option<(String, Bytes)>,
        reply: oneshot::Sender<ApiReply>,
        next: Option<oneshot::Sender<NextEvent>>,
    },
}

/// The pool's handle on a worker.
#[derive(Clone)]
pub(crate) struct WorkerHandle {
    pub id: u64,
    tx: mpsc::Sender<Msg>,
}

impl WorkerHandle {
    /// A handle to no worker, and the channel its messages would reach.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64) -> (WorkerHandle, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(1);
        (WorkerHandle { id, tx }, rx)
    }

    /// Hands over a job; gives it back when the worker is gone.
    pub(crate) async fn invoke(&self, job: Job) -> Result<(), Job> {
        self.tx.send(Msg::Invoke(job)).await.map_err(|e| match e.0 {
            Msg::Invoke(job) => job,
            _ => unreachable!("sent an Invoke"),
        })
    }

    pub(crate) fn stop(&self) {
        let _ = self.tx.try_send(Msg::Stop);
    }

    pub(crate) async fn kill(&self, error: InvokeError) {
        let _ = self.tx.send(Msg::Kill(error)).await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// One of the process's output pipes, read without blocking.
struct Pipe {
    fd: Option<AsyncFd<OwnedFd>>,
    stream: LogStream,
}

impl Pipe {
    fn new(fd: OwnedFd, stream: LogStream) -> std::io::Result<Pipe> {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: `OwnedFd` keeps the descriptor open and unchanged for as
        // long as the `AsyncFd` owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Pipe {
            fd: Some(fd),
            stream,
        })
    }

    /// Reads everything available now into `logs`; closes on end of file.
    fn drain(&mut self, logs: &mut LogLines) {
        let mut buf = [0u8; 16 * 1024];
        while let Some(fd) = &self.fd {
            // SAFETY: reading into a local buffer from a non-blocking fd we own.
            let n =
                unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                n if n > 0 => logs.write(self.stream, &buf[..n as usize]),
                0 => self.fd = None,
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            self.fd = None;
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Waits until the pipe has data (never, once closed).
    async fn readable(&self) {
        match &self.fd {
            Some(fd) => match fd.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// The job the process is working on.
struct Current {
    request_id: String,
    reply: Option<oneshot::Sender<Reply>>,
    done: Done,
    started: Instant,
    deadline: Instant,
    finished: Option<Instant>,
    error: Option<InvokeError>,
    init_duration: Option<Duration>,
    /// Where its result streams, once it does.
    stream: Option<StreamSender>,
}

struct Actor {
    id: u64,
    me: WorkerHandle,
    spec: Arc<Spec>,
    idle: Arc<Idle>,
    rx: mpsc::Receiver<Msg>,
    /// The Runtime API's port and the connections the process opened to
    /// it, driven by this task (dropped with it).
    listener: tokio::net::TcpListener,
    connections: FuturesUnordered<BoxFuture<'static, ()>>,
    child: tokio::process::Child,
    pid: u32,
    limits: WorkerLimits,
    memory: MemoryGauge,
    out: Pipe,
    err: Pipe,
    logs: LogLines,
    spawned: Instant,
    /// Set at the first `invocation/next`, taken by the first job.
    init_duration: Option<Duration>,
    initialized: bool,
    init_error: Option<(InvokeError, Bytes)>,
    waiting: Option<oneshot::Sender<NextEvent>>,
    /// A call handed over before the process asked for it, with the time
    /// it may wait.
    queued: Option<(Job, Instant)>,
    current: Option<Current>,
    /// The answer to a post whose pipelined `GET /next` is waiting: sent
    /// just before the next event, so the process reads both in one wake.
    held: Option<Ack>,
}

/// Starts a worker's process and its Runtime API.
pub(crate) async fn spawn(
    id: u64,
    spec: Arc<Spec>,
    limits: WorkerLimits,
    idle: Arc<Idle>,
) -> Result<WorkerHandle, InvokeError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| InvokeError::platform(format!("cannot open a Runtime API port: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| InvokeError::platform(format!("Runtime API port: {e}")))?;

    let mut command = std::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream_name(id))
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    limits
        .apply(&mut command, spec.user)
        .map_err(|e| InvokeError::platform(format!("cannot set up the worker's limits: {e}")))?;
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        InvokeError::unhandled(
            "Runtime.InvalidEntrypoint",
            format!("cannot start `{}`: {e}", spec.program.display()),
        )
    })?;
    let pid = child.id().unwrap_or(0);
    let pipe = |fd: Option<std::io::Result<OwnedFd>>, stream| {
        fd.unwrap_or_else(|| Err(std::io::Error::other("not piped")))
            .and_then(|fd| Pipe::new(fd, stream))
            .map_err(|e| InvokeError::platform(format!("worker output pipe: {e}")))
    };
    let out = pipe(
        child.stdout.take().map(|s| s.into_owned_fd()),
        LogStream::Stdout,
    )?;
    let err = pipe(
        child.stderr.take().map(|s| s.into_owned_fd()),
        LogStream::Stderr,
    )?;

    let (tx, rx) = mpsc::channel(16);
    let me = WorkerHandle { id, tx };
    let actor = Actor {
        id,
        me: me.clone(),
        spec,
        idle,
        rx,
        listener,
        connections: FuturesUnordered::new(),
        child,
        pid,
        memory: limits.memory_gauge(pid),
        limits,
        out,
        err,
        logs: LogLines::default(),
        spawned: Instant::now(),
        init_duration: None,
        initialized: false,
        init_error: None,
        waiting: None,
        queued: None,
        current: None,
        held: None,
    };
    // The connections' messages to the actor and its answers to them wake
    // this same task: it polls on instead of being rescheduled.
    tokio::spawn(Repoll::new(actor.run()));
    Ok(me)
}

/// Lambda's log stream name: `YYYY/MM/DD/[$LATEST]<worker id>`.
fn log_stream_name(id: u64) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}/{:02}/{:02}/[$LATEST]{:032x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        id
    )
}

/// The head of a streamed result; its body comes as the process writes it.
fn streamed_response(content_type: &str, body: Body) -> http::Response<Body> {
    let mut r = http::Response::new(body);
    let h = r.headers_mut();
    let content_type = http::HeaderValue::from_str(content_type)
        .unwrap_or(http::HeaderValue::from_static("application/octet-stream"));
    h.insert(http::header::CONTENT_TYPE, content_type);
    h.insert(streaming::STREAMED, http::HeaderValue::from_static("true"));
    r
}

/// Lambda's error document.
pub(crate) fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

enum Exit {
    /// The process is gone (or killed); the actor ends.
    Done,
}

impl Actor {
    async fn run(mut self) {
        loop {
            let deadline = self.deadline();
            let step = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => self.kill(None).await,
                },
                accepted = self.listener.accept() => {
                    self.connect(accepted).await;
                    None
                }
                Some(()) = self.connections.next(), if !self.connections.is_empty() => None,
                _ = self.out.readable() => { self.out.drain(&mut self.logs); None }
                _ = self.err.readable() => { self.err.drain(&mut self.logs); None }
                status = self.child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    Some(self.exited(status).await)
                }
                _ = sleep_until(deadline) => Some(self.deadline_passed().await),
            };
            if let Some(Exit::Done) = step {
                break;
            }
        }
        self.idle.gone(self.id);
        let limits = self.limits;
        let _ = tokio::task::spawn_blocking(move || limits.remove()).await;
    }

    /// Takes a connection from the process to its Runtime API.
    async fn connect(
        &mut self,
        accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    ) {
        match accepted {
            Ok((stream, peer)) if self.connections.len() < MAX_RUNTIME_API_CONNECTIONS => {
                // Only the worker's own processes may poll its events or
                // answer its calls: anyone else on the host gets a 403.
                let local = self.listener.local_addr().ok();
                let root = self.pid;
                let ours = match local {
                    Some(local) => tokio::task::spawn_blocking(move || {
                        peer::held_by_tree(peer, local, root)
                    })
                    .await
                    .unwrap_or(false),
                    None => false,
                };
                if !ours {
                    tracing::warn!(
                        worker = self.id,
                        %peer,
                        "a process outside the worker connected to its Runtime API; refused"
                    );
                    tokio::spawn(runtime_api::refuse(stream));
                    return;
                }
                let tx = self.me.tx.clone();
                self.connections
                    .push(Box::pin(runtime_api::connection(stream, tx)));
            }
            Ok(_) => tracing::warn!(
                worker = self.id,
                "the process opened more than {MAX_RUNTIME_API_CONNECTIONS} Runtime API connections; refused one"
            ),
            Err(e) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "Runtime API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.initialized {
            return Some(self.spawned + INIT_LIMIT);
        }
        let running = self
            .current
            .as_ref()
            .filter(|c| c.finished.is_none())
            .map(|c| c.deadline);
        // A call waiting for the process to come back waits at most its timeout.
        let queued = self.queued.as_ref().map(|(_, at)| *at);
        running.or(queued)
    }

    fn drain(&mut self) {
        self.out.drain(&mut self.logs);
        self.err.drain(&mut self.logs);
    }

    async fn handle(&mut self, msg: Msg) -> Option<Exit> {
        match msg {
            Msg::Invoke(job) => {
                if let Some((error, body)) = &self.init_error {
                    let (error, body) = (error.clone(), body.clone());
                    self.fail_job(job, error, body);
                    return None;
                }
                match self.waiting.take() {
                    Some(next) => self.start(job, next),
                    None if self.queued.is_none() => {
                        let until = Instant::now() + job.event.timeout;
                        self.queued = Some((job, until));
                    }
                    None => {
                        let _ = job.reply.send(Reply::NotStarted(job.done));
                    }
                }
                None
            }
            Msg::Stop => self.kill(None).await,
            Msg::Kill(error) => self.kill(Some(error)).await,
            Msg::Next(next) => self.next_call(next).await,
            Msg::Response {
                request_id,
                body,
                reply,
                next,
            } => {
                let pipelined = next.is_some();
                if let Err(refusal) = self.answer(&request_id, false) {
                    self.drain();
                    let _ = reply.send(refusal);
                    return None;
                }
                // Idle again before the caller hears the result: a call
                // right behind it finds this worker instead of a cold one.
                self.back_to_idle();
                let current = self.current.as_mut()?; // there: it was just answered
                let ack = match body {
                    Posted::Body(bytes) => {
                        // Unless it waits for the next event, the 202 goes
                        // with the result, sent by the caller's task once
                        // it holds it: the caller's answer is on its way
                        // before the process is woken, and before the
                        // record and its next poll are dealt with here.
                        let ack = Ack(Some((reply, ApiReply::accepted())));
                        let (with_result, ack) = match pipelined {
                            true => (Ack(None), ack),
                            false => (ack, Ack(None)),
                        };
                        if let Some(r) = current.reply.take() {
                            let _ = r.send(Reply::Response(bytes, with_result));
                        }
                        ack
                    }
                    Posted::TooLarge => {
                        let limit = wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
                        let message = format!("Response payload size exceeded maximum allowed payload size ({limit} bytes).");
                        let error = InvokeError::new(Cause::BadResponse, message.clone());
                        current.error = Some(error.clone());
                        if let Some(r) = current.reply.take() {
                            let _ = r.send(Reply::FunctionError {
                                body: error_body("Function.ResponseSizeTooLarge", &message),
                            });
                        }
                        // The process goes on to its next event, like one
                        // that answered.
                        let refusal = ApiReply::error(413, "RequestEntityTooLarge", message);
                        Ack(Some((reply, refusal)))
                    }
                };
                self.answered(ack, next).await
            }
            Msg::Error {
                request_id,
                error_type,
                body,
                reply,
                next,
            } => {
                self.drain();
                if let Err(refusal) = self.answer(&request_id, false) {
                    let _ = reply.send(refusal);
                    return None;
                }
                self.back_to_idle();
                let current = self.current.as_mut()?; // there: it was just answered
                let body = match body {
                    Posted::Body(b) => b,
                    Posted::TooLarge => error_body(
                        "Runtime.ErrorTooLarge",
                        "the error document was larger than the payload limit",
                    ),
                };
                let doc = ErrorDocument::parse(error_type.as_deref(), &body);
                current.error = Some(InvokeError::unhandled(&doc.error_type, doc.message));
                if let Some(r) = current.reply.take() {
                    let _ = r.send(Reply::FunctionError { body });
                }
                self.answered(Ack(Some((reply, ApiReply::accepted()))), next)
                    .await
            }
            Msg::StreamStart {
                request_id,
                content_type,
                body,
                sender,
                reply,
            } => {
                let refusal = match self.current.as_mut() {
                    Some(c)
                        if c.request_id == request_id
                            && c.finished.is_none()
                            && c.stream.is_none() =>
                    {
                        c.stream = Some(sender);
                        if let Some(r) = c.reply.take() {
                            let _ = r.send(Reply::Stream(streamed_response(&content_type, body)));
                        }
                        None
                    }
                    _ => self.answer(&request_id, false).err(),
                };
                let _ = reply.send(refusal);
                None
            }
            Msg::StreamEnd {
                request_id,
                error,
                reply,
                next,
            } => {
                self.drain();
                if let Err(refusal) = self.answer(&request_id, true) {
                    let _ = reply.send(refusal);
                    return None;
                }
                self.back_to_idle();
                let current = self.current.as_mut()?; // there: it was just answered
                current.stream = None;
                if let Some((error_type, body)) = error {
                    let doc = ErrorDocument::parse(Some(&error_type), &body);
                    current.error = Some(InvokeError::unhandled(&doc.error_type, doc.message));
                }
                self.answered(Ack(Some((reply, ApiReply::accepted()))), next)
                    .await
            }
            Msg::InitError {
                error_type,
                body,
                reply,
            } => {
                self.drain();
                if self.initialized {
                    let _ = reply.send(ApiReply::error(
                        403,
                        "InvalidStateTransition",
                        "init/error is only allowed before the first invocation/next",
                    ));
                    return None;
                }
                let body = match body {
                    Posted::Body(b) => b,
                    Posted::TooLarge => error_body("Runtime.InitError", "init failed"),
                };
                let doc = ErrorDocument::parse(error_type.as_deref(), &body);
                self.init_error =
                    Some((InvokeError::unhandled(&doc.error_type, doc.message), body));
                let _ = reply.send(ApiReply::accepted());
                None
            }
        }
    }

    /// The process asks for its next event (`GET /next`, or a result's
    /// post with one pipelined behind it): the job it finished is done.
    async fn next_call(&mut self, next: oneshot::Sender<NextEvent>) -> Option<Exit> {
        self.drain();
        // The finished job's output is taken now; its completion is
        // sent once the next job is on its way.
        let finished = self.current.take().map(|c| (c, self.logs.take()));
        if !self.initialized {
            self.initialized = true;
            // A worker started for a call makes that call cold; one
            // started ahead (provisioned) does not make anyone wait.
            if self.queued.is_some() {
                self.init_duration = Some(self.spawned.elapsed());
            }
        }
        match self.queued.take() {
            Some((job, _)) => self.start(job, next),
            None => self.waiting = Some(next),
        }
        if let Some((current, logs)) = finished {
            self.complete(current, logs);
        }
        if self.waiting.is_some() && !self.idle.push(self.me.clone()) {
            return self.kill(None).await;
        }
        None
    }

    /// The current job's result or error is taken. With a pipelined
    /// `GET /next` the post's answer `ack` waits for the next event, and
    /// the post counts as that call; otherwise `ack` is sent now and the
    /// process's own `GET /next` follows.
    async fn answered(
        &mut self,
        ack: Ack,
        next: Option<oneshot::Sender<NextEvent>>,
    ) -> Option<Exit> {
        match next {
            Some(next) => {
                self.held = Some(ack);
                self.next_call(next).await
            }
            None => {
                self.drain();
                drop(ack);
                None
            }
        }
    }

    /// Offers the worker for the next call as soon as it has answered: a
    /// call that comes before the process is back in `invocation/next`
    /// waits for it here instead of starting a cold worker. (If the process
    /// dies first, the waiting call moves to another worker.)
    fn back_to_idle(&mut self) {
        if !self.idle.push(self.me.clone()) {
            self.me.stop();
        }
    }

    /// The current job, if `request_id` names it and it is still unanswered
    /// (by a stream that ended, if `streamed`).
    fn answer(&mut self, request_id: &str, streamed: bool) -> Result<&mut Current, ApiReply> {
        let Some(c) = self.current.as_mut().filter(|c| c.request_id == request_id) else {
            return Err(ApiReply::error(
                400,
                "InvalidRequestID",
                format!("{request_id} is not the current invocation of this runtime"),
            ));
        };
        if c.finished.is_some() {
            return Err(ApiReply::error(
                400,
                "InvalidStateTransition",
                format!("invocation {request_id} has already been answered"),
            ));
        }
        if c.stream.is_some() != streamed {
            return Err(ApiReply::error(
                400,
                "InvalidStateTransition",
                match streamed {
                    true => format!("invocation {request_id} is not streaming its response"),
                    false => format!("invocation {request_id} is streaming its response; an error goes in its trailers"),
                },
            ));
        }
        c.finished = Some(Instant::now());
        Ok(c)
    }

    /// Hands `job` to the process waiting in `invocation/next`.
    fn start(&mut self, job: Job, next: oneshot::Sender<NextEvent>) {
        self.idle.remove(self.id);
        let now = Instant::now();
        let Job { event, reply, done } = job;
        let timeout = event.timeout;
        let request_id = event.request_id.clone();
        let next_event = NextEvent {
            request_id: event.request_id,
            payload: event.payload,
            deadline_ms: SystemClock.now_ms() + timeout.as_millis() as i64,
            function_arn: event
                .function_arn
                .unwrap_or_else(|| self.spec.function_arn.clone()),
            trace_id: event.trace_id,
            client_context: event.client_context,
            cognito_identity: event.cognito_identity,
        };
        // A held answer leaves first, in the same turn as the event.
        drop(self.held.take());
        if next.send(next_event).is_err() {
            // The process gave up its `next` call (it is exiting): another
            // worker can run the job.
            let _ = reply.send(Reply::NotStarted(done));
            return;
        }
        self.current = Some(Current {
            request_id,
            reply: Some(reply),
            done,
            started: now,
            deadline: now + timeout,
            finished: None,
            error: None,
            init_duration: self.init_duration.take(),
            stream: None,
        });
    }

    /// Sends the finished job's completion (its logs are drained by now).
    fn finish_current(&mut self) {
        if let Some(current) = self.current.take() {
            let logs = self.logs.take();
            self.complete(current, logs);
        }
    }

    /// Sends a finished job's completion with the output it wrote.
    fn complete(&self, current: Current, logs: Lines) {
        let ended = current.finished.unwrap_or_else(Instant::now);
        let completion = Completion {
            error: current.error,
            status: None,
            duration: ended.saturating_duration_since(current.started),
            init_duration: current.init_duration,
            max_memory_bytes: self.memory.peak_bytes(),
            logs,
        };
        current.done.complete(completion);
    }

    fn fail_job(&mut self, job: Job, error: InvokeError, body: Bytes) {
        self.logs
            .platform(&format!("{}: {}", error.error_type, error.message));
        let _ = job.reply.send(Reply::FunctionError { body });
        job.done.complete(Completion {
            error: Some(error),
            init_duration: self.init_duration.take().or(Some(self.spawned.elapsed())),
            max_memory_bytes: self.memory.peak_bytes(),
            logs: self.logs.take(),
            ..Completion::default()
        });
    }

    /// Fails whatever is in flight with `error` (its body made from it).
    fn fail_in_flight(&mut self, error: InvokeError) {
        if let Some(mut current) = self.current.take() {
            if current.finished.is_none() {
                current.finished = Some(Instant::now());
                self.logs
                    .platform(&format!("{}: {}", error.error_type, error.message));
                current.error = Some(error.clone());
                if let Some(stream) = current.stream.take() {
                    // The caller has the head: the error ends its body.
                    let doc = error_body(error.lambda_error_type(), &error.message);
                    stream.try_trailers(streaming::error_trailers(error.lambda_error_type(), &doc));
                }
                if let Some(r) = current.reply.take() {
                    let _ = r.send(if error.cause == Cause::Timeout {
                        Reply::Failed(error.clone())
                    } else {
                        Reply::FunctionError {
                            body: error_body(error.lambda_error_type(), &error.message),
                        }
                    });
                }
            }
            self.current = Some(current);
            self.finish_current();
        }
        if let Some((job, _)) = self.queued.take() {
            if self.initialized {
                // It never reached the process: another worker can run it.
                let _ = job.reply.send(Reply::NotStarted(job.done));
            } else {
                let (error, body) = match self.init_error.take() {
                    Some(init) => init,
                    None => (
                        error.clone(),
                        error_body(error.lambda_error_type(), &error.message),
                    ),
                };
                self.fail_job(job, error, body);
            }
        }
    }

    /// The process exited on its own (crashed, or was OOM-killed).
    async fn exited(&mut self, status: String) -> Exit {
        self.drain();
        // Children that outlived it must not linger.
        self.limits.kill_all(self.pid as i32);
        let oom = self.limits.oom_killed()
            || (self.limits.limited_by_rlimit() && looks_out_of_memory(&self.logs));
        let error = if oom {
            InvokeError::new(
                Cause::OutOfMemory,
                format!(
                    "Runtime exited with error: {status}: the function ran out of memory (limit {} MB)",
                    self.spec.memory_mb
                ),
            )
        } else {
            InvokeError::unhandled(
                "Runtime.ExitError",
                format!("Runtime exited with error: {status}"),
            )
        };
        self.fail_in_flight(error);
        Exit::Done
    }

    async fn deadline_passed(&mut self) -> Exit {
        let error = if !self.initialized {
            InvokeError::unhandled(
                "Runtime.InitTimeout",
                format!(
                    "the runtime did not start polling for invocations within {}s",
                    INIT_LIMIT.as_secs()
                ),
            )
        } else if let Some(c) = self.current.as_ref().filter(|c| c.finished.is_none()) {
            let timeout = c.deadline - c.started;
            InvokeError::new(
                Cause::Timeout,
                format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
            )
        } else {
            // The process answered but never came back for the next call;
            // the waiting call moves to another worker.
            InvokeError::platform("the runtime did not ask for its next invocation in time")
        };
        self.kill(Some(error)).await.unwrap_or(Exit::Done)
    }

    /// Kills the process group (and cgroup), fails what is in flight.
    async fn kill(&mut self, error: Option<InvokeError>) -> Option<Exit> {
        self.idle.remove(self.id);
        self.limits.kill_all(self.pid as i32);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.drain();
        let error = error.unwrap_or_else(|| {
            InvokeError::platform("the worker was stopped while an invocation was in flight")
        });
        self.fail_in_flight(error);
        Some(Exit::Done)
    }
}

/// Under rlimits there is no kernel OOM report: read the runtime's own words.
fn looks_out_of_memory(logs: &LogLines) -> bool {
    logs.mentions(&[
        "JavaScript heap out of memory",
        "MemoryError",
        "memory allocation of",
        "Cannot allocate memory",
        "out of memory",
    ])
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
