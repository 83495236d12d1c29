//! Event source mappings: pollers that take a queue's messages in batches
//! to a function, as Lambda's SQS mappings do. A batch is the SQS event
//! Lambda sends; success deletes it (or, with ReportBatchItemFailures, all
//! but the messages the function names); a function error or timeout
//! leaves it to come back after its visibility timeout (and, past
//! maxReceiveCount, to the dead-letter queue); a throttled batch is made
//! visible again after a short backoff, never lost. Pollers scale with the
//! backlog up to MaximumConcurrency and never past the function's reserved
//! concurrency. Mappings are kept as per-function settings, so they go
//! with their function.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::pattern::Pattern;
use wisp_core::runtime::collect_limited;
use wisp_core::Cause;
use wisp_dispatch::Dispatcher;
use wisp_store::{Setting, StoreError};

use crate::engine::{Message, ReceiveOptions, Sqs};
use crate::message::AttributeValue;

/// The setting kind mappings are stored under (qualifier = UUID).
pub const SETTING_KIND: &str = "event-source-mapping";
/// Most messages in one batch (Lambda: 10,000 for standard queues).
pub const MAX_BATCH_SIZE: u32 = 10_000;
/// Longest batching window (Lambda: 300 s).
pub const MAX_BATCHING_WINDOW_SECS: u32 = 300;
/// Bounds of ScalingConfig.MaximumConcurrency (Lambda: 2 to 1,000).
pub const MIN_MAX_CONCURRENCY: u32 = 2;
pub const MAX_MAX_CONCURRENCY: u32 = 1000;
/// Pollers per mapping when MaximumConcurrency is not set.
pub const DEFAULT_MAX_POLLERS: u32 = 1000;
/// Most filters in FilterCriteria (Lambda: 5 by default).
pub const MAX_FILTERS: usize = 5;
/// First wait before a throttled batch is offered again; doubles per
/// throttle in a row, up to `MAX_THROTTLE_BACKOFF`.
const THROTTLE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(30);

/// A mapping as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingConfig {
    pub uuid: String,
    pub function: String,
    /// The version or alias FunctionName named, if any.
    pub qualifier: Option<String>,
    pub queue_arn: String,
    pub batch_size: u32,
    pub batching_window_secs: u32,
    pub enabled: bool,
    pub report_batch_item_failures: bool,
    pub max_concurrency: Option<u32>,
    /// FilterCriteria's patterns, as given.
    pub filters: Vec<String>,
    pub last_modified_ms: i64,
}

/// What a mapping did since the server started.
#[derive(Debug, Default)]
pub struct MappingStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    pub failures: AtomicU64,
    pub filtered: AtomicU64,
    pub pollers: AtomicUsize,
    last_result: Mutex<&'static str>,
}

impl MappingStats {
    pub fn last_result(&self) -> &'static str {
        self.last_result
            .lock()
            .map(|r| *r)
            .unwrap_or("No records processed")
    }

    fn set_result(&self, r: &'static str) {
        if let Ok(mut l) = self.last_result.lock() {
            *l = r;
        }
    }
}

/// Why a mapping call was refused, as the Lambda API answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct MappingError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl MappingError {
    pub fn invalid(message: impl Into<String>) -> MappingError {
        MappingError {
            status: 400,
            error_type: "InvalidParameterValueException",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> MappingError {
        MappingError {
            status: 404,
            error_type: "ResourceNotFoundException",
            message: message.into(),
        }
    }

    fn conflict(message: impl Into<String>) -> MappingError {
        MappingError {
            status: 409,
            error_type: "ResourceConflictException",
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> MappingError {
        MappingError {
            status: 500,
            error_type: "ServiceException",
            message: message.into(),
        }
    }
}

impl From<StoreError> for MappingError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => MappingError::not_found(m),
            e => MappingError::internal(e.to_string()),
        }
    }
}

/// The settable fields of CreateEventSourceMapping and
/// UpdateEventSourceMapping (absent = unchanged on update).
#[derive(Debug, Clone, Default)]
pub struct MappingChange {
    pub function: Option<(String, Option<String>)>,
    pub queue_arn: Option<String>,
    pub batch_size: Option<i64>,
    pub batching_window_secs: Option<i64>,
    pub enabled: Option<bool>,
    pub report_batch_item_failures: Option<bool>,
    /// `Some(None)` clears it.
    pub max_concurrency: Option<Option<i64>>,
    pub filters: Option<Vec<String>>,
}

