//! SQLite statements of the async queue and the idempotency table.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::queue::{
    Claim, Enqueued, FailedEvent, KeyOutcome, NewEvent, QueueStats, QueuedEvent, Settle, Settlement,
};
use crate::Result;

/// `request_id` has no index on purpose: ids are random (UUID v4), so an
/// index on them would dirty a random page per insert and multiply what
/// each group commit writes; nothing looks events up by request id.
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE async_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    context TEXT NOT NULL,
    idempotency_key TEXT,
    enqueued_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0,
    last_response TEXT
);
CREATE INDEX async_events_due ON async_events (function, leased, due_ms);
CREATE INDEX async_events_age ON async_events (function, enqueued_ms);
CREATE UNIQUE INDEX async_events_key ON async_events (function, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE async_failed (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    failed_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX async_failed_by_function ON async_failed (function, failed_ms);
CREATE TABLE idempotency (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    done INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    result BLOB,
    PRIMARY KEY (function, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_ms);
"#;

/// `idempotency.done`: the holder runs (0), finished (1), or was running
/// when the server stopped (2), which `recover` marks.
const KEY_RUNNING: i64 = 0;
const KEY_DONE: i64 = 1;
const KEY_INTERRUPTED: i64 = 2;

/// The live holder of a key: request id, state (`KEY_*`), result.
type KeyRow = (String, i64, Option<Vec<u8>>);

fn live_key(tx: &Connection, function: &str, key: &str, now_ms: i64) -> Result<Option<KeyRow>> {
    Ok(tx
        .prepare_cached(
            "SELECT request_id, done, result FROM idempotency
             WHERE function = ?1 AND key = ?2 AND expires_ms > ?3",
        )?
        .query_row(params![function, key, now_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// What a live key's row says about its holder.
fn held((request_id, state, result): KeyRow) -> Claim {
    match state {
        KEY_DONE => Claim::Done {
            request_id,
            result: result.unwrap_or_default(),
        },
        KEY_INTERRUPTED => Claim::Interrupted { request_id },
        _ => Claim::Running { request_id },
    }
}

pub(crate) fn key_holder(
    conn: &Connection,
    function: &str,
    key: &str,
    now_ms: i64,
) -> Result<Option<Claim>> {
    Ok(live_key(conn, function, key, now_ms)?.map(held))
}

fn insert_event(tx: &Transaction<'_>, e: &NewEvent) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO async_events
               (request_id, function, qualifier, payload, context, idempotency_key, enqueued_ms, due_ms)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
             WHERE EXISTS (SELECT 1 FROM functions WHERE name = ?2)",
        )?
        .execute(params![
            e.request_id,
            e.function,
            e.qualifier,
            e.payload,
            e.context,
            e.idempotency_key,
            e.enqueued_ms,
            e.due_ms
        ])?;
    Ok(n > 0)
}

pub(crate) fn enqueue(
    conn: &mut Connection,
    events: &[NewEvent],
    now_ms: i64,
) -> Result<Vec<Enqueued>> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if let Some(key) = &e.idempotency_key {
            if let Some((request_id, _, _)) = live_key(&tx, &e.function, key, now_ms)? {
                out.push(Enqueued::Duplicate { request_id });
                continue;
            }
            let queued: Option<String> = tx
                .prepare_cached(
                    "SELECT request_id FROM async_events WHERE function = ?1 AND idempotency_key = ?2",
                )?
                .query_row(params![e.function, key], |r| r.get(0))
                .optional()?;
            if let Some(request_id) = queued {
                out.push(Enqueued::Duplicate { request_id });
                continue;
            }
        }
        out.push(if insert_event(&tx, e)? {
            Enqueued::Accepted
        } else {
            Enqueued::NoFunction
        });
    }
    tx.commit()?;
    Ok(out)
}

pub(crate) fn lease(
    conn: &mut Connection,
    function: &str,
    now_ms: i64,
    limit: usize,
) -> Result<(Vec<QueuedEvent>, Option<i64>)> {
    let tx = conn.transaction()?;
    let events = {
        let mut stmt = tx.prepare_cached(
            "UPDATE async_events SET leased = 1 WHERE id IN (
                 SELECT id FROM async_events
                 WHERE function = ?1 AND leased = 0 AND due_ms <= ?2
                 ORDER BY due_ms LIMIT ?3)
             RETURNING id, request_id, function, qualifier, payload, context, idempotency_key,
                       enqueued_ms, errors, throttles, last_response",
        )?;
        let rows = stmt.query_map(params![function, now_ms, limit as i64], |r| {
            Ok(QueuedEvent {
                id: r.get(0)?,
                request_id: r.get(1)?,
                function: r.get(2)?,
                qualifier: r.get(3)?,
                payload: r.get(4)?,
                context: r.get(5)?,
                idempotency_key: r.get(6)?,
                enqueued_ms: r.get(7)?,
                errors: r.get(8)?,
                throttles: r.get(9)?,
                last_response: r.get(10)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let next: Option<i64> = tx
        .prepare_cached("SELECT MIN(due_ms) FROM async_events WHERE function = ?1 AND leased = 0")?
        .query_row(params![function], |r| r.get(0))?;
    tx.commit()?;
    Ok((events, next))
}

fn keep_failed(tx: &Transaction<'_>, f: &FailedEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO async_failed (request_id, function, failed_ms, record)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM functions WHERE name = ?2)",
    )?
    .execute(params![f.request_id, f.function, f.failed_ms, f.record])?;
    Ok(())
}

fn finish_key_in(
    conn: &Connection,
    function: &str,
    key: &str,
    request_id: &str,
    outcome: &KeyOutcome,
) -> Result<()> {
    match outcome {
        KeyOutcome::Done { result, expires_ms } => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO idempotency (function, key, request_id, done, expires_ms, result)
                 SELECT ?1, ?2, ?3, ?6, ?4, ?5 WHERE EXISTS (SELECT 1 FROM functions WHERE name = ?1)",
            )?
            .execute(params![function, key, request_id, expires_ms, result, KEY_DONE])?;
        }
        KeyOutcome::Release => {
            conn.prepare_cached(
                "DELETE FROM idempotency WHERE function = ?1 AND key = ?2 AND request_id = ?3 AND done = ?4",
            )?
            .execute(params![function, key, request_id, KEY_RUNNING])?;
        }
    }
    Ok(())
}

pub(crate) fn settle(conn: &mut Connection, settlements: &[Settlement]) -> Result<()> {
    let tx = conn.transaction()?;
    for s in settlements {
        let (request_id, function): (String, String) = match tx
            .prepare_cached("SELECT request_id, function FROM async_events WHERE id = ?1")?
            .query_row(params![s.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            Some(row) => row,
            // Deleted with its function meanwhile.
            None => continue,
        };
        match &s.settle {
            Settle::Remove => {
                tx.prepare_cached("DELETE FROM async_events WHERE id = ?1")?
                    .execute(params![s.id])?;
            }
            Settle::Retry {
                due_ms,
                errors,
                throttles,
                last_response,
            } => {
                tx.prepare_cached(
                    "UPDATE async_events SET leased = 0, due_ms = ?2, errors = ?3, throttles = ?4,
                            last_response = ?5 WHERE id = ?1",
                )?
                .execute(params![
                    s.id,
                    due_ms,
                    errors,
                    throttles,
                    last_response
                ])?;
            }
        }
        for follow_up in &s.follow_ups {
            if !insert_event(&tx, follow_up)? {
                keep_failed(
                    &tx,
                    &FailedEvent {
                        request_id: request_id.clone(),
                        function: function.clone(),
                        failed_ms: follow_up.enqueued_ms,
                        record: crate::queue::undeliverable(follow_up),
                    },
                )?;
            }
        }
        if let Some(f) = &s.failed {
            keep_failed(&tx, f)?;
        }
        if let Some((function, key, outcome)) = &s.key {
            finish_key_in(&tx, function, key, &request_id, outcome)?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn recover(conn: &mut Connection) -> Result<Vec<(String, i64)>> {
    let tx = conn.transaction()?;
    tx.execute("UPDATE async_events SET leased = 0 WHERE leased = 1", [])?;
    // A keyed call that was running may or may not have had its effects:
    // running it again could apply them twice, so its key stays held.
    tx.execute(
        "UPDATE idempotency SET done = ?1 WHERE done = ?2",
        params![KEY_INTERRUPTED, KEY_RUNNING],
    )?;
    let pending = {
        let mut stmt =
            tx.prepare("SELECT function, MIN(due_ms) FROM async_events GROUP BY function")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(pending)
}

pub(crate) fn stats(conn: &mut Connection) -> Result<Vec<QueueStats>> {
    let mut by_function = std::collections::BTreeMap::<String, QueueStats>::new();
    let mut stmt = conn.prepare_cached(
        "SELECT function, COUNT(*), MIN(enqueued_ms) FROM async_events GROUP BY function",
    )?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (function, depth, oldest) = row?;
        let s = by_function.entry(function.clone()).or_default();
        s.function = function;
        s.depth = depth as u64;
        s.oldest_enqueued_ms = Some(oldest);
    }
    let mut stmt =
        conn.prepare_cached("SELECT function, COUNT(*) FROM async_failed GROUP BY function")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (function, failed) = row?;
        let s = by_function.entry(function.clone()).or_default();
        s.function = function;
        s.failed = failed as u64;
    }
    Ok(by_function.into_values().collect())
}

pub(crate) fn list_failed(
    conn: &mut Connection,
    function: &str,
    limit: usize,
) -> Result<Vec<FailedEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT request_id, function, failed_ms, record FROM async_failed
         WHERE function = ?1 ORDER BY failed_ms DESC, rowid DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![function, limit as i64], |r| {
        Ok(FailedEvent {
            request_id: r.get(0)?,
            function: r.get(1)?,
            failed_ms: r.get(2)?,
            record: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn claim(
    conn: &mut Connection,
    function: &str,
    key: &str,
    request_id: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<Claim> {
    let tx = conn.transaction()?;
    let claim = match live_key(&tx, function, key, now_ms)? {
        Some(row) => held(row),
        None => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO idempotency (function, key, request_id, done, expires_ms, result)
                 VALUES (?1, ?2, ?3, ?5, ?4, NULL)",
            )?
            .execute(params![function, key, request_id, expires_ms, KEY_RUNNING])?;
            Claim::Claimed
        }
    };
    tx.commit()?;
    Ok(claim)
}

pub(crate) fn finish_key(
    conn: &mut Connection,
    function: &str,
    key: &str,
    request_id: &str,
    outcome: &KeyOutcome,
) -> Result<()> {
    finish_key_in(conn, function, key, request_id, outcome)
}
