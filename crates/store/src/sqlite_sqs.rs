//! SQLite statements of SQS queues and messages.
//!
//! A message is visible when `visible_ms <= now`; otherwise it is in
//! flight if it has been received (`receive_count > 0`) and delayed if
//! not. `nonce` names its latest receive: a receipt with another nonce is
//! stale. Indexes are few on purpose: every one is written per message.

use std::collections::{BTreeMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension};

use crate::sqs::QueueStore;
use crate::sqs::{
    DeadLetter, Moved, NewMessage, QueueCounts, QueueRow, Receipt, ReceiveRequest, Received, Sent,
    StoredMessage, VisibilityChange,
};
use crate::{Result, SqliteStore, StoreError};

pub(crate) const MIGRATION: &str = r#"
CREATE TABLE sqs_queues (
    name TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    next_sequence INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE sqs_messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL REFERENCES sqs_queues(name) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    extra TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER,
    nonce INTEGER NOT NULL DEFAULT 0,
    group_id TEXT,
    dedup_id TEXT,
    sequence INTEGER,
    dead_letter_source TEXT
);
CREATE INDEX sqs_messages_visible ON sqs_messages (queue, visible_ms);
CREATE INDEX sqs_messages_group ON sqs_messages (queue, group_id, id) WHERE group_id IS NOT NULL;
CREATE TABLE sqs_dedupe (
    queue TEXT NOT NULL REFERENCES sqs_queues(name) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, scope, dedup_id)
);
"#;

fn queue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn queue_row(
    (name, attributes, tags, created_ms, modified_ms): (String, String, String, i64, i64),
) -> Result<QueueRow> {
    Ok(QueueRow {
        name,
        attributes: serde_json::from_str(&attributes)?,
        tags: serde_json::from_str(&tags)?,
        created_ms,
        modified_ms,
    })
}

const QUEUE_COLUMNS: &str = "name, attributes, tags, created_ms, modified_ms";

pub(crate) fn create_queue(conn: &Connection, q: &QueueRow) -> Result<()> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO sqs_queues (name, attributes, tags, created_ms, modified_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            q.name,
            serde_json::to_string(&q.attributes)?,
            serde_json::to_string(&q.tags)?,
            q.created_ms,
            q.modified_ms
        ],
    )?;
    match n {
        0 => Err(StoreError::Conflict(format!("queue {} exists", q.name))),
        _ => Ok(()),
    }
}

pub(crate) fn get_queue(conn: &Connection, name: &str) -> Result<Option<QueueRow>> {
    conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM sqs_queues WHERE name = ?1"
    ))?
    .query_row(params![name], queue_from_row)
    .optional()?
    .map(queue_row)
    .transpose()
}

pub(crate) fn list_queues(conn: &Connection, prefix: &str) -> Result<Vec<QueueRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM sqs_queues WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name"
    ))?;
    let rows = stmt.query_map(params![prefix], queue_from_row)?;
    rows.map(|r| queue_row(r?)).collect()
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("queue {name}"))
}

pub(crate) fn set_attributes(
    conn: &Connection,
    name: &str,
    attributes: &BTreeMap<String, String>,
    modified_ms: i64,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE sqs_queues SET attributes = ?2, modified_ms = ?3 WHERE name = ?1",
        params![name, serde_json::to_string(attributes)?, modified_ms],
    )?;
    match n {
        0 => Err(not_found(name)),
        _ => Ok(()),
    }
}

pub(crate) fn set_tags(
    conn: &Connection,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE sqs_queues SET tags = ?2 WHERE name = ?1",
        params![name, serde_json::to_string(tags)?],
    )?;
    match n {
        0 => Err(not_found(name)),
        _ => Ok(()),
    }
}

pub(crate) fn delete_queue(conn: &Connection, name: &str) -> Result<()> {
    match conn.execute("DELETE FROM sqs_queues WHERE name = ?1", params![name])? {
        0 => Err(not_found(name)),
        _ => Ok(()),
    }
}

/// The dedupe scope of standard messages stored once by id (no FIFO
/// group is named so: group ids are printable).
const ONCE_SCOPE: &str = "\u{1}once";