struct Running {
    config: Arc<MappingConfig>,
    stats: Arc<MappingStats>,
    stop: watch::Sender<bool>,
}

/// Every mapping and its pollers.
pub struct Mappings {
    sqs: Arc<Sqs>,
    dispatcher: Arc<Dispatcher>,
    mappings: Mutex<HashMap<String, Running>>,
}

/// The patterns of FilterCriteria, checked.
fn parse_filters(filters: &[String]) -> Result<Vec<Pattern>, MappingError> {
    if filters.len() > MAX_FILTERS {
        return Err(MappingError::invalid(format!(
            "FilterCriteria holds {} filters; at most {MAX_FILTERS} are allowed.",
            filters.len()
        )));
    }
    filters
        .iter()
        .map(|f| {
            Pattern::parse(f).map_err(|e| {
                MappingError::invalid(format!("Invalid filter pattern definition: {e}"))
            })
        })
        .collect()
}

impl Mappings {
    pub fn new(sqs: Arc<Sqs>, dispatcher: Arc<Dispatcher>) -> Arc<Mappings> {
        Arc::new(Mappings {
            sqs,
            dispatcher,
            mappings: Mutex::default(),
        })
    }

    /// Starts the stored mappings.
    pub async fn load(self: &Arc<Self>) -> Result<usize, MappingError> {
        let stored = self
            .dispatcher
            .store()
            .list_settings(SETTING_KIND, None)
            .await?;
        let n = stored.len();
        for s in stored {
            match serde_json::from_value::<MappingConfig>(s.value) {
                Ok(config) => self.run(config),
                Err(e) => {
                    tracing::warn!(mapping = %s.qualifier, error = %e, "unreadable event source mapping")
                }
            }
        }
        Ok(n)
    }

