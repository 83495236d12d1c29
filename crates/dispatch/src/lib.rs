//! The dispatcher: every invocation, from any listener, goes through here.
//!
//! It resolves a function name and qualifier to a version, prepares the
//! version once (the cold part, cached per revision), invokes it through
//! the `Runtime` trait without knowing which runtime it is, and writes the
//! record and logs of every invocation through the batching recorder.

mod by_function;
mod concurrency;
mod idempotent;
mod queue;
mod recorder;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use wisp_core::clock::Clock;
use wisp_core::function::LATEST;
use wisp_core::limits::MAX_PRELOADED_FUNCTIONS;
use wisp_core::runtime::{
    Body, BodyFailure, Completion, Done, Invocation, Prepared, PreparedStats, Runtime,
};
use wisp_core::Cause;
use wisp_core::{FunctionVersion, InvocationRecord, InvokeError, Outcome, RuntimeKind};
use wisp_store::{setting_kinds, Store, StoreError};

use by_function::ByFunction;

pub use concurrency::{Concurrency, Permit, Throttle};
pub use idempotent::{config_from_setting, StoredResponse};
pub use queue::{
    AcceptError, Accepted, AsyncQueue, AsyncRequest, Counters, FunctionQueue, MessageSink,
    QueueOptions,
};
pub use recorder::Recorder;

/// Why a function could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// One revision of a version: prepared once, with its metric handles (a
/// handle is looked up in the registry once, not on every call).
struct Slot {
    revision: String,
    prepared: OnceCell<Arc<dyn Prepared>>,
    metrics: FunctionMetrics,
}

/// The per-invocation metrics of one function.
struct FunctionMetrics {
    function: String,
    successes: metrics::Counter,
    duration: metrics::Histogram,
    cold_starts: metrics::Counter,
}

impl FunctionMetrics {
    fn new(function: &str) -> FunctionMetrics {
        let f = function.to_string();
        FunctionMetrics {
            successes: metrics::counter!(
                "wisp_invocations_total",
                "function" => f.clone(),
                "outcome" => "success",
                "error_kind" => "none",
            ),
            duration: metrics::histogram!("wisp_invocation_duration_seconds", "function" => f.clone()),
            cold_starts: metrics::counter!("wisp_cold_starts_total", "function" => f.clone()),
            function: f,
        }
    }

    fn count(&self, record: &InvocationRecord, duration: Duration) {
        match record.error_kind {
            None => self.successes.increment(1),
            // Failures are rarer: their handles are looked up per call.
            Some(kind) => metrics::counter!(
                "wisp_invocations_total",
                "function" => self.function.clone(),
                "outcome" => "error",
                "error_kind" => kind.as_str(),
            )
            .increment(1),
        }
        self.duration.record(duration.as_secs_f64());
        if record.cold {
            self.cold_starts.increment(1);
        }
    }
}

/// What a name and qualifier resolve to: a version, and for a weighted
/// alias a second version with its share of the calls.
struct Target {
    primary: Arc<FunctionVersion>,
    additional: Option<(Arc<FunctionVersion>, f64)>,
}

impl Target {
    fn pick(&self) -> Arc<FunctionVersion> {
        match &self.additional {
            Some((v, weight)) if rand::random::<f64>() < *weight => v.clone(),
            _ => self.primary.clone(),
        }
    }
}

/// Routes invocations to runtimes and keeps their records.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    runtimes: HashMap<RuntimeKind, Arc<dyn Runtime>>,
    /// Prepared versions by function and version, of one revision each.
    prepared: Mutex<ByFunction<Arc<Slot>>>,
    /// Resolved (function, qualifier) pairs; writes go through the API, which
    /// calls `forget`, so this never serves a stale version.
    resolved: Mutex<ByFunction<Arc<Target>>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    concurrency: Arc<Concurrency>,
    /// Idempotency settings by function; cleared by `forget`.
    idempotency: Mutex<HashMap<String, Arc<wisp_core::idempotency::IdempotencyConfig>>>,
    waiters: idempotent::Waiters,
    /// The provisioned concurrency applied here, cluster-wide counts by
    /// (function, qualifier); this node keeps its share of each warm.
    provisioned: Mutex<HashMap<(String, String), usize>>,
}

