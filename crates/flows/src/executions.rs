//! What the API does with STANDARD executions: start one (idempotent by
//! name), describe, list, stop, read its history, and the definition it
//! runs.

use std::future::Future;
use std::pin::Pin;

use serde_json::{json, Value};
use wisp_store::{Execution, StoreError};

use crate::durable::{branch_name, end, number, Progress};
use crate::engine::{Flows, FlowsError, Machine};
use crate::inline;
use crate::step::Failure;

/// An execution as DescribeExecution and ListExecutions show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionView {
    pub execution_arn: String,
    pub machine: String,
    pub name: String,
    pub status: String,
    pub started_ms: i64,
    pub stopped_ms: Option<i64>,
    pub input: String,
    pub output: Option<Value>,
    pub error: Option<Failure>,
    /// How many history events it has.
    pub events: u64,
}

/// The most history events one page holds, and a page's default.
pub const MAX_HISTORY_PAGE: u64 = 1000;
pub const DEFAULT_HISTORY_PAGE: u64 = 100;

impl Flows {
    /// Removes the executions (and histories) of every machine, and of
    /// its branches and items, that closed before `before_ms`; how many.
    pub async fn purge_closed_executions(&self, before_ms: i64) -> Result<u64, FlowsError> {
        let mut purged = 0;
        for m in self.list().await? {
            for machine in [m.name.clone(), format!("{}~branches", m.name)] {
                purged += self.store.purge_executions(&machine, before_ms).await?;
            }
        }
        Ok(purged)
    }