    pub fn arn(&self, uuid: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{uuid}",
            self.sqs.region(),
            self.sqs.account()
        )
    }

    pub fn function_arn(&self, config: &MappingConfig) -> String {
        let base = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.sqs.region(),
            self.sqs.account(),
            config.function
        );
        match &config.qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }

    /// A mapping with its stats.
    pub fn get(&self, uuid: &str) -> Option<(Arc<MappingConfig>, Arc<MappingStats>)> {
        let m = self.mappings.lock().unwrap_or_else(|p| p.into_inner());
        m.get(uuid).map(|r| (r.config.clone(), r.stats.clone()))
    }

    /// Every mapping, by function then UUID.
    pub fn list(&self) -> Vec<(Arc<MappingConfig>, Arc<MappingStats>)> {
        let m = self.mappings.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = m
            .values()
            .map(|r| (r.config.clone(), r.stats.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0.function, &a.0.uuid).cmp(&(&b.0.function, &b.0.uuid)));
        all
    }

    /// Checks a whole configuration: bounds, the queue, the function and
    /// its timeout against the queue's visibility timeout.
    async fn check(&self, c: &MappingConfig) -> Result<(), MappingError> {
        if !(1..=MAX_BATCH_SIZE).contains(&c.batch_size) {
            return Err(MappingError::invalid(format!(
                "BatchSize {} is out of range: 1 to {MAX_BATCH_SIZE}.",
                c.batch_size
            )));
        }
        if c.batching_window_secs > MAX_BATCHING_WINDOW_SECS {
            return Err(MappingError::invalid(format!(
                "MaximumBatchingWindowInSeconds {} is out of range: 0 to {MAX_BATCHING_WINDOW_SECS}.",
                c.batching_window_secs
            )));
        }
        if c.batch_size > 10 && c.batching_window_secs == 0 {
            return Err(MappingError::invalid(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
            ));
        }
        if let Some(n) = c.max_concurrency {
            if !(MIN_MAX_CONCURRENCY..=MAX_MAX_CONCURRENCY).contains(&n) {
                return Err(MappingError::invalid(format!(
                    "ScalingConfig.MaximumConcurrency {n} is out of range: {MIN_MAX_CONCURRENCY} to {MAX_MAX_CONCURRENCY}."
                )));
            }
        }
        parse_filters(&c.filters)?;
        let queue_name = self.sqs.name_from_arn(&c.queue_arn).ok_or_else(|| {
            MappingError::invalid(format!(
                "Invalid event source ARN {}: not an SQS queue of this region and account.",
                c.queue_arn
            ))
        })?;
        let queue = self.sqs.queue(&queue_name).await.map_err(|_| {
            MappingError::invalid(format!(
                "The provided event source {} does not exist.",
                c.queue_arn
            ))
        })?;
        if queue.attributes.fifo_queue && c.batch_size > 10 {
            return Err(MappingError::invalid(
                "BatchSize for a FIFO queue is at most 10.",
            ));
        }
        let version = self
            .dispatcher
            .resolve(&c.function, c.qualifier.as_deref())
            .await
            .map_err(|e| match e {
                wisp_dispatch::ResolveError::NotFound(m) => MappingError::not_found(m),
                wisp_dispatch::ResolveError::Store(e) => MappingError::internal(e.to_string()),
            })?;
        let timeout_secs = version.config.timeout_ms.div_ceil(1000);
        let visibility = queue.attributes.visibility_timeout as u64;
        if timeout_secs > visibility {
            return Err(MappingError::invalid(format!(
                "Queue visibility timeout: {visibility} seconds is less than Function timeout: {timeout_secs} seconds"
            )));
        }
        Ok(())
    }

    async fn save(&self, c: &MappingConfig) -> Result<(), MappingError> {
        self.dispatcher
            .store()
            .put_setting(Setting {
                function: c.function.clone(),
                qualifier: c.uuid.clone(),
                kind: SETTING_KIND.into(),
                value: serde_json::to_value(c)
                    .map_err(|e| MappingError::internal(e.to_string()))?,
            })
            .await?;
        Ok(())
    }

    /// CreateEventSourceMapping.
    pub async fn create(
        self: &Arc<Self>,
        change: MappingChange,
    ) -> Result<Arc<MappingConfig>, MappingError> {
        let (function, qualifier) = change
            .function
            .clone()
            .ok_or_else(|| MappingError::invalid("FunctionName is required."))?;
        let queue_arn = change
            .queue_arn
            .clone()
            .ok_or_else(|| MappingError::invalid("EventSourceArn is required."))?;
        let mut config = MappingConfig {
            uuid: uuid::Uuid::new_v4().to_string(),
            function,
            qualifier,
            queue_arn,
            batch_size: 10,
            batching_window_secs: 0,
            enabled: true,
            report_batch_item_failures: false,
            max_concurrency: None,
            filters: Vec::new(),
            last_modified_ms: self.dispatcher.now_ms(),
        };
        apply(&mut config, &change)?;
        self.check(&config).await?;
        if let Some(existing) = self.list().into_iter().find(|(m, _)| {
            m.queue_arn == config.queue_arn
                && m.function == config.function
                && m.qualifier == config.qualifier
        }) {
            return Err(MappingError::conflict(format!(
                "An event source mapping with SQS arn (\" {} \") and function (\" {} \") already exists. Please update or delete the existing mapping with UUID {}",
                config.queue_arn, config.function, existing.0.uuid
            )));
        }
        self.save(&config).await?;
        let config = Arc::new(config);
        self.run((*config).clone());
        Ok(config)
    }

    /// UpdateEventSourceMapping: restarts its pollers with the new settings.
    pub async fn update(
        self: &Arc<Self>,
        uuid: &str,
        change: MappingChange,
    ) -> Result<Arc<MappingConfig>, MappingError> {
        let (current, _) = self
            .get(uuid)
            .ok_or_else(|| MappingError::not_found(format!("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})")))?;
        let mut config = (*current).clone();
        apply(&mut config, &change)?;
        if config.function != current.function {
            return Err(MappingError::invalid(
                "A mapping cannot move to another function; delete it and create one.",
            ));
        }
        config.last_modified_ms = self.dispatcher.now_ms();
        self.check(&config).await?;
        self.save(&config).await?;
        let config = Arc::new(config);
        self.run((*config).clone());
        Ok(config)
    }

    /// DeleteEventSourceMapping: stops its pollers; what they hold in
    /// flight finishes.
    pub async fn delete(
        &self,
        uuid: &str,
    ) -> Result<(Arc<MappingConfig>, Arc<MappingStats>), MappingError> {
        let (config, stats) = self
            .get(uuid)
            .ok_or_else(|| MappingError::not_found(format!("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})")))?;
        match self
            .dispatcher
            .store()
            .delete_setting(&config.function, SETTING_KIND, uuid)
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(r) = self
            .mappings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uuid)
        {
            let _ = r.stop.send(true);
        }
        Ok((config, stats))
    }

    /// Catches up with `function`'s mappings as stored, after another node
    /// changed them: starts new ones, restarts changed ones, stops removed
    /// ones.
    pub async fn sync_function(self: &Arc<Self>, function: &str) -> Result<(), MappingError> {
        let stored: Vec<MappingConfig> = self
            .dispatcher
            .store()
            .list_settings(SETTING_KIND, Some(function))
            .await?
            .into_iter()
            .filter_map(|s| serde_json::from_value(s.value).ok())
            .collect();
        let stale: Vec<MappingConfig> = {
            let mut m = self.mappings.lock().unwrap_or_else(|p| p.into_inner());
            m.retain(|uuid, r| {
                let keep = r.config.function != function || stored.iter().any(|c| &c.uuid == uuid);
                if !keep {
                    let _ = r.stop.send(true);
                }
                keep
            });
            stored
                .into_iter()
                .filter(|c| m.get(&c.uuid).is_none_or(|r| *r.config != *c))
                .collect()
        };
        for config in stale {
            self.run(config);
        }
        Ok(())
    }

    /// Forgets the mappings of a deleted function (their settings went with it).
    pub fn function_deleted(&self, function: &str) {
        let mut m = self.mappings.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, r| {
            let keep = r.config.function != function;
            if !keep {
                let _ = r.stop.send(true);
            }
            keep
        });
    }

    /// (Re)starts a mapping's pollers with `config`.
    fn run(self: &Arc<Self>, config: MappingConfig) {
        let config = Arc::new(config);
        let (stop, stopped) = watch::channel(false);
        let stats = {
            let mut m = self.mappings.lock().unwrap_or_else(|p| p.into_inner());
            let stats = m
                .get(&config.uuid)
                .map(|r| r.stats.clone())
                .unwrap_or_default();
            if let Some(old) = m.insert(
                config.uuid.clone(),
                Running {
                    config: config.clone(),
                    stats: stats.clone(),
                    stop,
                },
            ) {
                let _ = old.stop.send(true);
            }
            stats
        };
        if !config.enabled {
            return;
        }
        let Some(queue) = self.sqs.name_from_arn(&config.queue_arn) else {
            return;
        };
        let filters = match parse_filters(&config.filters) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(mapping = %config.uuid, error = %e, "mapping not started");
                return;
            }
        };
        let poller = Arc::new(Poller {
            mappings: self.clone(),
            config,
            queue,
            filters,
            stats,
            stopped,
        });
        poller.spawn_worker();
    }
}

