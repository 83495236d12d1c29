//! SQS queues on JetStream. A queue is a row in the `queues` bucket and a
//! work-queue stream of its own; a standard queue's messages are consumed
//! by one durable pull consumer shared by every node, a FIFO queue's by
//! one per message group (a group is only fetched from while none of its
//! messages is in flight, which keeps it in order).
//!
//! In a standard queue, visibility is the server's redelivery timer: a
//! received message is nak'd with the visibility as its delay, so it comes
//! back when that runs out even if the node that received it is gone, and
//! a later ack still removes it. In a FIFO queue a timer could fire a
//! moment after wisp's own deadline and let the next message of the group
//! overtake it, so there the receive that finds the deadline passed hands
//! the message back itself, just before it fetches: the server then
//! redelivers it ahead of the group's newer messages. What the server does not keep is in the `flights` bucket,
//! one entry per message received at least once (or sent with a delay):
//! its receive count, first receive, visibility deadline, the nonce that
//! makes a receipt the latest one, and the delivery's ack subject, so any
//! node can settle a message another node received. A redelivery that
//! comes before the entry's deadline (the visibility was extended) is
//! handed back again with the rest of the delay.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, Stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wisp_store::sqs::{
    Moved, NewMessage, QueueCounts, QueueRow, QueueStore, Receipt, ReceiveRequest, Received, Sent,
    StoredMessage, VisibilityChange,
};
use wisp_store::{Result, StoreError};

use crate::kv::{long_seg, seg, ttl};
use crate::{internal, NatsStore};

/// Longer than any visibility timeout (12 h): the server's own ack wait
/// never decides; the delays wisp naks with do.
const ACK_WAIT: Duration = Duration::from_secs(12 * 3600 + 60);
/// Longer than any retention (14 days): retention is each message's own.
const MAX_AGE: Duration = Duration::from_secs(15 * 24 * 3600);
/// How soon an empty receive looks again (a message sent through another
/// node wakes no waiter here).
const POLL_MS: i64 = 500;

/// A message as it sits on its queue's stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Msg {
    id: String,
    body: String,
    extra: String,
    sent_ms: i64,
    visible_ms: i64,
    expires_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dl_source: Option<String>,
}

/// What the server does not keep about a received (or delayed) message.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flight {
    /// Receives so far (0: sent with a delay, not received yet).
    count: u32,
    nonce: i64,
    first_ms: i64,
    /// Invisible until then.
    visible_ms: i64,
    /// The latest delivery's ack subject.
    reply: String,
    /// Its FIFO group, which is blocked while it is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

/// A FIFO deduplication id's first message, until its window ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dedupe {
    until_ms: i64,
    message_id: String,
    seq: Option<i64>,
}

/// Streams and consumers this node has opened, by queue.
#[derive(Default)]
pub(crate) struct Opened {
    streams: HashMap<String, Stream>,
    consumers: HashMap<(String, String), PullConsumer>,
}

fn row_key(queue: &str) -> String {
    format!("q.{}", seg(queue))
}

fn flight_key(queue: &str, seq: i64) -> String {
    format!("{}.{seq}", seg(queue))
}

fn nak_delay(delay_ms: i64) -> bytes::Bytes {
    let nanos = delay_ms.max(0) as u128 * 1_000_000;
    format!("-NAK {{\"delay\":{nanos}}}").into()
}

impl NatsStore {
    fn queue_stream_name(&self, queue: &str) -> String {
        format!("{}_q_{}", self.ns, seg(queue))
    }

    fn queue_subject(&self, queue: &str, group: Option<&str>) -> String {
        match group {
            None => format!("{}.q.{}.m", self.ns, seg(queue)),
            Some(g) => format!("{}.q.{}.g.{}", self.ns, seg(queue), long_seg(g)),
        }
    }

    /// The queue's stream, created if missing.
    async fn queue_stream(&self, queue: &str) -> Result<Stream> {
        if let Some(s) = self.opened.lock().await.streams.get(queue) {
            return Ok(s.clone());
        }
        let stream = crate::open_stream(
            &self.js,
            &self.ns,
            self.placement,
            &format!("q_{}", seg(queue)),
            &format!("q.{}", seg(queue)),
            stream::Config {
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: MAX_AGE,
                ..Default::default()
            },
        )
        .await?;
        self.opened
            .lock()
            .await
            .streams
            .insert(queue.to_string(), stream.clone());
        Ok(stream)
    }