    pub fn execution_arn(&self, machine: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{machine}:{name}",
            self.sqs.region(),
            self.sqs.account()
        )
    }

    /// The machine and name of a STANDARD execution's ARN.
    pub fn execution_of(arn: &str) -> Result<(String, String), FlowsError> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts[..] {
            ["arn", _, "states", _, _, "execution", machine, name]
                if !machine.is_empty() && !name.is_empty() =>
            {
                Ok((machine.to_string(), name.to_string()))
            }
            _ => Err(FlowsError::new(
                "InvalidArn",
                format!("Invalid Arn: '{arn}'"),
            )),
        }
    }

    fn not_found(arn: &str) -> FlowsError {
        FlowsError::new(
            "ExecutionDoesNotExist",
            format!("Execution Does Not Exist: '{arn}'"),
        )
    }

    async fn stored(&self, arn: &str) -> Result<Execution, FlowsError> {
        let (machine, name) = Self::execution_of(arn)?;
        self.store
            .get_execution(&machine, &name)
            .await?
            .ok_or_else(|| Self::not_found(arn))
    }

    fn view(&self, e: Execution) -> ExecutionView {
        let p: Option<Progress> = serde_json::from_value(e.state).ok();
        let (output, error) = p.map(|p| (p.output, p.error)).unwrap_or_default();
        ExecutionView {
            execution_arn: self.execution_arn(&e.machine, &e.name),
            machine: e.machine,
            name: e.name,
            status: e.status,
            started_ms: e.started_ms,
            stopped_ms: e.stopped_ms,
            input: e.input,
            output,
            error,
            events: e.events,
        }
    }

    /// StartExecution of a STANDARD machine: stored before it answers,
    /// then driven on this node. The same name and input again is the
    /// same execution while it runs; otherwise the name is taken.
    pub(crate) async fn start_standard(
        &self,
        m: &Machine,
        name: String,
        input_text: &str,
        input: &Value,
        parent: Option<crate::durable::Parent>,
        depth: u32,
    ) -> Result<(String, i64), FlowsError> {
        let started_ms = self.clock.now_ms();
        let arn = self.execution_arn(&m.name, &name);
        let e = Execution {
            machine: m.name.clone(),
            name: name.clone(),
            status: "RUNNING".into(),
            started_ms,
            stopped_ms: None,
            definition: m.definition.clone(),
            input: match input_text.trim() {
                "" => "{}".into(),
                given => given.to_string(),
            },
            state: serde_json::to_value(Progress::started(&m.role_arn, parent, depth))
                .map_err(|err| FlowsError::internal(err.to_string()))?,
            events: 0,
            revision: 0,
        };
        // The timer first: an execution is never stored without one.
        self.arm(&m.name, &name).await?;
        match self.store.create_execution(&e).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                let have = self.stored(&arn).await?;
                let same = serde_json::from_str::<Value>(&have.input).ok().as_ref() == Some(input);
                if have.status == "RUNNING" && same {
                    return Ok((arn, have.started_ms));
                }
                return Err(FlowsError::new(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{arn}'"),
                ));
            }
            Err(err) => return Err(err.into()),
        }
        metrics::counter!("wisp_executions_started_total", "state_machine" => m.name.clone())
            .increment(1);
        if let Some(me) = self.shared() {
            me.spawn_drive(&m.name, &name);
        }
        Ok((arn, started_ms))
    }

    pub async fn describe_execution(&self, arn: &str) -> Result<ExecutionView, FlowsError> {
        Ok(self.view(self.stored(arn).await?))
    }

    /// A machine's executions, newest first.
    pub async fn list_executions(
        &self,
        machine: &str,
        status: Option<&str>,
    ) -> Result<Vec<ExecutionView>, FlowsError> {
        Ok(self
            .store
            .list_executions(machine, status)
            .await?
            .into_iter()
            .map(|e| self.view(e))
            .collect())
    }

    /// StopExecution: a running execution ends ABORTED (a Task in flight
    /// finishes, but nothing comes of it). Its stop time.
    pub async fn stop_execution(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<i64, FlowsError> {
        loop {
            let mut e = self.stored(arn).await?;
            if e.status != "RUNNING" {
                return Ok(e.stopped_ms.unwrap_or(e.started_ms));
            }
            let mut p: Progress = serde_json::from_value(e.state.clone())
                .map_err(|err| FlowsError::internal(err.to_string()))?;
            let now = self.clock.now_ms();
            let f = Failure::new(
                error.clone().unwrap_or_default(),
                cause.clone().unwrap_or_default(),
            );
            let mut events = vec![end(&mut e, &mut p, now, Err(("ABORTED", f)))];
            number(&mut events, e.events);
            e.state =
                serde_json::to_value(&p).map_err(|err| FlowsError::internal(err.to_string()))?;
            match self.store.commit_execution(&mut e, &events).await {
                Ok(()) => {
                    metrics::counter!("wisp_executions_total", "state_machine" => e.machine.clone(), "status" => "ABORTED")
                        .increment(1);
                    let id = format!("{}/{}", e.machine, e.name);
                    self.store
                        .cancel_timer(crate::durable::EXECUTION_TIMER, &id)
                        .await?;
                    for (m, n) in &p.orphans {
                        Box::pin(self.stop_branch(m, n)).await;
                    }
                    return Ok(now);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Err(Self::not_found(arn)),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// A page of an execution's history: up to `limit` events after the
    /// one `after` names (0: from the start), oldest first or newest
    /// first; and the id to go on after, if there are more.
    pub async fn history(
        &self,
        arn: &str,
        reverse: bool,
        after: Option<u64>,
        limit: u64,
    ) -> Result<(Vec<Value>, Option<u64>), FlowsError> {
        let e = self.stored(arn).await?;
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let merged = match self.has_inline(&e) {
            true => Some(self.whole_history(e.clone()).await?),
            false => None,
        };
        let total = merged.as_ref().map_or(e.events, |m| m.len() as u64);
        let (from, to, more) = match reverse {
            false => {
                let from = after.map_or(1, |a| a + 1);
                let to = (from + limit - 1).min(total);
                (from, to, (to < total).then_some(to))
            }
            true => {
                let to = after.map_or(total, |a| a.saturating_sub(1));
                let from = to.saturating_sub(limit - 1).max(1);
                (from, to, (from > 1).then_some(from))
            }
        };
        if from > to {
            return Ok((Vec::new(), None));
        }
        let mut events = match merged {
            Some(mut all) => {
                all.truncate(to as usize);
                all.split_off(from as usize - 1)
            }
            None => {
                self.store
                    .read_history(&e.machine, &e.name, from, to)
                    .await?
            }
        };
        if reverse {
            events.reverse();
        }
        Ok((events, more))
    }

    fn has_inline(&self, e: &Execution) -> bool {
        e.state
            .get("inline")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    /// An execution's history with its Parallels' branches and inline
    /// Maps' items in it (theirs too, nested).
    fn whole_history(
        &self,
        e: Execution,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Value>, FlowsError>> + Send + '_>> {
        Box::pin(async move {
            let events = self
                .store
                .read_history(&e.machine, &e.name, 1, e.events)
                .await?;
            let joins = match serde_json::from_value::<Progress>(e.state) {
                Ok(p) => p.inline,
                Err(_) => Vec::new(),
            };
            let mut merged = Vec::with_capacity(joins.len());
            for join in joins {
                let mut branches = Vec::new();
                for i in 0.. {
                    let (m, n) = branch_name(&e.machine, &e.name, &join.run, i);
                    let Some(child) = self.store.get_execution(&m, &n).await? else {
                        break;
                    };
                    let events = match self.has_inline(&child) {
                        true => self.whole_history(child).await?,
                        false => self.store.read_history(&m, &n, 1, child.events).await?,
                    };
                    branches.push(inline::branch_events(events));
                }
                merged.push((join, branches));
            }
            Ok(inline::merge(events, merged))
        })
    }

    /// DescribeStateMachineForExecution: the definition the execution
    /// runs (fixed when it started), with the machine's other fields.
    pub async fn machine_for_execution(&self, arn: &str) -> Result<Machine, FlowsError> {
        let e = self.stored(arn).await?;
        let mut m = match self.get(&e.machine).await {
            Ok((m, _)) => m,
            Err(_) => Machine {
                name: e.machine.clone(),
                kind: "STANDARD".into(),
                ..Default::default()
            },
        };
        if let Ok(p) = serde_json::from_value::<Progress>(e.state) {
            m.role_arn = p.role_arn;
        }
        m.definition = e.definition;
        Ok(m)
    }
}

/// A view's fields as the API names them.
pub fn describe(v: &ExecutionView, machine_arn: &str) -> Value {
    let mut out = json!({
        "executionArn": v.execution_arn,
        "stateMachineArn": machine_arn,
        "name": v.name,
        "status": v.status,
        "startDate": v.started_ms as f64 / 1000.0,
        "input": v.input,
        "inputDetails": {"included": true},
        "redriveCount": 0,
        "redriveStatus": "NOT_REDRIVABLE",
    });
    if let Some(t) = v.stopped_ms {
        out["stopDate"] = json!(t as f64 / 1000.0);
    }
    if let Some(o) = &v.output {
        out["output"] = json!(o.to_string());
        out["outputDetails"] = json!({"included": true});
    }
    if let Some(f) = &v.error {
        out["error"] = json!(f.error);
        out["cause"] = json!(f.cause);
    }
    out
}
