//! The async event queue on a work-queue stream: an event is a message
//! under `<ns>.ev.<function>`, and every node leases from one durable
//! pull consumer per function, so whichever node has capacity takes the
//! next event. A lease is a delivery not yet acknowledged: held leases are
//! kept alive with progress acks, and a node that dies has its leases
//! redelivered once the ack wait runs out. An event not yet due is handed
//! back with a delayed nak; a retry is a new message carrying the attempt
//! counts (published before the old one is acknowledged, so a crash
//! between the two delivers twice, never zero times). `Nats-Msg-Id`
//! de-duplicates a publish repeated after a lost acknowledgement. Keyed
//! events hold a `q.<function>.<key>` marker in the keys bucket while
//! queued, which makes a second event with the key a duplicate.
//! Given-up events are kept on their own stream, one message per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wisp_store::{
    undeliverable, Enqueued, EventQueue, FailedEvent, KeyStore, NewEvent, QueueStats, QueuedEvent,
    Result, Settle, Settlement,
};

use crate::kv::{long_seg, seg};
use crate::read::{read, Next};
use crate::{internal, NatsStore};

/// How long a lease lasts without a progress ack from its node.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often held leases are kept alive.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// An event as it sits on the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    request_id: String,
    function: String,
    qualifier: String,
    payload: String,
    context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    enqueued_ms: i64,
    due_ms: i64,
    #[serde(default)]
    errors: u32,
    #[serde(default)]
    throttles: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_response: Option<String>,
}

impl Stored {
    fn new(e: &NewEvent) -> Stored {
        Stored {
            request_id: e.request_id.clone(),
            function: e.function.clone(),
            qualifier: e.qualifier.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&e.payload),
            context: e.context.clone(),
            idempotency_key: e.idempotency_key.clone(),
            enqueued_ms: e.enqueued_ms,
            due_ms: e.due_ms,
            errors: 0,
            throttles: 0,
            last_response: None,
        }
    }

    fn queued(self, id: i64) -> QueuedEvent {
        QueuedEvent {
            id,
            payload: base64::engine::general_purpose::STANDARD
                .decode(&self.payload)
                .unwrap_or_default(),
            request_id: self.request_id,
            function: self.function,
            qualifier: self.qualifier,
            context: self.context,
            idempotency_key: self.idempotency_key,
            enqueued_ms: self.enqueued_ms,
            errors: self.errors,
            throttles: self.throttles,
            last_response: self.last_response,
        }
    }
}

/// A keyed event's place while it is queued: which request holds the key,
/// and whether its publish is known to have landed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    request_id: String,
    #[serde(default)]
    published: bool,
}

/// This node's leases: deliveries it holds, by stream sequence.
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<i64, (Message, Stored)>>,
    consumers: tokio::sync::Mutex<HashMap<String, PullConsumer>>,
}

fn queued_marker(function: &str, key: &str) -> String {
    format!("q.{}.{}", seg(function), long_seg(key))
}

impl NatsStore {
    fn event_subject(&self, function: &str) -> String {
        format!("{}.ev.{}", self.ns, seg(function))
    }

    fn failed_subject(&self, function: &str, request_id: &str) -> String {
        format!("{}.failed.{}.{}", self.ns, seg(function), seg(request_id))
    }

    async fn function_exists(&self, function: &str) -> Result<bool> {
        Ok(wisp_store::Registry::get_version(self, function, "$LATEST")
            .await?
            .is_some())
    }

    async fn publish_event(&self, stored: &Stored, msg_id: String) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        self.js
            .publish_with_headers(
                self.event_subject(&stored.function),
                headers,
                crate::kv::to_bytes(stored)?,
            )
            .await
            .map_err(internal)?
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Offers one event; what became of it.
    async fn enqueue_one(&self, e: &NewEvent, now_ms: i64) -> Result<Enqueued> {
        if !self.function_exists(&e.function).await? {
            return Ok(Enqueued::NoFunction);
        }
        if let Some(key) = &e.idempotency_key {
            if let Some(holder) = self.key_holder(&e.function, key, now_ms).await? {
                return Ok(Enqueued::Duplicate {
                    request_id: holder_request(holder),
                });
            }
            let marker = queued_marker(&e.function, key);
            let mine = Marker {
                request_id: e.request_id.clone(),
                published: false,
            };
            let first = match self.keys.create(&marker, &mine).await? {
                Some(_) => mine,
                None => match self.keys.get::<Marker>(&marker).await? {
                    Some(first) => first,
                    // Settled meanwhile: this one is new again.
                    None => return Box::pin(self.enqueue_one(e, now_ms)).await,
                },
            };
            if first.published {
                return Ok(Enqueued::Duplicate {
                    request_id: first.request_id,
                });
            }
            // The key's first event may not have been stored (its publish
            // failed, or its node died, before the marker said so): it is
            // published now under its own request id and message id, which
            // the stream drops if the first publish did land.
            let event = NewEvent {
                request_id: first.request_id.clone(),
                ..e.clone()
            };
            self.publish_event(&Stored::new(&event), first.request_id.clone())
                .await?;
            let done = Marker {
                published: true,
                ..first
            };
            self.keys.put(&marker, &done).await?;
            return Ok(match done.request_id == e.request_id {
                true => Enqueued::Accepted,
                false => Enqueued::Duplicate {
                    request_id: done.request_id,
                },
            });
        }
        self.publish_event(&Stored::new(e), e.request_id.clone())
            .await?;
        Ok(Enqueued::Accepted)
    }

