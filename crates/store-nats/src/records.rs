//! Invocation records and their log lines on one stream, a message per
//! finished invocation under `<ns>.rec.<function>.<request id>`, kept for
//! the retention (the stream's max age). The stream sequence is the log's
//! `seq`: it only rises, across every node writing to the stream.

use async_nats::jetstream::consumer::DeliverPolicy;
use serde::{Deserialize, Serialize};
use wisp_core::{Finished, InvocationRecord, LogEntry, LogLine};
use wisp_store::{LogQuery, RecordStore, Result};

use crate::kv::seg;
use crate::read::{read, Next};
use crate::{internal, NatsStore};

#[derive(Serialize, Deserialize)]
struct Row {
    record: InvocationRecord,
    #[serde(default)]
    lines: Vec<LogLine>,
}

/// How far before a time to start reading for invocations that started at
/// or after it: a record is written when its invocation ends, so it lands
/// after its start, and nodes' clocks may differ by a little.
const START_SLACK_MS: i64 = 60_000;

/// Records read in one go when looking back from the end.
const FIRST_WINDOW: u64 = 256;

fn at_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms.max(0) as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl NatsStore {
    fn record_subject(&self, function: &str, request_id: &str) -> String {
        format!("{}.rec.{}.{}", self.ns, seg(function), seg(request_id))
    }

    fn records_filter(&self, function: Option<&str>, request_id: Option<&str>) -> String {
        format!(
            "{}.rec.{}.{}",
            self.ns,
            function.map(seg).unwrap_or_else(|| "*".into()),
            request_id.map(seg).unwrap_or_else(|| "*".into())
        )
    }

    async fn last_record_seq(&self) -> Result<u64> {
        let info = self.records.get_info().await.map_err(internal)?;
        Ok(info.state.last_sequence)
    }
}

#[async_trait::async_trait]
impl RecordStore for NatsStore {
    async fn insert_invocations(&self, finished: Vec<Finished>) -> Result<()> {
        // Published back to back, then every acknowledgement awaited.
        let mut acks = Vec::with_capacity(finished.len());
        for f in finished {
            let subject = self.record_subject(&f.record.function, &f.record.request_id);
            let row = Row {
                record: f.record,
                lines: f.lines,
            };
            let payload = crate::kv::to_bytes(&row)?;
            acks.push(self.js.publish(subject, payload).await.map_err(internal)?);
        }
        for ack in acks {
            ack.await.map_err(internal)?;
        }
        Ok(())
    }

    async fn get_invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>> {
        let mut found = None;
        read(
            &self.records,
            self.records_filter(None, Some(request_id)),
            DeliverPolicy::All,
            |m| {
                found = Some(serde_json::from_slice::<Row>(m.payload)?.record);
                Ok(Next::More)
            },
        )
        .await?;
        Ok(found)
    }

    async fn list_invocations(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        // Streams read forwards only: read the last `window` messages for
        // the function's, widening the window until it holds enough.
        let last = self.last_record_seq().await?;
        let mut window = FIRST_WINDOW.max(limit as u64 * 4);
        loop {
            let start = last.saturating_sub(window).max(1);
            let mut records = Vec::new();
            read(
                &self.records,
                self.records_filter(Some(function), None),
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                |m| {
                    records.push(serde_json::from_slice::<Row>(m.payload)?.record);
                    Ok(Next::More)
                },
            )
            .await?;
            if records.len() >= limit || start == 1 {
                records.reverse();
                records.truncate(limit);
                return Ok(records);
            }
            window = window.saturating_mul(8);
        }
    }

    async fn query_logs(&self, query: LogQuery) -> Result<Vec<LogEntry>> {
        let from = match (query.after_seq, query.since_ms) {
            (Some(after), _) => DeliverPolicy::ByStartSequence {
                start_sequence: after.max(0) as u64 + 1,
            },
            (None, Some(since)) => DeliverPolicy::ByStartTime {
                start_time: at_ms(since - START_SLACK_MS),
            },
            (None, None) => DeliverPolicy::All,
        };
        let mut out = Vec::new();
        if query.limit == 0 {
            return Ok(out);
        }
        read(
            &self.records,
            self.records_filter(query.function.as_deref(), query.request_id.as_deref()),
            from,
            |m| {
                let row: Row = serde_json::from_slice(m.payload)?;
                if query.since_ms.is_some_and(|s| row.record.started_at_ms < s) {
                    return Ok(Next::More);
                }
                out.extend(row.record.log_entries(m.sequence as i64, row.lines));
                Ok(if out.len() >= query.limit {
                    Next::Stop
                } else {
                    Next::More
                })
            },
        )
        .await?;
        Ok(out)
    }

    async fn last_log_seq(&self) -> Result<i64> {
        Ok(self.last_record_seq().await? as i64)
    }

    async fn purge_records_before(&self, before_ms: i64) -> Result<u64> {
        // Records land in the order invocations end, so start times rise
        // with the sequence (a long invocation lands a little late): keep
        // from the first record that started at or after the cut. The
        // newest record stays whatever its age, as in the embedded store.
        // The stream's max age drops what this misses.
        let last = self.last_record_seq().await?;
        if last == 0 {
            return Ok(0);
        }
        let mut keep_from = last;
        read(
            &self.records,
            format!("{}.rec.>", self.ns),
            DeliverPolicy::All,
            |m| {
                let row: Row = serde_json::from_slice(m.payload)?;
                if row.record.started_at_ms >= before_ms {
                    keep_from = m.sequence.min(last);
                    return Ok(Next::Stop);
                }
                Ok(Next::More)
            },
        )
        .await?;
        let purged = self
            .records
            .purge()
            .sequence(keep_from)
            .await
            .map_err(internal)?;
        Ok(purged.purged)
    }
}