    async fn queue_consumer(&self, queue: &str, group: Option<&str>) -> Result<PullConsumer> {
        let cache_key = (queue.to_string(), group.unwrap_or("").to_string());
        if let Some(c) = self.opened.lock().await.consumers.get(&cache_key) {
            return Ok(c.clone());
        }
        let stream = self.queue_stream(queue).await?;
        let name = match group {
            None => "m".to_string(),
            Some(g) => format!("g_{}", long_seg(g).replace('=', "_")),
        };
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.queue_subject(queue, group),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    deliver_policy: DeliverPolicy::All,
                    max_ack_pending: -1,
                    inactive_threshold: match group {
                        Some(_) => Duration::from_secs(3600),
                        None => Duration::ZERO,
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| internal(format!("queue {queue}: {e}")))?;
        self.opened
            .lock()
            .await
            .consumers
            .insert(cache_key, consumer.clone());
        Ok(consumer)
    }

    async fn forget_queue(&self, queue: &str) {
        let mut opened = self.opened.lock().await;
        opened.streams.remove(queue);
        opened.consumers.retain(|(q, _), _| q != queue);
    }

    /// Publishes a message to `queue`; its stream sequence. A first send
    /// carries its message id as `Nats-Msg-Id`, so a publish repeated after
    /// a lost acknowledgement is stored once; a move (dead-letter, redrive)
    /// does not, since the same message may come back within the window.
    async fn publish_msg(&self, queue: &str, msg: &Msg, first_send: bool) -> Result<i64> {
        self.queue_stream(queue).await?;
        let mut headers = async_nats::HeaderMap::new();
        if first_send {
            headers.insert("Nats-Msg-Id", msg.id.as_str());
        }
        let ack = self
            .js
            .publish_with_headers(
                self.queue_subject(queue, msg.group.as_deref()),
                headers,
                crate::kv::to_bytes(msg)?,
            )
            .await
            .map_err(internal)?
            .await
            .map_err(internal)?;
        Ok(ack.sequence as i64)
    }

