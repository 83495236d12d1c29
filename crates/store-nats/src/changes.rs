//! The change feed: what any node changes in the registry or the queues,
//! and the async events any node queues, as [`Change`]s, so each node
//! drops what it has cached (resolved versions, the route table, queue
//! attributes) and looks at a function's events within moments. Registry
//! and queue rows are watched in their KV buckets; queued events are seen
//! on the subjects they are published to.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use wisp_store::Change;

use crate::kv::unseg;

/// What a registry key is about.
fn registry_change(key: &str) -> Option<Change> {
    let mut parts = key.split('.');
    match (parts.next()?, parts.next()) {
        ("routes", _) => Some(Change::Routes),
        ("fn" | "ver" | "alias" | "set", Some(f)) => Some(Change::Function(unseg(f))),
        ("doc", Some(kind)) => Some(Change::Document(unseg(kind), unseg(parts.next()?))),
        _ => None,
    }
}

/// What a queues-bucket key is about (`q.<name>`; dedupe keys are not).
fn queue_change(key: &str) -> Option<Change> {
    key.strip_prefix("q.").map(|q| Change::Queue(unseg(q)))
}

/// Follows `filter` in `bucket` for as long as the store lives; when the
/// watch breaks (its server went away), it is made again and the receivers
/// are told to catch up with everything.
async fn follow(
    alive: std::sync::Weak<()>,
    bucket: kv::Store,
    filter: &'static str,
    tx: broadcast::Sender<Change>,
    map: fn(&str) -> Option<Change>,
) {
    let mut first = true;
    while alive.strong_count() > 0 {
        let watch = match filter {
            ">" => bucket.watch_all().await,
            f => bucket.watch(f).await,
        };
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !first {
            let _ = tx.send(Change::Resync);
        }
        first = false;
        while let Some(entry) = watch.next().await {
            match entry {
                Ok(e) => {
                    if let Some(change) = map(&e.key) {
                        let _ = tx.send(change);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "change feed interrupted"),
            }
        }
    }
}

/// Starts following; the sender feeds every receiver handed out.
pub(crate) async fn start(
    alive: &std::sync::Arc<()>,
    client: &async_nats::Client,
    ns: &str,
    registry: &crate::kv::Bucket,
    queues: &crate::kv::Bucket,
) -> wisp_store::Result<broadcast::Sender<Change>> {
    let (tx, _) = broadcast::channel(4096);
    let weak = std::sync::Arc::downgrade(alive);
    tokio::spawn(follow(
        weak.clone(),
        registry.kv.clone(),
        ">",
        tx.clone(),
        registry_change,
    ));
    tokio::spawn(follow(
        weak,
        queues.kv.clone(),
        "q.*",
        tx.clone(),
        queue_change,
    ));
    let prefix = format!("{ns}.ev.");
    let mut events = client
        .subscribe(format!("{prefix}*"))
        .await
        .map_err(crate::internal)?;
    let events_tx = tx.clone();
    tokio::spawn(async move {
        while let Some(m) = events.next().await {
            if let Some(f) = m.subject.as_str().strip_prefix(&prefix) {
                let _ = events_tx.send(Change::Events(unseg(f)));
            }
        }
    });
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_what_changed() {
        assert_eq!(
            registry_change("fn.a=2Eb"),
            Some(Change::Function("a.b".into()))
        );
        assert_eq!(
            registry_change("set.f.concurrency.="),
            Some(Change::Function("f".into()))
        );
        assert_eq!(registry_change("routes.shop"), Some(Change::Routes));
        assert_eq!(registry_change("cluster.credentials"), None);
        assert_eq!(
            queue_change("q.orders=2Efifo"),
            Some(Change::Queue("orders.fifo".into()))
        );
        assert_eq!(queue_change("d.orders.x"), None);
    }
}
