//! SQLite statements of timers: one row per (kind, id), indexed by due
//! time; `token` changes with every arming and every lease, so a settle
//! names the exact lease it holds.

use rusqlite::{params, OptionalExtension};

use crate::{LeasedTimer, Result, SqliteStore, Timer, TimerStore};

pub(crate) const MIGRATION: &str = r#"
CREATE TABLE timers (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    leased_until_ms INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers (kind, due_ms);
"#;

/// A fresh token: random, so an arming after a delete never repeats an
/// earlier lease's.
fn token() -> i64 {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    (a >> 1) as i64
}

#[async_trait::async_trait]
impl TimerStore for SqliteStore {
    async fn set_timer(&self, timer: &Timer) -> Result<()> {
        let t = timer.clone();
        self.grouped
            .run(move |conn| {
                conn.prepare_cached(
                "INSERT OR REPLACE INTO timers (kind, id, due_ms, payload, leased_until_ms, token)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            )?
            .execute(params![t.kind, t.id, t.due_ms, t.payload, token()])?;
                Ok(())
            })
            .await
    }

    async fn cancel_timer(&self, kind: &str, id: &str) -> Result<bool> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.grouped
            .run(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM timers WHERE kind = ?1 AND id = ?2",
                    params![kind, id],
                )? == 1)
            })
            .await
    }

    async fn get_timer(&self, kind: &str, id: &str) -> Result<Option<Timer>> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT due_ms, payload FROM timers WHERE kind = ?1 AND id = ?2",
                    params![kind, id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .map(|(due_ms, payload)| Timer {
                    kind,
                    id,
                    due_ms,
                    payload,
                }))
        })
        .await
    }

    async fn lease_due_timers(
        &self,
        kind: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<LeasedTimer>> {
        let kind = kind.to_string();
        self.grouped
            .run(move |conn| {
                let due: Vec<(String, i64, String)> = conn
                    .prepare_cached(
                        "SELECT id, due_ms, payload FROM timers
                     WHERE kind = ?1 AND due_ms <= ?2 AND leased_until_ms <= ?2
                     ORDER BY due_ms LIMIT ?3",
                    )?
                    .query_map(params![kind, now_ms, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut lease = conn.prepare_cached(
                "UPDATE timers SET leased_until_ms = ?3, token = ?4 WHERE kind = ?1 AND id = ?2",
            )?;
                let mut out = Vec::with_capacity(due.len());
                for (id, due_ms, payload) in due {
                    let t = token();
                    lease.execute(params![kind, id, now_ms + lease_ms, t])?;
                    out.push(LeasedTimer {
                        timer: Timer {
                            kind: kind.clone(),
                            id,
                            due_ms,
                            payload,
                        },
                        token: t as u64,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn settle_timer(
        &self,
        leased: &LeasedTimer,
        next_due_ms: Option<i64>,
        payload: Option<String>,
    ) -> Result<bool> {
        let (t, held) = (leased.timer.clone(), leased.token as i64);
        self.grouped
            .run(move |conn| {
                let changed = match next_due_ms {
                Some(due) => conn.execute(
                    "UPDATE timers SET due_ms = ?4, payload = ?5, leased_until_ms = 0, token = ?6
                     WHERE kind = ?1 AND id = ?2 AND token = ?3",
                    params![
                        t.kind,
                        t.id,
                        held,
                        due,
                        payload.unwrap_or(t.payload.clone()),
                        token()
                    ],
                )?,
                None => conn.execute(
                    "DELETE FROM timers WHERE kind = ?1 AND id = ?2 AND token = ?3",
                    params![t.kind, t.id, held],
                )?,
            };
                Ok(changed == 1)
            })
            .await
    }

    async fn next_timer_due(&self, kind: &str) -> Result<Option<i64>> {
        let kind = kind.to_string();
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT MIN(due_ms) FROM timers WHERE kind = ?1",
                params![kind],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
