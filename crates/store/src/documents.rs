//! Named JSON documents by kind, each changed by compare-and-set on its
//! revision: the stored form of resources that are a definition and
//! nothing more (event buses, rules and their targets, archives,
//! schedules, connections). Names are unique within a kind and listed in
//! order; a name may carry a scope before a `/` (a rule's bus), so
//! listing by prefix lists one scope.

use serde_json::Value;

use crate::Result;

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub kind: String,
    pub name: String,
    pub value: Value,
    /// Rises with every write; what `update_document` expects back.
    pub revision: u64,
}

#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync {
    /// Stores a new document; its revision. `Conflict` if the name is taken.
    async fn create_document(&self, kind: &str, name: &str, value: &Value) -> Result<u64>;

    /// Replaces a document still at `revision`; its new revision.
    /// `Conflict` if another write came first, `NotFound` if it is gone.
    async fn update_document(
        &self,
        kind: &str,
        name: &str,
        value: &Value,
        revision: u64,
    ) -> Result<u64>;

    async fn get_document(&self, kind: &str, name: &str) -> Result<Option<Document>>;

    /// Documents of `kind` whose names start with `prefix`, by name.
    async fn list_documents(&self, kind: &str, prefix: &str) -> Result<Vec<Document>>;

    /// Removes a document; whether it was there.
    async fn delete_document(&self, kind: &str, name: &str) -> Result<bool>;
}
