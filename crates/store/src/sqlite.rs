//! The embedded store: SQLite in WAL mode, code blobs as files named by
//! their sha256. Every call runs on the blocking pool, never on the async
//! runtime's threads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use wisp_core::function::LATEST;
use wisp_core::route::Route;
use wisp_core::{
    Alias, ErrorKind, Finished, FunctionVersion, InvocationRecord, LogEntry, LogLine, Outcome,
};

use crate::group_commit::GroupCommit;
use crate::sqlite_queue as queue;
use crate::{
    check_revision, Claim, CodeStore, Enqueued, EventQueue, FailedEvent, KeyOutcome, KeyStore,
    LogQuery, NewEvent, QueueStats, QueuedEvent, RecordStore, Registry, Result, Setting,
    Settlement, StoreError,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE functions (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    next_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE versions (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version TEXT NOT NULL,
    number INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE aliases (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (function, name)
);
CREATE TABLE routes (
    app TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (app, seq)
);
CREATE TABLE invocations (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX invocations_by_function ON invocations (function, started_at);
CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_by_function ON logs (function, seq);
CREATE INDEX logs_by_request ON logs (request_id);
CREATE INDEX logs_by_time ON logs (ts);
"#,
    r#"
CREATE TABLE settings (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (function, kind, qualifier)
);
CREATE INDEX settings_by_kind ON settings (kind);
"#,
    crate::sqlite_queue::MIGRATION,
    // One row per finished invocation: its record and the lines it wrote.
    // START/END/REPORT are derived from the record when read. A row per
    // line with three indexes cost more than running the function did.
    r#"
CREATE TABLE invocation_rows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    record TEXT NOT NULL,
    lines TEXT
);
INSERT INTO invocation_rows (request_id, function, started_at, record, lines)
SELECT i.request_id, i.function, i.started_at, i.body,
       (SELECT json_group_array(json_array(l.stream, l.ts, l.message))
          FROM (SELECT stream, ts, message FROM logs
                 WHERE request_id = i.request_id
                   AND NOT (stream = 'platform' AND (message LIKE 'START RequestId: %'
                        OR message LIKE 'END RequestId: %' OR message LIKE 'REPORT RequestId: %'))
                 ORDER BY seq) l)
  FROM invocations i ORDER BY i.started_at;
DROP TABLE logs;
DROP TABLE invocations;
ALTER TABLE invocation_rows RENAME TO invocations;
CREATE UNIQUE INDEX invocations_by_request ON invocations (request_id);
CREATE INDEX invocations_by_function ON invocations (function, seq);
"#,
    // The record in columns, not JSON: a fifth of the bytes per row, and
    // those bytes (written to the WAL, then checkpointed) were half of what
    // a record cost the store.
    r#"
CREATE TABLE invocation_records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    init_us INTEGER,
    duration_us INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    memory_limit_mb INTEGER NOT NULL,
    max_memory_bytes INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error_type TEXT,
    error_message TEXT,
    status INTEGER,
    lines TEXT
);
INSERT INTO invocation_records
SELECT seq, request_id, function,
       json_extract(record, '$.version'), json_extract(record, '$.trigger'), started_at,
       json_extract(record, '$.cold'), json_extract(record, '$.init_duration_us'),
       json_extract(record, '$.duration_us'), json_extract(record, '$.billed_ms'),
       json_extract(record, '$.memory_limit_mb'), json_extract(record, '$.max_memory_bytes'),
       json_extract(record, '$.outcome'), json_extract(record, '$.error_kind'),
       json_extract(record, '$.error_type'), json_extract(record, '$.error_message'),
       json_extract(record, '$.status'), lines
  FROM invocations ORDER BY seq;
DROP TABLE invocations;
ALTER TABLE invocation_records RENAME TO invocations;
CREATE UNIQUE INDEX invocations_by_request ON invocations (request_id);
CREATE INDEX invocations_by_function ON invocations (function, seq);
"#,
    // Without AUTOINCREMENT: its bookkeeping row (sqlite_sequence) was
    // rewritten with every insert, a fifth of what a record cost. `seq`
    // still only rises: a new row takes max(seq) + 1, and purging always
    // keeps the newest row, so the max never goes away.
    r#"
CREATE TABLE invocations_rowid (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    init_us INTEGER,
    duration_us INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    memory_limit_mb INTEGER NOT NULL,
    max_memory_bytes INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error_type TEXT,
    error_message TEXT,
    status INTEGER,
    lines TEXT
);
INSERT INTO invocations_rowid SELECT * FROM invocations ORDER BY seq;
DROP TABLE invocations;
ALTER TABLE invocations_rowid RENAME TO invocations;
CREATE UNIQUE INDEX invocations_by_request ON invocations (request_id);
CREATE INDEX invocations_by_function ON invocations (function, seq);
DELETE FROM sqlite_sequence WHERE name IN ('invocations', 'invocations_rowid');
"#,
    // Every attempt of a retried async event keeps its own row (they share
    // the request id): the lines of a failed attempt are what explain its
    // retry, so a later attempt must not replace them.
    r#"
DROP INDEX invocations_by_request;
CREATE INDEX invocations_by_request ON invocations (request_id);
"#,
    // Which delivery of its event each record is (1 for a sync call).
    r#"
ALTER TABLE invocations ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
"#,
    crate::sqlite_sqs::MIGRATION,
    crate::sqlite_documents::MIGRATION,
    crate::sqlite_timers::MIGRATION,
    crate::sqlite_archives::MIGRATION,
    crate::sqlite_executions::MIGRATION,
];

/// The columns of an invocation record, in the order `record_from_row` reads them.
const RECORD_COLUMNS: &str = "request_id, function, version, trigger, started_at, cold, init_us, \
     duration_us, billed_ms, memory_limit_mb, max_memory_bytes, outcome, error_kind, error_type, \
     error_message, status, attempt";

/// A text column holding an enum, read by its `parse`.
fn enum_column<T>(text: String, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown value `{text}`").into(),
        )
    })
}

