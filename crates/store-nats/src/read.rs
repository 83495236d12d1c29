//! Reading a stream in order through an ordered consumer: from a sequence,
//! a time, or the last message of each subject, until the visitor has
//! enough or nothing is left.

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use wisp_store::Result;

use crate::internal;

/// A message as a reader sees it.
pub(crate) struct Read<'a> {
    pub sequence: u64,
    pub subject: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: &'a Bytes,
}

/// Whether to go on reading.
pub(crate) enum Next {
    More,
    Stop,
}

/// Visits the messages of `stream` matching `filter` from `from`, in
/// stream order, until `visit` says stop or none are left.
pub(crate) async fn read(
    stream: &Stream,
    filter: String,
    from: DeliverPolicy,
    mut visit: impl FnMut(Read<'_>) -> Result<Next>,
) -> Result<()> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: format!("_INBOX.{}", uuid::Uuid::new_v4().simple()),
            filter_subject: filter,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: from,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(internal)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(internal)?;
        let info = message.info().map_err(internal)?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let next = visit(Read {
            sequence,
            subject: message.subject.as_str(),
            headers: message.headers.as_ref(),
            payload: &message.payload,
        })?;
        if pending == 0 || matches!(next, Next::Stop) {
            break;
        }
    }
    Ok(())
}
