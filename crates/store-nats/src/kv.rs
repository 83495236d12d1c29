//! A KV bucket as the stores use it: JSON values under keys built from
//! escaped segments, compare-and-set on revisions, prefix scans, and reads
//! that go to the stream's leader (never a lagging replica).

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, stream::StorageType};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wisp_store::{Result, StoreError};

use crate::internal;
use crate::read::{read, Next};

/// One segment of a key: characters KV keys do not allow (and `=`, the
/// escape, and `.`, the separator) become `=XX`; the empty string is `=`.
pub(crate) fn seg(raw: &str) -> String {
    if raw.is_empty() {
        return "=".into();
    }
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// [`seg`] for text of any length (idempotency keys): a long one becomes
/// its digest, since a key is a subject and subjects should stay short.
pub(crate) fn long_seg(raw: &str) -> String {
    let s = seg(raw);
    if s.len() <= 128 {
        return s;
    }
    use sha2::Digest;
    format!(
        "sha256-{}",
        hex::encode(sha2::Sha256::digest(raw.as_bytes()))
    )
}

/// The inverse of [`seg`].
pub(crate) fn unseg(encoded: &str) -> String {
    if encoded == "=" {
        return String::new();
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&encoded[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where and how buckets and streams are kept.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub replicas: usize,
    pub storage: StorageType,
}

/// A value read with the revision to compare-and-set against.
pub(crate) struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

/// How long the server is to keep an entry that expires at `until_ms`.
pub(crate) fn ttl(now_ms: i64, until_ms: i64) -> std::time::Duration {
    // The server counts TTLs in nanoseconds: cap "forever" at ten years.
    const LONGEST_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
    let ms = until_ms.saturating_sub(now_ms).clamp(1, LONGEST_MS);
    std::time::Duration::from_millis(ms as u64)
}

#[derive(Clone)]
pub(crate) struct Bucket {
    pub kv: kv::Store,
    js: jetstream::Context,
}

impl Bucket {
    /// Opens the bucket, creating it on first use; every read goes to the
    /// stream's leader (direct gets may answer from a replica that has not
    /// caught up, which would break read-your-writes across nodes).
    pub async fn open(
        js: &jetstream::Context,
        name: &str,
        placement: Placement,
        history: i64,
    ) -> Result<Bucket> {
        Self::open_with(js, name, placement, history, std::time::Duration::ZERO).await
    }

    /// [`Bucket::open`] with entries dropped `max_age` after their last
    /// write (zero: kept).
    pub async fn open_with(
        js: &jetstream::Context,
        name: &str,
        placement: Placement,
        history: i64,
        max_age: std::time::Duration,
    ) -> Result<Bucket> {
        let kv = match js.get_key_value(name).await {
            Ok(kv) => kv,
            Err(_) => {
                let created = js
                    .create_key_value(kv::Config {
                        bucket: name.into(),
                        history,
                        max_age,
                        storage: placement.storage,
                        num_replicas: placement.replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(kv) => kv,
                    // Another node created it meanwhile.
                    Err(e) => js
                        .get_key_value(name)
                        .await
                        .map_err(|_| internal(format!("cannot create KV bucket {name}: {e}")))?,
                }
            }
        };
        // Reads from the leader; per-key TTLs allowed (`write_expiring`).
        let config = &kv.stream.cached_info().config;
        if config.allow_direct || !config.allow_message_ttl {
            let mut config = config.clone();
            config.allow_direct = false;
            config.allow_message_ttl = true;
            js.update_stream(config)
                .await
                .map_err(|e| internal(format!("cannot configure KV bucket {name}: {e}")))?;
            let kv = js
                .get_key_value(name)
                .await
                .map_err(|e| internal(format!("cannot open KV bucket {name}: {e}")))?;
            return Ok(Bucket { kv, js: js.clone() });
        }
        Ok(Bucket { kv, js: js.clone() })
    }

    /// Writes `key` to vanish `ttl` from now (rounded up to whole
    /// seconds, as the server counts them): whatever is there (`after`
    /// `None`), only if there is nothing (`Some(0)`), or only over
    /// `Some(revision)`. The new revision, or `None` if the condition
    /// did not hold.
    pub async fn write_expiring<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        after: Option<u64>,
        ttl: std::time::Duration,
    ) -> Result<Option<u64>> {
        let subject = format!(
            "{}{key}",
            self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix)
        );
        let mut headers = async_nats::HeaderMap::new();
        let secs = ttl.as_millis().div_ceil(1000).max(1);
        headers.insert("Nats-TTL", secs.to_string().as_str());
        if let Some(revision) = after {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                revision.to_string().as_str(),
            );
        }
        let published = self
            .js
            .publish_with_headers(subject, headers, to_bytes(value)?)
            .await
            .map_err(internal)?
            .await;
        match published {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if lost_cas(&e) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }

    /// What `key` holds, if anything, and the revision a conditional write
    /// over it must name: the last write's, even a delete's (0: none).
    pub async fn latest<T: DeserializeOwned>(&self, key: &str) -> Result<(Option<T>, u64)> {
        match self.kv.entry(key).await.map_err(internal)? {
            Some(e) if e.operation == Operation::Put => {
                Ok((Some(serde_json::from_slice(&e.value)?), e.revision))
            }
            Some(deleted) => Ok((None, deleted.revision)),
            None => Ok((None, 0)),
        }
    }

    pub async fn entry<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        let entry = self.kv.entry(key).await.map_err(internal)?;
        match entry {
            Some(e) if e.operation == Operation::Put => Ok(Some(Versioned {
                value: serde_json::from_slice(&e.value)?,
                revision: e.revision,
            })),
            _ => Ok(None),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        Ok(self.entry(key).await?.map(|v| v.value))
    }

    /// Creates `key`; `false` if it exists.
    pub async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<Option<u64>> {
        match self.kv.create(key, to_bytes(value)?).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists || lost_cas(&e) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }

    /// Replaces `key` if it is still at `revision`; `None` if it is not.
    pub async fn update<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<Option<u64>> {
        match self.kv.update(key, to_bytes(value)?, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision || lost_cas(&e) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }

    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<u64> {
        self.kv.put(key, to_bytes(value)?).await.map_err(internal)
    }

    /// Removes `key` with its history.
    pub async fn purge(&self, key: &str) -> Result<()> {
        self.kv.purge(key).await.map_err(internal)
    }

    /// Removes `key` if it is still at `revision`; whether it was.
    pub async fn purge_at(&self, key: &str, revision: u64) -> Result<bool> {
        match self.kv.purge_expect_revision(key, Some(revision)).await {
            Ok(()) => Ok(true),
            Err(e) if lost_cas(&e) => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }

    /// Removes every key matching `filter` (a subject filter over keys,
    /// `*` one segment, `>` the rest) in one request.
    pub async fn purge_matching(&self, filter: &str) -> Result<()> {
        self.kv
            .stream
            .purge()
            .filter(format!("{}{filter}", self.kv.prefix))
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Every live key matching `filter`, with its revision and value, in
    /// stream order.
    pub async fn scan<T: DeserializeOwned>(&self, filter: &str) -> Result<Vec<Scanned<T>>> {
        let mut out = Vec::new();
        let prefix = self.kv.prefix.as_str();
        read(
            &self.kv.stream,
            format!("{prefix}{filter}"),
            DeliverPolicy::LastPerSubject,
            |m| {
                let deleted = m.headers.and_then(|h| h.get("KV-Operation")).is_some();
                if !deleted {
                    out.push(Scanned {
                        key: m
                            .subject
                            .strip_prefix(prefix)
                            .unwrap_or_default()
                            .to_string(),
                        revision: m.sequence,
                        value: serde_json::from_slice(m.payload)?,
                    });
                }
                Ok(Next::More)
            },
        )
        .await?;
        Ok(out)
    }
}

/// A key found by a scan.
pub(crate) struct Scanned<T> {
    pub key: String,
    pub revision: u64,
    pub value: T,
}

/// Whether a write was refused because its key is no longer at the
/// expected revision (the client reports some of these as other errors,
/// with the server's text, `wrong last sequence`, in the chain).
fn lost_cas(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.to_string().contains("wrong last sequence") {
            return true;
        }
        cause = c.source();
    }
    false
}

pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Internal(format!("cannot encode a value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_stay_valid_keys() {
        for raw in [
            "",
            "f",
            "$LATEST",
            "a.b",
            "=",
            "x=1",
            "évé",
            "event-source-mapping",
            "_",
        ] {
            let s = seg(raw);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{s}"
            );
            assert_eq!(unseg(&s), raw);
        }
        assert_ne!(seg(""), seg("="));
    }
}
