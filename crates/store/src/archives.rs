//! Event archives: what a bus's archives keep of the events that matched
//! them, appended as they come, read back by time for a replay, dropped
//! when their retention ends or the archive goes.

use crate::Result;

/// One archived event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Its place in the archive: rises with every append.
    pub seq: u64,
    /// When it was archived (ms since the epoch).
    pub time_ms: i64,
    /// The event, as JSON.
    pub event: String,
}

#[async_trait::async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Appends events (each its archive time and JSON) to `archive`,
    /// durably; each is kept until `expires_ms` (`None`: for good).
    async fn append_archive(
        &self,
        archive: &str,
        events: Vec<(i64, String)>,
        expires_ms: Option<i64>,
    ) -> Result<()>;

    /// Events of `archive` archived in `[from_ms, to_ms)`, after the one
    /// at `after_seq` (0: from the start), in the order they were
    /// appended, at most `limit`.
    async fn read_archive(
        &self,
        archive: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Archived>>;

    /// How many events an archive holds, and about how many bytes.
    async fn archive_size(&self, archive: &str) -> Result<(u64, u64)>;

    /// Drops every event of an archive.
    async fn drop_archive(&self, archive: &str) -> Result<()>;

    /// Drops events whose retention ended by `now_ms` (a backend whose
    /// entries expire by themselves does nothing); how many went.
    async fn purge_archives(&self, now_ms: i64) -> Result<u64>;
}
