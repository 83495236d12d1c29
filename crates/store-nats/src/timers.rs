//! Timers in their own KV bucket, `<kind>.<id>`; a timer's lease token is
//! its KV revision, so leasing and settling are compare-and-sets. Each
//! node finds due timers in an index of its own, kept per kind from a
//! watch of the bucket (so taking due timers reads no more than it takes);
//! the index may trail a write by a moment, never skip it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wisp_store::{LeasedTimer, Result, Timer, TimerStore};

use crate::kv::{long_seg, seg, Bucket};
use crate::NatsStore;

#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    due_ms: i64,
    payload: String,
    #[serde(default)]
    leased_until_ms: i64,
}

/// What the index knows of one timer.
#[derive(Clone, Copy)]
struct Slot {
    due_ms: i64,
    leased_until_ms: i64,
    revision: u64,
}

/// The timers of one kind, by key, as the watch last saw them.
type Index = Arc<Mutex<HashMap<String, Slot>>>;

/// Every kind's index on this node, each made on first use.
#[derive(Default)]
pub(crate) struct Indexes(Mutex<HashMap<String, Index>>);

fn key_of(kind: &str, id: &str) -> String {
    format!("{}.{}", seg(kind), long_seg(id))
}

/// Follows the timers of one kind into `index` while the store lives;
/// a broken watch is made again and the index rebuilt from the bucket.
async fn follow(alive: Weak<()>, bucket: Bucket, filter: String, index: Index) {
    while alive.strong_count() > 0 {
        let mut watch = match bucket.kv.watch_with_history(&filter).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch timers; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Ok(mut slots) = index.lock() {
            slots.clear();
        }
        while let Some(entry) = watch.next().await {
            let Ok(e) = entry else { break };
            let slot = match e.operation {
                Operation::Put => serde_json::from_slice::<Stored>(&e.value)
                    .ok()
                    .map(|s| Slot {
                        due_ms: s.due_ms,
                        leased_until_ms: s.leased_until_ms,
                        revision: e.revision,
                    }),
                Operation::Delete | Operation::Purge => None,
            };
            if let Ok(mut slots) = index.lock() {
                match slot {
                    Some(slot) => slots.insert(e.key, slot),
                    None => slots.remove(&e.key),
                };
            }
        }
    }
}

impl NatsStore {
    fn index(&self, kind: &str) -> Index {
        let mut all = self
            .timer_indexes
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry(kind.to_string())
            .or_insert_with(|| {
                let index = Index::default();
                tokio::spawn(follow(
                    Arc::downgrade(&self._alive),
                    self.timers.clone(),
                    format!("{}.>", seg(kind)),
                    index.clone(),
                ));
                index
            })
            .clone()
    }
}

fn timer(kind: &str, s: Stored) -> Timer {
    Timer {
        kind: kind.into(),
        id: s.id,
        due_ms: s.due_ms,
        payload: s.payload,
    }
}

#[async_trait::async_trait]
impl TimerStore for NatsStore {
    async fn set_timer(&self, t: &Timer) -> Result<()> {
        let stored = Stored {
            id: t.id.clone(),
            due_ms: t.due_ms,
            payload: t.payload.clone(),
            leased_until_ms: 0,
        };
        self.timers.put(&key_of(&t.kind, &t.id), &stored).await?;
        Ok(())
    }

    async fn cancel_timer(&self, kind: &str, id: &str) -> Result<bool> {
        let key = key_of(kind, id);
        match self.timers.entry::<Stored>(&key).await? {
            Some(_) => {
                self.timers.purge(&key).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get_timer(&self, kind: &str, id: &str) -> Result<Option<Timer>> {
        Ok(self
            .timers
            .get::<Stored>(&key_of(kind, id))
            .await?
            .map(|s| timer(kind, s)))
    }

    async fn lease_due_timers(
        &self,
        kind: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<LeasedTimer>> {
        let mut due: Vec<(String, Slot)> = {
            let index = self.index(kind);
            let slots = index.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .iter()
                .filter(|(_, s)| s.due_ms <= now_ms && s.leased_until_ms <= now_ms)
                .map(|(k, s)| (k.clone(), *s))
                .collect()
        };
        due.sort_by_key(|(_, s)| s.due_ms);
        let mut out = Vec::new();
        for (key, slot) in due {
            if out.len() >= limit {
                break;
            }
            // Read at the indexed revision: what a lease is taken on.
            let Some(found) = self.timers.entry::<Stored>(&key).await? else {
                continue;
            };
            if found.revision != slot.revision {
                continue;
            }
            let mut stored = found.value;
            stored.leased_until_ms = now_ms + lease_ms;
            if let Some(token) = self.timers.update(&key, &stored, slot.revision).await? {
                out.push(LeasedTimer {
                    timer: timer(kind, stored),
                    token,
                });
            }
        }
        Ok(out)
    }

    async fn settle_timer(
        &self,
        leased: &LeasedTimer,
        next_due_ms: Option<i64>,
        payload: Option<String>,
    ) -> Result<bool> {
        let t = &leased.timer;
        let key = key_of(&t.kind, &t.id);
        match next_due_ms {
            Some(due_ms) => {
                let stored = Stored {
                    id: t.id.clone(),
                    due_ms,
                    payload: payload.unwrap_or_else(|| t.payload.clone()),
                    leased_until_ms: 0,
                };
                Ok(self
                    .timers
                    .update(&key, &stored, leased.token)
                    .await?
                    .is_some())
            }
            None => self.timers.purge_at(&key, leased.token).await,
        }
    }

    async fn next_timer_due(&self, kind: &str) -> Result<Option<i64>> {
        Ok(self
            .timers
            .scan::<Stored>(&format!("{}.>", seg(kind)))
            .await?
            .iter()
            .map(|s| s.value.due_ms)
            .min())
    }
}
