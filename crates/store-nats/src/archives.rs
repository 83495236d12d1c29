//! Archives in a stream of their own, one subject per archive
//! (`<ns>.arch.<archive>`); an event with a retention carries it as its
//! own TTL, so the server drops it. Reads go by the time each was
//! stored, then by sequence after a cursor.

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use serde::{Deserialize, Serialize};
use wisp_store::{ArchiveStore, Archived, Result};

use crate::kv::{seg, ttl};
use crate::read::{read, Next};
use crate::{internal, NatsStore};

#[derive(Serialize, Deserialize)]
struct Stored {
    t: i64,
    e: String,
}

/// How far apart an event's archive time and its publish time may be
/// (clocks of nodes, a slow publish): reads look this much further.
const SLACK_MS: i64 = 60_000;

impl NatsStore {
    fn archive_subject(&self, archive: &str) -> String {
        format!("{}.arch.{}", self.ns, seg(archive))
    }
}

#[async_trait::async_trait]
impl ArchiveStore for NatsStore {
    async fn append_archive(
        &self,
        archive: &str,
        events: Vec<(i64, String)>,
        expires_ms: Option<i64>,
    ) -> Result<()> {
        let subject = self.archive_subject(archive);
        let mut acks = Vec::with_capacity(events.len());
        for (t, e) in events {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(until) = expires_ms {
                let secs = ttl(t, until).as_millis().div_ceil(1000).max(1);
                headers.insert("Nats-TTL", secs.to_string().as_str());
            }
            let payload = crate::kv::to_bytes(&Stored { t, e })?;
            acks.push(
                self.js
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                    .map_err(internal)?,
            );
        }
        for ack in acks {
            ack.await.map_err(internal)?;
        }
        Ok(())
    }

    async fn read_archive(
        &self,
        archive: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Archived>> {
        let from = match after_seq {
            0 => {
                let start = from_ms.saturating_sub(SLACK_MS).max(0) as i128 * 1_000_000;
                DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(start)
                        .map_err(internal)?,
                }
            }
            seq => DeliverPolicy::ByStartSequence {
                start_sequence: seq + 1,
            },
        };
        let mut out = Vec::new();
        read(&self.archive, self.archive_subject(archive), from, |m| {
            let stored: Stored = serde_json::from_slice(m.payload)?;
            if stored.t >= to_ms.saturating_add(SLACK_MS) {
                return Ok(Next::Stop);
            }
            if stored.t >= from_ms && stored.t < to_ms {
                out.push(Archived {
                    seq: m.sequence,
                    time_ms: stored.t,
                    event: stored.e,
                });
            }
            Ok(match out.len() >= limit {
                true => Next::Stop,
                false => Next::More,
            })
        })
        .await?;
        Ok(out)
    }

    async fn archive_size(&self, archive: &str) -> Result<(u64, u64)> {
        let consumer = self
            .archive
            .create_consumer(OrderedConfig {
                deliver_subject: format!("_INBOX.{}", uuid::Uuid::new_v4().simple()),
                filter_subject: self.archive_subject(archive),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(internal)?;
        let count = consumer.cached_info().num_pending;
        // Bytes are kept per stream, not per subject: the stream's mean.
        let state = self.archive.get_info().await.map_err(internal)?.state;
        let mean = state.bytes.checked_div(state.messages).unwrap_or(0);
        Ok((count, count * mean))
    }

    async fn drop_archive(&self, archive: &str) -> Result<()> {
        self.archive
            .purge()
            .filter(self.archive_subject(archive))
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn purge_archives(&self, _now_ms: i64) -> Result<u64> {
        Ok(0)
    }
}
