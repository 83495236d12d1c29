//! Tasks that wait: SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat
//! on a token, activities (CreateActivity, GetActivityTask's long poll),
//! and child executions (`states:startExecution`, `.sync`, `.sync:2`),
//! which answer their parent's token when they end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_store::{Execution, StoreError};

use crate::durable::{number, Parent, Progress};
use crate::engine::{Flows, FlowsError, MAX_PAYLOAD_BYTES};
use crate::history;
use crate::step::{Failure, Work};
use crate::tokens::{self, Callback};

/// The document kind of activities.
pub const ACTIVITY: &str = "activity";
/// How deep executions may start executions that start executions.
pub const MAX_NESTED_EXECUTIONS: u32 = 10;
/// How long GetActivityTask waits for a task.
const ACTIVITY_POLL: Duration = Duration::from_secs(60);
/// How long a handed-out activity task stays hidden before it is offered
/// again (only if the node died between taking and recording it).
const ACTIVITY_VISIBILITY_SECONDS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An activity task on its way to a worker.
#[derive(Serialize, Deserialize)]
struct Offered {
    token: String,
    input: Value,
}

fn activity_queue(name: &str) -> String {
    format!("wisp~activity~{name}")
}

fn gone() -> FlowsError {
    FlowsError::new(
        "TaskTimedOut",
        "Task Timed Out: 'Provided task does not exist anymore'",
    )
}