pub(crate) fn send(
    conn: &Connection,
    queue: &str,
    messages: &[NewMessage],
    now_ms: i64,
) -> Result<Vec<Sent>> {
    let mut sequence: i64 = conn
        .prepare_cached("SELECT next_sequence FROM sqs_queues WHERE name = ?1")?
        .query_row(params![queue], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found(queue))?;
    let first_sequence = sequence;
    let mut insert = conn.prepare_cached(
        "INSERT INTO sqs_messages
           (queue, message_id, body, extra, sent_ms, visible_ms, expires_ms, group_id, dedup_id, sequence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let (group, dedup, seq) = match &m.fifo {
            None => {
                if let Some(until_ms) = m.once_until_ms {
                    let earlier: Option<String> = conn
                        .prepare_cached(
                            "SELECT message_id FROM sqs_dedupe
                             WHERE queue = ?1 AND scope = ?2 AND dedup_id = ?3 AND until_ms > ?4",
                        )?
                        .query_row(params![queue, ONCE_SCOPE, m.message_id, now_ms], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    if let Some(message_id) = earlier {
                        out.push(Sent {
                            message_id,
                            sequence_number: None,
                            duplicate: true,
                        });
                        continue;
                    }
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO sqs_dedupe (queue, scope, dedup_id, message_id, sequence, until_ms)
                         VALUES (?1, ?2, ?3, ?3, 0, ?4)",
                    )?
                    .execute(params![queue, ONCE_SCOPE, m.message_id, until_ms])?;
                }
                (None, None, None)
            }
            Some(fifo) => {
                let scope = if fifo.per_group {
                    fifo.group_id.as_str()
                } else {
                    ""
                };
                let earlier: Option<(String, i64)> = conn
                    .prepare_cached(
                        "SELECT message_id, sequence FROM sqs_dedupe
                         WHERE queue = ?1 AND scope = ?2 AND dedup_id = ?3 AND until_ms > ?4",
                    )?
                    .query_row(params![queue, scope, fifo.deduplication_id, now_ms], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((message_id, seq)) = earlier {
                    out.push(Sent {
                        message_id,
                        sequence_number: Some(seq),
                        duplicate: true,
                    });
                    continue;
                }
                let seq = sequence;
                sequence += 1;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO sqs_dedupe (queue, scope, dedup_id, message_id, sequence, until_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![queue, scope, fifo.deduplication_id, m.message_id, seq, fifo.dedupe_until_ms])?;
                (
                    Some(&fifo.group_id),
                    Some(&fifo.deduplication_id),
                    Some(seq),
                )
            }
        };
        insert.execute(params![
            queue,
            m.message_id,
            m.body,
            m.extra,
            m.sent_ms,
            m.visible_ms,
            m.expires_ms,
            group,
            dedup,
            seq
        ])?;
        out.push(Sent {
            message_id: m.message_id.clone(),
            sequence_number: seq,
            duplicate: false,
        });
    }
    if sequence != first_sequence {
        conn.prepare_cached("UPDATE sqs_queues SET next_sequence = ?2 WHERE name = ?1")?
            .execute(params![queue, sequence])?;
    }
    Ok(out)
}

/// A fresh receive's nonce: random, never 0 (a message never received).
fn nonce() -> i64 {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    ((a >> 1) as i64).max(1)
}

struct Candidate {
    id: i64,
    expires_ms: i64,
    receive_count: u32,
}

const STANDARD_CANDIDATES: &str = "SELECT id, expires_ms, receive_count FROM sqs_messages
     WHERE queue = ?1 AND visible_ms <= ?2 ORDER BY visible_ms LIMIT ?3";

/// A FIFO message is a candidate when no message of its group is in
/// flight and none before it is still invisible (delayed): groups come
/// out in order, and a delayed message after it does not block it.
const FIFO_CANDIDATES: &str = "SELECT m.id, m.expires_ms, m.receive_count FROM sqs_messages m
     WHERE m.queue = ?1 AND m.visible_ms <= ?2
       AND NOT EXISTS (SELECT 1 FROM sqs_messages b
                        WHERE b.queue = ?1 AND b.group_id = m.group_id AND b.visible_ms > ?2
                          AND (b.receive_count > 0 OR b.id < m.id))
     ORDER BY m.id LIMIT ?3";

fn dead_letter_exists(conn: &Connection, dl: &Option<DeadLetter>) -> Result<bool> {
    let Some(dl) = dl else { return Ok(false) };
    Ok(conn
        .prepare_cached("SELECT 1 FROM sqs_queues WHERE name = ?1")?
        .query_row(params![dl.queue], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn receive(conn: &Connection, req: &ReceiveRequest) -> Result<Received> {
    let now = req.now_ms;
    let mut out = Received::default();
    let dead_letter = match dead_letter_exists(conn, &req.dead_letter)? {
        true => req.dead_letter.as_ref(),
        false => None,
    };
    let mut seen = HashSet::new();
    let sql = if req.fifo {
        FIFO_CANDIDATES
    } else {
        STANDARD_CANDIDATES
    };
    // A pass may find expired or dead-lettered messages instead of ones to
    // deliver; look again, a bounded number of times.
    for _ in 0..8 {
        let want = req.max_messages - out.messages.len();
        if want == 0 {
            break;
        }
        let candidates: Vec<Candidate> = conn
            .prepare_cached(sql)?
            .query_map(
                params![req.queue, now, (want * 2 + seen.len()) as i64],
                |r| {
                    Ok(Candidate {
                        id: r.get(0)?,
                        expires_ms: r.get(1)?,
                        receive_count: r.get(2)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
        let fresh: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| !seen.contains(&c.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for c in fresh {
            seen.insert(c.id);
            if out.messages.len() == req.max_messages {
                break;
            }
            if c.expires_ms <= now {
                conn.prepare_cached("DELETE FROM sqs_messages WHERE id = ?1")?
                    .execute(params![c.id])?;
                continue;
            }
            if let Some(dl) = dead_letter.filter(|dl| c.receive_count >= dl.max_receive_count) {
                conn.prepare_cached(
                    "UPDATE sqs_messages SET queue = ?2, receive_count = 0, first_receive_ms = NULL,
                        nonce = 0, visible_ms = ?3, dead_letter_source = ?4 WHERE id = ?1",
                )?
                .execute(params![c.id, dl.queue, now, dl.source_arn])?;
                out.dead_lettered += 1;
                continue;
            }
            let nonce = nonce();
            let message = conn
                .prepare_cached(
                    "UPDATE sqs_messages SET receive_count = receive_count + 1,
                        first_receive_ms = coalesce(first_receive_ms, ?2), visible_ms = ?3, nonce = ?4
                      WHERE id = ?1
                      RETURNING message_id, body, extra, sent_ms, receive_count, first_receive_ms,
                                group_id, dedup_id, sequence, dead_letter_source",
                )?
                .query_row(params![c.id, now, now + req.visibility_ms, nonce], |r| {
                    Ok(StoredMessage {
                        receipt: Receipt { id: c.id, nonce },
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        extra: r.get(2)?,
                        sent_ms: r.get(3)?,
                        receive_count: r.get(4)?,
                        first_receive_ms: r.get(5)?,
                        group_id: r.get(6)?,
                        deduplication_id: r.get(7)?,
                        sequence_number: r.get(8)?,
                        dead_letter_source: r.get(9)?,
                    })
                })?;
            out.messages.push(message);
        }
    }
    out.next_visible_ms = conn
        .prepare_cached(
            "SELECT min(visible_ms) FROM sqs_messages WHERE queue = ?1 AND visible_ms > ?2",
        )?
        .query_row(params![req.queue, now], |r| r.get(0))?;
    Ok(out)
}

pub(crate) fn delete(conn: &Connection, queue: &str, receipts: &[Receipt]) -> Result<Vec<bool>> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM sqs_messages WHERE id = ?1 AND queue = ?2 AND nonce = ?3")?;
    receipts
        .iter()
        .map(|r| Ok(stmt.execute(params![r.id, queue, r.nonce])? > 0))
        .collect()
}

pub(crate) fn change_visibility(
    conn: &Connection,
    queue: &str,
    changes: &[(Receipt, i64)],
    now_ms: i64,
) -> Result<Vec<VisibilityChange>> {
    let mut update = conn.prepare_cached(
        "UPDATE sqs_messages SET visible_ms = ?4
          WHERE id = ?1 AND queue = ?2 AND nonce = ?3 AND receive_count > 0 AND visible_ms > ?5",
    )?;
    let mut exists = conn
        .prepare_cached("SELECT 1 FROM sqs_messages WHERE id = ?1 AND queue = ?2 AND nonce = ?3")?;
    changes
        .iter()
        .map(|(r, until)| {
            if update.execute(params![r.id, queue, r.nonce, until, now_ms])? > 0 {
                return Ok(VisibilityChange::Changed);
            }
            Ok(
                match exists
                    .query_row(params![r.id, queue, r.nonce], |_| Ok(()))
                    .optional()?
                {
                    Some(()) => VisibilityChange::NotInFlight,
                    None => VisibilityChange::Stale,
                },
            )
        })
        .collect()
}

pub(crate) fn purge(conn: &Connection, queue: &str) -> Result<u64> {
    if get_queue(conn, queue)?.is_none() {
        return Err(not_found(queue));
    }
    Ok(conn.execute("DELETE FROM sqs_messages WHERE queue = ?1", params![queue])? as u64)
}

pub(crate) fn counts(conn: &Connection, queue: &str, now_ms: i64) -> Result<QueueCounts> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(visible_ms <= ?2), 0),
                    coalesce(sum(visible_ms > ?2 AND receive_count > 0), 0),
                    coalesce(sum(visible_ms > ?2 AND receive_count = 0), 0),
                    min(sent_ms)
               FROM sqs_messages WHERE queue = ?1",
        )?
        .query_row(params![queue, now_ms], |r| {
            Ok(QueueCounts {
                visible: r.get(0)?,
                in_flight: r.get(1)?,
                delayed: r.get(2)?,
                oldest_sent_ms: r.get(3)?,
            })
        })?)
}

pub(crate) fn expire(conn: &Connection, now_ms: i64) -> Result<u64> {
    let messages = conn.execute(
        "DELETE FROM sqs_messages WHERE expires_ms <= ?1",
        params![now_ms],
    )?;
    conn.execute(
        "DELETE FROM sqs_dedupe WHERE until_ms <= ?1",
        params![now_ms],
    )?;
    Ok(messages as u64)
}

pub(crate) fn move_messages(
    conn: &Connection,
    source: &str,
    destination: Option<&str>,
    limit: usize,
    now_ms: i64,
) -> Result<Moved> {
    let rows: Vec<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, dead_letter_source FROM sqs_messages WHERE queue = ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![source, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut known = std::collections::HashMap::<String, bool>::new();
    let mut moved = 0;
    for (id, origin) in rows {
        let Some(to) = crate::sqs::move_target(destination, origin.as_deref()) else {
            continue;
        };
        let exists = match known.get(&to) {
            Some(e) => *e,
            None => {
                let e = get_queue(conn, &to)?.is_some();
                known.insert(to.clone(), e);
                e
            }
        };
        if !exists {
            continue;
        }
        conn.prepare_cached(
            "UPDATE sqs_messages SET queue = ?2, receive_count = 0, first_receive_ms = NULL, nonce = 0,
                visible_ms = ?3, dead_letter_source = NULL WHERE id = ?1",
        )?
        .execute(params![id, to, now_ms])?;
        moved += 1;
    }
    let remaining: u64 = conn
        .prepare_cached("SELECT count(*) FROM sqs_messages WHERE queue = ?1")?
        .query_row(params![source], |r| r.get(0))?;
    Ok(Moved { moved, remaining })
}

#[async_trait::async_trait]
impl QueueStore for SqliteStore {
    async fn create_queue(&self, queue: QueueRow) -> Result<()> {
        self.grouped.run(move |c| create_queue(c, &queue)).await
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueRow>> {
        let name = name.to_string();
        self.read(move |c| get_queue(c, &name)).await
    }

    async fn list_queues(&self, prefix: &str) -> Result<Vec<QueueRow>> {
        let prefix = prefix.to_string();
        self.read(move |c| list_queues(c, &prefix)).await
    }

    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: std::collections::BTreeMap<String, String>,
        modified_ms: i64,
    ) -> Result<()> {
        let name = name.to_string();
        self.grouped
            .run(move |c| set_attributes(c, &name, &attributes, modified_ms))
            .await
    }

    async fn set_queue_tags(
        &self,
        name: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let name = name.to_string();
        self.grouped.run(move |c| set_tags(c, &name, &tags)).await
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.grouped.run(move |c| delete_queue(c, &name)).await
    }

    async fn send_messages(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now_ms: i64,
    ) -> Result<Vec<Sent>> {
        let queue = queue.to_string();
        self.grouped
            .run(move |c| send(c, &queue, &messages, now_ms))
            .await
    }

    async fn receive_messages(&self, request: ReceiveRequest) -> Result<Received> {
        self.grouped.run(move |c| receive(c, &request)).await
    }

    async fn delete_messages(&self, queue: &str, receipts: Vec<Receipt>) -> Result<Vec<bool>> {
        let queue = queue.to_string();
        self.grouped
            .run(move |c| delete(c, &queue, &receipts))
            .await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        changes: Vec<(Receipt, i64)>,
        now_ms: i64,
    ) -> Result<Vec<VisibilityChange>> {
        let queue = queue.to_string();
        self.grouped
            .run(move |c| change_visibility(c, &queue, &changes, now_ms))
            .await
    }

    async fn purge_queue(&self, queue: &str) -> Result<u64> {
        let queue = queue.to_string();
        self.grouped.run(move |c| purge(c, &queue)).await
    }

    async fn queue_counts(&self, queue: &str, now_ms: i64) -> Result<QueueCounts> {
        let queue = queue.to_string();
        self.read(move |c| counts(c, &queue, now_ms)).await
    }

    async fn expire_messages(&self, now_ms: i64) -> Result<u64> {
        self.grouped.run(move |c| expire(c, now_ms)).await
    }

    async fn move_messages(
        &self,
        source: &str,
        destination: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Moved> {
        let (source, destination) = (source.to_string(), destination.map(str::to_string));
        self.grouped
            .run(move |c| move_messages(c, &source, destination.as_deref(), limit, now_ms))
            .await
    }
}
