//! SQS queues and their messages, as the store sees them: rows and the
//! transitions between them (send, receive under a visibility deadline,
//! delete, change visibility, dead-letter, move back). What the
//! attributes mean lives in `wisp_queues`; the store keeps them as a map.

use std::collections::BTreeMap;

/// A queue: its name, settable attributes (as SetQueueAttributes names
/// them), tags and times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueRow {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// What orders and de-duplicates a FIFO message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoKeys {
    pub group_id: String,
    pub deduplication_id: String,
    /// De-duplicate within the message group (`DeduplicationScope =
    /// messageGroup`) rather than the whole queue.
    pub per_group: bool,
    /// Until when a message with the same deduplication id is a duplicate.
    pub dedupe_until_ms: i64,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: String,
    pub body: String,
    /// What else the engine keeps with it (JSON): message attributes,
    /// system attributes, sender.
    pub extra: String,
    pub sent_ms: i64,
    /// When it may first be received (after its delay).
    pub visible_ms: i64,
    /// When retention drops it.
    pub expires_ms: i64,
    pub fifo: Option<FifoKeys>,
    /// A standard queue's message sent by wisp itself under an id it
    /// chose: until then, another send of the same id is a duplicate (not
    /// stored again), as a FIFO deduplication id is.
    pub once_until_ms: Option<i64>,
}

/// A stored message's answer to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its id; of a FIFO duplicate, the first message's.
    pub message_id: String,
    /// FIFO queues: its place in the queue.
    pub sequence_number: Option<i64>,
    /// A FIFO duplicate inside the deduplication window: not stored again.
    pub duplicate: bool,
}

/// Names one receive of one message: a later receive gets another nonce,
/// and only the latest deletes or changes the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub id: i64,
    pub nonce: i64,
}

/// Where a queue's messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter queue's name.
    pub queue: String,
    /// The source queue's ARN, kept on a moved message.
    pub source_arn: String,
    pub max_receive_count: u32,
}

/// How to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveRequest {
    pub queue: String,
    pub max_messages: usize,
    /// How long the received messages stay invisible.
    pub visibility_ms: i64,
    pub now_ms: i64,
    /// FIFO: one group at a time, in order, a group blocked while one of
    /// its messages is in flight.
    pub fifo: bool,
    pub dead_letter: Option<DeadLetter>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub receipt: Receipt,
    pub message_id: String,
    pub body: String,
    pub extra: String,
    pub sent_ms: i64,
    /// This receive included.
    pub receive_count: u32,
    pub first_receive_ms: i64,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub sequence_number: Option<i64>,
    /// The ARN of the queue it was dead-lettered from, if it was.
    pub dead_letter_source: Option<String>,
}

/// What a receive got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    pub messages: Vec<StoredMessage>,
    /// Messages moved to the dead-letter queue instead of delivered.
    pub dead_lettered: u64,
    /// When the next message not yet visible becomes visible, if any.
    pub next_visible_ms: Option<i64>,
}

/// What a visibility change found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityChange {
    Changed,
    /// The receipt is the latest, but the message is not in flight.
    NotInFlight,
    /// No message has this receipt (deleted, or received again since).
    Stale,
}

/// A queue's counts at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub oldest_sent_ms: Option<i64>,
}

/// Where a move sends a message: the destination given, else the queue it
/// was dead-lettered from (its ARN's last part); `None` if neither.
pub fn move_target(destination: Option<&str>, dead_letter_source: Option<&str>) -> Option<String> {
    match destination {
        Some(d) => Some(d.to_string()),
        None => dead_letter_source
            .and_then(|arn| arn.rsplit(':').next())
            .map(str::to_string),
    }
}

/// What one step of a move task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moved {
    pub moved: u64,
    /// Messages still on the source (those whose destination is missing
    /// included).
    pub remaining: u64,
}

/// SQS queues and their messages. Every write is durable before it
/// returns.
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// `Conflict` if a queue of that name exists.
    async fn create_queue(&self, queue: QueueRow) -> crate::Result<()>;
    async fn get_queue(&self, name: &str) -> crate::Result<Option<QueueRow>>;
    /// Queues whose names start with `prefix`, by name.
    async fn list_queues(&self, prefix: &str) -> crate::Result<Vec<QueueRow>>;
    /// Replaces a queue's attributes; `NotFound` if it is gone.
    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        modified_ms: i64,
    ) -> crate::Result<()>;
    async fn set_queue_tags(&self, name: &str, tags: BTreeMap<String, String>)
        -> crate::Result<()>;
    /// Deletes a queue with its messages; `NotFound` if it is gone.
    async fn delete_queue(&self, name: &str) -> crate::Result<()>;

    /// Stores messages, one answer each, in order; `NotFound` if the
    /// queue is gone.
    async fn send_messages(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now_ms: i64,
    ) -> crate::Result<Vec<Sent>>;
    /// Leases up to `max_messages` visible messages until `now +
    /// visibility`, moving those received too often to the dead-letter
    /// queue, and dropping expired ones.
    async fn receive_messages(&self, request: ReceiveRequest) -> crate::Result<Received>;
    /// Deletes the messages whose latest receipt is given; whether each was.
    async fn delete_messages(
        &self,
        queue: &str,
        receipts: Vec<Receipt>,
    ) -> crate::Result<Vec<bool>>;
    /// Sets in-flight messages' visibility deadlines.
    async fn change_visibility(
        &self,
        queue: &str,
        changes: Vec<(Receipt, i64)>,
        now_ms: i64,
    ) -> crate::Result<Vec<VisibilityChange>>;
    /// Deletes every message of a queue; how many.
    async fn purge_queue(&self, queue: &str) -> crate::Result<u64>;
    async fn queue_counts(&self, queue: &str, now_ms: i64) -> crate::Result<QueueCounts>;
    /// Drops every message past its retention; how many.
    async fn expire_messages(&self, now_ms: i64) -> crate::Result<u64>;
    /// Moves up to `limit` messages off `source` (a dead-letter queue) to
    /// `destination`, or each to the queue it was dead-lettered from;
    /// they arrive as new (never received), keeping their retention.
    async fn move_messages(
        &self,
        source: &str,
        destination: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> crate::Result<Moved>;
}
