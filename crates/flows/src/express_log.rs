//! An EXPRESS execution's history in the logs, as a machine's
//! `loggingConfiguration` asks (EXPRESS executions keep no history of
//! their own): each event one JSON line, in the shape Step Functions
//! writes to CloudWatch Logs (`id`, `type`, `details`,
//! `previous_event_id`, `event_timestamp`, `execution_arn`), kept by level
//! (ALL; ERROR: the failures; FATAL: the execution's own failure) with or
//! without the data. The lines are an invocation of `states:<machine>` in
//! the log store, which `wisp logs <machine>` reads.

use std::sync::Mutex;

use serde_json::{json, Value};
use wisp_core::clock::Rng;
use wisp_core::{InvocationRecord, LogLine, LogStream, Outcome};

use crate::engine::Tasks;
use crate::run::{Env, TaskCall};
use crate::step::Failure;

/// What a machine's loggingConfiguration keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logging {
    level: Level,
    include_data: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    All,
    Error,
    Fatal,
}

impl Logging {
    /// The logging a configuration asks for; `None` for OFF (or none).
    pub fn of(config: Option<&Value>) -> Option<Logging> {
        let config = config?;
        let level = match config["level"].as_str()? {
            "ALL" => Level::All,
            "ERROR" => Level::Error,
            "FATAL" => Level::Fatal,
            _ => return None,
        };
        Some(Logging {
            level,
            include_data: config["includeExecutionData"].as_bool().unwrap_or(false),
        })
    }

    fn keeps(&self, kind: &str) -> bool {
        match self.level {
            Level::All => true,
            Level::Error => {
                kind.ends_with("Failed") || kind.ends_with("TimedOut") || kind.ends_with("Aborted")
            }
            Level::Fatal => matches!(
                kind,
                "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"
            ),
        }
    }

    /// The log of a run: its events (numbered in order) as lines.
    pub fn lines(&self, mut events: Vec<Value>, execution_arn: &str) -> Vec<LogLine> {
        crate::durable::number(&mut events, 0);
        events
            .into_iter()
            .filter(|e| self.keeps(e["type"].as_str().unwrap_or_default()))
            .map(|mut e| {
                if !self.include_data {
                    crate::history::strip_data(&mut e);
                }
                let details = e
                    .as_object()
                    .and_then(|m| {
                        m.iter()
                            .find(|(k, _)| k.ends_with("EventDetails"))
                            .map(|(_, v)| v.clone())
                    })
                    .unwrap_or_else(|| json!({}));
                let ts = e["timestamp"].as_i64().unwrap_or_default();
                let line = json!({
                    "id": e["id"].to_string(),
                    "type": e["type"],
                    "details": details,
                    "previous_event_id": e["previousEventId"].to_string(),
                    "event_timestamp": ts.to_string(),
                    "execution_arn": execution_arn,
                });
                (LogStream::Stdout, ts, line.to_string())
            })
            .collect()
    }
}

/// The record under which an execution's log lines are kept.
pub fn record(
    machine: &str,
    name: &str,
    started_ms: i64,
    stopped_ms: i64,
    result: &Result<Value, Failure>,
) -> InvocationRecord {
    let duration_us = (stopped_ms - started_ms).max(0) as u64 * 1000;
    let (error_type, error_message) = match result {
        Ok(_) => (None, None),
        Err(f) => (Some(f.error.clone()), Some(f.cause.clone())),
    };
    InvocationRecord {
        request_id: name.to_string(),
        function: format!("states:{machine}"),
        version: "$LATEST".into(),
        trigger: "states".into(),
        started_at_ms: started_ms,
        cold: false,
        init_duration_us: None,
        duration_us,
        billed_ms: duration_us.div_ceil(1000),
        memory_limit_mb: 0,
        max_memory_bytes: 0,
        outcome: if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Error
        },
        error_kind: None,
        error_type,
        error_message,
        status: None,
        attempt: 1,
    }
}

/// The tasks of a run whose history events are kept.
pub(crate) struct Logged<'a> {
    pub(crate) tasks: &'a Tasks,
    pub(crate) region: String,
    pub(crate) events: Mutex<Vec<Value>>,
}

#[async_trait::async_trait]
impl Env for Logged<'_> {
    async fn task(&self, call: TaskCall) -> Result<Value, Failure> {
        self.tasks.task(call).await
    }

    async fn sleep_until(&self, until_ms: i64) {
        self.tasks.sleep_until(until_ms).await
    }

    fn now_ms(&self) -> i64 {
        self.tasks.now_ms()
    }

    fn rng(&self) -> &dyn Rng {
        self.tasks.rng()
    }

    fn noting(&self) -> Option<&str> {
        Some(&self.region)
    }

    fn note(&self, events: Vec<Value>) {
        if let Ok(mut kept) = self.events.lock() {
            kept.extend(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_keep_what_aws_keeps() {
        let events = vec![
            json!({"type": "ExecutionStarted", "timestamp": 1, "executionStartedEventDetails": {"input": "{}"}}),
            json!({"type": "TaskFailed", "timestamp": 2, "taskFailedEventDetails": {"error": "E"}}),
            json!({"type": "ExecutionFailed", "timestamp": 3, "executionFailedEventDetails": {"error": "E"}}),
        ];
        let kinds = |config: Value| -> Vec<String> {
            Logging::of(Some(&config))
                .map(|l| l.lines(events.clone(), "arn:x"))
                .unwrap_or_default()
                .into_iter()
                .map(|(_, _, line)| {
                    let v: Value = serde_json::from_str(&line).unwrap();
                    format!(
                        "{}:{}",
                        v["id"].as_str().unwrap(),
                        v["type"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(
            kinds(json!({"level": "ALL"})),
            ["1:ExecutionStarted", "2:TaskFailed", "3:ExecutionFailed"]
        );
        assert_eq!(
            kinds(json!({"level": "ERROR"})),
            ["2:TaskFailed", "3:ExecutionFailed"]
        );
        assert_eq!(kinds(json!({"level": "FATAL"})), ["3:ExecutionFailed"]);
        assert!(kinds(json!({"level": "OFF"})).is_empty());
        let all = Logging::of(Some(&json!({"level": "ALL"}))).unwrap();
        let (_, ts, line) = &all.lines(events[..1].to_vec(), "arn:x")[0];
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(*ts, 1);
        assert_eq!(v["details"]["inputDetails"], json!({"included": false}));
        assert_eq!(
            (v["previous_event_id"].as_str(), v["execution_arn"].as_str()),
            (Some("0"), Some("arn:x"))
        );
    }
}