    async fn consumer(&self, function: &str) -> Result<PullConsumer> {
        let mut consumers = self.leases.consumers.lock().await;
        if let Some(c) = consumers.get(function) {
            return Ok(c.clone());
        }
        let name = format!("ev_{}", seg(function).replace('=', "_"));
        let consumer = self
            .events
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.event_subject(function),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    deliver_policy: DeliverPolicy::All,
                    max_ack_pending: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(internal)?;
        consumers.insert(function.to_string(), consumer.clone());
        Ok(consumer)
    }

    async fn keep_failed(&self, f: &FailedEvent) -> Result<()> {
        // One kept failure per request (the stream keeps one message per
        // subject): a newer one replaces it.
        self.js
            .publish(
                self.failed_subject(&f.function, &f.request_id),
                crate::kv::to_bytes(&(f.failed_ms, &f.record))?,
            )
            .await
            .map_err(internal)?
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Drops a function's queued and failed events (the function is gone).
    pub(crate) async fn drop_events(&self, function: &str) -> Result<()> {
        self.leases.consumers.lock().await.remove(function);
        let name = format!("ev_{}", seg(function).replace('=', "_"));
        let _ = self.events.delete_consumer(&name).await;
        for (stream, subject) in [
            (&self.events, self.event_subject(function)),
            (
                &self.failed,
                format!("{}.failed.{}.*", self.ns, seg(function)),
            ),
        ] {
            stream.purge().filter(subject).await.map_err(internal)?;
        }
        Ok(())
    }

    /// Counts per function of what sits on `stream` under `filter`, the
    /// function being the subject's third token.
    async fn counts_by_function(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        filter: String,
    ) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        let mut subjects = stream.info_with_subjects(filter).await.map_err(internal)?;
        while let Some(s) = subjects.next().await {
            let (subject, count) = s.map_err(internal)?;
            if let Some(f) = subject.split('.').nth(2) {
                *out.entry(crate::kv::unseg(f)).or_default() += count as u64;
            }
        }
        Ok(out)
    }
}

fn holder_request(claim: wisp_store::Claim) -> String {
    match claim {
        wisp_store::Claim::Claimed => String::new(),
        wisp_store::Claim::Running { request_id }
        | wisp_store::Claim::Done { request_id, .. }
        | wisp_store::Claim::Interrupted { request_id } => request_id,
    }
}

/// Keeps this node's leases alive until the store is dropped.
pub(crate) async fn keep_leases(leases: Weak<Leases>) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let Some(l) = leases.upgrade() else { return };
        let held: Vec<Message> = l
            .held
            .lock()
            .map(|h| h.values().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default();
        for m in held {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }
}

pub(crate) fn new_leases() -> Arc<Leases> {
    let leases = Arc::new(Leases::default());
    tokio::spawn(keep_leases(Arc::downgrade(&leases)));
    leases
}

