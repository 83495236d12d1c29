//! Documents in the registry bucket, `doc.<kind>.<name>`; a document's
//! revision is its KV revision, so an update is a compare-and-set on it.

use serde_json::Value;
use wisp_store::{Document, DocumentStore, Result, StoreError};

use crate::kv::{seg, unseg};
use crate::NatsStore;

fn key_of(kind: &str, name: &str) -> String {
    format!("doc.{}.{}", seg(kind), seg(name))
}

#[async_trait::async_trait]
impl DocumentStore for NatsStore {
    async fn create_document(&self, kind: &str, name: &str, value: &Value) -> Result<u64> {
        self.registry
            .create(&key_of(kind, name), value)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("{kind} {name} exists")))
    }

    async fn update_document(
        &self,
        kind: &str,
        name: &str,
        value: &Value,
        revision: u64,
    ) -> Result<u64> {
        let key = key_of(kind, name);
        if let Some(written) = self.registry.update(&key, value, revision).await? {
            return Ok(written);
        }
        Err(match self.registry.entry::<Value>(&key).await? {
            Some(_) => StoreError::Conflict(format!("{kind} {name} changed meanwhile")),
            None => StoreError::NotFound(format!("{kind} {name}")),
        })
    }

    async fn get_document(&self, kind: &str, name: &str) -> Result<Option<Document>> {
        Ok(self
            .registry
            .entry::<Value>(&key_of(kind, name))
            .await?
            .map(|found| Document {
                kind: kind.into(),
                name: name.into(),
                value: found.value,
                revision: found.revision,
            }))
    }

    async fn list_documents(&self, kind: &str, prefix: &str) -> Result<Vec<Document>> {
        let mut out: Vec<Document> = self
            .registry
            .scan::<Value>(&format!("doc.{}.>", seg(kind)))
            .await?
            .into_iter()
            .filter_map(|found| {
                let name = unseg(found.key.rsplit('.').next()?);
                name.starts_with(prefix).then(|| Document {
                    kind: kind.into(),
                    name,
                    value: found.value,
                    revision: found.revision,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_document(&self, kind: &str, name: &str) -> Result<bool> {
        let key = key_of(kind, name);
        match self.registry.entry::<Value>(&key).await? {
            Some(found) => self.registry.purge_at(&key, found.revision).await,
            None => Ok(false),
        }
    }
}
