//! SQLite statements of archives: one row per archived event, in append
//! order.

use rusqlite::params;

use crate::{ArchiveStore, Archived, Result, SqliteStore};

pub(crate) const MIGRATION: &str = r#"
CREATE TABLE archived_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    archive TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    event TEXT NOT NULL
);
CREATE INDEX archived_events_by_archive ON archived_events (archive, seq);
CREATE INDEX archived_events_expiry ON archived_events (expires_ms) WHERE expires_ms IS NOT NULL;
"#;

#[async_trait::async_trait]
impl ArchiveStore for SqliteStore {
    async fn append_archive(
        &self,
        archive: &str,
        events: Vec<(i64, String)>,
        expires_ms: Option<i64>,
    ) -> Result<()> {
        let archive = archive.to_string();
        self.write(move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO archived_events (archive, time_ms, expires_ms, event) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (time_ms, event) in events {
                insert.execute(params![archive, time_ms, expires_ms, event])?;
            }
            Ok(())
        })
        .await
    }

    async fn read_archive(
        &self,
        archive: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Archived>> {
        let archive = archive.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, time_ms, event FROM archived_events
                 WHERE archive = ?1 AND seq > ?2 AND time_ms >= ?3 AND time_ms < ?4
                 ORDER BY seq LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![archive, after_seq as i64, from_ms, to_ms, limit as i64],
                |r| {
                    Ok(Archived {
                        seq: r.get::<_, i64>(0)? as u64,
                        time_ms: r.get(1)?,
                        event: r.get(2)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn archive_size(&self, archive: &str) -> Result<(u64, u64)> {
        let archive = archive.to_string();
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(event)), 0) FROM archived_events WHERE archive = ?1",
                params![archive],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?)
        })
        .await
    }

    async fn drop_archive(&self, archive: &str) -> Result<()> {
        let archive = archive.to_string();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM archived_events WHERE archive = ?1",
                params![archive],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge_archives(&self, now_ms: i64) -> Result<u64> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM archived_events WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                params![now_ms],
            )? as u64)
        })
        .await
    }
}
