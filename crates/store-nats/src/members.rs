//! Cluster membership: every node puts its entry in a KV bucket every
//! heartbeat ([`HEARTBEAT`] unless set); entries older than the bucket's
//! max age vanish, and a node not heard from for [`MISSED_BEATS`] beats
//! is taken for dead. What a dead
//! node held (running idempotency claims, leased work) is then treated as
//! interrupted; leased work also comes back by its ack wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wisp_store::Result;

use crate::internal;
use crate::kv::{seg, Bucket};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How many beats a node may miss and still count as alive.
pub const MISSED_BEATS: u32 = 5;

/// What a node tells the others about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    pub started_ms: i64,
}

pub struct Members {
    me: NodeInfo,
    bucket: Bucket,
    heartbeat: Duration,
    /// Other nodes, by id: when this node last heard from each.
    seen: Mutex<HashMap<String, (Instant, NodeInfo)>>,
    /// Set by `leave`: no more heartbeats.
    left: std::sync::atomic::AtomicBool,
}

pub(crate) fn now_ms() -> i64 {
    use wisp_core::clock::Clock;
    wisp_core::clock::SystemClock.now_ms()
}

impl Members {
    /// Joins: announces this node, learns the live ones, and keeps both up
    /// to date until the returned handle is dropped.
    pub(crate) async fn join(
        bucket: Bucket,
        node: String,
        heartbeat: Duration,
    ) -> Result<Arc<Members>> {
        let members = Arc::new(Members {
            me: NodeInfo {
                node,
                started_ms: now_ms(),
            },
            bucket,
            heartbeat,
            seen: Mutex::new(HashMap::new()),
            left: Default::default(),
        });
        members.announce().await?;
        // Watch first, then list: a node that heartbeats in between is seen
        // by one or the other.
        let watch = members.bucket.kv.watch_all().await.map_err(internal)?;
        for found in members.bucket.scan::<NodeInfo>(">").await? {
            members.saw(found.value);
        }
        tokio::spawn(beat(Arc::downgrade(&members)));
        tokio::spawn(follow(Arc::downgrade(&members), watch));
        Ok(members)
    }

    pub fn node_id(&self) -> &str {
        &self.me.node
    }

    /// Whether `node` is this one or has heartbeated lately.
    pub fn is_live(&self, node: &str) -> bool {
        node == self.me.node
            || self
                .seen
                .lock()
                .ok()
                .and_then(|s| s.get(node).map(|(at, _)| at.elapsed() < self.dead_after()))
                .unwrap_or(false)
    }

    /// This node and every other live one, by id.
    pub fn live(&self) -> Vec<NodeInfo> {
        let mut out: Vec<NodeInfo> = self
            .seen
            .lock()
            .map(|s| {
                s.values()
                    .filter(|(at, _)| at.elapsed() < self.dead_after())
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.push(self.me.clone());
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out.dedup_by(|a, b| a.node == b.node);
        out
    }

    fn dead_after(&self) -> Duration {
        self.heartbeat * MISSED_BEATS
    }

    /// Leaves at once (a clean stop), instead of after missed beats.
    pub async fn leave(&self) -> Result<()> {
        self.left.store(true, std::sync::atomic::Ordering::Relaxed);
        self.bucket.purge(&seg(&self.me.node)).await
    }

    async fn announce(&self) -> Result<()> {
        self.bucket.put(&seg(&self.me.node), &self.me).await?;
        Ok(())
    }

    fn saw(&self, info: NodeInfo) {
        if info.node == self.me.node {
            return;
        }
        if let Ok(mut s) = self.seen.lock() {
            s.insert(info.node.clone(), (Instant::now(), info));
        }
    }

    fn gone(&self, node: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.remove(node);
        }
    }
}

async fn beat(members: Weak<Members>) {
    loop {
        let Some(every) = members.upgrade().map(|m| m.heartbeat) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(m) = members.upgrade() else { return };
        if m.left.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Err(e) = m.announce().await {
            tracing::warn!(error = %e, "cannot send this node's heartbeat");
        }
    }
}

async fn follow(members: Weak<Members>, mut watch: async_nats::jetstream::kv::Watch) {
    while let Some(entry) = watch.next().await {
        let Some(m) = members.upgrade() else { return };
        match entry {
            Ok(e) if e.operation == Operation::Put => {
                if let Ok(info) = serde_json::from_slice::<NodeInfo>(&e.value) {
                    m.saw(info);
                }
            }
            Ok(e) => m.gone(&crate::kv::unseg(&e.key)),
            Err(e) => tracing::warn!(error = %e, "membership watch failed"),
        }
    }
}
