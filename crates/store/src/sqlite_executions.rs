//! SQLite statements of executions: a row each, and their history events
//! by id. Commits go through the group committer.

use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use crate::{Execution, ExecutionStore, Result, SqliteStore, StoreError};

pub(crate) const MIGRATION: &str = r#"
CREATE TABLE executions (
    machine TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    stopped_ms INTEGER,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    events INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (machine, name)
);
CREATE INDEX executions_started ON executions (machine, started_ms);
CREATE TABLE execution_events (
    machine TEXT NOT NULL,
    name TEXT NOT NULL,
    id INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (machine, name, id)
);
"#;

const COLUMNS: &str =
    "machine, name, status, started_ms, stopped_ms, definition, input, state, events, revision";

fn execution(r: &Row) -> rusqlite::Result<(Execution, String)> {
    Ok((
        Execution {
            machine: r.get(0)?,
            name: r.get(1)?,
            status: r.get(2)?,
            started_ms: r.get(3)?,
            stopped_ms: r.get(4)?,
            definition: r.get(5)?,
            input: r.get(6)?,
            state: Value::Null,
            events: r.get::<_, i64>(8)? as u64,
            revision: r.get::<_, i64>(9)? as u64,
        },
        r.get(7)?,
    ))
}

fn parsed((mut e, state): (Execution, String)) -> Result<Execution> {
    e.state = serde_json::from_str(&state)?;
    Ok(e)
}

#[async_trait::async_trait]
impl ExecutionStore for SqliteStore {
    async fn create_execution(&self, e: &Execution) -> Result<u64> {
        let e = e.clone();
        let state = e.state.to_string();
        self.grouped
            .run(move |conn| {
                let added = conn
                    .prepare_cached(&format!(
                        "INSERT OR IGNORE INTO executions ({COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, 1)"
                    ))?
                    .execute(params![
                        e.machine,
                        e.name,
                        e.status,
                        e.started_ms,
                        e.stopped_ms,
                        e.definition,
                        e.input,
                        state
                    ])?;
                match added {
                    1 => Ok(1),
                    _ => Err(StoreError::Conflict(format!(
                        "execution {} of {} exists",
                        e.name, e.machine
                    ))),
                }
            })
            .await
    }

    async fn commit_execution(&self, e: &mut Execution, events: &[Value]) -> Result<()> {
        let (machine, name, status, stopped, revision, count) = (
            e.machine.clone(),
            e.name.clone(),
            e.status.clone(),
            e.stopped_ms,
            e.revision as i64,
            e.events as i64,
        );
        let state = e.state.to_string();
        let added: Vec<String> = events.iter().map(Value::to_string).collect();
        let total = count + added.len() as i64;
        self.grouped
            .run(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE executions SET status = ?3, stopped_ms = ?4, state = ?5,
                         events = ?6, revision = revision + 1
                         WHERE machine = ?1 AND name = ?2 AND revision = ?7",
                    )?
                    .execute(params![
                        machine, name, status, stopped, state, total, revision
                    ])?;
                if changed == 0 {
                    let there: Option<i64> = conn
                        .query_row(
                            "SELECT revision FROM executions WHERE machine = ?1 AND name = ?2",
                            params![machine, name],
                            |r| r.get(0),
                        )
                        .optional()?;
                    return Err(match there {
                        Some(_) => StoreError::Conflict(format!(
                            "execution {name} of {machine} changed meanwhile"
                        )),
                        None => StoreError::NotFound(format!("execution {name} of {machine}")),
                    });
                }
                let mut insert = conn.prepare_cached(
                    "INSERT OR REPLACE INTO execution_events (machine, name, id, event)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (i, event) in added.iter().enumerate() {
                    insert.execute(params![machine, name, count + 1 + i as i64, event])?;
                }
                Ok(())
            })
            .await?;
        e.revision += 1;
        e.events += events.len() as u64;
        Ok(())
    }

    async fn get_execution(&self, machine: &str, name: &str) -> Result<Option<Execution>> {
        let (machine, name) = (machine.to_string(), name.to_string());
        let found = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM executions WHERE machine = ?1 AND name = ?2"
                    ))?
                    .query_row(params![machine, name], execution)
                    .optional()?)
            })
            .await?;
        found.map(parsed).transpose()
    }

    async fn list_executions(&self, machine: &str, status: Option<&str>) -> Result<Vec<Execution>> {
        let (machine, status) = (machine.to_string(), status.map(String::from));
        let rows = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM executions
                         WHERE machine = ?1 AND (?2 IS NULL OR status = ?2)
                         ORDER BY started_ms DESC, name"
                    ))?
                    .query_map(params![machine, status], execution)?
                    .collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        rows.into_iter().map(parsed).collect()
    }

    async fn read_history(
        &self,
        machine: &str,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Value>> {
        let (machine, name) = (machine.to_string(), name.to_string());
        let texts: Vec<String> = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT event FROM execution_events
                         WHERE machine = ?1 AND name = ?2 AND id BETWEEN ?3 AND ?4 ORDER BY id",
                    )?
                    .query_map(params![machine, name, from as i64, to as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(StoreError::from))
            .collect()
    }

    async fn purge_executions(&self, machine: &str, before_ms: i64) -> Result<u64> {
        let machine = machine.to_string();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM execution_events WHERE machine = ?1 AND name IN
                 (SELECT name FROM executions WHERE machine = ?1 AND stopped_ms < ?2)",
                params![machine, before_ms],
            )?;
            let gone = tx.execute(
                "DELETE FROM executions WHERE machine = ?1 AND stopped_ms < ?2",
                params![machine, before_ms],
            )?;
            tx.commit()?;
            Ok(gone as u64)
        })
        .await
    }
}