    /// The first message of a FIFO deduplication id still in its window,
    /// or a claim on the id for the caller (`None`).
    async fn dedupe(
        &self,
        key: &str,
        message_id: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Sent>> {
        for _ in 0..250 {
            let claim = Dedupe {
                until_ms,
                message_id: message_id.into(),
                seq: None,
            };
            let (first, revision) = self.queues.latest::<Dedupe>(key).await?;
            if let Some(first) = first.filter(|first| first.until_ms > now_ms) {
                match first.seq {
                    Some(seq) => {
                        return Ok(Some(Sent {
                            message_id: first.message_id,
                            sequence_number: Some(seq),
                            duplicate: true,
                        }))
                    }
                    // The first sender is still publishing.
                    None => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let won = self
                .queues
                .write_expiring(key, &claim, Some(revision), ttl(now_ms, until_ms))
                .await?;
            if won.is_some() {
                return Ok(None);
            }
        }
        Err(internal(format!("deduplication id {key} stays claimed")))
    }

    async fn send_one(&self, queue: &str, m: NewMessage, now_ms: i64) -> Result<Sent> {
        let dedupe = match (&m.fifo, m.once_until_ms) {
            (Some(f), _) => Some((
                match f.per_group {
                    true => format!("{}\n{}", f.group_id, f.deduplication_id),
                    false => f.deduplication_id.clone(),
                },
                f.dedupe_until_ms,
            )),
            // Apart from FIFO ids: `\u{1}` starts no printable id.
            (None, Some(until_ms)) => Some((format!("\u{1}once\n{}", m.message_id), until_ms)),
            (None, None) => None,
        };
        let dedupe = dedupe
            .map(|(scope, until_ms)| (format!("d.{}.{}", seg(queue), long_seg(&scope)), until_ms));
        if let Some((key, until_ms)) = &dedupe {
            if let Some(first) = self.dedupe(key, &m.message_id, now_ms, *until_ms).await? {
                return Ok(first);
            }
        }
        let msg = Msg {
            id: m.message_id.clone(),
            body: m.body,
            extra: m.extra,
            sent_ms: m.sent_ms,
            visible_ms: m.visible_ms,
            expires_ms: m.expires_ms,
            group: m.fifo.as_ref().map(|f| f.group_id.clone()),
            dedup: m.fifo.as_ref().map(|f| f.deduplication_id.clone()),
            dl_source: None,
        };
        let seq = self.publish_msg(queue, &msg, true).await?;
        if let Some((key, until_ms)) = &dedupe {
            let done = Dedupe {
                until_ms: *until_ms,
                message_id: m.message_id.clone(),
                seq: Some(seq),
            };
            let ttl = ttl(now_ms, *until_ms);
            self.queues.write_expiring(key, &done, None, ttl).await?;
        }
        if m.visible_ms > now_ms {
            self.note_delayed(queue, seq, m.visible_ms).await?;
        }
        Ok(Sent {
            message_id: m.message_id,
            sequence_number: m.fifo.is_some().then_some(seq),
            duplicate: false,
        })
    }

    /// A message sent with a delay has a flight entry before its first
    /// receive, so counts can tell it from visible ones.
    async fn note_delayed(&self, queue: &str, seq: i64, visible_ms: i64) -> Result<()> {
        let flight = Flight {
            count: 0,
            nonce: 0,
            first_ms: 0,
            visible_ms,
            reply: String::new(),
            group: None,
        };
        self.flights.put(&flight_key(queue, seq), &flight).await?;
        Ok(())
    }

    /// Removes a message from its queue (after a delete, a move, expiry or
    /// a dead-letter move): acked if it has a delivery, else deleted from
    /// the stream, and its flight entry dropped.
    async fn remove_msg(&self, queue: &str, seq: i64, reply: Option<&str>) -> Result<()> {
        match reply.filter(|r| !r.is_empty()) {
            Some(reply) => {
                self.client
                    .request(reply.to_string(), "+ACK".into())
                    .await
                    .map_err(internal)?;
            }
            None => {
                let stream = self.queue_stream(queue).await?;
                // Already gone is fine.
                let _ = stream.delete_message(seq as u64).await;
            }
        }
        self.flights.purge(&flight_key(queue, seq)).await
    }

    /// Takes up to `max` messages from one consumer.
    async fn take(
        &self,
        req: &ReceiveRequest,
        group: Option<&str>,
        max: usize,
        got: &mut Received,
        next_visible: &mut Option<i64>,
    ) -> Result<()> {
        let consumer = self.queue_consumer(&req.queue, group).await?;
        let mut batch = match crate::fetch(&consumer, max).await? {
            Some(batch) => batch,
            // The queue was deleted and made again through another node.
            None => {
                self.forget_queue(&req.queue).await;
                let consumer = self.queue_consumer(&req.queue, group).await?;
                crate::fetch(&consumer, max)
                    .await?
                    .ok_or_else(|| crate::vanished(&req.queue))?
            }
        };
        let mut held_back: Option<i64> = None;
        // A failure part way (a NATS server going away) must not strand
        // what this fetch delivered: the message it failed on and those
        // after it are handed back at once, the ones taken are returned.
        let mut failure = None;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    failure.get_or_insert(internal(e));
                    break;
                }
            };
            if failure.is_some() {
                let _ = m.ack_with(AckKind::Nak(None)).await;
                continue;
            }
            let taken = self
                .take_one(req, group, &m, got, next_visible, &mut held_back)
                .await;
            if let Err(e) = taken {
                let _ = m.ack_with(AckKind::Nak(None)).await;
                failure = Some(e);
            }
        }
        match failure {
            Some(e) if got.messages.is_empty() => Err(e),
            _ => Ok(()),
        }
    }