/// The record in `RECORD_COLUMNS`, starting at column `at`.
fn record_from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<InvocationRecord> {
    let error_kind: Option<String> = row.get(at + 12)?;
    Ok(InvocationRecord {
        request_id: row.get(at)?,
        function: row.get(at + 1)?,
        version: row.get(at + 2)?,
        trigger: row.get(at + 3)?,
        started_at_ms: row.get(at + 4)?,
        cold: row.get(at + 5)?,
        init_duration_us: row.get(at + 6)?,
        duration_us: row.get(at + 7)?,
        billed_ms: row.get(at + 8)?,
        memory_limit_mb: row.get(at + 9)?,
        max_memory_bytes: row.get(at + 10)?,
        outcome: enum_column(row.get(at + 11)?, at + 11, Outcome::parse)?,
        error_kind: error_kind
            .map(|text| enum_column(text, at + 12, ErrorKind::parse))
            .transpose()?,
        error_type: row.get(at + 13)?,
        error_message: row.get(at + 14)?,
        status: row.get(at + 15)?,
        attempt: row.get(at + 16)?,
    })
}

/// SQLite-backed `Store` rooted at a data directory.
pub struct SqliteStore {
    code_dir: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// Queue messages' writes, committed in groups on `writer`.
    pub(crate) grouped: GroupCommit,
}

/// The lowest `seq` of the rows started at or after `at_ms` (one past
/// the last row when none is), by bisection over the rows' `seq`.
fn first_seq_started_at(conn: &Connection, at_ms: i64) -> Result<i64> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT min(seq), max(seq) FROM invocations", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(mut lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    let mut hi = hi + 1;
    let mut first_at = conn.prepare_cached(
        "SELECT seq, started_at FROM invocations WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (seq, started): (i64, i64) =
            first_at.query_row(params![mid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if started < at_ms {
            lo = seq + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The code and the database (functions' environments, payloads in
/// queues) are the server's alone, whatever the umask or an older wisp
/// left: the code dir 0700, the database and its WAL files 0600 (SQLite
/// gives the WAL files the database's mode, so it is made before them).
fn keep_private(code_dir: &Path, db: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(code_dir, 0o700)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            mode(&file, 0o600)?;
        }
    }
    Ok(())
}

/// Process-wide SQLite settings, made once before the first connection
/// (SQLite refuses them after it has initialised). Its allocation
/// statistics take a global mutex on every malloc and free, and nothing
/// here reads them.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: MEMSTATUS takes one int; a call after initialisation
        // only returns SQLITE_MISUSE, which leaves the default in place.
        unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0);
        }
    });
}

