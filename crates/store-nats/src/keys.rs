//! Idempotency keys in a KV bucket, one entry per function and key,
//! claimed by create or compare-and-set. A running claim names the node
//! that runs it: when that node stops heartbeating (it crashed, perhaps
//! after the function's effects) the claim reads as interrupted, as the
//! embedded store marks its own running claims on restart.

use base64::Engine;
use serde::{Deserialize, Serialize};
use wisp_store::{Claim, KeyOutcome, KeyStore, Result};

use crate::kv::{long_seg, seg, ttl, Versioned};
use crate::NatsStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Running,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRow {
    request_id: String,
    state: State,
    expires_ms: i64,
    /// The node running the claim.
    node: String,
    /// The stored result (base64), once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
}

/// The KV key of an idempotency key.
fn key_of(function: &str, key: &str) -> String {
    format!("k.{}.{}", seg(function), long_seg(key))
}

impl NatsStore {
    fn held(&self, row: KeyRow) -> Claim {
        match row.state {
            State::Done => Claim::Done {
                request_id: row.request_id,
                result: row
                    .result
                    .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
                    .unwrap_or_default(),
            },
            State::Running if self.members.is_live(&row.node) => Claim::Running {
                request_id: row.request_id,
            },
            State::Running => Claim::Interrupted {
                request_id: row.request_id,
            },
        }
    }

    async fn live_key(&self, kv_key: &str, now_ms: i64) -> Result<Option<Versioned<KeyRow>>> {
        Ok(self
            .keys
            .entry::<KeyRow>(kv_key)
            .await?
            .filter(|row| row.value.expires_ms > now_ms))
    }
}

#[async_trait::async_trait]
impl KeyStore for NatsStore {
    async fn claim_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Claim> {
        let kv_key = key_of(function, key);
        let row = KeyRow {
            request_id: request_id.into(),
            state: State::Running,
            expires_ms,
            node: self.members.node_id().into(),
            result: None,
        };
        let ttl = ttl(now_ms, expires_ms);
        loop {
            let (existing, revision) = self.keys.latest::<KeyRow>(&kv_key).await?;
            if let Some(live) = existing.filter(|row| row.expires_ms > now_ms) {
                return Ok(self.held(live));
            }
            let won = self
                .keys
                .write_expiring(&kv_key, &row, Some(revision), ttl)
                .await?;
            if won.is_some() {
                return Ok(Claim::Claimed);
            }
            // Another claim landed between the read and the write: read it.
        }
    }

    async fn key_holder(&self, function: &str, key: &str, now_ms: i64) -> Result<Option<Claim>> {
        Ok(self
            .live_key(&key_of(function, key), now_ms)
            .await?
            .map(|row| self.held(row.value)))
    }

    async fn finish_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        outcome: KeyOutcome,
    ) -> Result<()> {
        let kv_key = key_of(function, key);
        match outcome {
            KeyOutcome::Done { result, expires_ms } => {
                let row = KeyRow {
                    request_id: request_id.into(),
                    state: State::Done,
                    expires_ms,
                    node: self.members.node_id().into(),
                    result: Some(base64::engine::general_purpose::STANDARD.encode(result)),
                };
                let ttl = ttl(crate::members::now_ms(), expires_ms);
                self.keys.write_expiring(&kv_key, &row, None, ttl).await?;
            }
            KeyOutcome::Release => {
                if let Some(found) = self.keys.entry::<KeyRow>(&kv_key).await? {
                    if found.value.request_id == request_id && found.value.state == State::Running {
                        self.keys.purge_at(&kv_key, found.revision).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Nothing to do: each key carries its TTL, and the server drops it.
    async fn purge_keys(&self, _now_ms: i64) -> Result<u64> {
        Ok(0)
    }
}
