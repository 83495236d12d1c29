//! The durable async queue. An accepted event is in the store, synced to
//! disk, before its caller hears 202: acceptances are batched into one
//! transaction each (group commit). A delivery loop leases due events per
//! function within its concurrency headroom, invokes them, and settles
//! each outcome by the function's async policy: done (on-success
//! destination), retry with backoff and full jitter, or give up (on-failure
//! destination, else kept as a failed event). Settlements are batched too.
//! A crash loses no accepted event: leases die with the process and
//! `recover_queue` hands them out again (at-least-once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use wisp_core::async_invoke::{
    destination_record, next_step, AsyncPolicy, Attempt, Backoff, Condition, Destination,
    EventState, Next, Response,
};
use wisp_core::clock::Rng;
use wisp_core::function::LATEST;
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime::collect_limited;
use wisp_core::Cause;
use wisp_core::DeliveryAttempt;
use wisp_store::{
    setting_kinds, Claim, Enqueued, FailedEvent, KeyOutcome, NewEvent, QueuedEvent, Settle,
    Settlement, StoreError,
};

use crate::idempotent::StoredResponse;
use crate::{Dispatcher, Permit};

/// Most events leased for one function at a time.
const LEASE_BATCH: usize = 64;
/// Most events accepted in one transaction.
const ACCEPT_BATCH: usize = 4096;
/// Most settlements applied in one transaction.
const SETTLE_BATCH: usize = 1024;
/// How long a function without headroom waits before it is looked at again.
const BLOCKED_RECHECK_MS: i64 = 1000;
/// Events of a function without headroom leased anyway, to be throttled
/// (their backoff grows) and aged out when their time comes.
const BLOCKED_LEASE: usize = 16;

/// How the queue runs.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub backoff: Backoff,
    /// Most deliveries running at once, over all functions.
    pub max_in_flight: usize,
    /// The region in ARNs of destination records.
    pub region: String,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            backoff: Backoff::default(),
            max_in_flight: 64,
            region: "us-east-1".into(),
        }
    }
}

/// An event to accept.
#[derive(Debug, Clone)]
pub struct AsyncRequest {
    pub function: String,
    /// `$LATEST`, a version or an alias.
    pub qualifier: String,
    pub payload: Bytes,
    /// Who sent it (`api`, `destination`, later `schedule`).
    pub source: String,
    /// The ARN the caller used, for `context.invokedFunctionArn`.
    pub invoked_arn: String,
    pub client_context: Option<String>,
    pub idempotency_key: Option<String>,
}

/// How an event was invoked, kept with it on the queue.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct EventContext {
    source: String,
    invoked_arn: String,
    client_context: Option<String>,
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub request_id: String,
    /// Its idempotency key was already accepted: this is the first event's
    /// request id, and nothing new was queued.
    pub duplicate: bool,
}

/// Why an event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("Function not found: {0}")]
    NoFunction(String),
    #[error("the queue cannot store the event: {0}")]
    Store(String),
}

/// Counts since start, per function.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub accepted: u64,
    pub duplicates: u64,
    pub succeeded: u64,
    pub retries: u64,
    pub throttles: u64,
    pub to_on_success: u64,
    pub to_on_failure: u64,
    /// Given up with no destination: kept as failed events.
    pub kept_failed: u64,
}

/// A function's queue as `describe` and `/wisp/v1` show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionQueue {
    pub function: String,
    pub depth: u64,
    pub oldest_age_ms: Option<i64>,
    pub failed: u64,
    #[serde(flatten)]
    pub counters: Counters,
}

type AcceptReply = oneshot::Sender<Result<Enqueued, String>>;

/// The queue and its delivery loop.
/// Where records for queue destinations go: the SQS engine, which sits
/// above this crate and is handed in by the server.
#[async_trait::async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// Sends `body` to the queue `name`, durably before it returns; an
    /// error says why it could not.
    async fn send(&self, name: &str, body: String) -> Result<(), String>;
}