fn open_connection(path: &Path) -> Result<Connection> {
    configure_sqlite();
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {current}, newer than this wisp knows ({}); upgrade wisp",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}

/// Inserts finished invocations, one row each, in one transaction.
fn insert_invocation_rows(conn: &mut Connection, finished: &[Finished]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO invocations ({RECORD_COLUMNS}, lines)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ))?;
        for f in finished {
            let r = &f.record;
            let lines = match f.lines.is_empty() {
                true => None,
                false => Some(serde_json::to_string(&f.lines)?),
            };
            insert.execute(params![
                r.request_id,
                r.function,
                r.version,
                r.trigger,
                r.started_at_ms,
                r.cold,
                r.init_duration_us,
                r.duration_us,
                r.billed_ms,
                r.memory_limit_mb,
                r.max_memory_bytes,
                r.outcome.as_str(),
                r.error_kind.map(|k| k.as_str()),
                r.error_type,
                r.error_message,
                r.status,
                r.attempt,
                lines
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir)?;
        let code_dir = data_dir.join("code");
        std::fs::create_dir_all(&code_dir)?;
        let db = data_dir.join("wisp.db");
        keep_private(&code_dir, &db)?;
        let mut writer = open_connection(&db)?;
        // Every write is synced before it is acknowledged: an accepted
        // async event survives a power cut, not only a crash. Writes are
        // batched (records, queue), so this costs one fsync per batch.
        writer.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut writer)?;
        let reader = open_connection(&db)?;
        let writer = Arc::new(Mutex::new(writer));
        Ok(SqliteStore {
            code_dir,
            grouped: GroupCommit::start(writer.clone())?,
            writer,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn with<T, F>(conn: &Arc<Mutex<Connection>>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Internal("store connection poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        Self::with(&self.writer, f).await
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        Self::with(&self.reader, f).await
    }
}

fn version_number(version: &str) -> i64 {
    version.parse().unwrap_or(0)
}

fn get_version(
    conn: &Connection,
    function: &str,
    version: &str,
) -> Result<Option<FunctionVersion>> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM versions WHERE function = ?1 AND version = ?2",
            params![function, version],
            |r| r.get(0),
        )
        .optional()?;
    body.map(|b| serde_json::from_str(&b).map_err(Into::into))
        .transpose()
}

fn put_version(conn: &Connection, v: &FunctionVersion) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO versions (function, version, number, body) VALUES (?1, ?2, ?3, ?4)",
        params![
            v.function,
            v.version,
            version_number(&v.version),
            serde_json::to_string(v)?
        ],
    )?;
    Ok(())
}