/// The cluster-wide count a stored provisioned-concurrency setting asks for.
fn requested(stored: &serde_json::Value) -> usize {
    stored["requested"].as_u64().unwrap_or(0) as usize
}

/// The request that carries an Invoke payload to a function (`POST /`,
/// JSON), with the ARN the caller used and its client context.
pub fn invocation_request(
    payload: bytes::Bytes,
    invoked_arn: &str,
    client_context: Option<&str>,
) -> Result<http::Request<Body>, http::Error> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri("/")
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-wisp-invoked-function-arn", invoked_arn);
    if let Some(ctx) = client_context {
        request = request.header("x-wisp-client-context", ctx);
    }
    request.body(wisp_core::runtime::full_body(payload))
}

/// The result of one dispatched invocation.
pub struct Dispatched {
    pub request_id: String,
    pub version: String,
    pub response: Result<http::Response<Body>, InvokeError>,
    /// Resolves with the record once the invocation has finished.
    pub record: tokio::sync::oneshot::Receiver<InvocationRecord>,
    /// A stored result of an earlier call with the same idempotency key;
    /// `request_id` is that call's.
    pub replayed: bool,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        runtimes: HashMap<RuntimeKind, Arc<dyn Runtime>>,
        clock: Arc<dyn Clock>,
        concurrency: Arc<Concurrency>,
    ) -> Dispatcher {
        let recorder = Recorder::start(store.clone());
        Dispatcher {
            store,
            runtimes,
            prepared: Mutex::new(ByFunction::default()),
            resolved: Mutex::new(ByFunction::default()),
            recorder,
            clock,
            concurrency,
            idempotency: Mutex::new(HashMap::new()),
            waiters: idempotent::Waiters::default(),
            provisioned: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The wall clock, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn concurrency(&self) -> &Arc<Concurrency> {
        &self.concurrency
    }

    /// Applies the stored settings: reservations now, provisioned
    /// concurrency in the background (workers take a while to start).
    pub async fn load_settings(self: &Arc<Self>) -> Result<(), StoreError> {
        for s in self
            .store
            .list_settings(setting_kinds::CONCURRENCY, None)
            .await?
        {
            let reserved = s.value["reserved"].as_u64().unwrap_or(0) as usize;
            if let Err(e) = self.concurrency.set_reserved(&s.function, Some(reserved)) {
                tracing::warn!(function = %s.function, error = %e, "stored reservation no longer fits");
            }
        }
        let provisioned = self
            .store
            .list_settings(setting_kinds::PROVISIONED, None)
            .await?;
        let me = self.clone();
        tokio::spawn(async move {
            for s in provisioned {
                if let Err(e) = me
                    .provision(&s.function, &s.qualifier, requested(&s.value))
                    .await
                {
                    tracing::warn!(function = %s.function, qualifier = %s.qualifier, error = %e, "could not provision");
                }
            }
        });
        Ok(())
    }

    /// Resolves and prepares every function's `$LATEST` and aliased
    /// versions (up to `MAX_PRELOADED_FUNCTIONS`), one at a time, so the
    /// first call after a restart only instantiates: the compiled
    /// artifacts are on disk already, this maps them in. Returns how many
    /// versions are ready; one that fails to load is left for its first call.
    pub async fn preload(&self) -> Result<usize, StoreError> {
        let mut ready = 0;
        let latest = self.store.list_latest().await?;
        for latest in latest.iter().take(MAX_PRELOADED_FUNCTIONS) {
            let function = &latest.function;
            let mut qualifiers = vec![LATEST.to_string()];
            qualifiers.extend(
                self.store
                    .list_aliases(function)
                    .await?
                    .into_iter()
                    .map(|a| a.name),
            );
            let mut seen = std::collections::HashSet::new();
            for qualifier in qualifiers {
                let Ok(target) = self.target(function, Some(&qualifier)).await else {
                    continue;
                };
                let versions = std::iter::once(target.primary.clone())
                    .chain(target.additional.as_ref().map(|a| a.0.clone()));
                for version in versions {
                    if !seen.insert(version.version.clone()) {
                        continue;
                    }
                    match self.prepare(&version).await {
                        Ok(_) => ready += 1,
                        Err(e) => {
                            tracing::warn!(function = %function, version = %version.version, error = %e.message, "could not preload")
                        }
                    }
                }
            }
        }
        Ok(ready)
    }

    /// Keeps `count` workers of `function:qualifier` initialised across
    /// the cluster: this node's share of them (all of them on one node).
    pub async fn provision(
        &self,
        function: &str,
        qualifier: &str,
        count: usize,
    ) -> Result<(), InvokeError> {
        if let Ok(mut p) = self.provisioned.lock() {
            let key = (function.to_string(), qualifier.to_string());
            match count {
                0 => p.remove(&key),
                n => p.insert(key, n),
            };
        }
        let version = self
            .resolve(function, Some(qualifier))
            .await
            .map_err(|e| InvokeError::new(Cause::NotFound, e.to_string()))?;
        let (prepared, _) = self.prepare(&version).await?;
        let share = self.concurrency.share_of(count);
        metrics::gauge!(
            "wisp_provisioned_workers",
            "function" => function.to_string(),
            "qualifier" => qualifier.to_string(),
        )
        .set(share as f64);
        prepared.provision(share).await
    }

    /// Applies every provisioned count again, after this node's share of
    /// the cluster changed.
    pub async fn reprovision(&self) {
        let all: Vec<_> = match self.provisioned.lock() {
            Ok(p) => p.iter().map(|(k, n)| (k.clone(), *n)).collect(),
            Err(_) => return,
        };
        for ((function, qualifier), count) in all {
            if let Err(e) = self.provision(&function, &qualifier, count).await {
                tracing::warn!(%function, %qualifier, error = %e, "could not provision");
            }
        }
    }

    /// Makes the provisioned counts of `function` applied here what is
    /// stored, after another node changed them.
    async fn refresh_provisioned(&self, function: &str) -> Result<(), StoreError> {
        let stored: HashMap<String, usize> = self
            .store
            .list_settings(setting_kinds::PROVISIONED, Some(function))
            .await?
            .into_iter()
            .map(|s| (s.qualifier, requested(&s.value)))
            .collect();
        let applied: HashMap<String, usize> = match self.provisioned.lock() {
            Ok(p) => p
                .iter()
                .filter(|((f, _), _)| f == function)
                .map(|((_, q), n)| (q.clone(), *n))
                .collect(),
            Err(_) => return Ok(()),
        };
        let gone = applied.keys().filter(|q| !stored.contains_key(*q));
        let changes: Vec<(String, usize)> = gone
            .map(|q| (q.clone(), 0))
            .chain(
                stored
                    .iter()
                    .filter(|(q, n)| applied.get(*q) != Some(n))
                    .map(|(q, n)| (q.clone(), *n)),
            )
            .collect();
        for (qualifier, count) in changes {
            if let Err(e) = self.provision(function, &qualifier, count).await {
                tracing::warn!(function, %qualifier, error = %e, "could not provision");
            }
        }
        Ok(())
    }

    /// The workers of `function:qualifier` right now, if it is prepared.
    pub async fn worker_stats(&self, function: &str, qualifier: &str) -> Option<PreparedStats> {
        let version = self.resolve(function, Some(qualifier)).await.ok()?;
        let slot = self
            .prepared
            .lock()
            .ok()?
            .get(&version.function, &version.version)?
            .clone();
        if slot.revision != version.revision_id {
            return None;
        }
        slot.prepared.get().map(|p| p.stats())
    }

    /// Hands a record and its log lines made elsewhere (a workflow's
    /// execution log) to the recorder.
    pub fn record(&self, record: wisp_core::InvocationRecord, lines: Vec<wisp_core::LogLine>) {
        self.recorder.record(record, lines);
    }

    /// Waits until every record and log line handed to the recorder is stored.
    pub async fn flush(&self) {
        self.recorder.flush().await;
    }

    /// Finds the version `qualifier` names: `$LATEST` (or none), a number,
    /// or an alias (its primary version).
    pub async fn resolve(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionVersion>, ResolveError> {
        Ok(self.target(function, qualifier).await?.primary.clone())
    }

    /// Like `resolve`, but a weighted alias picks one of its versions by weight.
    pub async fn resolve_for_invoke(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionVersion>, ResolveError> {
        Ok(self.target(function, qualifier).await?.pick())
    }

    async fn target(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<Target>, ResolveError> {
        let key = qualifier.unwrap_or(LATEST);
        if let Some(t) = self
            .resolved
            .lock()
            .ok()
            .and_then(|r| r.get(function, key).cloned())
        {
            return Ok(t);
        }
        let target = Arc::new(self.target_uncached(function, qualifier).await?);
        if let Ok(mut resolved) = self.resolved.lock() {
            resolved.insert(function, key, target.clone());
        }
        Ok(target)
    }

    async fn target_uncached(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Target, ResolveError> {
        let not_found =
            |v: &str| ResolveError::NotFound(format!("Function not found: {function}:{v}"));
        let version = |v: String| async move {
            self.store
                .get_version(function, &v)
                .await?
                .map(Arc::new)
                .ok_or_else(|| match v.as_str() {
                    LATEST => ResolveError::NotFound(format!("Function not found: {function}")),
                    _ => not_found(&v),
                })
        };
        match qualifier {
            None | Some("") | Some(LATEST) => Ok(Target {
                primary: version(LATEST.to_string()).await?,
                additional: None,
            }),
            Some(q) if q.chars().all(|c| c.is_ascii_digit()) => Ok(Target {
                primary: version(q.to_string()).await?,
                additional: None,
            }),
            Some(alias) => {
                let a = self
                    .store
                    .get_alias(function, alias)
                    .await?
                    .ok_or_else(|| not_found(alias))?;
                let additional = match a.additional_version_weights.iter().next() {
                    Some((v, w)) => Some((version(v.clone()).await?, *w)),
                    None => None,
                };
                Ok(Target {
                    primary: version(a.version).await?,
                    additional,
                })
            }
        }
    }

    /// Prepares a version (compiling or loading its artifact); returns how
    /// long that took when it was not already prepared.
    pub async fn prepare(
        &self,
        version: &FunctionVersion,
    ) -> Result<(Arc<dyn Prepared>, Option<Duration>), InvokeError> {
        let (_, prepared, init) = self.prepare_slot(version).await?;
        Ok((prepared, init))
    }

    /// `prepare`, also giving the slot (with the version's metric handles).
    async fn prepare_slot(
        &self,
        version: &FunctionVersion,
    ) -> Result<(Arc<Slot>, Arc<dyn Prepared>, Option<Duration>), InvokeError> {
        let slot = {
            let mut prepared = self
                .prepared
                .lock()
                .map_err(|_| InvokeError::platform("prepared cache poisoned"))?;
            match prepared.get(&version.function, &version.version) {
                Some(slot) if slot.revision == version.revision_id => slot.clone(),
                _ => {
                    let slot = Arc::new(Slot {
                        revision: version.revision_id.clone(),
                        prepared: OnceCell::new(),
                        metrics: FunctionMetrics::new(&version.function),
                    });
                    prepared.insert(&version.function, &version.version, slot.clone());
                    slot
                }
            }
        };
        if let Some(p) = slot.prepared.get() {
            let p = p.clone();
            return Ok((slot, p, None));
        }
        let started = Instant::now();
        let mut did_init = false;
        let prepared = slot
            .prepared
            .get_or_try_init(|| async {
                did_init = true;
                let kind = RuntimeKind::of(&version.config.runtime).ok_or_else(|| {
                    InvokeError::new(
                        Cause::InvalidRuntime,
                        format!("runtime `{}` is not supported", version.config.runtime),
                    )
                })?;
                let runtime = self.runtimes.get(&kind).ok_or_else(|| {
                    InvokeError::new(
                        Cause::InvalidRuntime,
                        format!(
                            "runtime `{}` is not available on this server",
                            version.config.runtime
                        ),
                    )
                })?;
                let artifact = self
                    .store
                    .code_path(&version.code_sha256)
                    .await
                    .map_err(|e| {
                        InvokeError::platform(format!("code of `{}`: {e}", version.function))
                    })?;
                let mut layers = Vec::with_capacity(version.config.layers.len());
                for layer in &version.config.layers {
                    let path = self
                        .store
                        .code_path(&layer.code_sha256)
                        .await
                        .map_err(|e| {
                            InvokeError::platform(format!(
                                "layer {} of `{}`: {e}",
                                layer.arn, version.function
                            ))
                        })?;
                    layers.push(path);
                }
                runtime.prepare(version, &artifact, &layers).await
            })
            .await?
            .clone();
        if did_init {
            self.restore_provisioned(version, prepared.clone());
        }
        Ok((slot, prepared, did_init.then(|| started.elapsed())))
    }

    /// A freshly prepared revision (new code or configuration, a restart)
    /// gets the provisioned workers stored for any qualifier naming it.
    fn restore_provisioned(&self, version: &FunctionVersion, prepared: Arc<dyn Prepared>) {
        let store = self.store.clone();
        let concurrency = self.concurrency.clone();
        let version = version.clone();
        tokio::spawn(async move {
            let settings = match store
                .list_settings(setting_kinds::PROVISIONED, Some(&version.function))
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read provisioned concurrency");
                    return;
                }
            };
            for s in settings {
                let names_it = s.qualifier == version.version
                    || matches!(
                        store.get_alias(&version.function, &s.qualifier).await,
                        Ok(Some(a)) if a.version == version.version
                    );
                if names_it {
                    let count = concurrency.share_of(requested(&s.value));
                    if let Err(e) = prepared.provision(count).await {
                        tracing::warn!(function = %version.function, error = %e, "could not provision");
                    }
                }
            }
        });
    }

    /// Catches up with a change another node made to `function`: drops
    /// what is cached of it, and applies its reservation and provisioned
    /// concurrency as stored (or forgets it all, if the function is gone).
    pub async fn refresh(&self, function: &str) {
        self.forget(function);
        match self.store.get_version(function, LATEST).await {
            Ok(Some(_)) => {}
            Ok(None) => return self.remove(function),
            Err(e) => {
                tracing::warn!(function, error = %e, "cannot refresh a changed function");
                return;
            }
        }
        let reserved = match self
            .store
            .get_setting(function, setting_kinds::CONCURRENCY, "")
            .await
        {
            Ok(v) => v.map(|v| v["reserved"].as_u64().unwrap_or(0) as usize),
            Err(e) => {
                tracing::warn!(function, error = %e, "cannot refresh a reservation");
                return;
            }
        };
        if self.concurrency.reserved(function) != reserved {
            if let Err(e) = self.concurrency.set_reserved(function, reserved) {
                tracing::warn!(function, error = %e, "a reservation set elsewhere does not fit here");
            }
        }
        if let Err(e) = self.refresh_provisioned(function).await {
            tracing::warn!(function, error = %e, "cannot refresh provisioned concurrency");
        }
    }

    /// Drops everything cached of a deleted function.
    pub fn remove(&self, function: &str) {
        if let Ok(mut p) = self.provisioned.lock() {
            p.retain(|(f, _), _| f != function);
        }
        if let Ok(mut prepared) = self.prepared.lock() {
            prepared.remove(function);
        }
        self.concurrency.forget(function);
        self.forget(function);
    }

    /// Drops cached name resolutions of a function (after any change to it
    /// or its aliases). Prepared versions stay: they are keyed by revision.
    pub fn forget(&self, function: &str) {
        if let Ok(mut resolved) = self.resolved.lock() {
            resolved.remove(function);
        }
        if let Ok(mut idempotency) = self.idempotency.lock() {
            idempotency.remove(function);
        }
    }

    /// Invokes `version` with an HTTP request; `trigger` names the source
    /// (`gateway`, `api`) in the record.
    pub async fn invoke(
        &self,
        version: &FunctionVersion,
        request: http::Request<Body>,
        trigger: &str,
    ) -> Dispatched {
        let request_id = wisp_core::new_request_id();
        self.invoke_with_id(version, request, trigger, request_id)
            .await
    }

    pub async fn invoke_with_id(
        &self,
        version: &FunctionVersion,
        request: http::Request<Body>,
        trigger: &str,
        request_id: String,
    ) -> Dispatched {
        match self.admit(&version.function) {
            Ok(permit) => {
                self.invoke_admitted(version, request, trigger, request_id, permit)
                    .await
            }
            Err(error) => refused(&request_id, version, error),
        }
    }

    /// Takes one of `function`'s concurrency slots, or refuses with the
    /// throttle error (counted in the metrics).
    pub fn admit(&self, function: &str) -> Result<Permit, InvokeError> {
        self.concurrency.admit(function).map_err(|throttle| {
            metrics::counter!(
                "wisp_throttles_total",
                "function" => function.to_string(),
                "reason" => throttle.reason(),
            )
            .increment(1);
            InvokeError::new(throttle.cause(), "Rate Exceeded.")
        })
    }

    /// Invokes `version` in the concurrency slot `permit`, held until the
    /// invocation completes.
    pub async fn invoke_admitted(
        &self,
        version: &FunctionVersion,
        mut request: http::Request<Body>,
        trigger: &str,
        request_id: String,
        permit: Permit,
    ) -> Dispatched {
        let started_at_ms = self.clock.now_ms();
        let started = Instant::now();
        let (record_tx, record_rx) = tokio::sync::oneshot::channel();
        let mut record = InvocationRecord {
            request_id: request_id.clone(),
            function: version.function.clone(),
            version: version.version.clone(),
            trigger: trigger.to_string(),
            started_at_ms,
            memory_limit_mb: version.config.memory_mb,
            attempt: request
                .extensions()
                .get::<wisp_core::DeliveryAttempt>()
                .map_or(1, |a| a.0),
            ..InvocationRecord::default()
        };

        let (slot, prepared, init) = match self.prepare_slot(version).await {
            Ok(p) => p,
            Err(error) => {
                let completion = Completion {
                    error: Some(error.clone()),
                    duration: started.elapsed(),
                    ..Completion::default()
                };
                let metrics = FunctionMetrics::new(&version.function);
                finish(&self.recorder, &metrics, record, completion, record_tx);
                return Dispatched {
                    request_id,
                    version: version.version.clone(),
                    response: Err(error),
                    record: record_rx,
                    replayed: false,
                };
            }
        };
        record.cold = init.is_some();
        record.init_duration_us = init.map(|d| d.as_micros() as u64);

        if let Ok(value) = http::HeaderValue::from_str(&request_id) {
            request
                .headers_mut()
                .insert(wisp_core::headers::REQUEST_ID, value);
        }
        let recorder = self.recorder.clone();
        let body_failure = request.extensions().get::<BodyFailure>().cloned();
        let done = Done::new(move |mut completion| {
            if let Some(caller) = body_failure.as_ref().and_then(BodyFailure::get) {
                // The function failed on a body its caller never finished.
                if completion.error.is_some() || completion.status.is_some_and(|s| s >= 500) {
                    completion.error = Some(caller.clone());
                }
            }
            finish(&recorder, &slot.metrics, record, completion, record_tx);
            drop(permit);
        });
        let response = prepared
            .invoke(Invocation {
                request_id: request_id.clone(),
                request,
                timeout: Duration::from_millis(version.config.timeout_ms),
                done,
            })
            .await;
        Dispatched {
            request_id,
            version: version.version.clone(),
            response,
            record: record_rx,
            replayed: false,
        }
    }
}

/// A call answered without running: no record is written.
pub(crate) fn refused(
    request_id: &str,
    version: &FunctionVersion,
    error: InvokeError,
) -> Dispatched {
    let (_, record) = tokio::sync::oneshot::channel();
    Dispatched {
        request_id: request_id.to_string(),
        version: version.version.clone(),
        response: Err(error),
        record,
        replayed: false,
    }
}

/// Completes a record from the runtime's completion, writes it with the
/// function's log lines, and hands it to whoever waits.
fn finish(
    recorder: &Recorder,
    metrics: &FunctionMetrics,
    mut record: InvocationRecord,
    completion: Completion,
    record_tx: tokio::sync::oneshot::Sender<InvocationRecord>,
) {
    record.duration_us = completion.duration.as_micros() as u64;
    record.billed_ms = (completion.duration.as_micros() as u64)
        .div_ceil(1000)
        .max(1);
    record.max_memory_bytes = completion.max_memory_bytes;
    record.status = completion.status;
    if let Some(init) = completion.init_duration {
        // A worker started for this call: cold, whether or not the version
        // itself had to be prepared first.
        record.cold = true;
        let prepared_us = record.init_duration_us.unwrap_or(0);
        record.init_duration_us = Some(prepared_us + init.as_micros() as u64);
    }
    if let Some(error) = completion.error {
        record.outcome = Outcome::Error;
        record.error_kind = Some(error.kind());
        record.error_type = Some(error.error_type);
        record.error_message = Some(error.message);
    }

    metrics.count(&record, completion.duration);

    // Most callers never look at the record: clone it only for one who does.
    if record_tx.is_closed() {
        recorder.record(record, completion.logs);
    } else {
        recorder.record(record.clone(), completion.logs);
        let _ = record_tx.send(record);
    }
}
