//! Executions in a bucket of their own: the row under
//! `x.<machine>.<name>`, each history event under
//! `h.<machine>.<name>.<id>`. A commit is a compare-and-set of the row
//! that carries the events it adds (its tail); the next commit first
//! writes the stored tail's events to their keys. So only a committed
//! step's events ever reach a history key, and a reader takes the latest
//! ones from the row itself.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wisp_store::{Execution, ExecutionStore, Result, StoreError};

use crate::kv::seg;
use crate::NatsStore;

#[derive(Serialize, Deserialize)]
struct Row {
    status: String,
    started_ms: i64,
    stopped_ms: Option<i64>,
    definition: String,
    input: String,
    state: Value,
    events: u64,
    /// The last commit's events, ids `events - tail.len() + 1 ..= events`.
    tail: Vec<Value>,
}

/// History keys written at once.
const IN_FLIGHT: usize = 64;

fn row_key(machine: &str, name: &str) -> String {
    format!("x.{}.{}", seg(machine), seg(name))
}

fn event_key(machine: &str, name: &str, id: u64) -> String {
    format!("h.{}.{}.{id}", seg(machine), seg(name))
}

fn execution(machine: &str, name: &str, row: Row, revision: u64) -> Execution {
    Execution {
        machine: machine.into(),
        name: name.into(),
        status: row.status,
        started_ms: row.started_ms,
        stopped_ms: row.stopped_ms,
        definition: row.definition,
        input: row.input,
        state: row.state,
        events: row.events,
        revision,
    }
}

impl NatsStore {
    /// Writes a committed tail's events to their keys.
    async fn flush_tail(&self, machine: &str, name: &str, row: &Row) -> Result<()> {
        let first = row.events + 1 - row.tail.len() as u64;
        let writes: Vec<(String, Value)> = (row.tail.iter().enumerate())
            .map(|(i, event)| (event_key(machine, name, first + i as u64), event.clone()))
            .collect();
        stream::iter(writes)
            .map(|(key, event)| async move { self.executions.put(&key, &event).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ExecutionStore for NatsStore {
    async fn create_execution(&self, e: &Execution) -> Result<u64> {
        let row = Row {
            status: e.status.clone(),
            started_ms: e.started_ms,
            stopped_ms: e.stopped_ms,
            definition: e.definition.clone(),
            input: e.input.clone(),
            state: e.state.clone(),
            events: 0,
            tail: Vec::new(),
        };
        self.executions
            .create(&row_key(&e.machine, &e.name), &row)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("execution {} of {} exists", e.name, e.machine))
            })
    }

    async fn commit_execution(&self, e: &mut Execution, events: &[Value]) -> Result<()> {
        let key = row_key(&e.machine, &e.name);
        let Some(stored) = self.executions.entry::<Row>(&key).await? else {
            return Err(StoreError::NotFound(format!(
                "execution {} of {}",
                e.name, e.machine
            )));
        };
        if stored.revision != e.revision {
            return Err(StoreError::Conflict(format!(
                "execution {} of {} changed meanwhile",
                e.name, e.machine
            )));
        }
        self.flush_tail(&e.machine, &e.name, &stored.value).await?;
        let row = Row {
            status: e.status.clone(),
            started_ms: e.started_ms,
            stopped_ms: e.stopped_ms,
            definition: stored.value.definition,
            input: stored.value.input,
            state: e.state.clone(),
            events: e.events + events.len() as u64,
            tail: events.to_vec(),
        };
        match self.executions.update(&key, &row, e.revision).await? {
            Some(revision) => {
                e.revision = revision;
                e.events = row.events;
                Ok(())
            }
            None => Err(StoreError::Conflict(format!(
                "execution {} of {} changed meanwhile",
                e.name, e.machine
            ))),
        }
    }

    async fn get_execution(&self, machine: &str, name: &str) -> Result<Option<Execution>> {
        Ok(self
            .executions
            .entry::<Row>(&row_key(machine, name))
            .await?
            .map(|found| execution(machine, name, found.value, found.revision)))
    }

    async fn list_executions(&self, machine: &str, status: Option<&str>) -> Result<Vec<Execution>> {
        let mut out: Vec<Execution> = self
            .executions
            .scan::<Row>(&format!("x.{}.*", seg(machine)))
            .await?
            .into_iter()
            .filter(|found| status.is_none_or(|s| found.value.status == s))
            .filter_map(|found| {
                let name = crate::kv::unseg(found.key.rsplit('.').next()?);
                Some(execution(machine, &name, found.value, found.revision))
            })
            .collect();
        out.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    async fn read_history(
        &self,
        machine: &str,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Value>> {
        let Some(row) = self.executions.get::<Row>(&row_key(machine, name)).await? else {
            return Ok(Vec::new());
        };
        let to = to.min(row.events);
        let from = from.max(1);
        if from > to {
            return Ok(Vec::new());
        }
        let tail_from = row.events + 1 - row.tail.len() as u64;
        let stored_to = to.min(tail_from - 1);
        let mut out: Vec<Value> = stream::iter(from..=stored_to)
            .map(|id| {
                let key = event_key(machine, name, id);
                async move {
                    self.executions.get::<Value>(&key).await?.ok_or_else(|| {
                        StoreError::Internal(format!("history event {id} of {name} is missing"))
                    })
                }
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await?;
        for id in from.max(tail_from)..=to {
            out.push(row.tail[(id - tail_from) as usize].clone());
        }
        Ok(out)
    }

    async fn purge_executions(&self, machine: &str, before_ms: i64) -> Result<u64> {
        let mut gone = 0;
        for found in self
            .executions
            .scan::<Row>(&format!("x.{}.*", seg(machine)))
            .await?
        {
            if found.value.stopped_ms.is_none_or(|t| t >= before_ms) {
                continue;
            }
            let Some(name) = found.key.rsplit('.').next() else {
                continue;
            };
            self.executions
                .purge_matching(&format!("h.{}.{name}.*", seg(machine)))
                .await?;
            if self.executions.purge_at(&found.key, found.revision).await? {
                gone += 1;
            }
        }
        Ok(gone)
    }
}
