//! Workflow executions: a row per execution (what lists and describes
//! show, and the engine's own state) and its history, committed together.
//! Each commit is a compare-and-set on the row's revision that appends
//! the history events the step made, so a transition is either wholly
//! stored or not at all, and two nodes driving one execution cannot both
//! commit the same step.

use serde_json::Value;

use crate::Result;

/// One execution as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub machine: String,
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    pub started_ms: i64,
    pub stopped_ms: Option<i64>,
    /// Fixed at the start: the definition it runs and its input.
    pub definition: String,
    pub input: String,
    /// The engine's: where the execution is, its output or error.
    pub state: Value,
    /// How many history events are stored (the last one's id).
    pub events: u64,
    /// Rises with every write; what `commit_execution` expects back.
    pub revision: u64,
}

#[async_trait::async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Stores a new execution (with no history yet); its revision.
    /// `Conflict` if its machine already has one of that name.
    async fn create_execution(&self, execution: &Execution) -> Result<u64>;

    /// Writes `execution`'s status, stop time and state if it is still at
    /// its revision, and appends `events` to its history (ids from
    /// `execution.events + 1`); then updates `execution`'s revision and
    /// count. `Conflict` if another write came first, `NotFound` if it is
    /// gone. Definition and input never change.
    async fn commit_execution(&self, execution: &mut Execution, events: &[Value]) -> Result<()>;

    async fn get_execution(&self, machine: &str, name: &str) -> Result<Option<Execution>>;

    /// A machine's executions (of `status` only, if given), newest first.
    async fn list_executions(&self, machine: &str, status: Option<&str>) -> Result<Vec<Execution>>;

    /// History events `from..=to` (ids from 1) of an execution, in order.
    async fn read_history(
        &self,
        machine: &str,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Value>>;

    /// Removes a machine's executions stopped before `before_ms`; how many.
    async fn purge_executions(&self, machine: &str, before_ms: i64) -> Result<u64>;
}