fn apply(c: &mut MappingConfig, change: &MappingChange) -> Result<(), MappingError> {
    let non_negative = |name: &str, v: i64| {
        u32::try_from(v).map_err(|_| MappingError::invalid(format!("{name} {v} is out of range.")))
    };
    if let Some((f, q)) = &change.function {
        c.function = f.clone();
        c.qualifier = q.clone();
    }
    if let Some(a) = &change.queue_arn {
        c.queue_arn = a.clone();
    }
    if let Some(n) = change.batch_size {
        c.batch_size = non_negative("BatchSize", n)?;
    }
    if let Some(n) = change.batching_window_secs {
        c.batching_window_secs = non_negative("MaximumBatchingWindowInSeconds", n)?;
    }
    if let Some(e) = change.enabled {
        c.enabled = e;
    }
    if let Some(r) = change.report_batch_item_failures {
        c.report_batch_item_failures = r;
    }
    if let Some(m) = change.max_concurrency {
        c.max_concurrency = m
            .map(|n| non_negative("ScalingConfig.MaximumConcurrency", n))
            .transpose()?;
    }
    if let Some(f) = &change.filters {
        c.filters = f.clone();
    }
    Ok(())
}

/// How a batch's invocation ended.
enum Outcome {
    /// The function returned; its response body.
    Returned(Bytes),
    /// It failed (error, timeout, crash): the batch comes back later.
    Failed,
    /// It was not run (throttled, or the platform could not).
    Throttled,
}

/// One mapping's pollers: workers that each receive a batch, invoke, and
/// settle it, as many as the backlog asks for within the limits.
struct Poller {
    mappings: Arc<Mappings>,
    config: Arc<MappingConfig>,
    queue: String,
    filters: Arc<Vec<Pattern>>,
    stats: Arc<MappingStats>,
    stopped: watch::Receiver<bool>,
}