fn collect_json<T: serde::de::DeserializeOwned>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row?)?);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Registry for SqliteStore {
    async fn put_setting(&self, setting: Setting) -> Result<()> {
        self.write(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM functions WHERE name = ?1)",
                params![setting.function],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound(format!("Function {}", setting.function)));
            }
            conn.execute(
                "INSERT OR REPLACE INTO settings (function, qualifier, kind, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    setting.function,
                    setting.qualifier,
                    setting.kind,
                    serde_json::to_string(&setting.value)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_setting(
        &self,
        function: &str,
        kind: &str,
        qualifier: &str,
    ) -> Result<Option<serde_json::Value>> {
        let (function, kind, qualifier) = (
            function.to_string(),
            kind.to_string(),
            qualifier.to_string(),
        );
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM settings WHERE function = ?1 AND kind = ?2 AND qualifier = ?3",
                    params![function, kind, qualifier],
                    |r| r.get(0),
                )
                .optional()?;
            body.map(|b| serde_json::from_str(&b).map_err(Into::into))
                .transpose()
        })
        .await
    }

    async fn delete_setting(&self, function: &str, kind: &str, qualifier: &str) -> Result<bool> {
        let (function, kind, qualifier) = (
            function.to_string(),
            kind.to_string(),
            qualifier.to_string(),
        );
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM settings WHERE function = ?1 AND kind = ?2 AND qualifier = ?3",
                params![function, kind, qualifier],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_settings(&self, kind: &str, function: Option<&str>) -> Result<Vec<Setting>> {
        let (kind, function) = (kind.to_string(), function.map(str::to_string));
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT function, qualifier, body FROM settings WHERE kind = ?1 AND (?2 IS NULL OR function = ?2) ORDER BY function, qualifier",
            )?;
            let rows = stmt.query_map(params![kind, function], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (function, qualifier, body) = row?;
                out.push(Setting {
                    function,
                    qualifier,
                    kind: kind.clone(),
                    value: serde_json::from_str(&body)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn create_function(&self, latest: FunctionVersion) -> Result<()> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO functions (name, created_at) VALUES (?1, ?2)",
                params![latest.function, latest.last_modified_ms],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "Function already exist: {}",
                    latest.function
                )));
            }
            put_version(&tx, &latest)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn update_latest(
        &self,
        latest: FunctionVersion,
        expected_revision: Option<&str>,
    ) -> Result<()> {
        let expected = expected_revision.map(str::to_string);
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let current = get_version(&tx, &latest.function, LATEST)?
                .ok_or_else(|| StoreError::NotFound(format!("Function {}", latest.function)))?;
            check_revision(&current.revision_id, expected.as_deref(), &latest.function)?;
            put_version(&tx, &latest)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_version(&self, function: &str, version: &str) -> Result<Option<FunctionVersion>> {
        let (function, version) = (function.to_string(), version.to_string());
        self.read(move |conn| get_version(conn, &function, &version))
            .await
    }

    async fn list_latest(&self) -> Result<Vec<FunctionVersion>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT body FROM versions WHERE version = '$LATEST' ORDER BY function")?;
            collect_json(&mut stmt, [])
        })
        .await
    }

    async fn list_versions(&self, function: &str) -> Result<Vec<FunctionVersion>> {
        let function = function.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT body FROM versions WHERE function = ?1 ORDER BY number, version",
            )?;
            collect_json(&mut stmt, [function])
        })
        .await
    }

    async fn publish_version(
        &self,
        function: &str,
        description: Option<String>,
        expected_revision: Option<&str>,
    ) -> Result<FunctionVersion> {
        let function = function.to_string();
        let expected = expected_revision.map(str::to_string);
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let latest = get_version(&tx, &function, LATEST)?
                .ok_or_else(|| StoreError::NotFound(format!("Function {function}")))?;
            check_revision(&latest.revision_id, expected.as_deref(), &function)?;
            let newest: Option<String> = tx
                .query_row(
                    "SELECT body FROM versions WHERE function = ?1 AND number > 0 ORDER BY number DESC LIMIT 1",
                    params![function],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(body) = newest {
                let newest: FunctionVersion = serde_json::from_str(&body)?;
                let mut same = newest.config.clone();
                same.description = latest.config.description.clone();
                if newest.code_sha256 == latest.code_sha256 && same == latest.config {
                    return Ok(newest);
                }
            }
            let number: i64 = tx.query_row(
                "UPDATE functions SET next_version = next_version + 1 WHERE name = ?1 RETURNING next_version - 1",
                params![function],
                |r| r.get(0),
            )?;
            let mut version = latest.clone();
            version.version = number.to_string();
            version.revision_id = uuid::Uuid::new_v4().to_string();
            if let Some(d) = description {
                version.config.description = d;
            }
            put_version(&tx, &version)?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    async fn delete_function(&self, function: &str) -> Result<()> {
        let function = function.to_string();
        self.write(move |conn| {
            let deleted =
                conn.execute("DELETE FROM functions WHERE name = ?1", params![function])?;
            match deleted {
                0 => Err(StoreError::NotFound(format!("Function {function}"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn delete_version(&self, function: &str, version: &str) -> Result<()> {
        let (function, version) = (function.to_string(), version.to_string());
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let mut stmt = tx.prepare("SELECT body FROM aliases WHERE function = ?1")?;
            let aliases: Vec<Alias> = collect_json(&mut stmt, [&function])?;
            drop(stmt);
            if let Some(alias) = aliases.iter().find(|a| a.version == version) {
                return Err(StoreError::Conflict(format!(
                    "Unable to delete version because the following aliases reference it: [{}]",
                    alias.name
                )));
            }
            let deleted = tx.execute(
                "DELETE FROM versions WHERE function = ?1 AND version = ?2",
                params![function, version],
            )?;
            tx.commit()?;
            match deleted {
                0 => Err(StoreError::NotFound(format!(
                    "Function {function}:{version}"
                ))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn create_alias(&self, alias: Alias) -> Result<()> {
        self.write(move |conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO aliases (function, name, body) VALUES (?1, ?2, ?3)",
                params![alias.function, alias.name, serde_json::to_string(&alias)?],
            )?;
            match inserted {
                0 => Err(StoreError::Conflict(format!(
                    "Alias already exists: {}:{}",
                    alias.function, alias.name
                ))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn update_alias(&self, alias: Alias, expected_revision: Option<&str>) -> Result<()> {
        let expected = expected_revision.map(str::to_string);
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT body FROM aliases WHERE function = ?1 AND name = ?2",
                    params![alias.function, alias.name],
                    |r| r.get(0),
                )
                .optional()?;
            let current: Alias = match current {
                Some(b) => serde_json::from_str(&b)?,
                None => {
                    return Err(StoreError::NotFound(format!(
                        "Alias {}:{}",
                        alias.function, alias.name
                    )))
                }
            };
            check_revision(&current.revision_id, expected.as_deref(), &alias.name)?;
            tx.execute(
                "UPDATE aliases SET body = ?3 WHERE function = ?1 AND name = ?2",
                params![alias.function, alias.name, serde_json::to_string(&alias)?],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_alias(&self, function: &str, name: &str) -> Result<Option<Alias>> {
        let (function, name) = (function.to_string(), name.to_string());
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM aliases WHERE function = ?1 AND name = ?2",
                    params![function, name],
                    |r| r.get(0),
                )
                .optional()?;
            body.map(|b| serde_json::from_str(&b).map_err(Into::into))
                .transpose()
        })
        .await
    }

    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>> {
        let function = function.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT body FROM aliases WHERE function = ?1 ORDER BY name")?;
            collect_json(&mut stmt, [function])
        })
        .await
    }

    async fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        let (function, name) = (function.to_string(), name.to_string());
        self.write(move |conn| {
            let deleted = conn.execute(
                "DELETE FROM aliases WHERE function = ?1 AND name = ?2",
                params![function, name],
            )?;
            match deleted {
                0 => Err(StoreError::NotFound(format!("Alias {function}:{name}"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn replace_routes(&self, app: &str, routes: Vec<Route>) -> Result<()> {
        let app = app.to_string();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM routes WHERE app = ?1", params![app])?;
            for (seq, route) in routes.iter().enumerate() {
                tx.execute(
                    "INSERT INTO routes (app, seq, body) VALUES (?1, ?2, ?3)",
                    params![app, seq as i64, serde_json::to_string(route)?],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_routes(&self) -> Result<Vec<(String, Route)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT app, body FROM routes ORDER BY app, seq")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (app, body) = row?;
                out.push((app, serde_json::from_str(&body)?));
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl CodeStore for SqliteStore {
    async fn put_code(&self, bytes: Vec<u8>) -> Result<String> {
        let dir = self.code_dir.clone();
        tokio::task::spawn_blocking(move || {
            let sha = hex::encode(Sha256::digest(&bytes));
            let path = dir.join(&sha);
            if !path.exists() {
                // Write then rename, so a crash never leaves a torn blob under its final name.
                let tmp = dir.join(format!(".{sha}.{}", uuid::Uuid::new_v4()));
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
            }
            Ok(sha)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    async fn code_path(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(format!("code {sha256}")));
        }
        let path = self.code_dir.join(sha256);
        match tokio::fs::try_exists(&path).await? {
            true => Ok(path),
            false => Err(StoreError::NotFound(format!("code {sha256}"))),
        }
    }
}

#[async_trait::async_trait]
impl RecordStore for SqliteStore {
    async fn insert_invocations(&self, finished: Vec<Finished>) -> Result<()> {
        self.write(move |conn| {
            // Nobody waits on a record being on disk: it goes to the WAL
            // unsynced (a crash of wisp loses none; a power cut, the last
            // few), and is synced by the next synced commit or checkpoint.
            // This spares an fsync per batch of records; queue events and
            // idempotency keys are still synced before they are acknowledged.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let written = insert_invocation_rows(conn, &finished);
            conn.pragma_update(None, "synchronous", "FULL")?;
            written
        })
        .await
    }

    async fn get_invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>> {
        let request_id = request_id.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM invocations WHERE request_id = ?1
                         ORDER BY seq DESC LIMIT 1"
                    ),
                    params![request_id],
                    |r| record_from_row(r, 0),
                )
                .optional()?)
        })
        .await
    }

    async fn list_invocations(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        let function = function.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM invocations WHERE function = ?1 ORDER BY seq DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![function, limit as i64], |r| record_from_row(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn query_logs(&self, query: LogQuery) -> Result<Vec<LogEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT seq, lines, {RECORD_COLUMNS} FROM invocations
                 WHERE (?1 IS NULL OR function = ?1)
                   AND (?2 IS NULL OR request_id = ?2)
                   AND (?3 IS NULL OR started_at >= ?3)
                   AND seq > ?4
                 ORDER BY seq"
            ))?;
            let mut rows = stmt.query(params![
                query.function,
                query.request_id,
                query.since_ms,
                query.after_seq.unwrap_or(0),
            ])?;
            let mut out = Vec::new();
            while out.len() < query.limit {
                let Some(row) = rows.next()? else { break };
                let record = record_from_row(row, 2)?;
                let lines: Vec<LogLine> = match row.get::<_, Option<String>>(1)? {
                    Some(text) => serde_json::from_str(&text)?,
                    None => Vec::new(),
                };
                out.extend(record.log_entries(row.get(0)?, lines));
            }
            Ok(out)
        })
        .await
    }

    async fn last_log_seq(&self) -> Result<i64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT COALESCE(max(seq), 0) FROM invocations", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn purge_records_before(&self, before_ms: i64) -> Result<u64> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            // Rows go in as invocations finish, so start times rise with
            // `seq` (a long invocation lands a little late): find the first
            // row to keep by bisecting on `seq` instead of indexing time.
            let keep_from = first_seq_started_at(&tx, before_ms)?;
            // The newest row stays whatever its age: the next row's seq is
            // max(seq) + 1, and cursors on seq must never see it go back.
            let a = tx.execute(
                "DELETE FROM invocations
                  WHERE seq < min(?1, (SELECT max(seq) FROM invocations))",
                params![keep_from],
            )?;
            tx.commit()?;
            Ok(a as u64)
        })
        .await
    }
}

#[async_trait::async_trait]
impl EventQueue for SqliteStore {
    async fn enqueue_events(&self, events: Vec<NewEvent>, now_ms: i64) -> Result<Vec<Enqueued>> {
        self.write(move |conn| queue::enqueue(conn, &events, now_ms))
            .await
    }

    async fn lease_events(
        &self,
        function: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Vec<QueuedEvent>, Option<i64>)> {
        let function = function.to_string();
        self.write(move |conn| queue::lease(conn, &function, now_ms, limit))
            .await
    }

    async fn settle_events(&self, settlements: Vec<Settlement>) -> Result<()> {
        self.write(move |conn| queue::settle(conn, &settlements))
            .await
    }

    async fn recover_queue(&self) -> Result<Vec<(String, i64)>> {
        self.write(queue::recover).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        self.read(queue::stats).await
    }

    async fn list_failed_events(&self, function: &str, limit: usize) -> Result<Vec<FailedEvent>> {
        let function = function.to_string();
        self.read(move |conn| queue::list_failed(conn, &function, limit))
            .await
    }
}

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
    async fn claim_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Claim> {
        let (function, key, request_id) = (
            function.to_string(),
            key.to_string(),
            request_id.to_string(),
        );
        self.write(move |conn| queue::claim(conn, &function, &key, &request_id, now_ms, expires_ms))
            .await
    }

    async fn key_holder(&self, function: &str, key: &str, now_ms: i64) -> Result<Option<Claim>> {
        let (function, key) = (function.to_string(), key.to_string());
        self.read(move |conn| queue::key_holder(conn, &function, &key, now_ms))
            .await
    }

    async fn finish_key(
        &self,
        function: &str,
        key: &str,
        request_id: &str,
        outcome: KeyOutcome,
    ) -> Result<()> {
        let (function, key, request_id) = (
            function.to_string(),
            key.to_string(),
            request_id.to_string(),
        );
        self.write(move |conn| queue::finish_key(conn, &function, &key, &request_id, &outcome))
            .await
    }

    async fn purge_keys(&self, now_ms: i64) -> Result<u64> {
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM idempotency WHERE done <> 0 AND expires_ms <= ?1",
                params![now_ms],
            )?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::events::event;
    use crate::conformance::registry::version;
    use wisp_core::LogStream;

    /// What the registry holds survives a restart (its transitions are in
    /// `conformance::registry`).
    #[tokio::test]
    async fn functions_versions_and_aliases_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            let sha = store.put_code(b"abc".to_vec()).await.unwrap();
            store.create_function(version("f", &sha)).await.unwrap();
            store.publish_version("f", None, None).await.unwrap();
            store
                .update_latest(version("f", "other"), None)
                .await
                .unwrap();
            store.publish_version("f", None, None).await.unwrap();
            store
                .create_alias(crate::conformance::registry::alias("f", "live", "1"))
                .await
                .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let versions = store.list_versions("f").await.unwrap();
        let names: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["$LATEST", "1", "2"]);
        assert_eq!(
            store.get_alias("f", "live").await.unwrap().unwrap().version,
            "1"
        );
        assert_eq!(
            store
                .publish_version("f", None, None)
                .await
                .unwrap()
                .version,
            "2"
        );
    }

    #[test]
    fn records_and_lines_of_the_old_schema_are_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wisp.db");
        {
            let conn = open_connection(&db).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute_batch(
                r#"
INSERT INTO invocations VALUES ('r1', 'f', 100, '{"request_id":"r1","function":"f","version":"$LATEST","trigger":"api","started_at_ms":100,"cold":false,"init_duration_us":null,"duration_us":1000,"billed_ms":1,"memory_limit_mb":128,"max_memory_bytes":0,"outcome":"success","error_kind":null,"error_type":null,"error_message":null,"status":200}');
INSERT INTO logs (request_id, function, ts, stream, message) VALUES
  ('r1', 'f', 100, 'platform', 'START RequestId: r1 Version: $LATEST'),
  ('r1', 'f', 100, 'stdout', 'hello'),
  ('r1', 'f', 101, 'platform', 'outbound request to x denied'),
  ('r1', 'f', 101, 'platform', 'END RequestId: r1'),
  ('r1', 'f', 101, 'platform', 'REPORT RequestId: r1	Duration: 1.00 ms');
"#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let logs = rt
            .block_on(store.query_logs(LogQuery {
                request_id: Some("r1".into()),
                limit: 100,
                ..LogQuery::default()
            }))
            .unwrap();
        let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert_eq!(messages[1], "hello");
        assert_eq!(messages[2], "outbound request to x denied");
        assert_eq!(logs[2].stream, LogStream::Platform);
        let record = rt.block_on(store.get_invocation("r1")).unwrap().unwrap();
        assert_eq!(
            (
                record.version.as_str(),
                record.trigger.as_str(),
                record.duration_us
            ),
            ("$LATEST", "api", 1000)
        );
        assert_eq!(
            (record.cold, record.init_duration_us, record.status),
            (false, None, Some(200))
        );
        assert_eq!(
            (record.outcome, record.error_kind),
            (wisp_core::Outcome::Success, None)
        );
    }

    /// What a restart does to the queue (the rest of it is in
    /// `conformance::events`): leases come back, and a key that was running
    /// stays held as interrupted (its effects may have happened).
    #[tokio::test]
    async fn a_restart_returns_leases_and_interrupts_running_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.create_function(version("f", "x")).await.unwrap();
        store
            .enqueue_events(vec![event("a", "f", None, 0)], 0)
            .await
            .unwrap();
        let (leased, _) = store.lease_events("f", 10, 10).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(
            store.claim_key("f", "cut", "q", 10, 5000).await.unwrap(),
            Claim::Claimed
        );
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.recover_queue().await.unwrap(), vec![("f".into(), 0)]);
        let (leased, _) = store.lease_events("f", 20, 10).await.unwrap();
        assert_eq!(leased[0].request_id, "a");
        assert_eq!(
            store.claim_key("f", "cut", "r", 20, 5000).await.unwrap(),
            Claim::Interrupted {
                request_id: "q".into()
            }
        );
        // A release by the interrupted run's id does not free it...
        store
            .finish_key("f", "cut", "q", KeyOutcome::Release)
            .await
            .unwrap();
        assert!(matches!(
            store.key_holder("f", "cut", 30).await.unwrap(),
            Some(Claim::Interrupted { .. })
        ));
        // ...its expiry does.
        store.purge_keys(5000).await.unwrap();
        assert_eq!(
            store.claim_key("f", "cut", "r", 5001, 9000).await.unwrap(),
            Claim::Claimed
        );
    }
}