    /// Handles one delivered message of a receive: hands back one not yet
    /// visible, drops an expired one, dead-letters one received too often,
    /// or takes it (a new flight, hidden for the visibility).
    async fn take_one(
        &self,
        req: &ReceiveRequest,
        group: Option<&str>,
        m: &async_nats::jetstream::Message,
        got: &mut Received,
        next_visible: &mut Option<i64>,
        held_back: &mut Option<i64>,
    ) -> Result<()> {
        let seq = m.info().map_err(internal)?.stream_sequence as i64;
        let reply = m.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let Ok(msg) = serde_json::from_slice::<Msg>(&m.payload) else {
            tracing::error!(queue = %req.queue, seq, "dropping an unreadable message");
            let _ = m.ack_with(AckKind::Term).await;
            return Ok(());
        };
        // A FIFO group stops at its first message that is not visible:
        // the ones after it wait with it.
        if let Some(until) = *held_back {
            m.ack_with(AckKind::Nak(Some(Duration::from_millis(
                (until - req.now_ms).max(0) as u64,
            ))))
            .await
            .map_err(internal)?;
            return Ok(());
        }
        if msg.expires_ms <= req.now_ms {
            return self.remove_msg(&req.queue, seq, Some(&reply)).await;
        }
        let key = flight_key(&req.queue, seq);
        let flight = self.flights.get::<Flight>(&key).await?;
        let visible_at = flight.as_ref().map_or(msg.visible_ms, |f| f.visible_ms);
        if visible_at > req.now_ms {
            m.ack_with(AckKind::Nak(Some(Duration::from_millis(
                (visible_at - req.now_ms) as u64,
            ))))
            .await
            .map_err(internal)?;
            *next_visible = Some(next_visible.map_or(visible_at, |n| n.min(visible_at)));
            if group.is_some() {
                *held_back = Some(visible_at);
            }
            return Ok(());
        }
        let count = flight.as_ref().map_or(0, |f| f.count);
        if let Some(dl) = req
            .dead_letter
            .as_ref()
            .filter(|d| count >= d.max_receive_count)
        {
            let moved = Msg {
                visible_ms: req.now_ms,
                dl_source: Some(dl.source_arn.clone()),
                ..msg
            };
            self.publish_msg(&dl.queue, &moved, false).await?;
            self.remove_msg(&req.queue, seq, Some(&reply)).await?;
            got.dead_lettered += 1;
            return Ok(());
        }
        let first_ms = match flight.as_ref() {
            Some(f) if f.count > 0 => f.first_ms,
            _ => req.now_ms,
        };
        let nonce = (rand_nonce() & i64::MAX).max(1);
        let next = Flight {
            count: count + 1,
            nonce,
            first_ms,
            visible_ms: req.now_ms + req.visibility_ms,
            reply,
            group: msg.group.clone(),
        };
        self.flights.put(&key, &next).await?;
        m.ack_with(AckKind::Nak(Some(Duration::from_millis(
            req.visibility_ms.max(0) as u64,
        ))))
        .await
        .map_err(internal)?;
        got.messages.push(StoredMessage {
            receipt: Receipt { id: seq, nonce },
            message_id: msg.id,
            body: msg.body,
            extra: msg.extra,
            sent_ms: msg.sent_ms,
            receive_count: count + 1,
            first_receive_ms: first_ms,
            group_id: msg.group,
            deduplication_id: msg.dedup,
            sequence_number: req.fifo.then_some(seq),
            dead_letter_source: msg.dl_source,
        });
        Ok(())
    }