impl Flows {
    pub fn activity_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:activity:{name}",
            self.sqs.region(),
            self.sqs.account()
        )
    }

    /// The activity an ARN names, which must exist.
    pub async fn activity(&self, arn: &str) -> Result<Activity, FlowsError> {
        let name = tokens::activity_of(arn)
            .ok_or_else(|| FlowsError::new("InvalidArn", format!("Invalid Arn: '{arn}'")))?;
        let doc = self
            .store
            .get_document(ACTIVITY, name)
            .await?
            .ok_or_else(|| {
                FlowsError::new(
                    "ActivityDoesNotExist",
                    format!("Activity Does Not Exist: '{arn}'"),
                )
            })?;
        serde_json::from_value(doc.value).map_err(|e| FlowsError::internal(e.to_string()))
    }

    /// CreateActivity: the same name again is the same activity.
    pub async fn create_activity(
        &self,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<Activity, FlowsError> {
        crate::engine::check_name(name)?;
        let a = Activity {
            name: name.to_string(),
            created_ms: self.clock.now_ms(),
            tags,
        };
        let value = serde_json::to_value(&a).map_err(|e| FlowsError::internal(e.to_string()))?;
        match self.store.create_document(ACTIVITY, name, &value).await {
            Ok(_) => Ok(a),
            Err(StoreError::Conflict(_)) => self.activity(&self.activity_arn(name)).await,
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_activities(&self) -> Result<Vec<Activity>, FlowsError> {
        Ok(self
            .store
            .list_documents(ACTIVITY, "")
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    pub async fn delete_activity(&self, arn: &str) -> Result<(), FlowsError> {
        let name = tokens::activity_of(arn)
            .ok_or_else(|| FlowsError::new("InvalidArn", format!("Invalid Arn: '{arn}'")))?;
        self.store.delete_document(ACTIVITY, name).await?;
        Ok(())
    }

    async fn activity_tasks(&self, name: &str) -> Result<String, FlowsError> {
        let queue = activity_queue(name);
        let attributes = BTreeMap::from([
            (
                "VisibilityTimeout".to_string(),
                ACTIVITY_VISIBILITY_SECONDS.to_string(),
            ),
            ("MaximumMessageSize".to_string(), "1048576".to_string()),
            ("MessageRetentionPeriod".to_string(), "1209600".to_string()),
        ]);
        self.sqs
            .internal_queue(&queue, &attributes)
            .await
            .map_err(|e| FlowsError::internal(e.message))?;
        Ok(queue)
    }

    /// GetActivityTask: the next task of the activity, waiting up to a
    /// minute for one; `None` if none came. The execution records which
    /// worker took it.
    pub async fn get_activity_task(
        &self,
        arn: &str,
        worker: &str,
    ) -> Result<Option<(String, Value)>, FlowsError> {
        let activity = self.activity(arn).await?;
        let queue = self.activity_tasks(&activity.name).await?;
        let deadline = tokio::time::Instant::now() + ACTIVITY_POLL;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let received = self
                .sqs
                .receive(
                    &queue,
                    wisp_queues::ReceiveOptions {
                        max_messages: Some(1),
                        visibility_timeout: Some(ACTIVITY_VISIBILITY_SECONDS),
                        wait_seconds: None,
                        wait_ms: Some(left.as_millis() as i64),
                    },
                )
                .await
                .map_err(|e| FlowsError::internal(e.message))?;
            for m in received {
                let offered: Option<Offered> = serde_json::from_str(&m.body).ok();
                let taken = match &offered {
                    Some(o) => {
                        let now = self.clock.now_ms();
                        self.change_waiting(&o.token, |_, _| {
                            Some(vec![history::activity_started(now, worker)])
                        })
                        .await
                    }
                    None => Err(gone()),
                };
                self.sqs
                    .delete(&queue, std::slice::from_ref(&m.receipt_handle))
                    .await
                    .map_err(|e| FlowsError::internal(e.message))?;
                match (taken, offered) {
                    (Ok(()), Some(o)) => return Ok(Some((o.token, o.input))),
                    // Its execution moved on (stopped, timed out): next.
                    (Err(e), _) if e.error_type == "TaskTimedOut" => continue,
                    (Err(e), _) => return Err(e),
                    (Ok(()), None) => continue,
                }
            }
        }
    }

    /// Makes a waiting Task's request: the integration's call, the
    /// activity's offer, or the child execution's start. What the
    /// service answered.
    pub(crate) async fn request(
        &self,
        callback: &Callback,
        work: &Work,
        token: &str,
        p: &Progress,
        trigger: &str,
    ) -> Result<Value, Failure> {
        let Work::Task {
            resource,
            parameters,
            timeout_seconds,
            heartbeat_seconds,
        } = work
        else {
            return Err(Failure::new(crate::errors::RUNTIME, "not a Task"));
        };
        match callback {
            Callback::Token => {
                let call = crate::run::TaskCall {
                    resource: resource.clone(),
                    input: parameters.clone(),
                    timeout_seconds: *timeout_seconds,
                    heartbeat_seconds: *heartbeat_seconds,
                };
                self.task(call, trigger).await
            }
            Callback::Activity(name) => {
                let missing = |e: FlowsError| Failure::new(crate::errors::RUNTIME, e.message);
                self.activity(resource).await.map_err(missing)?;
                let queue = self.activity_tasks(name).await.map_err(missing)?;
                let offered = Offered {
                    token: token.to_string(),
                    input: parameters.clone(),
                };
                let entry = wisp_queues::SendEntry {
                    body: serde_json::to_string(&offered)
                        .map_err(|e| Failure::new(crate::errors::RUNTIME, e.to_string()))?,
                    ..Default::default()
                };
                let sent = self
                    .sqs
                    .send(&queue, &[entry], "states")
                    .await
                    .map_err(|e| Failure::new(crate::errors::RUNTIME, e.message))?;
                match sent.into_iter().next() {
                    Some(Ok(_)) => Ok(Value::Null),
                    Some(Err(e)) => Err(Failure::new(crate::errors::RUNTIME, e.message)),
                    None => Err(Failure::new(crate::errors::RUNTIME, "nothing was sent")),
                }
            }
            Callback::Child { v2 } => {
                let parent = Parent {
                    token: token.to_string(),
                    v2: *v2,
                    index: None,
                };
                self.start_child(parameters, Some(parent), p.depth + 1)
                    .await
            }
        }
    }

    /// `states:startExecution`: starts the machine Parameters name, with
    /// their Input and Name; its ARN and start.
    pub(crate) async fn start_child(
        &self,
        parameters: &Value,
        parent: Option<Parent>,
        depth: u32,
    ) -> Result<Value, Failure> {
        let fail = |m: String| Failure::new("StepFunctions.ValidationException", m);
        if depth > MAX_NESTED_EXECUTIONS {
            return Err(Failure::new(
                crate::errors::RUNTIME,
                format!("Executions nest at most {MAX_NESTED_EXECUTIONS} deep"),
            ));
        }
        let arn = parameters["StateMachineArn"]
            .as_str()
            .ok_or_else(|| fail("StateMachineArn is required".into()))?;
        let machine = Flows::machine_name(arn).map_err(|e| fail(e.message))?;
        let input = match &parameters["Input"] {
            Value::Null => "{}".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = parameters["Name"].as_str().map(String::from);
        let started = match parent {
            Some(parent) => {
                let (m, value, name) =
                    self.prepare(&machine, name, &input, true)
                        .await
                        .map_err(|e| {
                            Failure::new(format!("StepFunctions.{}", e.error_type), e.message)
                        })?;
                if m.kind != "STANDARD" {
                    return Err(Failure::new(
                        crate::errors::RUNTIME,
                        "wisp waits for STANDARD child executions (.sync); start an EXPRESS one without .sync, or run it with StartSyncExecution",
                    ));
                }
                self.start_standard(&m, name, &input, &value, Some(parent), depth)
                    .await
            }
            None => self.start(&machine, name, &input).await,
        };
        let (execution_arn, started_ms) = started
            .map_err(|e| Failure::new(format!("StepFunctions.{}", e.error_type), e.message))?;
        Ok(json!({"ExecutionArn": execution_arn, "StartDate": started_ms}))
    }

    /// A child execution's result for its parent's Task, once it ended.
    pub(crate) async fn child_result(
        &self,
        machine: &str,
        name: &str,
    ) -> Result<Option<Result<Value, Failure>>, FlowsError> {
        let Some(e) = self.store.get_execution(machine, name).await? else {
            return Ok(Some(Err(Failure::new(
                crate::errors::TASK_FAILED,
                "the child execution is gone",
            ))));
        };
        if e.status == "RUNNING" {
            return Ok(None);
        }
        let p: Progress = serde_json::from_value(e.state.clone())
            .map_err(|err| FlowsError::internal(err.to_string()))?;
        Ok(Some(self.child_outcome(&e, &p)))
    }

    fn child_outcome(&self, e: &Execution, p: &Progress) -> Result<Value, Failure> {
        if p.parent
            .as_ref()
            .is_some_and(|parent| parent.index.is_some())
        {
            // A branch or an item: its own output or error.
            return match (&e.status[..], &p.output, &p.error) {
                ("SUCCEEDED", Some(o), _) => Ok(o.clone()),
                (_, _, Some(f)) => Err(f.clone()),
                (status, _, None) => Err(Failure::new(
                    crate::errors::RUNTIME,
                    format!("the branch ended {status}"),
                )),
            };
        }
        let v2 = p.parent.as_ref().is_some_and(|parent| parent.v2);
        let data = |text: String| match v2 {
            true => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            false => Value::String(text),
        };
        let mut out = json!({
            "ExecutionArn": self.execution_arn(&e.machine, &e.name),
            "StateMachineArn": self.machine_arn(&e.machine),
            "Name": e.name,
            "Status": e.status,
            "StartDate": e.started_ms,
            "StopDate": e.stopped_ms,
            "Input": data(e.input.clone()),
            "InputDetails": {"Included": true},
        });
        if let Some(o) = &p.output {
            out["Output"] = data(o.to_string());
            out["OutputDetails"] = json!({"Included": true});
        }
        match (&e.status[..], &p.error) {
            ("SUCCEEDED", _) => Ok(out),
            (_, error) => {
                if let Some(f) = error {
                    out["Error"] = json!(f.error);
                    out["Cause"] = json!(f.cause);
                }
                Err(Failure::new(crate::errors::TASK_FAILED, out.to_string()))
            }
        }
    }

    /// A child that ended answers the Task that started it.
    pub(crate) async fn answer_parent(&self, e: &Execution, p: &Progress) {
        let Some(parent) = &p.parent else {
            return;
        };
        let outcome = self.child_outcome(e, p);
        let answered = match parent.index {
            Some(index) => self.answer_join(&parent.token, index, outcome).await,
            None => self.send_task_result(&parent.token, outcome).await,
        };
        match answered {
            Ok(()) => {}
            Err(err) if err.error_type == "TaskTimedOut" => {}
            Err(err) => {
                // The parent looks at its child now and then: it learns
                // of the end then.
                tracing::warn!(error = %err, execution = %e.name, "cannot answer the parent execution");
            }
        }
    }

    /// Changes the execution whose Task waits for `token`: `change` says
    /// what events to add (and may move the execution on), or `None` to
    /// give up. Retries on conflicting writes. `TaskTimedOut` if no Task
    /// waits for the token.
    async fn change_waiting(
        &self,
        token: &str,
        change: impl Fn(&mut Progress, &Work) -> Option<Vec<Value>>,
    ) -> Result<(), FlowsError> {
        let (machine, name) = tokens::token_of(token)
            .ok_or_else(|| FlowsError::new("InvalidToken", format!("Invalid Token: '{token}'")))?;
        loop {
            let Some(mut e) = self.store.get_execution(&machine, &name).await? else {
                return Err(gone());
            };
            if e.status != "RUNNING" {
                return Err(gone());
            }
            let mut p: Progress = serde_json::from_value(e.state.clone())
                .map_err(|err| FlowsError::internal(err.to_string()))?;
            let Some(work) = p.waiting_for(token).cloned() else {
                return Err(gone());
            };
            let Some(mut events) = change(&mut p, &work) else {
                return Err(gone());
            };
            number(&mut events, e.events);
            e.state =
                serde_json::to_value(&p).map_err(|err| FlowsError::internal(err.to_string()))?;
            match self.store.commit_execution(&mut e, &events).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Err(gone()),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// SendTaskSuccess / SendTaskFailure: the waiting Task's result; its
    /// execution goes on at once.
    pub async fn send_task_result(
        &self,
        token: &str,
        result: Result<Value, Failure>,
    ) -> Result<(), FlowsError> {
        if let Ok(v) = &result {
            if v.to_string().len() > MAX_PAYLOAD_BYTES {
                return Err(FlowsError::new(
                    "InvalidOutput",
                    "Output is larger than 256 KB",
                ));
            }
        }
        let now = self.clock.now_ms();
        self.change_waiting(token, |p, work| {
            let event = match &result {
                Ok(v) => history::work_succeeded(work, now, v),
                Err(f) => history::work_failed(work, now, f),
            };
            p.resolve(token, result.clone()).then(|| vec![event])
        })
        .await?;
        self.go_on(token).await
    }

    /// A branch's or an item's result for its parent's Join; the parent
    /// goes on at once.
    async fn answer_join(
        &self,
        token: &str,
        index: usize,
        result: Result<Value, Failure>,
    ) -> Result<(), FlowsError> {
        let now = self.clock.now_ms();
        self.change_waiting(token, |p, _| p.record(token, index, result.clone(), now))
            .await?;
        self.go_on(token).await
    }

    /// Starts the execution of a Parallel's branch or a Map's item: the
    /// branch's (or the item processor's) definition, run durably like
    /// its parent, in the parent's context. Started already is fine.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_branch(
        &self,
        e: &Execution,
        p: &Progress,
        state: &str,
        work: &Work,
        index: usize,
        (machine, name): (&str, &str),
        token: &str,
        scx: &Value,
    ) -> Result<(), FlowsError> {
        let parsed: Value = serde_json::from_str(&e.definition)
            .map_err(|err| FlowsError::internal(err.to_string()))?;
        let at = &parsed["States"][state];
        let (definition, input) = match work {
            Work::Parallel { input } => (&at["Branches"][index], input.clone()),
            Work::Map { items, .. } => {
                let processor = match at.get("ItemProcessor") {
                    Some(p) => p,
                    None => &at["Iterator"],
                };
                (processor, items.get(index).cloned().unwrap_or(Value::Null))
            }
            Work::Task { .. } => (&Value::Null, Value::Null),
        };
        if !definition.is_object() {
            return Err(FlowsError::internal(format!(
                "state {state} has no branch {index}"
            )));
        }
        let mut cx = scx.clone();
        if let Some(fields) = cx.as_object_mut() {
            fields.remove("State");
            fields.remove("Task");
        }
        if let Work::Map { .. } = work {
            cx = crate::step::with_map_item(&cx, index, &input);
        }
        let parent = Parent {
            token: token.to_string(),
            v2: false,
            index: Some(index),
        };
        let mut progress = Progress::started(&p.role_arn, Some(parent), p.depth);
        progress.cx = Some(cx);
        progress.vars = p.vars.clone();
        // States inherit the machine's QueryLanguage at every level.
        let mut definition = definition.clone();
        if let (Some(language), Some(fields)) =
            (parsed.get("QueryLanguage"), definition.as_object_mut())
        {
            fields.insert("QueryLanguage".into(), language.clone());
        }
        let child = Execution {
            machine: machine.to_string(),
            name: name.to_string(),
            status: "RUNNING".into(),
            started_ms: self.clock.now_ms(),
            stopped_ms: None,
            definition: definition.to_string(),
            input: input.to_string(),
            state: serde_json::to_value(&progress)
                .map_err(|err| FlowsError::internal(err.to_string()))?,
            events: 0,
            revision: 0,
        };
        self.arm(machine, name).await?;
        match self.store.create_execution(&child).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(err) => return Err(err.into()),
        }
        if let Some(me) = self.shared() {
            me.spawn_drive(machine, name);
        }
        Ok(())
    }

    /// Stops a branch's or item's execution its parent no longer needs.
    pub(crate) async fn stop_branch(&self, machine: &str, name: &str) {
        let arn = self.execution_arn(machine, name);
        let stopped = self
            .stop_execution(
                &arn,
                Some("States.BranchStopped".into()),
                Some("its parent's state ended".into()),
            )
            .await;
        if let Err(e) = stopped {
            tracing::warn!(error = %e, execution = %arn, "cannot stop a branch");
        }
    }

    /// SendTaskHeartbeat: the waiting Task's heartbeat deadline moves on.
    pub async fn send_task_heartbeat(&self, token: &str) -> Result<(), FlowsError> {
        let now = self.clock.now_ms();
        let due = std::sync::Mutex::new(None);
        self.change_waiting(token, |p, _| {
            let next = p.beat(token, now)?;
            *due.lock().unwrap() = Some(next);
            Some(Vec::new())
        })
        .await?;
        let next = *due.lock().unwrap();
        if let (Some(next), Some((machine, name))) = (next, tokens::token_of(token)) {
            self.store
                .set_timer(&Flows::timer_of(&machine, &name, next))
                .await?;
        }
        Ok(())
    }

    /// Drives the execution a token names on, here and now.
    async fn go_on(&self, token: &str) -> Result<(), FlowsError> {
        let Some((machine, name)) = tokens::token_of(token) else {
            return Ok(());
        };
        self.store
            .set_timer(&Flows::timer_of(&machine, &name, self.clock.now_ms()))
            .await?;
        if let Some(me) = self.shared() {
            me.spawn_drive(&machine, &name);
        }
        Ok(())
    }
}
