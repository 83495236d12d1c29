//! Map runs: a DISTRIBUTED Map state runs its items (or batches) as child
//! executions, together a map run with an ARN of its own, which
//! DescribeMapRun and ListMapRuns show (status, item and execution
//! counts) and UpdateMapRun tunes while it runs (MaxConcurrency, the
//! tolerated failures). Its execution's history says when it started and
//! how it ended (MapRunStarted, MapRunSucceeded, MapRunFailed) instead of
//! an event per item, so a large run does not fill the history.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_store::StoreError;

use crate::asl::{Kind, State};
use crate::durable::Progress;
use crate::engine::{Flows, FlowsError};
use crate::step::{Failure, Work};

/// How many ended map runs an execution keeps for ListMapRuns.
pub const KEPT: usize = 100;
/// The most child executions a map run runs at once (MaxConcurrency 0).
pub const MAX_CONCURRENCY: usize = 10_000;

/// A map run as it stands (or ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapRun {
    pub label: String,
    pub run: String,
    pub started_ms: i64,
    #[serde(default)]
    pub stopped_ms: Option<i64>,
    /// RUNNING, SUCCEEDED, FAILED or ABORTED.
    pub status: String,
    pub total: usize,
    pub started: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub max_concurrency: u64,
    pub tolerated_failures: u64,
}

/// The label of a DISTRIBUTED Map state's runs (its Label, else its
/// name); `None` for any other state.
pub fn label_of(st: &State) -> Option<&str> {
    match &st.kind {
        Kind::Map(m) if m.distributed => Some(m.label.as_deref().unwrap_or(&st.name)),
        _ => None,
    }
}

impl MapRun {
    /// The run of a Join: `started` of `results` begun.
    pub fn of_join(
        label: &str,
        run: &str,
        since: i64,
        work: &Work,
        started: usize,
        results: &[Option<Result<Value, Failure>>],
    ) -> MapRun {
        let (max_concurrency, tolerated_failures) = match work {
            Work::Map {
                max_concurrency,
                tolerated_failures,
                ..
            } => (*max_concurrency, *tolerated_failures),
            _ => (0, 0),
        };
        MapRun {
            label: label.to_string(),
            run: run.to_string(),
            started_ms: since,
            stopped_ms: None,
            status: "RUNNING".into(),
            total: results.len(),
            started,
            succeeded: results.iter().filter(|r| matches!(r, Some(Ok(_)))).count(),
            failed: results.iter().filter(|r| matches!(r, Some(Err(_)))).count(),
            max_concurrency,
            tolerated_failures,
        }
    }

    pub fn ended(mut self, status: &str, now: i64) -> MapRun {
        self.status = status.into();
        self.stopped_ms = Some(now);
        self
    }

    /// Item (or execution) counts as DescribeMapRun shows them.
    fn counts(&self) -> Value {
        let done = self.succeeded + self.failed;
        let running = self.started.saturating_sub(done);
        let (running, aborted) = match self.status.as_str() {
            "RUNNING" => (running, 0),
            _ => (0, running),
        };
        json!({
            "pending": self.total.saturating_sub(self.started),
            "running": running,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timedOut": 0,
            "aborted": aborted,
            "total": self.total,
            "resultsWritten": 0,
            "failuresNotRedrivable": 0,
            "pendingRedrive": 0,
        })
    }
}

/// The parts of a map run ARN: machine, label, execution name, run.
fn parts_of(arn: &str) -> Option<(String, String, String, String)> {
    let rest = arn.split(":mapRun:").nth(1)?;
    let (machine_label, id) = rest.split_once(':')?;
    let (machine, label) = machine_label.split_once('/')?;
    let (execution, run) = id.rsplit_once('~')?;
    Some((
        machine.to_string(),
        label.to_string(),
        execution.to_string(),
        run.to_string(),
    ))
}

