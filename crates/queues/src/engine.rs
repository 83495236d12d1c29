//! The queue engine: SQS's operations over a `QueueStore`, typed, with
//! every rule SQS applies to them (bounds, FIFO keys, batches, receipts,
//! dead-letter and redrive, long polling). It never sees HTTP: `wisp_aws`
//! turns the wire shapes into these calls, and event source mappings call
//! them directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use wisp_core::clock::Clock;
use wisp_store::sqs::{
    DeadLetter, FifoKeys, NewMessage, QueueCounts, QueueRow, Receipt, ReceiveRequest,
    VisibilityChange,
};
use wisp_store::{QueueStore, StoreError};

use crate::attributes::{
    check_queue_name, is_queue_arn, DeduplicationScope, QueueAttributes, RedriveAllow,
};
use crate::error::SqsError;
use crate::message::{
    check_attributes, check_body, md5_of_attributes, md5_of_body, message_size, AttributeValue,
    MessageAttribute,
};

/// Most entries in a batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes of all the messages of one SendMessageBatch.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Longest per-message delay (15 minutes).
pub const MAX_DELAY_SECONDS: u32 = 900;
/// Longest visibility timeout (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;
/// Longest long poll.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// Most messages one receive returns.
pub const MAX_RECEIVE: u32 = 10;
/// FIFO deduplication window (5 minutes).
pub const DEDUPE_WINDOW_MS: i64 = 300_000;
/// How often a queue may be purged.
pub const PURGE_INTERVAL_MS: i64 = 60_000;
/// Most queues ListQueues returns in one page.
pub const MAX_LIST: usize = 1000;
/// Most tags on a queue.
pub const MAX_TAGS: usize = 50;

/// A queue as the engine knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub name: String,
    pub attributes: QueueAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct SendEntry {
    pub body: String,
    pub delay_seconds: Option<i64>,
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// Only `AWSTraceHeader`.
    pub system_attributes: BTreeMap<String, MessageAttribute>,
    pub deduplication_id: Option<String>,
    pub group_id: Option<String>,
    /// For callers inside wisp: the message id to use; `None`, a new one.
    pub message_id: Option<String>,
    /// For callers inside wisp, with `message_id`: for this long, another
    /// send of the same id (repeated after an unclear failure, or by a
    /// node that took over a crashed one's work) is not stored again.
    pub once_for_ms: Option<i64>,
}

/// How the names of queues wisp keeps for itself begin: `~` is not
/// allowed in an SQS queue name.
pub const INTERNAL_PREFIX: &str = "wisp~";

/// What a sent message answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    pub sequence_number: Option<String>,
}

/// How to receive.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveOptions {
    pub max_messages: Option<i64>,
    pub visibility_timeout: Option<i64>,
    pub wait_seconds: Option<i64>,
    /// For callers inside wisp: a wait in ms, instead of `wait_seconds`
    /// (a batching window ends between seconds).
    pub wait_ms: Option<i64>,
}

/// A received message, with everything SQS may show of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// The system attributes it was sent with (`AWSTraceHeader`).
    pub trace_header: Option<String>,
    pub sender_id: String,
    pub sent_ms: i64,
    pub receive_count: u32,
    pub first_receive_ms: i64,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub sequence_number: Option<String>,
    pub dead_letter_source: Option<String>,
}

impl Message {
    /// The system attributes named by `names` (`All` for all), as SQS
    /// returns them.
    pub fn system_attributes(&self, names: &[String]) -> BTreeMap<String, String> {
        let all = names.iter().any(|n| n == "All");
        let want = |n: &str| all || names.iter().any(|x| x == n);
        let mut out = BTreeMap::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(v) = value.filter(|_| want(name)) {
                out.insert(name.to_string(), v);
            }
        };
        put("SenderId", Some(self.sender_id.clone()));
        put("SentTimestamp", Some(self.sent_ms.to_string()));
        put(
            "ApproximateReceiveCount",
            Some(self.receive_count.to_string()),
        );
        put(
            "ApproximateFirstReceiveTimestamp",
            Some(self.first_receive_ms.to_string()),
        );
        put("SequenceNumber", self.sequence_number.clone());
        put("MessageDeduplicationId", self.deduplication_id.clone());
        put("MessageGroupId", self.group_id.clone());
        put("AWSTraceHeader", self.trace_header.clone());
        put("DeadLetterQueueSourceArn", self.dead_letter_source.clone());
        out
    }

    /// The message attributes named by `names`: `All` or `.*` for all,
    /// `prefix.*` for a prefix, else exact names.
    pub fn message_attributes(&self, names: &[String]) -> BTreeMap<String, MessageAttribute> {
        let wanted = |name: &str| {
            names.iter().any(|n| {
                n == "All"
                    || n == ".*"
                    || n == name
                    || n.strip_suffix(".*")
                        .is_some_and(|prefix| name.starts_with(&format!("{prefix}.")))
            })
        };
        self.attributes
            .iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A queue's state, as `wisp queue ls` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub counts: QueueCounts,
    pub oldest_age_ms: Option<i64>,
    pub dead_letter: Option<String>,
}