impl Poller {
    fn stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Most workers now: MaximumConcurrency, within the function's
    /// reserved concurrency (at least one, which a reservation of 0
    /// throttles).
    fn max_workers(&self) -> usize {
        let max = self.config.max_concurrency.unwrap_or(DEFAULT_MAX_POLLERS) as usize;
        let reserved = self
            .mappings
            .dispatcher
            .concurrency()
            .reserved(&self.config.function);
        reserved.map_or(max, |r| max.min(r)).max(1)
    }

    fn spawn_worker(self: &Arc<Self>) {
        let labels = [
            ("mapping", self.config.uuid.clone()),
            ("function", self.config.function.clone()),
        ];
        let n = self.stats.pollers.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("wisp_esm_pollers", &labels).set(n as f64);
        let me = self.clone();
        tokio::spawn(async move {
            me.work().await;
            let n = me.stats.pollers.fetch_sub(1, Ordering::SeqCst) - 1;
            metrics::gauge!("wisp_esm_pollers", &labels).set(n as f64);
        });
    }

    async fn work(self: &Arc<Self>) {
        let mut throttles = 0u32;
        while !self.stopped() {
            let mut stopped = self.stopped.clone();
            let batch = tokio::select! {
                b = self.collect() => b,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(mapping = %self.config.uuid, error = %e, "polling failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // Idle: one poller is enough.
                if self.stats.pollers.load(Ordering::SeqCst) > 1 {
                    return;
                }
                continue;
            }
            let full = batch.len() >= (self.config.batch_size as usize).min(10);
            if full && self.stats.pollers.load(Ordering::SeqCst) < self.max_workers() {
                // A backlog: another poller takes the next batch meanwhile.
                self.spawn_worker();
            }
            if self.process(batch).await {
                throttles = 0;
            } else {
                throttles += 1;
                let wait = THROTTLE_BACKOFF
                    .saturating_mul(1 << throttles.min(16))
                    .min(MAX_THROTTLE_BACKOFF);
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// A batch: long-polls for the first messages, then, with a batching
    /// window, gathers until the batch is full or the window ends.
    async fn collect(&self) -> Result<Vec<Message>, crate::SqsError> {
        let size = self.config.batch_size as usize;
        let sqs = &self.mappings.sqs;
        let mut batch = sqs
            .receive(
                &self.queue,
                ReceiveOptions {
                    max_messages: Some(size.min(10) as i64),
                    wait_seconds: Some(20),
                    ..ReceiveOptions::default()
                },
            )
            .await?;
        if batch.is_empty() || self.config.batching_window_secs == 0 {
            return Ok(batch);
        }
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.config.batching_window_secs as u64);
        while batch.len() < size {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let more = sqs
                .receive(
                    &self.queue,
                    ReceiveOptions {
                        max_messages: Some((size - batch.len()).min(10) as i64),
                        wait_ms: Some(left.as_millis() as i64),
                        ..ReceiveOptions::default()
                    },
                )
                .await?;
            batch.extend(more);
        }
        Ok(batch)
    }

    /// Invokes the function with a batch and settles it; false if throttled.
    async fn process(&self, batch: Vec<Message>) -> bool {
        let sqs = &self.mappings.sqs;
        let labels = [
            ("mapping", self.config.uuid.clone()),
            ("function", self.config.function.clone()),
        ];
        // Filtered out: deleted unseen, as Lambda does.
        let (records, dropped): (Vec<(Message, Value)>, Vec<Message>) = {
            let mut keep = Vec::new();
            let mut drop = Vec::new();
            for m in batch {
                let record = self.record(&m);
                if self.filters.is_empty()
                    || self.filters.iter().any(|p| p.matches(&filterable(&record)))
                {
                    keep.push((m, record));
                } else {
                    drop.push(m);
                }
            }
            (keep, drop)
        };
        if !dropped.is_empty() {
            self.stats
                .filtered
                .fetch_add(dropped.len() as u64, Ordering::Relaxed);
            let handles: Vec<String> = dropped.into_iter().map(|m| m.receipt_handle).collect();
            self.settle_delete(&handles).await;
        }
        // A batch stays under the invoke payload limit; what does not fit
        // goes back at once.
        let mut size = 20;
        let mut taken = Vec::new();
        let mut back = Vec::new();
        for (m, r) in records {
            let len = r.to_string().len() + 1;
            if size + len > MAX_SYNC_PAYLOAD_BYTES && !taken.is_empty() {
                back.push(m.receipt_handle);
            } else {
                size += len;
                taken.push((m, r));
            }
        }
        if !back.is_empty() {
            let changes: Vec<(String, Option<i64>)> =
                back.into_iter().map(|h| (h, Some(0))).collect();
            let _ = sqs.change_visibility(&self.queue, &changes).await;
        }
        if taken.is_empty() {
            return true;
        }
        let (messages, records): (Vec<Message>, Vec<Value>) = taken.into_iter().unzip();
        let event = json!({ "Records": records });
        let outcome = self.invoke(Bytes::from(event.to_string())).await;
        let n = messages.len() as u64;
        match outcome {
            Outcome::Returned(body) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("wisp_esm_batches_total", &labels).increment(1);
                let failed: HashSet<String> = if self.config.report_batch_item_failures {
                    match batch_item_failures(&body, &messages) {
                        Some(f) => f,
                        // An answer that cannot be read fails the whole batch.
                        None => messages.iter().map(|m| m.message_id.clone()).collect(),
                    }
                } else {
                    HashSet::new()
                };
                let done: Vec<String> = messages
                    .iter()
                    .filter(|m| !failed.contains(&m.message_id))
                    .map(|m| m.receipt_handle.clone())
                    .collect();
                self.settle_delete(&done).await;
                self.stats
                    .messages
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                self.stats
                    .failures
                    .fetch_add(failed.len() as u64, Ordering::Relaxed);
                metrics::counter!("wisp_esm_messages_total", &labels).increment(done.len() as u64);
                metrics::counter!("wisp_esm_failures_total", &labels)
                    .increment(failed.len() as u64);
                self.stats.set_result(if failed.is_empty() {
                    "OK"
                } else {
                    "PROBLEM: Function call failed"
                });
                true
            }
            Outcome::Failed => {
                // Left in flight: back after the visibility timeout, to the
                // dead-letter queue after maxReceiveCount.
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.failures.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("wisp_esm_batches_total", &labels).increment(1);
                metrics::counter!("wisp_esm_failures_total", &labels).increment(n);
                self.stats.set_result("PROBLEM: Function call failed");
                true
            }
            Outcome::Throttled => {
                metrics::counter!("wisp_esm_throttles_total", &labels).increment(1);
                let changes: Vec<(String, Option<i64>)> = messages
                    .into_iter()
                    .map(|m| (m.receipt_handle, Some(1)))
                    .collect();
                let _ = sqs.change_visibility(&self.queue, &changes).await;
                false
            }
        }
    }

    async fn settle_delete(&self, handles: &[String]) {
        if handles.is_empty() {
            return;
        }
        for chunk in handles.chunks(crate::engine::MAX_BATCH_ENTRIES) {
            if let Err(e) = self.mappings.sqs.delete(&self.queue, chunk).await {
                // Not deleted: they come back after their visibility
                // timeout and run again (at-least-once).
                tracing::warn!(mapping = %self.config.uuid, error = %e, "could not delete a processed batch");
            }
        }
    }

    async fn invoke(&self, payload: Bytes) -> Outcome {
        let d = &self.mappings.dispatcher;
        let version = match d
            .resolve_for_invoke(&self.config.function, self.config.qualifier.as_deref())
            .await
        {
            Ok(v) => v,
            Err(wisp_dispatch::ResolveError::NotFound(_)) => return Outcome::Failed,
            Err(wisp_dispatch::ResolveError::Store(_)) => return Outcome::Throttled,
        };
        let arn = self.mappings.function_arn(&self.config);
        let Ok(request) = wisp_dispatch::invocation_request(payload, &arn, None) else {
            return Outcome::Failed;
        };
        let dispatched = d.invoke(&version, request, "sqs").await;
        match dispatched.response {
            Ok(r) if r.status().is_server_error() => Outcome::Failed,
            Ok(r) => match collect_limited(r.into_body(), MAX_SYNC_PAYLOAD_BYTES).await {
                Ok(body) => Outcome::Returned(body),
                Err(_) => Outcome::Failed,
            },
            Err(e) if e.cause.is_throttle() || e.cause == Cause::Platform => Outcome::Throttled,
            Err(_) => Outcome::Failed,
        }
    }

    /// The record Lambda puts in an SQS event for `m`.
    fn record(&self, m: &Message) -> Value {
        let mut attributes = BTreeMap::new();
        for (k, v) in m.system_attributes(&[
            "ApproximateReceiveCount".into(),
            "SentTimestamp".into(),
            "SenderId".into(),
            "ApproximateFirstReceiveTimestamp".into(),
            "SequenceNumber".into(),
            "MessageGroupId".into(),
            "MessageDeduplicationId".into(),
            "AWSTraceHeader".into(),
            "DeadLetterQueueSourceArn".into(),
        ]) {
            attributes.insert(k, Value::String(v));
        }
        let message_attributes: serde_json::Map<String, Value> = m
            .attributes
            .iter()
            .map(|(k, a)| {
                let mut v = json!({
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": a.data_type,
                });
                match &a.value {
                    AttributeValue::String(s) => v["stringValue"] = json!(s),
                    AttributeValue::Binary(b) => {
                        v["binaryValue"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                }
                (k.clone(), v)
            })
            .collect();
        let mut record = json!({
            "messageId": m.message_id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": m.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": self.config.queue_arn,
            "awsRegion": self.mappings.sqs.region(),
        });
        if let Some(md5) = crate::message::md5_of_attributes(&m.attributes) {
            record["md5OfMessageAttributes"] = json!(md5);
        }
        record
    }
}

/// What FilterCriteria match: the record, with a body that is JSON as its
/// value (as Lambda filters SQS bodies), else as its text.
fn filterable(record: &Value) -> Value {
    let mut v = record.clone();
    if let Some(body) = record["body"].as_str() {
        if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(body) {
            v["body"] = parsed;
        }
    }
    v
}

/// The message ids a ReportBatchItemFailures answer names; None when the
/// answer is not one (Lambda then fails the whole batch). No answer, null,
/// or an empty list all mean success.
fn batch_item_failures(body: &[u8], batch: &[Message]) -> Option<HashSet<String>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() || text == "null" {
        return Some(HashSet::new());
    }
    let v: Value = serde_json::from_str(text).ok()?;
    let Some(list) = v.get("batchItemFailures") else {
        // Any other answer is success for the whole batch.
        return Some(HashSet::new());
    };
    if list.is_null() {
        return Some(HashSet::new());
    }
    let ids: HashSet<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
    let mut failed = HashSet::new();
    for item in list.as_array()? {
        let id = item.get("itemIdentifier")?.as_str()?;
        if !ids.contains(id) {
            return None;
        }
        failed.insert(id.to_string());
    }
    Some(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> Message {
        Message {
            message_id: id.into(),
            receipt_handle: format!("r-{id}"),
            body: "{}".into(),
            md5_of_body: String::new(),
            attributes: BTreeMap::new(),
            trace_header: None,
            sender_id: String::new(),
            sent_ms: 0,
            receive_count: 1,
            first_receive_ms: 0,
            group_id: None,
            deduplication_id: None,
            sequence_number: None,
            dead_letter_source: None,
        }
    }

    #[test]
    fn batch_item_failures_are_read_as_lambda_reads_them() {
        let batch = [message("a"), message("b")];
        let ids = |b: &str| batch_item_failures(b.as_bytes(), &batch);
        assert_eq!(ids(""), Some(HashSet::new()));
        assert_eq!(ids("null"), Some(HashSet::new()));
        assert_eq!(ids(r#"{"batchItemFailures":[]}"#), Some(HashSet::new()));
        assert_eq!(ids(r#"{"ok":true}"#), Some(HashSet::new()));
        assert_eq!(
            ids(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            Some(HashSet::from(["b".to_string()]))
        );
        // Unknown, empty or missing identifiers fail the whole batch.
        assert_eq!(
            ids(r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#),
            None
        );
        assert_eq!(
            ids(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            None
        );
        assert_eq!(ids(r#"{"batchItemFailures":[{}]}"#), None);
        assert_eq!(ids(r#"{"batchItemFailures":"b"}"#), None);
    }

    #[test]
    fn json_bodies_are_filtered_as_values() {
        let r = json!({"body": "{\"kind\":\"order\"}", "attributes": {}});
        let p = Pattern::parse(r#"{"body":{"kind":["order"]}}"#).unwrap();
        assert!(p.matches(&filterable(&r)));
        let text = json!({"body": "plain"});
        let p = Pattern::parse(r#"{"body":["plain"]}"#).unwrap();
        assert!(p.matches(&filterable(&text)));
    }
}