#[async_trait::async_trait]
impl EventQueue for NatsStore {
    async fn enqueue_events(&self, events: Vec<NewEvent>, now_ms: i64) -> Result<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            out.push(self.enqueue_one(e, now_ms).await?);
        }
        Ok(out)
    }

    async fn lease_events(
        &self,
        function: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Vec<QueuedEvent>, Option<i64>)> {
        let consumer = self.consumer(function).await?;
        let mut batch = match crate::fetch(&consumer, limit).await? {
            Some(batch) => batch,
            // The function was deleted and made again through another node.
            None => {
                self.leases.consumers.lock().await.remove(function);
                let consumer = self.consumer(function).await?;
                crate::fetch(&consumer, limit)
                    .await?
                    .ok_or_else(|| crate::vanished(function))?
            }
        };
        let mut events = Vec::new();
        let mut next: Option<i64> = None;
        let mut fetched = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(internal)?;
            fetched += 1;
            let seq = m.info().map_err(internal)?.stream_sequence as i64;
            let stored: Stored = match serde_json::from_slice(&m.payload) {
                Ok(s) => s,
                Err(e) => {
                    // Not an event wisp wrote: dropped, with a trace.
                    tracing::error!(seq, error = %e, "dropping an unreadable async event");
                    let _ = m.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            if stored.due_ms > now_ms {
                let wait = Duration::from_millis((stored.due_ms - now_ms) as u64);
                m.ack_with(AckKind::Nak(Some(wait)))
                    .await
                    .map_err(internal)?;
                next = Some(next.map_or(stored.due_ms, |n| n.min(stored.due_ms)));
                continue;
            }
            if let Ok(mut held) = self.leases.held.lock() {
                held.insert(seq, (m, stored.clone()));
            }
            events.push(stored.queued(seq));
        }
        if fetched >= limit.max(1) {
            // There may be more: look again now.
            next = Some(now_ms);
        } else {
            // Events handed back with a delay (here or by another node),
            // and leases of a node that died, come back by the server's
            // timers, which the caller cannot see: while any are out, it
            // looks again within a second.
            let mut consumer = consumer;
            let info = consumer.info().await.map_err(internal)?;
            if info.num_pending > 0 {
                next = Some(now_ms);
            } else if info.num_ack_pending > events.len() {
                let soon = now_ms + 1000;
                next = Some(next.map_or(soon, |n| n.min(soon)));
            }
        }
        Ok((events, next))
    }

    async fn settle_events(&self, settlements: Vec<Settlement>) -> Result<()> {
        for s in settlements {
            let Some((message, stored)) = self
                .leases
                .held
                .lock()
                .ok()
                .and_then(|mut h| h.remove(&s.id))
            else {
                continue;
            };
            for follow_up in &s.follow_ups {
                if self.enqueue_one(follow_up, follow_up.enqueued_ms).await? == Enqueued::NoFunction
                {
                    self.keep_failed(&FailedEvent {
                        request_id: stored.request_id.clone(),
                        function: stored.function.clone(),
                        failed_ms: follow_up.enqueued_ms,
                        record: undeliverable(follow_up),
                    })
                    .await?;
                }
            }
            if let Some(f) = &s.failed {
                self.keep_failed(f).await?;
            }
            if let Some((function, key, outcome)) = s.key {
                self.finish_key(&function, &key, &stored.request_id, outcome)
                    .await?;
            }
            match s.settle {
                Settle::Remove => {
                    if let Some(key) = &stored.idempotency_key {
                        self.keys
                            .purge(&queued_marker(&stored.function, key))
                            .await?;
                    }
                }
                Settle::Retry {
                    due_ms,
                    errors,
                    throttles,
                    last_response,
                } => {
                    let attempt = errors + throttles;
                    let next = Stored {
                        due_ms,
                        errors,
                        throttles,
                        last_response,
                        ..stored.clone()
                    };
                    self.publish_event(&next, format!("{}:{attempt}", stored.request_id))
                        .await?;
                }
            }
            message
                .double_ack_with(AckKind::Ack)
                .await
                .map_err(internal)?;
        }
        Ok(())
    }

    async fn recover_queue(&self) -> Result<Vec<(String, i64)>> {
        // Leases of a node that died come back by their ack wait, and its
        // running claims read as interrupted once it misses its beats:
        // nothing to mark. What has events is what to look at.
        let now = crate::members::now_ms();
        Ok(self
            .counts_by_function(&self.events, format!("{}.ev.>", self.ns))
            .await?
            .into_keys()
            .map(|f| (f, now))
            .collect())
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let depth = self
            .counts_by_function(&self.events, format!("{}.ev.>", self.ns))
            .await?;
        let failed = self
            .counts_by_function(&self.failed, format!("{}.failed.>", self.ns))
            .await?;
        let mut out: BTreeMap<String, QueueStats> = BTreeMap::new();
        for (function, n) in depth {
            let oldest = self
                .events
                .get_first_raw_message_by_subject(&self.event_subject(&function), 1)
                .await
                .ok()
                .and_then(|m| serde_json::from_slice::<Stored>(&m.payload).ok())
                .map(|s| s.enqueued_ms);
            let s = out.entry(function.clone()).or_default();
            s.function = function;
            s.depth = n;
            s.oldest_enqueued_ms = oldest;
        }
        for (function, n) in failed {
            let s = out.entry(function.clone()).or_default();
            s.function = function;
            s.failed = n;
        }
        Ok(out.into_values().collect())
    }

    async fn list_failed_events(&self, function: &str, limit: usize) -> Result<Vec<FailedEvent>> {
        let mut out = Vec::new();
        read(
            &self.failed,
            format!("{}.failed.{}.*", self.ns, seg(function)),
            DeliverPolicy::All,
            |m| {
                let (failed_ms, record): (i64, String) = serde_json::from_slice(m.payload)?;
                let request_id = m.subject.rsplit('.').next().map(crate::kv::unseg);
                out.push(FailedEvent {
                    request_id: request_id.unwrap_or_default(),
                    function: function.to_string(),
                    failed_ms,
                    record,
                });
                Ok(Next::More)
            },
        )
        .await?;
        out.reverse();
        out.sort_by_key(|f| std::cmp::Reverse(f.failed_ms));
        out.truncate(limit);
        Ok(out)
    }
}