/// Sets each queue's gauges; zeroes those of queues gone since `seen`.
fn publish_gauges(
    stats: &[QueueStats],
    seen: std::collections::HashSet<String>,
) -> std::collections::HashSet<String> {
    let mut now_seen = std::collections::HashSet::new();
    for s in stats {
        let q = s.name.clone();
        for (state, n) in [
            ("visible", s.counts.visible),
            ("in_flight", s.counts.in_flight),
            ("delayed", s.counts.delayed),
        ] {
            metrics::gauge!("wisp_queue_messages", "queue" => q.clone(), "state" => state)
                .set(n as f64);
        }
        metrics::gauge!("wisp_queue_oldest_message_age_seconds", "queue" => q.clone())
            .set(s.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
        if let Some(dlq) = &s.dead_letter {
            let depth = stats.iter().find(|d| &d.name == dlq).map_or(0, |d| {
                d.counts.visible + d.counts.in_flight + d.counts.delayed
            });
            metrics::gauge!("wisp_queue_dead_letter_messages", "queue" => q.clone())
                .set(depth as f64);
        }
        now_seen.insert(q);
    }
    for gone in seen.difference(&now_seen) {
        for state in ["visible", "in_flight", "delayed"] {
            metrics::gauge!("wisp_queue_messages", "queue" => gone.clone(), "state" => state)
                .set(0.0);
        }
        metrics::gauge!("wisp_queue_oldest_message_age_seconds", "queue" => gone.clone()).set(0.0);
    }
    now_seen
}

/// What a message move task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTaskView {
    pub task_handle: Option<String>,
    pub status: &'static str,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<i64>,
    pub moved: u64,
    pub to_move: u64,
    pub failure_reason: Option<String>,
    pub started_ms: i64,
}

struct MoveTask {
    handle: String,
    source: String,
    source_arn: String,
    destination_arn: Option<String>,
    max_per_second: Option<i64>,
    to_move: u64,
    started_ms: i64,
    moved: AtomicU64,
    cancel: AtomicBool,
    state: Mutex<(&'static str, Option<String>)>,
}

impl MoveTask {
    fn view(&self) -> MoveTaskView {
        let (status, failure) = self
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(("FAILED", None));
        MoveTaskView {
            task_handle: (status == "RUNNING").then(|| self.handle.clone()),
            status,
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            max_per_second: self.max_per_second,
            moved: self.moved.load(Ordering::Relaxed),
            to_move: self.to_move,
            failure_reason: failure,
            started_ms: self.started_ms,
        }
    }

    fn set(&self, status: &'static str, failure: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = (status, failure);
        }
    }
}

/// What the engine keeps with a message besides its body.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extra {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    a: BTreeMap<String, StoredAttribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
    #[serde(default)]
    sender: String,
    /// A standard queue's MessageGroupId (kept, shown, not ordered by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAttribute {
    t: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl From<&MessageAttribute> for StoredAttribute {
    fn from(a: &MessageAttribute) -> Self {
        match &a.value {
            AttributeValue::String(s) => StoredAttribute {
                t: a.data_type.clone(),
                s: Some(s.clone()),
                b: None,
            },
            AttributeValue::Binary(b) => StoredAttribute {
                t: a.data_type.clone(),
                s: None,
                b: Some(b64().encode(b)),
            },
        }
    }
}

impl StoredAttribute {
    fn attribute(&self) -> MessageAttribute {
        let value = match (&self.s, &self.b) {
            (_, Some(b)) => AttributeValue::Binary(b64().decode(b).unwrap_or_default()),
            (s, None) => AttributeValue::String(s.clone().unwrap_or_default()),
        };
        MessageAttribute {
            data_type: self.t.clone(),
            value,
        }
    }
}

/// A receipt handle on the wire: the receipt, opaque.
fn encode_receipt(r: Receipt) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", r.id, r.nonce))
}

fn decode_receipt(handle: &str) -> Result<Receipt, SqsError> {
    let bad = || SqsError::receipt_invalid(handle);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle.trim())
        .map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (id, nonce) = text.split_once(':').ok_or_else(bad)?;
    Ok(Receipt {
        id: id.parse().map_err(|_| bad())?,
        nonce: nonce.parse().map_err(|_| bad())?,
    })
}

