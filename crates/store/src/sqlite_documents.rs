//! SQLite statements of documents: one row per (kind, name).

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use crate::{Document, DocumentStore, Result, SqliteStore, StoreError};

pub(crate) const MIGRATION: &str = r#"
CREATE TABLE documents (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"#;

fn document(kind: String, name: String, body: String, revision: i64) -> Result<Document> {
    Ok(Document {
        kind,
        name,
        value: serde_json::from_str(&body)?,
        revision: revision as u64,
    })
}

#[async_trait::async_trait]
impl DocumentStore for SqliteStore {
    async fn create_document(&self, kind: &str, name: &str, value: &Value) -> Result<u64> {
        let (kind, name, body) = (kind.to_string(), name.to_string(), value.to_string());
        self.write(move |conn| {
            let added = conn.execute(
                "INSERT OR IGNORE INTO documents (kind, name, body, revision) VALUES (?1, ?2, ?3, 1)",
                params![kind, name, body],
            )?;
            match added {
                1 => Ok(1),
                _ => Err(StoreError::Conflict(format!("{kind} {name} exists"))),
            }
        })
        .await
    }

    async fn update_document(
        &self,
        kind: &str,
        name: &str,
        value: &Value,
        revision: u64,
    ) -> Result<u64> {
        let (kind, name, body) = (kind.to_string(), name.to_string(), value.to_string());
        self.write(move |conn| {
            let changed = conn.execute(
                "UPDATE documents SET body = ?3, revision = revision + 1
                 WHERE kind = ?1 AND name = ?2 AND revision = ?4",
                params![kind, name, body, revision as i64],
            )?;
            if changed == 1 {
                return Ok(revision + 1);
            }
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM documents WHERE kind = ?1 AND name = ?2)",
                params![kind, name],
                |r| r.get(0),
            )?;
            Err(match exists {
                true => StoreError::Conflict(format!("{kind} {name} changed meanwhile")),
                false => StoreError::NotFound(format!("{kind} {name}")),
            })
        })
        .await
    }

    async fn get_document(&self, kind: &str, name: &str) -> Result<Option<Document>> {
        let (kind, name) = (kind.to_string(), name.to_string());
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT body, revision FROM documents WHERE kind = ?1 AND name = ?2",
                    params![kind, name],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?;
            row.map(|(body, revision)| document(kind, name, body, revision))
                .transpose()
        })
        .await
    }

    async fn list_documents(&self, kind: &str, prefix: &str) -> Result<Vec<Document>> {
        let (kind, prefix) = (kind.to_string(), prefix.to_string());
        self.read(move |conn| {
            // By range, not LIKE: a prefix may hold `%` or `_`.
            let mut stmt = conn.prepare_cached(
                "SELECT name, body, revision FROM documents
                 WHERE kind = ?1 AND name >= ?2 AND substr(name, 1, length(?2)) = ?2
                 ORDER BY name",
            )?;
            let rows = stmt.query_map(params![kind, prefix], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, body, revision) = row?;
                out.push(document(kind.clone(), name, body, revision)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_document(&self, kind: &str, name: &str) -> Result<bool> {
        let (kind, name) = (kind.to_string(), name.to_string());
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM documents WHERE kind = ?1 AND name = ?2",
                params![kind, name],
            )? == 1)
        })
        .await
    }
}