pub struct AsyncQueue {
    dispatcher: Arc<Dispatcher>,
    sink: std::sync::OnceLock<Arc<dyn MessageSink>>,
    options: QueueOptions,
    rng: Arc<dyn Rng>,
    accept_tx: mpsc::Sender<(NewEvent, AcceptReply)>,
    settle_tx: mpsc::UnboundedSender<Settlement>,
    /// Functions with unleased events, and when the first is due.
    pending: Mutex<HashMap<String, i64>>,
    wake: Notify,
    slots: Arc<Semaphore>,
    counters: Mutex<HashMap<String, Counters>>,
}

impl AsyncQueue {
    /// Where records for queue destinations go (set once).
    pub fn set_message_sink(&self, sink: Arc<dyn MessageSink>) {
        let _ = self.sink.set(sink);
    }

    /// Recovers the queue left by the last run and starts delivering.
    pub async fn start(
        dispatcher: Arc<Dispatcher>,
        options: QueueOptions,
        rng: Arc<dyn Rng>,
    ) -> Result<Arc<AsyncQueue>, StoreError> {
        let pending = dispatcher.store().recover_queue().await?;
        if !pending.is_empty() {
            tracing::info!(functions = pending.len(), "resuming the async queue");
        }
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BATCH * 4);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let queue = Arc::new(AsyncQueue {
            dispatcher,
            sink: std::sync::OnceLock::new(),
            slots: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            options,
            rng,
            accept_tx,
            settle_tx,
            pending: Mutex::new(pending.into_iter().collect()),
            wake: Notify::new(),
            counters: Mutex::new(HashMap::new()),
        });
        tokio::spawn(queue.clone().accept_loop(accept_rx));
        tokio::spawn(queue.clone().settle_loop(settle_rx));
        tokio::spawn(queue.clone().delivery_loop());
        tokio::spawn(queue.clone().gauge_loop());
        Ok(queue)
    }

    /// Stores an event durably; returns once it is on disk.
    pub async fn accept(&self, request: AsyncRequest) -> Result<Accepted, AcceptError> {
        let now = self.dispatcher.now_ms();
        let request_id = wisp_core::new_request_id();
        let context = EventContext {
            source: request.source,
            invoked_arn: request.invoked_arn,
            client_context: request.client_context,
        };
        let event = NewEvent {
            request_id: request_id.clone(),
            function: request.function.clone(),
            qualifier: request.qualifier,
            payload: request.payload.to_vec(),
            context: serde_json::to_string(&context).unwrap_or_default(),
            idempotency_key: request.idempotency_key,
            enqueued_ms: now,
            due_ms: now,
        };
        let (tx, rx) = oneshot::channel();
        self.accept_tx
            .send((event, tx))
            .await
            .map_err(|_| AcceptError::Store("the queue has stopped".into()))?;
        let answer = rx
            .await
            .map_err(|_| AcceptError::Store("the queue has stopped".into()))?
            .map_err(AcceptError::Store)?;
        let counted = |c: &mut Counters| match &answer {
            Enqueued::Accepted => c.accepted += 1,
            Enqueued::Duplicate { .. } => c.duplicates += 1,
            Enqueued::NoFunction => {}
        };
        self.count(&request.function, counted);
        match answer {
            Enqueued::Accepted => {
                metrics::counter!("wisp_async_accepted_total", "function" => request.function)
                    .increment(1);
                Ok(Accepted {
                    request_id,
                    duplicate: false,
                })
            }
            Enqueued::Duplicate { request_id } => {
                metrics::counter!("wisp_async_duplicates_total", "function" => request.function)
                    .increment(1);
                Ok(Accepted {
                    request_id,
                    duplicate: true,
                })
            }
            Enqueued::NoFunction => Err(AcceptError::NoFunction(request.function)),
        }
    }

    /// Queue depth, oldest event and counters of one function or all.
    pub async fn stats(&self, function: Option<&str>) -> Result<Vec<FunctionQueue>, StoreError> {
        let stored = self.dispatcher.store().queue_stats().await?;
        let now = self.dispatcher.now_ms();
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let mut names: Vec<String> = stored
            .iter()
            .map(|s| s.function.clone())
            .chain(counters.keys().cloned())
            .collect::<HashSet<_>>()
            .into_iter()
            .filter(|f| function.is_none_or(|only| only == f))
            .collect();
        if let Some(only) = function {
            if names.is_empty() {
                names.push(only.to_string());
            }
        }
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| {
                let s = stored.iter().find(|s| s.function == name);
                FunctionQueue {
                    depth: s.map(|s| s.depth).unwrap_or(0),
                    oldest_age_ms: s.and_then(|s| s.oldest_enqueued_ms).map(|t| now - t),
                    failed: s.map(|s| s.failed).unwrap_or(0),
                    counters: counters.get(&name).cloned().unwrap_or_default(),
                    function: name,
                }
            })
            .collect())
    }

    fn count(&self, function: &str, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(c.entry(function.to_string()).or_default());
        }
    }

    /// Another node queued events for `function`: look at them now.
    pub fn notice(&self, function: &str) {
        self.note_pending(function, self.dispatcher.now_ms());
    }

    fn note_pending(&self, function: &str, due_ms: i64) {
        if let Ok(mut p) = self.pending.lock() {
            let due = p.entry(function.to_string()).or_insert(due_ms);
            *due = (*due).min(due_ms);
        }
        self.wake.notify_one();
    }

    async fn accept_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(NewEvent, AcceptReply)>) {
        let mut batch = Vec::with_capacity(ACCEPT_BATCH);
        while rx.recv_many(&mut batch, ACCEPT_BATCH).await > 0 {
            let (events, replies): (Vec<NewEvent>, Vec<AcceptReply>) = batch.drain(..).unzip();
            let due: Vec<(String, i64)> = events
                .iter()
                .map(|e| (e.function.clone(), e.due_ms))
                .collect();
            let now = self.dispatcher.now_ms();
            match self.dispatcher.store().enqueue_events(events, now).await {
                Ok(answers) => {
                    for ((reply, answer), (function, due_ms)) in
                        replies.into_iter().zip(answers).zip(due)
                    {
                        if answer == Enqueued::Accepted {
                            self.note_pending(&function, due_ms);
                        }
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store async events");
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    async fn settle_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Settlement>) {
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
            let settlements: Vec<Settlement> = std::mem::take(&mut batch);
            let mut delay = Duration::from_millis(100);
            // A failed write is retried: the events stay leased meanwhile,
            // and a crash hands them out again.
            while let Err(e) = self
                .dispatcher
                .store()
                .settle_events(settlements.clone())
                .await
            {
                tracing::error!(error = %e, "cannot settle async events; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            for s in &settlements {
                if let Some((function, key, _)) = &s.key {
                    self.dispatcher.waiters().wake(function, key);
                }
                for f in &s.follow_ups {
                    self.note_pending(&f.function, f.due_ms);
                }
            }
            self.wake.notify_one();
        }
    }

    async fn delivery_loop(self: Arc<Self>) {
        loop {
            let now = self.dispatcher.now_ms();
            let due: Vec<String> = self
                .pending
                .lock()
                .map(|p| {
                    p.iter()
                        .filter(|(_, d)| **d <= now)
                        .map(|(f, _)| f.clone())
                        .collect()
                })
                .unwrap_or_default();
            for function in due {
                if self.slots.available_permits() == 0 {
                    break;
                }
                if let Err(e) = self.lease(&function, now).await {
                    tracing::error!(function = %function, error = %e, "cannot lease async events");
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(function, now + BLOCKED_RECHECK_MS);
                    }
                }
            }
            let next = self
                .pending
                .lock()
                .ok()
                .and_then(|p| p.values().min().copied());
            let wait = match next {
                _ if self.slots.available_permits() == 0 => Duration::from_secs(1),
                Some(at) => {
                    Duration::from_millis((at - self.dispatcher.now_ms()).clamp(0, 1000) as u64)
                }
                None => Duration::from_secs(1),
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Leases what `function` can take now and starts delivering it.
    async fn lease(self: &Arc<Self>, function: &str, now: i64) -> Result<(), StoreError> {
        let headroom = self.dispatcher.concurrency().headroom(function);
        let free = self.slots.available_permits();
        let limit = if headroom == 0 {
            BLOCKED_LEASE
        } else {
            headroom.min(LEASE_BATCH)
        }
        .min(free);
        let (events, next) = self
            .dispatcher
            .store()
            .lease_events(function, now, limit)
            .await?;
        if let Ok(mut p) = self.pending.lock() {
            match next {
                Some(n) if headroom == 0 => {
                    p.insert(function.to_string(), n.max(now + BLOCKED_RECHECK_MS))
                }
                Some(n) => p.insert(function.to_string(), n),
                None => p.remove(function),
            };
        }
        for event in events {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                // Cannot happen (only this loop takes slots); keep it anyway.
                self.settle(event_retry(&event, now, event.errors, event.throttles));
                continue;
            };
            tokio::spawn(self.clone().deliver(event, slot));
        }
        Ok(())
    }

    fn settle(&self, s: Settlement) {
        if self.settle_tx.send(s).is_err() {
            tracing::error!("the settle loop has stopped");
        }
    }

    async fn policy(&self, function: &str, qualifier: &str) -> AsyncPolicy {
        let store = self.dispatcher.store();
        for q in [qualifier, LATEST] {
            if let Ok(Some(v)) = store
                .get_setting(function, setting_kinds::EVENT_INVOKE, q)
                .await
            {
                return AsyncPolicy::from_event_invoke(&v);
            }
        }
        AsyncPolicy::default()
    }

    async fn deliver(self: Arc<Self>, event: QueuedEvent, slot: OwnedSemaphorePermit) {
        let policy = self.policy(&event.function, &event.qualifier).await;
        let state = EventState {
            enqueued_ms: event.enqueued_ms,
            errors: event.errors,
            throttles: event.throttles,
        };
        let last: Option<Response> = event
            .last_response
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let now = self.dispatcher.now_ms();
        if state.expired(&policy, now) {
            let s = self
                .give_up(&event, &policy, Condition::EventAgeExceeded, last.as_ref())
                .await;
            self.settle(s);
            return;
        }

        let mut key = None;
        let mut permit = None;
        let mut throttled = false;
        if event.idempotency_key.is_some() {
            // The slot comes first: a key is only claimed by a run that
            // starts now, so a crash never strands it on a throttled one.
            match self.dispatcher.admit(&event.function) {
                Ok(p) => permit = Some(p),
                Err(_) => throttled = true,
            }
        }
        if let Some(k) = event.idempotency_key.as_ref().filter(|_| !throttled) {
            let ttl = self
                .dispatcher
                .idempotency(&event.function)
                .await
                .map(|c| c.ttl)
                .unwrap_or(Duration::from_secs(3600));
            let claim = self
                .dispatcher
                .store()
                .claim_key(
                    &event.function,
                    k,
                    &event.request_id,
                    now,
                    now + ttl.as_millis() as i64,
                )
                .await;
            match claim {
                Ok(Claim::Claimed) => key = Some((k.clone(), ttl)),
                // Someone already ran it: this event is done.
                Ok(Claim::Done { .. }) => {
                    self.count(&event.function, |c| c.succeeded += 1);
                    self.settle(Settlement {
                        id: event.id,
                        settle: Settle::Remove,
                        follow_ups: vec![],
                        failed: None,
                        key: None,
                    });
                    return;
                }
                // Its run was cut off by a crash: it may have had its
                // effects, so it is not run again but given up, visibly.
                Ok(Claim::Interrupted { .. }) => {
                    let s = self
                        .give_up(&event, &policy, Condition::Interrupted, last.as_ref())
                        .await;
                    self.settle(s);
                    return;
                }
                // A call with the key is running: look again later.
                Ok(Claim::Running { .. }) | Err(_) => {
                    let due = now
                        + self
                            .options
                            .backoff
                            .delay_ms(event.throttles, &*self.rng)
                            .max(100);
                    self.settle(event_retry(&event, due, event.errors, event.throttles));
                    return;
                }
            }
        }

        let (attempt, response) = if throttled {
            (Attempt::Throttled, None)
        } else {
            self.attempt(&event, permit).await
        };
        drop(slot);
        self.wake.notify_one();
        let now = self.dispatcher.now_ms();
        let next = next_step(
            &policy,
            &self.options.backoff,
            state,
            attempt,
            now,
            &*self.rng,
        );
        let release = |k: &Option<(String, Duration)>| {
            k.as_ref()
                .map(|(k, _)| (event.function.clone(), k.clone(), KeyOutcome::Release))
        };
        let settlement = match next {
            Next::Done => {
                self.count(&event.function, |c| c.succeeded += 1);
                let mut follow_ups = vec![];
                let mut failed = None;
                if let Some(dest) = &policy.on_success {
                    let record = self.record(&event, Condition::Success, response.as_ref());
                    match self.follow_up(dest, record, now).await {
                        Ok(event) => follow_ups.extend(event),
                        Err(kept) => failed = Some(self.kept(&event, kept, now)),
                    }
                    self.count(&event.function, |c| c.to_on_success += 1);
                    metrics::counter!("wisp_async_destination_deliveries_total", "function" => event.function.clone(), "destination" => "on_success").increment(1);
                }
                let key = key.map(|(k, ttl)| {
                    let json = http::HeaderMap::from_iter([(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    )]);
                    let stored = response.as_ref().map(|r| {
                        StoredResponse::new(r.status, &json, &r.payload, &r.executed_version)
                    });
                    (
                        event.function.clone(),
                        k,
                        KeyOutcome::Done {
                            result: serde_json::to_vec(&stored).unwrap_or_default(),
                            expires_ms: now + ttl.as_millis() as i64,
                        },
                    )
                });
                Settlement {
                    id: event.id,
                    settle: Settle::Remove,
                    follow_ups,
                    failed,
                    key,
                }
            }
            Next::RetryAt(due) => {
                let (errors, throttles) = match attempt {
                    Attempt::Throttled => {
                        self.count(&event.function, |c| c.throttles += 1);
                        metrics::counter!("wisp_async_throttles_total", "function" => event.function.clone()).increment(1);
                        (event.errors, event.throttles + 1)
                    }
                    _ => {
                        self.count(&event.function, |c| c.retries += 1);
                        metrics::counter!("wisp_async_retries_total", "function" => event.function.clone()).increment(1);
                        (event.errors + 1, event.throttles)
                    }
                };
                let mut s = event_retry(&event, due, errors, throttles);
                if let Settle::Retry { last_response, .. } = &mut s.settle {
                    *last_response = response
                        .as_ref()
                        .and_then(|r| serde_json::to_string(r).ok())
                        .or(event.last_response.clone());
                }
                s.key = release(&key);
                if let Ok(mut p) = self.pending.lock() {
                    let d = p.entry(event.function.clone()).or_insert(due);
                    *d = (*d).min(due);
                }
                s
            }
            Next::GiveUp(condition) => {
                let errors = if attempt == Attempt::FunctionError {
                    event.errors + 1
                } else {
                    event.errors
                };
                let counted = QueuedEvent {
                    errors,
                    ..event.clone()
                };
                let mut s = self
                    .give_up(
                        &counted,
                        &policy,
                        condition,
                        response.as_ref().or(last.as_ref()),
                    )
                    .await;
                s.key = release(&key);
                s
            }
        };
        self.settle(settlement);
    }

    /// One invocation of the event's function, in `permit`'s slot if one
    /// was taken already.
    async fn attempt(
        &self,
        event: &QueuedEvent,
        permit: Option<Permit>,
    ) -> (Attempt, Option<Response>) {
        let context: EventContext = serde_json::from_str(&event.context).unwrap_or_default();
        let error = |version: &str, message: String| {
            Response {
            status: 200,
            executed_version: version.to_string(),
            function_error: true,
            payload: serde_json::json!({ "errorMessage": message, "errorType": "ResourceNotFoundException" })
                .to_string()
                .into_bytes(),
        }
        };
        let version = match self
            .dispatcher
            .resolve_for_invoke(&event.function, Some(&event.qualifier))
            .await
        {
            Ok(v) => v,
            Err(crate::ResolveError::NotFound(m)) => {
                return (Attempt::FunctionError, Some(error(&event.qualifier, m)))
            }
            Err(crate::ResolveError::Store(_)) => return (Attempt::Throttled, None),
        };
        let Ok(mut request) = crate::invocation_request(
            Bytes::from(event.payload.clone()),
            &context.invoked_arn,
            context.client_context.as_deref(),
        ) else {
            return (Attempt::FunctionError, None);
        };
        // Throttled attempts never ran: the record counts the runs.
        request
            .extensions_mut()
            .insert(DeliveryAttempt(event.errors + 1));
        let trigger = format!("event:{}", context.source);
        let request_id = event.request_id.clone();
        let dispatched = match permit {
            Some(permit) => {
                self.dispatcher
                    .invoke_admitted(&version, request, &trigger, request_id, permit)
                    .await
            }
            None => {
                self.dispatcher
                    .invoke_with_id(&version, request, &trigger, request_id)
                    .await
            }
        };
        let executed = dispatched.version.clone();
        match dispatched.response {
            Ok(r) => {
                let status = r.status();
                match collect_limited(r.into_body(), MAX_SYNC_PAYLOAD_BYTES).await {
                    Ok(payload) => {
                        let failed = status.is_server_error();
                        let response = Response {
                            status: 200,
                            executed_version: executed,
                            function_error: failed,
                            payload: payload.to_vec(),
                        };
                        let attempt = if failed {
                            Attempt::FunctionError
                        } else {
                            Attempt::Success
                        };
                        (attempt, Some(response))
                    }
                    Err(e) => (
                        Attempt::FunctionError,
                        Some(error(
                            &executed,
                            format!("the function's response failed: {e}"),
                        )),
                    ),
                }
            }
            Err(e) if e.cause.is_throttle() || e.cause == Cause::Platform => {
                (Attempt::Throttled, None)
            }
            Err(e) => {
                let message = format!("RequestId: {} Error: {}", event.request_id, e.message);
                let payload =
                    serde_json::json!({ "errorMessage": message, "errorType": e.error_type });
                (
                    Attempt::FunctionError,
                    Some(Response {
                        status: 200,
                        executed_version: executed,
                        function_error: true,
                        payload: payload.to_string().into_bytes(),
                    }),
                )
            }
        }
    }

    fn record(
        &self,
        event: &QueuedEvent,
        condition: Condition,
        response: Option<&Response>,
    ) -> serde_json::Value {
        let arn = Destination::Function {
            function: event.function.clone(),
            qualifier: Some(event.qualifier.clone()),
        }
        .arn(&self.options.region);
        let count = match condition {
            Condition::Success => event.errors + 1,
            _ => event.errors,
        };
        destination_record(
            &event.request_id,
            &arn,
            condition,
            count,
            self.dispatcher.now_ms(),
            &event.payload,
            response,
        )
    }

    /// Delivers a destination record: to a function as an event of its
    /// own (stored with the settlement), or to a queue as a message (sent
    /// now, before the settlement: at-least-once). `Err` hands back the
    /// record, with why, when the queue could not take it.
    async fn follow_up(
        &self,
        dest: &Destination,
        record: serde_json::Value,
        now: i64,
    ) -> Result<Option<NewEvent>, (serde_json::Value, String)> {
        let (function, qualifier) = match dest {
            Destination::Function {
                function,
                qualifier,
            } => (function, qualifier),
            Destination::Queue { name } => {
                let Some(sink) = self.sink.get() else {
                    return Err((record, "queues are not available".into()));
                };
                return match sink.send(name, record.to_string()).await {
                    Ok(()) => Ok(None),
                    Err(e) => Err((record, format!("queue {name}: {e}"))),
                };
            }
        };
        let context = EventContext {
            source: "destination".into(),
            invoked_arn: dest.arn(&self.options.region),
            client_context: None,
        };
        Ok(Some(NewEvent {
            request_id: wisp_core::new_request_id(),
            function: function.clone(),
            qualifier: qualifier.clone().unwrap_or_else(|| LATEST.into()),
            payload: record.to_string().into_bytes(),
            context: serde_json::to_string(&context).unwrap_or_default(),
            idempotency_key: None,
            enqueued_ms: now,
            due_ms: now,
        }))
    }

    /// A record no destination could take, kept as a failed event.
    fn kept(
        &self,
        event: &QueuedEvent,
        (record, why): (serde_json::Value, String),
        now: i64,
    ) -> FailedEvent {
        tracing::warn!(function = %event.function, request_id = %event.request_id, error = %why, "destination refused a record; kept as a failed event");
        self.count(&event.function, |c| c.kept_failed += 1);
        FailedEvent {
            request_id: event.request_id.clone(),
            function: event.function.clone(),
            failed_ms: now,
            record: record.to_string(),
        }
    }

    /// The settlement of an event given up: to the on-failure destination,
    /// else kept as a failed event. Never dropped.
    async fn give_up(
        &self,
        event: &QueuedEvent,
        policy: &AsyncPolicy,
        condition: Condition,
        response: Option<&Response>,
    ) -> Settlement {
        let now = self.dispatcher.now_ms();
        let record = self.record(event, condition, response);
        tracing::info!(function = %event.function, request_id = %event.request_id, condition = condition.as_str(), "async event given up");
        let (follow_ups, failed) = match &policy.on_failure {
            Some(dest) => {
                self.count(&event.function, |c| c.to_on_failure += 1);
                metrics::counter!("wisp_async_destination_deliveries_total", "function" => event.function.clone(), "destination" => "on_failure").increment(1);
                match self.follow_up(dest, record, now).await {
                    Ok(follow_up) => (follow_up.into_iter().collect(), None),
                    Err(kept) => (vec![], Some(self.kept(event, kept, now))),
                }
            }
            None => {
                self.count(&event.function, |c| c.kept_failed += 1);
                metrics::counter!("wisp_async_destination_deliveries_total", "function" => event.function.clone(), "destination" => "failed").increment(1);
                (
                    vec![],
                    Some(FailedEvent {
                        request_id: event.request_id.clone(),
                        function: event.function.clone(),
                        failed_ms: now,
                        record: record.to_string(),
                    }),
                )
            }
        };
        Settlement {
            id: event.id,
            settle: Settle::Remove,
            follow_ups,
            failed,
            key: None,
        }
    }

    /// Publishes queue depth, oldest age and failed counts as gauges.
    async fn gauge_loop(self: Arc<Self>) {
        let mut seen = HashSet::new();
        loop {
            if let Ok(stats) = self.dispatcher.store().queue_stats().await {
                let now = self.dispatcher.now_ms();
                let mut present = HashSet::new();
                for s in stats {
                    let age = s.oldest_enqueued_ms.map(|t| (now - t) as f64 / 1000.0);
                    metrics::gauge!("wisp_async_queue_depth", "function" => s.function.clone())
                        .set(s.depth as f64);
                    metrics::gauge!("wisp_async_oldest_event_age_seconds", "function" => s.function.clone())
                        .set(age.unwrap_or(0.0));
                    metrics::gauge!("wisp_async_failed_events", "function" => s.function.clone())
                        .set(s.failed as f64);
                    present.insert(s.function);
                }
                for gone in seen.difference(&present) {
                    let f: &String = gone;
                    metrics::gauge!("wisp_async_queue_depth", "function" => f.clone()).set(0.0);
                    metrics::gauge!("wisp_async_oldest_event_age_seconds", "function" => f.clone())
                        .set(0.0);
                    metrics::gauge!("wisp_async_failed_events", "function" => f.clone()).set(0.0);
                }
                seen = present;
            }
            // Counting walks an index of the whole queue: not too often.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

fn event_retry(event: &QueuedEvent, due_ms: i64, errors: u32, throttles: u32) -> Settlement {
    Settlement {
        id: event.id,
        settle: Settle::Retry {
            due_ms,
            errors,
            throttles,
            last_response: event.last_response.clone(),
        },
        follow_ups: vec![],
        failed: None,
        key: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use serde_json::json;
    use wisp_core::clock::Clock;
    use wisp_core::{FunctionConfig, FunctionVersion};
    use wisp_store::{Setting, SqliteStore, Store};

    use super::*;
    use crate::Concurrency;

    struct ManualClock(AtomicI64);
    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct Half;
    impl Rng for Half {
        fn unit(&self) -> f64 {
            0.5
        }
    }

    async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        for _ in 0..200 {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// A disabled function's event is throttled (without using a retry)
    /// until it is older than its maximum age, then given up and kept:
    /// the clock is moved, nothing sleeps for a minute.
    #[tokio::test]
    async fn throttled_events_age_out_into_the_failed_list() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        store
            .create_function(FunctionVersion {
                function: "f".into(),
                version: LATEST.into(),
                config: FunctionConfig::new("wasm", "f.wasm"),
                code_sha256: "x".into(),
                code_size: 1,
                artifact_sha256: "x".into(),
                last_modified_ms: 1,
                revision_id: "r".into(),
            })
            .await
            .unwrap();
        store
            .put_setting(Setting {
                function: "f".into(),
                qualifier: LATEST.into(),
                kind: setting_kinds::EVENT_INVOKE.into(),
                value: json!({ "MaximumEventAgeInSeconds": 60 }),
            })
            .await
            .unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(1_000_000)));
        let concurrency = Concurrency::new(10);
        concurrency.set_reserved("f", Some(0)).unwrap();
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            HashMap::new(),
            clock.clone(),
            concurrency,
        ));
        let queue = AsyncQueue::start(dispatcher, QueueOptions::default(), Arc::new(Half))
            .await
            .unwrap();
        let accepted = queue
            .accept(AsyncRequest {
                function: "f".into(),
                qualifier: LATEST.into(),
                payload: Bytes::from_static(br#"{"n":1}"#),
                source: "test".into(),
                invoked_arn: "arn".into(),
                client_context: None,
                idempotency_key: None,
            })
            .await
            .unwrap();
        assert!(!accepted.duplicate);

        let stats = || async { queue.stats(Some("f")).await.unwrap().remove(0) };
        eventually("a throttle", async || {
            (stats().await.counters.throttles >= 1).then_some(())
        })
        .await;
        let s = stats().await;
        assert_eq!((s.depth, s.counters.retries, s.failed), (1, 0, 0));

        clock.0.fetch_add(61_000, Ordering::SeqCst);
        let failed = eventually("the aged-out event", async || {
            store.list_failed_events("f", 10).await.unwrap().pop()
        })
        .await;
        assert_eq!(failed.request_id, accepted.request_id);
        let record: serde_json::Value = serde_json::from_str(&failed.record).unwrap();
        assert_eq!(record["requestContext"]["condition"], "EventAgeExceeded");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
        assert_eq!(record["requestPayload"], json!({ "n": 1 }));
        let s = stats().await;
        assert_eq!((s.depth, s.failed, s.counters.kept_failed), (0, 1, 1));
    }
}