/// Checks a batch's entry ids: some, at most ten, each well formed, none
/// repeated.
pub fn check_batch_ids<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Result<(), SqsError> {
    let n = ids.len();
    if n == 0 {
        return Err(SqsError::batch(
            "EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if n > MAX_BATCH_ENTRIES {
        return Err(SqsError::batch(
            "TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {n}."
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let ok = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(SqsError::batch(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::batch(
                "BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

fn bounded(name: &str, value: Option<i64>, max: u32, default: u32) -> Result<u32, SqsError> {
    match value {
        None => Ok(default),
        Some(v) if (0..=max as i64).contains(&v) => Ok(v as u32),
        Some(v) => Err(SqsError::invalid_value(
            name,
            v,
            &format!("Must be >= 0 and <= {max}, if provided."),
        )),
    }
}

/// The SQS service of one account and region.
pub struct Sqs {
    store: Arc<dyn QueueStore>,
    clock: Arc<dyn Clock>,
    region: String,
    account: String,
    cache: Mutex<HashMap<String, Arc<Queue>>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    purged: Mutex<HashMap<String, i64>>,
    tasks: Mutex<Vec<Arc<MoveTask>>>,
}

impl Sqs {
    pub fn new(
        store: Arc<dyn QueueStore>,
        clock: Arc<dyn Clock>,
        region: &str,
        account: &str,
    ) -> Arc<Sqs> {
        Arc::new(Sqs {
            store,
            clock,
            region: region.into(),
            account: account.into(),
            cache: Mutex::default(),
            waiters: Mutex::default(),
            purged: Mutex::default(),
            tasks: Mutex::default(),
        })
    }

    /// Drops expired messages every `retention`, and publishes each
    /// queue's gauges every `gauges`, until the engine is dropped.
    pub fn start_housekeeping(self: &Arc<Self>, retention: Duration, gauges: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut expire = tokio::time::interval(retention);
            let mut publish = tokio::time::interval(gauges);
            let mut seen = std::collections::HashSet::new();
            loop {
                tokio::select! {
                    _ = expire.tick() => {
                        let Some(sqs) = weak.upgrade() else { break };
                        match sqs.store.expire_messages(sqs.clock.now_ms()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(messages = n, "queue retention dropped messages"),
                            Err(e) => tracing::warn!(error = %e, "queue retention failed"),
                        }
                    }
                    _ = publish.tick() => {
                        let Some(sqs) = weak.upgrade() else { break };
                        if let Ok(stats) = sqs.stats().await {
                            seen = publish_gauges(&stats, seen);
                        }
                    }
                }
            }
        });
    }

    /// Every queue's counts, oldest message and dead-letter queue.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, SqsError> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for row in self.store.list_queues("").await? {
            let q = Self::queue_of(row)?;
            let counts = self.store.queue_counts(&q.name, now).await?;
            out.push(QueueStats {
                dead_letter: q
                    .attributes
                    .redrive_policy
                    .as_ref()
                    .and_then(|p| self.name_from_arn(&p.dead_letter_target_arn)),
                oldest_age_ms: counts.oldest_sent_ms.map(|t| (now - t).max(0)),
                name: q.name,
                counts,
            });
        }
        Ok(out)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account)
    }

    /// A queue's URL as a client that reached the API at `base` sees it.
    pub fn url(&self, base: &str, name: &str) -> String {
        format!("{}/{}/{name}", base.trim_end_matches('/'), self.account)
    }

    /// The queue a QueueUrl names, whatever host the client used; a bare
    /// name is taken too.
    pub fn name_from_url(url: &str) -> Result<String, SqsError> {
        let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        check_queue_name(name, name.ends_with(".fifo")).map_err(|_| SqsError::no_queue())?;
        Ok(name.to_string())
    }

    /// The queue an ARN of this account and region names.
    pub fn name_from_arn(&self, arn: &str) -> Option<String> {
        let prefix = format!("arn:aws:sqs:{}:{}:", self.region, self.account);
        arn.strip_prefix(&prefix)
            .filter(|_| is_queue_arn(arn))
            .map(str::to_string)
    }

    fn waiter(&self, name: &str) -> Arc<Notify> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(name.to_string()).or_default().clone()
    }

    /// Wakes long polls of `name`: something may be receivable.
    pub fn wake(&self, name: &str) {
        let w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = w.get(name) {
            n.notify_waiters();
        }
    }

    /// Drops a queue's cached attributes (after a change here or on another node).
    pub fn forget(&self, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Drops every cached queue.
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A queue by name (cached; changes through this engine refresh it).
    pub async fn queue(&self, name: &str) -> Result<Arc<Queue>, SqsError> {
        if let Some(q) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(q.clone());
        }
        let row = self
            .store
            .get_queue(name)
            .await?
            .ok_or_else(SqsError::no_queue)?;
        let q = Arc::new(Self::queue_of(row)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), q.clone());
        Ok(q)
    }

    fn queue_of(row: QueueRow) -> Result<Queue, SqsError> {
        let attributes = match row.name.starts_with(INTERNAL_PREFIX) {
            true => QueueAttributes::create_internal(&row.attributes),
            false => QueueAttributes::create(&row.name, &row.attributes),
        }
        .map_err(|e| SqsError::internal(format!("stored queue {}: {e}", row.name)))?;
        Ok(Queue {
            name: row.name,
            attributes,
            tags: row.tags,
            created_ms: row.created_ms,
            modified_ms: row.modified_ms,
        })
    }

    /// Checks a redrive policy's target: it exists, has the source's
    /// type, and lets the source use it.
    async fn check_redrive(&self, name: &str, attrs: &QueueAttributes) -> Result<(), SqsError> {
        let Some(policy) = &attrs.redrive_policy else {
            return Ok(());
        };
        let bad = |why: &str| {
            SqsError::plain(
                "InvalidAttributeValue",
                format!("Invalid value for the parameter RedrivePolicy. Reason: {why}"),
            )
        };
        let target = self
            .name_from_arn(&policy.dead_letter_target_arn)
            .ok_or_else(|| bad("Dead-letter target owner should be same as the source."))?;
        if target == name {
            return Err(bad("A queue cannot be its own dead-letter queue."));
        }
        let dlq = match self.queue(&target).await {
            Ok(q) => q,
            Err(_) => return Err(bad("Dead letter target does not exist.")),
        };
        if dlq.attributes.fifo_queue != attrs.fifo_queue {
            return Err(bad(
                "The dead-letter queue of a FIFO queue must also be of type FIFO, and the one of a standard queue must also be standard.",
            ));
        }
        let source_arn = self.arn(name);
        let allowed = match &dlq.attributes.redrive_allow_policy {
            None | Some(RedriveAllow::AllowAll) => true,
            Some(RedriveAllow::DenyAll) => false,
            Some(RedriveAllow::ByQueue(arns)) => arns.contains(&source_arn),
        };
        if !allowed {
            return Err(bad(&format!(
                "Queue {} does not allow {source_arn} to use it as a dead-letter queue (its RedriveAllowPolicy).",
                policy.dead_letter_target_arn
            )));
        }
        Ok(())
    }

    /// CreateQueue: a new queue, or the existing one when every given
    /// attribute has the value it has.
    pub async fn create_queue(
        &self,
        name: &str,
        given: &BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Queue>, SqsError> {
        if name.is_empty() {
            return Err(SqsError::missing("QueueName"));
        }
        let attributes = QueueAttributes::create(name, given)?;
        check_tags(&tags)?;
        if let Ok(existing) = self.queue(name).await {
            let have = existing.attributes.to_map();
            let want = attributes.to_map();
            for key in given.keys() {
                if have.get(key) != want.get(key) {
                    return Err(SqsError::queue_exists(format!(
                        "A queue already exists with the same name and a different value for attribute {key}"
                    )));
                }
            }
            if existing.attributes.fifo_queue != attributes.fifo_queue {
                return Err(SqsError::queue_exists(
                    "A queue already exists with the same name and a different value for attribute FifoQueue",
                ));
            }
            return Ok(existing);
        }
        self.check_redrive(name, &attributes).await?;
        let now = self.clock.now_ms();
        let row = QueueRow {
            name: name.to_string(),
            attributes: attributes.to_map(),
            tags,
            created_ms: now,
            modified_ms: now,
        };
        match self.store.create_queue(row).await {
            Ok(()) => {}
            // Created by a concurrent call since: answer as for an existing one.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.queue(name).await
    }

    /// A queue wisp keeps for itself (named with [`INTERNAL_PREFIX`]),
    /// created on first use; never listed to users.
    pub async fn internal_queue(
        &self,
        name: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<Arc<Queue>, SqsError> {
        debug_assert!(name.starts_with(INTERNAL_PREFIX));
        if let Ok(existing) = self.queue(name).await {
            return Ok(existing);
        }
        let attributes = QueueAttributes::create_internal(given)?;
        let now = self.clock.now_ms();
        let row = QueueRow {
            name: name.to_string(),
            attributes: attributes.to_map(),
            tags: BTreeMap::new(),
            created_ms: now,
            modified_ms: now,
        };
        match self.store.create_queue(row).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.queue(name).await
    }

    pub async fn list_queues(&self, prefix: &str) -> Result<Vec<String>, SqsError> {
        Ok(self
            .store
            .list_queues(prefix)
            .await?
            .into_iter()
            .map(|q| q.name)
            .filter(|name| !name.starts_with(INTERNAL_PREFIX))
            .collect())
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), SqsError> {
        self.store.delete_queue(name).await?;
        self.forget(name);
        self.wake(name);
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    pub async fn counts(&self, name: &str) -> Result<QueueCounts, SqsError> {
        Ok(self.store.queue_counts(name, self.clock.now_ms()).await?)
    }

    /// GetQueueAttributes: the named attributes (`All` for every one),
    /// settable and computed.
    pub async fn get_attributes(
        &self,
        name: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, SqsError> {
        const COMPUTED: [&str; 6] = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
            "CreatedTimestamp",
            "LastModifiedTimestamp",
            "QueueArn",
        ];
        let q = self.queue(name).await?;
        let settable = q.attributes.to_map();
        let all = names.iter().any(|n| n == "All");
        for n in names {
            let known = n == "All"
                || COMPUTED.contains(&n.as_str())
                || crate::attributes::ATTRIBUTE_NAMES.contains(&n.as_str());
            if !known {
                return Err(SqsError::plain(
                    "InvalidAttributeName",
                    format!("Unknown Attribute {n}."),
                ));
            }
        }
        let want = |n: &str| all || names.iter().any(|x| x == n);
        let mut out: BTreeMap<String, String> =
            settable.into_iter().filter(|(k, _)| want(k)).collect();
        if COMPUTED[..3].iter().any(|n| want(n)) {
            let c = self.counts(name).await?;
            for (k, v) in [
                (COMPUTED[0], c.visible),
                (COMPUTED[1], c.in_flight),
                (COMPUTED[2], c.delayed),
            ] {
                if want(k) {
                    out.insert(k.into(), v.to_string());
                }
            }
        }
        for (k, v) in [
            (COMPUTED[3], (q.created_ms / 1000).to_string()),
            (COMPUTED[4], (q.modified_ms / 1000).to_string()),
            (COMPUTED[5], self.arn(name)),
        ] {
            if want(k) {
                out.insert(k.into(), v);
            }
        }
        Ok(out)
    }

    pub async fn set_attributes(
        &self,
        name: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<(), SqsError> {
        let q = self.queue(name).await?;
        let mut attributes = q.attributes.clone();
        attributes.set(given)?;
        if given.contains_key("RedrivePolicy") {
            self.check_redrive(name, &attributes).await?;
        }
        let result = self
            .store
            .set_queue_attributes(name, attributes.to_map(), self.clock.now_ms())
            .await;
        self.forget(name);
        result?;
        // A shorter delay or an added policy may make messages receivable.
        self.wake(name);
        Ok(())
    }

    pub async fn tag(&self, name: &str, tags: BTreeMap<String, String>) -> Result<(), SqsError> {
        let q = self.queue(name).await?;
        let mut all = q.tags.clone();
        all.extend(tags);
        check_tags(&all)?;
        let result = self.store.set_queue_tags(name, all).await;
        self.forget(name);
        Ok(result?)
    }

    pub async fn untag(&self, name: &str, keys: &[String]) -> Result<(), SqsError> {
        let q = self.queue(name).await?;
        let mut all = q.tags.clone();
        for k in keys {
            all.remove(k);
        }
        let result = self.store.set_queue_tags(name, all).await;
        self.forget(name);
        Ok(result?)
    }

    /// Checks one message against its queue and makes the row to store.
    fn prepare(
        &self,
        q: &Queue,
        entry: &SendEntry,
        sender: &str,
        now: i64,
    ) -> Result<(NewMessage, SendResult), SqsError> {
        let a = &q.attributes;
        check_body(&entry.body)?;
        check_attributes(&entry.attributes)?;
        for (k, v) in &entry.system_attributes {
            if k != "AWSTraceHeader" {
                return Err(SqsError::invalid(format!(
                    "Message system attribute name '{k}' is invalid."
                )));
            }
            if !matches!(&v.value, AttributeValue::String(s) if !s.is_empty())
                || v.data_type != "String"
            {
                return Err(SqsError::invalid(
                    "The message system attribute AWSTraceHeader must be a non-empty String.",
                ));
            }
        }
        let size = message_size(&entry.body, &entry.attributes);
        if size > a.maximum_message_size as usize {
            return Err(SqsError::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                a.maximum_message_size
            )));
        }
        if a.fifo_queue && entry.delay_seconds.is_some_and(|d| d != 0) {
            return Err(SqsError::invalid_value(
                "DelaySeconds",
                entry.delay_seconds.unwrap_or(0),
                "The request include parameter that is not valid for this queue type.",
            ));
        }
        let delay = bounded(
            "DelaySeconds",
            entry.delay_seconds,
            MAX_DELAY_SECONDS,
            a.delay_seconds,
        )?;
        let fifo = if a.fifo_queue {
            let group = entry
                .group_id
                .clone()
                .filter(|g| !g.is_empty())
                .ok_or_else(|| SqsError::missing("MessageGroupId"))?;
            check_fifo_id("MessageGroupId", &group)?;
            let dedup = match (&entry.deduplication_id, a.content_based_deduplication) {
                (Some(d), _) => {
                    check_fifo_id("MessageDeduplicationId", d)?;
                    d.clone()
                }
                (None, true) => hex::encode(Sha256::digest(entry.body.as_bytes())),
                (None, false) => {
                    return Err(SqsError::invalid(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ))
                }
            };
            Some(FifoKeys {
                group_id: group,
                deduplication_id: dedup,
                per_group: a.deduplication_scope == DeduplicationScope::MessageGroup,
                dedupe_until_ms: now + DEDUPE_WINDOW_MS,
            })
        } else {
            if entry.deduplication_id.is_some() {
                return Err(SqsError::invalid_value(
                    "MessageDeduplicationId",
                    entry.deduplication_id.as_deref().unwrap_or(""),
                    "The request includes a parameter that is not valid for this queue type.",
                ));
            }
            if let Some(g) = &entry.group_id {
                check_fifo_id("MessageGroupId", g)?;
            }
            None
        };
        let extra = Extra {
            a: entry
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
            trace: entry
                .system_attributes
                .get("AWSTraceHeader")
                .and_then(|v| match &v.value {
                    AttributeValue::String(s) => Some(s.clone()),
                    AttributeValue::Binary(_) => None,
                }),
            sender: sender.to_string(),
            group: if a.fifo_queue {
                None
            } else {
                entry.group_id.clone()
            },
        };
        let message_id = entry
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let result = SendResult {
            message_id: message_id.clone(),
            md5_of_body: md5_of_body(&entry.body),
            md5_of_attributes: md5_of_attributes(&entry.attributes),
            md5_of_system_attributes: md5_of_attributes(&entry.system_attributes),
            sequence_number: None,
        };
        let row = NewMessage {
            message_id,
            body: entry.body.clone(),
            extra: serde_json::to_string(&extra).map_err(|e| SqsError::internal(e.to_string()))?,
            sent_ms: now,
            visible_ms: now + delay as i64 * 1000,
            expires_ms: now + a.message_retention_period as i64 * 1000,
            once_until_ms: match (&fifo, &entry.message_id, entry.once_for_ms) {
                (None, Some(_), Some(window)) => Some(now + window),
                _ => None,
            },
            fifo,
        };
        Ok((row, result))
    }

    /// SendMessage(Batch): each entry stored or refused on its own; the
    /// stored ones are durable before this returns.
    pub async fn send(
        &self,
        name: &str,
        entries: &[SendEntry],
        sender: &str,
    ) -> Result<Vec<Result<SendResult, SqsError>>, SqsError> {
        let q = self.queue(name).await?;
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(entries.len());
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.prepare(&q, entry, sender, now) {
                Ok((row, result)) => {
                    rows.push(row);
                    out.push(Ok(result));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let sent = self.store.send_messages(name, rows, now).await?;
        let mut sent = sent.into_iter();
        for result in out.iter_mut().flatten() {
            let Some(s) = sent.next() else { break };
            result.message_id = s.message_id;
            if q.attributes.fifo_queue {
                result.sequence_number = s.sequence_number.map(|n| format!("{n:020}"));
            }
        }
        self.wake(name);
        Ok(out)
    }

    /// ReceiveMessage: up to `max_messages` (1 to 10), waiting up to the
    /// wait time for the first to arrive.
    pub async fn receive(
        &self,
        name: &str,
        options: ReceiveOptions,
    ) -> Result<Vec<Message>, SqsError> {
        let q = self.queue(name).await?;
        let max = match options.max_messages {
            None => 1,
            Some(n) if (1..=MAX_RECEIVE as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(SqsError::invalid_value(
                    "MaxNumberOfMessages",
                    n,
                    "Must be between 1 and 10, if provided.",
                ))
            }
        };
        let visibility = bounded(
            "VisibilityTimeout",
            options.visibility_timeout,
            MAX_VISIBILITY_SECONDS,
            q.attributes.visibility_timeout,
        )?;
        let wait = bounded(
            "WaitTimeSeconds",
            options.wait_seconds,
            MAX_WAIT_SECONDS,
            q.attributes.receive_message_wait_time_seconds,
        )?;
        let dead_letter = q.attributes.redrive_policy.as_ref().and_then(|p| {
            Some(DeadLetter {
                queue: self.name_from_arn(&p.dead_letter_target_arn)?,
                source_arn: self.arn(name),
                max_receive_count: p.max_receive_count,
            })
        });
        let wait_ms = options.wait_ms.map_or(wait as i64 * 1000, |ms| ms.max(0));
        let deadline = self.clock.now_ms() + wait_ms;
        let notify = self.waiter(name);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.clock.now_ms();
            let got = self
                .store
                .receive_messages(ReceiveRequest {
                    queue: name.to_string(),
                    max_messages: max,
                    visibility_ms: visibility as i64 * 1000,
                    now_ms: now,
                    fifo: q.attributes.fifo_queue,
                    dead_letter: dead_letter.clone(),
                })
                .await?;
            if got.dead_lettered > 0 {
                if let Some(dl) = &dead_letter {
                    self.wake(&dl.queue);
                }
            }
            if !got.messages.is_empty() {
                return got.messages.into_iter().map(|m| self.message(m)).collect();
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = got.next_visible_ms.map_or(deadline, |v| v.min(deadline));
            let pause = Duration::from_millis((until - now).max(1) as u64);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn message(&self, m: wisp_store::sqs::StoredMessage) -> Result<Message, SqsError> {
        let extra: Extra = serde_json::from_str(&m.extra)
            .map_err(|e| SqsError::internal(format!("stored message {}: {e}", m.message_id)))?;
        Ok(Message {
            receipt_handle: encode_receipt(m.receipt),
            md5_of_body: md5_of_body(&m.body),
            message_id: m.message_id,
            body: m.body,
            attributes: extra
                .a
                .iter()
                .map(|(k, v)| (k.clone(), v.attribute()))
                .collect(),
            trace_header: extra.trace,
            sender_id: extra.sender,
            sent_ms: m.sent_ms,
            receive_count: m.receive_count,
            first_receive_ms: m.first_receive_ms,
            group_id: m.group_id.or(extra.group),
            deduplication_id: m.deduplication_id,
            sequence_number: m.sequence_number.map(|n| format!("{n:020}")),
            dead_letter_source: m.dead_letter_source,
        })
    }

    /// DeleteMessage(Batch): a stale receipt (the message was received
    /// again since) succeeds and deletes nothing, as on SQS.
    pub async fn delete(
        &self,
        name: &str,
        handles: &[String],
    ) -> Result<Vec<Result<(), SqsError>>, SqsError> {
        let q = self.queue(name).await?;
        let decoded: Vec<Result<Receipt, SqsError>> =
            handles.iter().map(|h| decode_receipt(h)).collect();
        let receipts: Vec<Receipt> = decoded.iter().flatten().copied().collect();
        if !receipts.is_empty() {
            self.store.delete_messages(name, receipts).await?;
            if q.attributes.fifo_queue {
                // The group may be free now.
                self.wake(name);
            }
        }
        Ok(decoded.into_iter().map(|r| r.map(|_| ())).collect())
    }

    /// ChangeMessageVisibility(Batch).
    pub async fn change_visibility(
        &self,
        name: &str,
        changes: &[(String, Option<i64>)],
    ) -> Result<Vec<Result<(), SqsError>>, SqsError> {
        self.queue(name).await?;
        let now = self.clock.now_ms();
        let mut out: Vec<Result<(), SqsError>> = Vec::with_capacity(changes.len());
        let mut valid = Vec::new();
        for (handle, timeout) in changes {
            let checked = decode_receipt(handle).and_then(|r| {
                let t = timeout.ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
                let t = bounded("VisibilityTimeout", Some(t), MAX_VISIBILITY_SECONDS, 0)?;
                Ok((r, now + t as i64 * 1000))
            });
            match checked {
                Ok(change) => {
                    valid.push(change);
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if valid.is_empty() {
            return Ok(out);
        }
        let results = self.store.change_visibility(name, valid, now).await?;
        let mut results = results.into_iter();
        for (slot, (handle, _)) in out.iter_mut().zip(changes) {
            if slot.is_err() {
                continue;
            }
            match results.next() {
                Some(VisibilityChange::Changed) | None => {}
                Some(VisibilityChange::NotInFlight) => *slot = Err(SqsError::not_in_flight()),
                Some(VisibilityChange::Stale) => {
                    *slot = Err(SqsError::invalid_value(
                        "ReceiptHandle",
                        handle,
                        "Message does not exist or is not available for visibility timeout change.",
                    ))
                }
            }
        }
        self.wake(name);
        Ok(out)
    }

    /// PurgeQueue: once a minute per queue.
    pub async fn purge(&self, name: &str) -> Result<(), SqsError> {
        self.queue(name).await?;
        let now = self.clock.now_ms();
        {
            let mut purged = self.purged.lock().unwrap_or_else(|p| p.into_inner());
            if purged
                .get(name)
                .is_some_and(|at| now - at < PURGE_INTERVAL_MS)
            {
                return Err(SqsError::purge_in_progress(&self.arn(name)));
            }
            purged.insert(name.to_string(), now);
        }
        self.store.purge_queue(name).await?;
        Ok(())
    }

    /// The queues whose dead-letter queue is `name`.
    pub async fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>, SqsError> {
        self.queue(name).await?;
        let arn = self.arn(name);
        let mut out = Vec::new();
        for row in self.store.list_queues("").await? {
            let q = Self::queue_of(row)?;
            if q.attributes
                .redrive_policy
                .as_ref()
                .is_some_and(|p| p.dead_letter_target_arn == arn)
            {
                out.push(q.name);
            }
        }
        Ok(out)
    }

    /// The queue a move task's SourceArn names, which must exist.
    async fn move_source(&self, source_arn: &str) -> Result<String, SqsError> {
        let missing = || {
            SqsError::not_found(
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        };
        let source = self.name_from_arn(source_arn).ok_or_else(missing)?;
        self.queue(&source).await.map_err(|_| missing())?;
        Ok(source)
    }

    /// StartMessageMoveTask: moves a dead-letter queue's messages to
    /// `destination_arn`, or each back to its source, at most
    /// `max_per_second` a second.
    pub async fn start_move(
        self: &Arc<Self>,
        source_arn: &str,
        destination_arn: Option<&str>,
        max_per_second: Option<i64>,
    ) -> Result<String, SqsError> {
        let source = self.move_source(source_arn).await?;
        if self.dead_letter_sources(&source).await?.is_empty() {
            return Err(SqsError::invalid(
                "Source queue must be configured as a Dead Letter Queue.",
            ));
        }
        let destination = match destination_arn {
            None => None,
            Some(arn) => {
                let d = self.name_from_arn(arn).ok_or_else(|| {
                    SqsError::not_found("The resource that you specified for the DestinationArn parameter doesn't exist.")
                })?;
                self.queue(&d).await.map_err(|_| {
                    SqsError::not_found("The resource that you specified for the DestinationArn parameter doesn't exist.")
                })?;
                Some(d)
            }
        };
        if let Some(rate) = max_per_second {
            if !(1..=500).contains(&rate) {
                return Err(SqsError::invalid_value(
                    "MaxNumberOfMessagesPerSecond",
                    rate,
                    "Must be between 1 and 500, if provided.",
                ));
            }
        }
        {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            if tasks
                .iter()
                .any(|t| t.source == source && t.view().status == "RUNNING")
            {
                return Err(SqsError::unsupported(
                    "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
                ));
            }
        }
        let c = self.counts(&source).await?;
        let handle = b64().encode(
            serde_json::json!({"taskId": uuid::Uuid::new_v4().to_string(), "sourceArn": source_arn})
                .to_string(),
        );
        let task = Arc::new(MoveTask {
            handle: handle.clone(),
            source: source.clone(),
            source_arn: source_arn.to_string(),
            destination_arn: destination_arn.map(str::to_string),
            max_per_second,
            to_move: c.visible + c.in_flight + c.delayed,
            started_ms: self.clock.now_ms(),
            moved: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new(("RUNNING", None)),
        });
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.push(task.clone());
            // Keep the newest tasks of each source only.
            let len = tasks.len();
            if len > 1000 {
                tasks.drain(..len - 1000);
            }
        }
        let sqs = self.clone();
        tokio::spawn(async move { sqs.run_move(task, destination).await });
        Ok(handle)
    }

    async fn run_move(&self, task: Arc<MoveTask>, destination: Option<String>) {
        let step = task.max_per_second.map_or(1000, |r| (r as usize).max(1));
        let destinations = match &destination {
            Some(d) => vec![d.clone()],
            None => self
                .dead_letter_sources(&task.source)
                .await
                .unwrap_or_default(),
        };
        loop {
            if task.cancel.load(Ordering::Relaxed) {
                task.set("CANCELLED", None);
                return;
            }
            let started = tokio::time::Instant::now();
            let moved = self
                .store
                .move_messages(
                    &task.source,
                    destination.as_deref(),
                    step,
                    self.clock.now_ms(),
                )
                .await;
            let moved = match moved {
                Ok(m) => m,
                Err(e) => {
                    task.set("FAILED", Some(e.to_string()));
                    return;
                }
            };
            task.moved.fetch_add(moved.moved, Ordering::Relaxed);
            for d in &destinations {
                self.wake(d);
            }
            if moved.remaining == 0 {
                task.set("COMPLETED", None);
                return;
            }
            if moved.moved == 0 {
                task.set(
                    "FAILED",
                    Some("The messages' destination queue does not exist.".into()),
                );
                return;
            }
            if task.max_per_second.is_some() {
                tokio::time::sleep_until(started + Duration::from_secs(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// ListMessageMoveTasks: the newest first, up to `max` (1 to 10).
    pub async fn list_moves(
        &self,
        source_arn: &str,
        max: Option<i64>,
    ) -> Result<Vec<MoveTaskView>, SqsError> {
        let source = self.move_source(source_arn).await?;
        let max = match max {
            None => 1,
            Some(n) if (1..=10).contains(&n) => n as usize,
            Some(n) => {
                return Err(SqsError::invalid_value(
                    "MaxResults",
                    n,
                    "Must be between 1 and 10, if provided.",
                ))
            }
        };
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tasks
            .iter()
            .rev()
            .filter(|t| t.source == source)
            .take(max)
            .map(|t| t.view())
            .collect())
    }

    /// CancelMessageMoveTask: how many it had moved.
    pub async fn cancel_move(&self, handle: &str) -> Result<u64, SqsError> {
        let task = {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.iter().find(|t| t.handle == handle).cloned()
        }
        .ok_or_else(|| SqsError::not_found("Task does not exist."))?;
        if task.view().status != "RUNNING" {
            return Err(SqsError::unsupported("Only active tasks can be cancelled."));
        }
        task.cancel.store(true, Ordering::Relaxed);
        task.set("CANCELLING", None);
        Ok(task.moved.load(Ordering::Relaxed))
    }
}

/// Async invocations' destination records, sent as messages (standard
/// queues; Lambda does not send them to FIFO queues either).
#[async_trait::async_trait]
impl wisp_dispatch::MessageSink for Sqs {
    /// A store failure (a clustered store electing a new leader, say) is
    /// tried again for a few seconds before the record is given up.
    async fn send(&self, name: &str, body: String) -> Result<(), String> {
        // One id for every try: a try that landed but did not say so is
        // not stored again.
        let entry = SendEntry {
            body,
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            once_for_ms: Some(SINK_PATIENCE.as_millis() as i64 * 2),
            ..SendEntry::default()
        };
        let mut wait = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        let mut sent = loop {
            match Sqs::send(self, name, std::slice::from_ref(&entry), DESTINATION_SENDER).await {
                Ok(sent) => break sent,
                Err(e) if e.internal && waited < SINK_PATIENCE => {
                    tracing::debug!(queue = name, error = %e.message, "retrying a destination record");
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.message),
            }
        };
        match sent.pop() {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.message),
            None => Err("no answer for the message".into()),
        }
    }
}

/// How long a destination record is retried through store failures.
const SINK_PATIENCE: Duration = Duration::from_secs(10);

/// The SenderId of destination records.
pub const DESTINATION_SENDER: &str = "AWSLambda";

fn check_fifo_id(name: &str, id: &str) -> Result<(), SqsError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SqsError::invalid_value(
            name,
            id,
            &format!("{name} can only include alphanumeric and punctuation characters. 1 to 128 in length."),
        ))
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), SqsError> {
    if tags.len() > MAX_TAGS {
        return Err(SqsError::invalid(format!(
            "Too many tags added for queue. A queue can have at most {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(SqsError::invalid(
                "Tag keys must be 1 to 128 characters and values at most 256.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