    /// FIFO groups with messages on the queue, by subject.
    async fn groups(&self, queue: &str) -> Result<Vec<String>> {
        let stream = self.queue_stream(queue).await?;
        let prefix = format!("{}.q.{}.g.", self.ns, seg(queue));
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}*"))
            .await
            .map_err(internal)?;
        let mut out = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(internal)?;
            if let Some(g) = subject.strip_prefix(&prefix) {
                out.push(crate::kv::unseg(g));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The messages on a queue's stream, in order, up to `limit`. A
    /// work-queue stream takes no reading consumer besides its own, so
    /// this walks it message by message from the leader.
    async fn stream_messages(&self, queue: &str, limit: usize) -> Result<Vec<(i64, Msg)>> {
        let stream = self.queue_stream(queue).await?;
        let filter = format!("{}.q.{}.>", self.ns, seg(queue));
        let mut out = Vec::new();
        let mut seq = 1;
        while out.len() < limit {
            let found = stream
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(filter.clone())
                .send()
                .await;
            let Ok(m) = found else { break };
            if let Ok(msg) = serde_json::from_slice::<Msg>(&m.payload) {
                out.push((m.sequence as i64, msg));
            }
            seq = m.sequence + 1;
        }
        Ok(out)
    }

    async fn update_row(&self, name: &str, change: impl Fn(&mut QueueRow)) -> Result<()> {
        let key = row_key(name);
        loop {
            let Some(mut row) = self.queues.entry::<QueueRow>(&key).await? else {
                return Err(StoreError::NotFound(format!("queue {name}")));
            };
            change(&mut row.value);
            if self
                .queues
                .update(&key, &row.value, row.revision)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
    }
}

fn rand_nonce() -> i64 {
    let b = uuid::Uuid::new_v4().into_bytes();
    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[async_trait::async_trait]
impl QueueStore for NatsStore {
    async fn create_queue(&self, queue: QueueRow) -> Result<()> {
        self.queue_stream(&queue.name).await?;
        match self.queues.create(&row_key(&queue.name), &queue).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!("queue {} exists", queue.name))),
        }
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueRow>> {
        self.queues.get(&row_key(name)).await
    }

    async fn list_queues(&self, prefix: &str) -> Result<Vec<QueueRow>> {
        let mut out: Vec<QueueRow> = self
            .queues
            .scan::<QueueRow>("q.*")
            .await?
            .into_iter()
            .map(|s| s.value)
            .filter(|q| q.name.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        modified_ms: i64,
    ) -> Result<()> {
        self.update_row(name, |row| {
            row.attributes = attributes.clone();
            row.modified_ms = modified_ms;
        })
        .await
    }

    async fn set_queue_tags(&self, name: &str, tags: BTreeMap<String, String>) -> Result<()> {
        self.update_row(name, |row| row.tags = tags.clone()).await
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        let key = row_key(name);
        let Some(row) = self.queues.entry::<QueueRow>(&key).await? else {
            return Err(StoreError::NotFound(format!("queue {name}")));
        };
        let _ = self.js.delete_stream(self.queue_stream_name(name)).await;
        self.forget_queue(name).await;
        self.flights
            .purge_matching(&format!("{}.*", seg(name)))
            .await?;
        self.queues
            .purge_matching(&format!("d.{}.*", seg(name)))
            .await?;
        self.queues.purge_at(&key, row.revision).await?;
        Ok(())
    }

    async fn send_messages(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now_ms: i64,
    ) -> Result<Vec<Sent>> {
        if self.get_queue(queue).await?.is_none() {
            return Err(StoreError::NotFound(format!("queue {queue}")));
        }
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.send_one(queue, m, now_ms).await?);
        }
        Ok(out)
    }

    async fn receive_messages(&self, req: ReceiveRequest) -> Result<Received> {
        let mut got = Received::default();
        let mut next_visible = None;
        if self.get_queue(&req.queue).await?.is_none() {
            return Ok(got);
        }
        if !req.fifo {
            self.take(&req, None, req.max_messages, &mut got, &mut next_visible)
                .await?;
        } else {
            // A group with a message in flight is blocked; one whose
            // messages' visibility ran out gets them back first.
            let mut busy = std::collections::HashSet::new();
            let mut lapsed: HashMap<String, Vec<(u64, String)>> = HashMap::new();
            for f in self
                .flights
                .scan::<Flight>(&format!("{}.*", seg(&req.queue)))
                .await?
            {
                let (Some(group), true) = (f.value.group, f.value.count > 0) else {
                    continue;
                };
                if f.value.visible_ms > req.now_ms {
                    busy.insert(group);
                } else {
                    // In the group's order: the key ends in the sequence.
                    let seq: u64 = f
                        .key
                        .rsplit('.')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    lapsed.entry(group).or_default().push((seq, f.value.reply));
                }
            }
            for group in self.groups(&req.queue).await? {
                let left = req.max_messages.saturating_sub(got.messages.len());
                if left == 0 {
                    break;
                }
                if busy.contains(&group) {
                    continue;
                }
                let mut back = lapsed.remove(&group).unwrap_or_default();
                back.sort();
                for (_, reply) in back {
                    // Acknowledged by the server before the fetch below.
                    self.client
                        .request(reply, "-NAK".into())
                        .await
                        .map_err(internal)?;
                }
                self.take(&req, Some(&group), left, &mut got, &mut next_visible)
                    .await?;
            }
            got.messages.sort_by_key(|m| m.receipt.id);
        }
        got.next_visible_ms = match got.messages.is_empty() {
            true => Some(
                next_visible.map_or(req.now_ms + POLL_MS, |n: i64| n.min(req.now_ms + POLL_MS)),
            ),
            false => next_visible,
        };
        Ok(got)
    }