fn not_found(arn: &str) -> FlowsError {
    FlowsError::new(
        "ResourceNotFound",
        format!("Map Run Does Not Exist: '{arn}'"),
    )
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Flows {
    /// `arn:aws:states:…:mapRun:<machine>/<label>:<execution>~<run>`: an
    /// execution name never holds `~`, so the run's execution is in it.
    pub fn map_run_arn(&self, machine: &str, label: &str, execution: &str, run: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:mapRun:{machine}/{label}:{execution}~{run}",
            self.sqs.region(),
            self.sqs.account()
        )
    }

    /// The map runs of an execution (the one going on first), with its
    /// machine and name.
    async fn runs_of(&self, machine: &str, name: &str) -> Result<Vec<MapRun>, FlowsError> {
        let Some(e) = self.store.get_execution(machine, name).await? else {
            return Ok(Vec::new());
        };
        let p: Progress =
            serde_json::from_value(e.state).map_err(|err| FlowsError::internal(err.to_string()))?;
        let mut runs: Vec<MapRun> = p.live_map_run().into_iter().collect();
        runs.extend(p.map_runs.iter().rev().cloned());
        Ok(runs)
    }

    /// DescribeMapRun.
    pub async fn describe_map_run(&self, arn: &str) -> Result<Value, FlowsError> {
        let (machine, label, execution, run) = parts_of(arn).ok_or_else(|| not_found(arn))?;
        let found = self.runs_of(&machine, &execution).await?;
        let r = found
            .iter()
            .find(|r| r.run == run && r.label == label)
            .ok_or_else(|| not_found(arn))?;
        let mut out = json!({
            "mapRunArn": arn,
            "executionArn": self.execution_arn(&machine, &execution),
            "status": r.status,
            "startDate": seconds(r.started_ms),
            "maxConcurrency": r.max_concurrency,
            "toleratedFailurePercentage": 0.0,
            "toleratedFailureCount": r.tolerated_failures,
            "itemCounts": r.counts(),
            "executionCounts": r.counts(),
            "redriveCount": 0,
        });
        if let Some(stopped) = r.stopped_ms {
            out["stopDate"] = json!(seconds(stopped));
        }
        Ok(out)
    }

    /// ListMapRuns: an execution's map runs, the running one first.
    pub async fn list_map_runs(&self, execution_arn: &str) -> Result<Vec<Value>, FlowsError> {
        let (machine, name) = Flows::execution_of(execution_arn)?;
        if self.store.get_execution(&machine, &name).await?.is_none() {
            return Err(FlowsError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{execution_arn}'"),
            ));
        }
        let runs = self.runs_of(&machine, &name).await?;
        Ok(runs
            .into_iter()
            .map(|r| {
                let mut v = json!({
                    "executionArn": execution_arn,
                    "mapRunArn": self.map_run_arn(&machine, &r.label, &name, &r.run),
                    "stateMachineArn": self.machine_arn(&machine),
                    "startDate": seconds(r.started_ms),
                });
                if let Some(stopped) = r.stopped_ms {
                    v["stopDate"] = json!(seconds(stopped));
                }
                v
            })
            .collect())
    }

    /// UpdateMapRun: a running map run's MaxConcurrency and tolerated
    /// failures (a percentage counts against its items); it goes on
    /// with them at once.
    pub async fn update_map_run(
        &self,
        arn: &str,
        max_concurrency: Option<u64>,
        tolerated_count: Option<u64>,
        tolerated_percentage: Option<f64>,
    ) -> Result<(), FlowsError> {
        if tolerated_percentage.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return Err(FlowsError::new(
                "ValidationException",
                "toleratedFailurePercentage is from 0 to 100",
            ));
        }
        let (machine, _, execution, run) = parts_of(arn).ok_or_else(|| not_found(arn))?;
        loop {
            let Some(mut e) = self.store.get_execution(&machine, &execution).await? else {
                return Err(not_found(arn));
            };
            let mut p: Progress = serde_json::from_value(e.state.clone())
                .map_err(|err| FlowsError::internal(err.to_string()))?;
            let total = p.live_map_run().map_or(0, |r| r.total) as f64;
            let by_share = tolerated_percentage.map(|pc| ((pc / 100.0) * total).floor() as u64);
            let tolerated = match (tolerated_count, by_share) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if !p.tune_map_run(&run, max_concurrency, tolerated) {
                return Err(not_found(arn));
            }
            e.state =
                serde_json::to_value(&p).map_err(|err| FlowsError::internal(err.to_string()))?;
            match self.store.commit_execution(&mut e, &[]).await {
                Ok(()) => break,
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Err(not_found(arn)),
                Err(err) => return Err(err.into()),
            }
        }
        // Its driver starts more children if it may now.
        if let Some(me) = self.shared() {
            me.spawn_drive(&machine, &execution);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_run_arn_names_its_execution() {
        let arn = "arn:aws:states:us-east-1:000000000000:mapRun:orders/Ship:first~0a1b2c3d4e5f";
        assert_eq!(
            parts_of(arn),
            Some((
                "orders".into(),
                "Ship".into(),
                "first".into(),
                "0a1b2c3d4e5f".into()
            ))
        );
        let nested =
            "arn:aws:states:us-east-1:000000000000:mapRun:orders~branches/Ship:first~a1~0~ff";
        assert_eq!(parts_of(nested).unwrap().2, "first~a1~0");
        assert_eq!(parts_of("arn:aws:states:us-east-1:0:execution:a:b"), None);
    }

    #[test]
    fn counts_say_what_is_pending_running_and_done() {
        let work = Work::Map {
            items: vec![Value::Null; 5],
            max_concurrency: 2,
            tolerated_failures: 1,
            distributed: true,
        };
        let results = vec![
            Some(Ok(json!(1))),
            Some(Err(Failure::new("E", ""))),
            None,
            None,
            None,
        ];
        let r = MapRun::of_join("Ship", "r1", 10, &work, 3, &results);
        assert_eq!(
            (r.total, r.started, r.succeeded, r.failed, r.max_concurrency),
            (5, 3, 1, 1, 2)
        );
        let c = r.counts();
        assert_eq!(
            (c["pending"].as_u64(), c["running"].as_u64()),
            (Some(2), Some(1))
        );
        let c = r.ended("ABORTED", 20).counts();
        assert_eq!(
            (c["running"].as_u64(), c["aborted"].as_u64()),
            (Some(0), Some(1))
        );
    }
}