    async fn delete_messages(&self, queue: &str, receipts: Vec<Receipt>) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            let key = flight_key(queue, r.id);
            let latest = self
                .flights
                .get::<Flight>(&key)
                .await?
                .filter(|f| f.count > 0 && f.nonce == r.nonce);
            match latest {
                Some(f) => {
                    self.remove_msg(queue, r.id, Some(&f.reply)).await?;
                    out.push(true);
                }
                None => out.push(false),
            }
        }
        Ok(out)
    }

    async fn change_visibility(
        &self,
        queue: &str,
        changes: Vec<(Receipt, i64)>,
        now_ms: i64,
    ) -> Result<Vec<VisibilityChange>> {
        let mut out = Vec::with_capacity(changes.len());
        for (r, visible_ms) in changes {
            let key = flight_key(queue, r.id);
            let found = self
                .flights
                .entry::<Flight>(&key)
                .await?
                .filter(|f| f.value.count > 0 && f.value.nonce == r.nonce);
            let Some(mut f) = found else {
                out.push(VisibilityChange::Stale);
                continue;
            };
            if f.value.visible_ms <= now_ms {
                out.push(VisibilityChange::NotInFlight);
                continue;
            }
            f.value.visible_ms = visible_ms;
            if self
                .flights
                .update(&key, &f.value, f.revision)
                .await?
                .is_none()
            {
                // Received again meanwhile: this receipt is no longer the latest.
                out.push(VisibilityChange::Stale);
                continue;
            }
            // FIFO messages are handed back by the receive that finds their
            // deadline passed.
            if !queue.ends_with(".fifo") {
                self.client
                    .request(f.value.reply.clone(), nak_delay(visible_ms - now_ms))
                    .await
                    .map_err(internal)?;
            }
            out.push(VisibilityChange::Changed);
        }
        Ok(out)
    }

    async fn purge_queue(&self, queue: &str) -> Result<u64> {
        let stream = self.queue_stream(queue).await?;
        let purged = stream.purge().await.map_err(internal)?;
        self.flights
            .purge_matching(&format!("{}.*", seg(queue)))
            .await?;
        Ok(purged.purged)
    }

    async fn queue_counts(&self, queue: &str, now_ms: i64) -> Result<QueueCounts> {
        let stream = self.queue_stream(queue).await?;
        let state = stream.get_info().await.map_err(internal)?.state;
        let mut counts = QueueCounts::default();
        for f in self
            .flights
            .scan::<Flight>(&format!("{}.*", seg(queue)))
            .await?
        {
            if f.value.visible_ms > now_ms {
                match f.value.count {
                    0 => counts.delayed += 1,
                    _ => counts.in_flight += 1,
                }
            }
        }
        counts.visible = state
            .messages
            .saturating_sub(counts.in_flight + counts.delayed);
        if state.messages > 0 {
            counts.oldest_sent_ms = stream
                .get_raw_message(state.first_sequence)
                .await
                .ok()
                .and_then(|m| serde_json::from_slice::<Msg>(&m.payload).ok())
                .map(|m| m.sent_ms);
        }
        Ok(counts)
    }

    async fn expire_messages(&self, now_ms: i64) -> Result<u64> {
        let mut expired = 0;
        for q in self.list_queues("").await? {
            for (seq, msg) in self.stream_messages(&q.name, usize::MAX).await? {
                if msg.expires_ms <= now_ms {
                    self.remove_msg(&q.name, seq, None).await?;
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }

    async fn move_messages(
        &self,
        source: &str,
        destination: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Moved> {
        let mut known = HashMap::<String, bool>::new();
        let mut moved = 0;
        for (seq, msg) in self.stream_messages(source, limit).await? {
            let Some(to) = wisp_store::sqs::move_target(destination, msg.dl_source.as_deref())
            else {
                continue;
            };
            let exists = match known.get(&to) {
                Some(e) => *e,
                None => {
                    let e = self.get_queue(&to).await?.is_some();
                    known.insert(to.clone(), e);
                    e
                }
            };
            if !exists {
                continue;
            }
            let fresh = Msg {
                visible_ms: now_ms,
                dl_source: None,
                ..msg
            };
            self.publish_msg(&to, &fresh, false).await?;
            self.remove_msg(source, seq, None).await?;
            moved += 1;
        }
        let stream = self.queue_stream(source).await?;
        let remaining = stream.get_info().await.map_err(internal)?.state.messages;
        Ok(Moved { moved, remaining })
    }
}
