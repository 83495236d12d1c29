//! State machines (stored as documents) and their executions. EXPRESS
//! executions run in memory (`run`), synchronously for
//! StartSyncExecution; their Tasks call Lambda functions (by ARN or
//! `arn:aws:states:::lambda:invoke`), SQS (`sqs:sendMessage`) and
//! EventBridge (`events:putEvents`).

use crate::express_log::{self, Logged, Logging};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_core::clock::{Clock, Rng};
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime::collect_limited;
use wisp_core::ErrorKind;
use wisp_dispatch::Dispatcher;
use wisp_store::{Store, StoreError};

use crate::asl::{invalid_definition, StateMachine};
use crate::run::{self, Env, TaskCall};
use crate::step::Failure;

/// The queue of EXPRESS executions started asynchronously (a name SQS
/// refuses, so never a user's).
pub const STARTS: &str = "wisp~executions";
/// How long a node holds a start while it runs it: longer than an
/// EXPRESS execution may run, so a start comes back only if its runner died.
const START_VISIBILITY_SECONDS: i64 = EXPRESS_SECONDS as i64 + 30;
/// EXPRESS executions a node runs at once from the queue.
const STARTS_IN_FLIGHT: usize = 64;

/// The document kind of state machines.
pub const STATE_MACHINE: &str = "state-machine";
/// AWS's bound on an execution's input and output.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// How long an EXPRESS execution may run.
pub const EXPRESS_SECONDS: u64 = 300;

/// Why a Step Functions call was refused: the modeled exception and
/// AWS's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct FlowsError {
    pub error_type: &'static str,
    pub message: String,
    pub internal: bool,
}

impl FlowsError {
    pub fn new(error_type: &'static str, message: impl Into<String>) -> FlowsError {
        FlowsError {
            error_type,
            message: message.into(),
            internal: false,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> FlowsError {
        FlowsError {
            internal: true,
            ..FlowsError::new("InternalServerError", message)
        }
    }
}

impl From<StoreError> for FlowsError {
    fn from(e: StoreError) -> FlowsError {
        FlowsError::internal(e.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    /// STANDARD or EXPRESS.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing_configuration: Option<Value>,
    pub created_ms: i64,
    pub revision_id: String,
}

/// A finished execution, as StartSyncExecution answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub execution_arn: String,
    pub name: String,
    pub started_ms: i64,
    pub stopped_ms: i64,
    pub input: Value,
    /// The output, or the failure (SUCCEEDED, FAILED or TIMED_OUT).
    pub result: Result<Value, Failure>,
}

impl Finished {
    pub fn status(&self) -> &'static str {
        match &self.result {
            Ok(_) => "SUCCEEDED",
            Err(f) if f.error == crate::errors::TIMEOUT => "TIMED_OUT",
            Err(_) => "FAILED",
        }
    }
}

pub struct Flows {
    /// Itself, for the work a call leaves running.
    me: std::sync::Weak<Flows>,
    pub(crate) store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    queue: Arc<wisp_dispatch::AsyncQueue>,
    pub(crate) sqs: Arc<wisp_queues::Sqs>,
    pub(crate) events: Arc<wisp_events::Events>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Rng>,
    /// STANDARD executions this node drives now.
    /// (whether someone asked it to look again meanwhile).
    pub(crate) driving: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    /// Rouses the loop that takes due executions.
    pub(crate) drive_wake: tokio::sync::Notify,
}

pub(crate) fn check_name(name: &str) -> Result<(), FlowsError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 80
        && name.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !"<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
        });
    match ok {
        true => Ok(()),
        false => Err(FlowsError::new(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        )),
    }
}

impl Flows {
    /// This engine, shared.
    pub(crate) fn shared(&self) -> Option<Arc<Flows>> {
        self.me.upgrade()
    }

    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
        queue: Arc<wisp_dispatch::AsyncQueue>,
        sqs: Arc<wisp_queues::Sqs>,
        events: Arc<wisp_events::Events>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Arc<Flows> {
        Arc::new_cyclic(|me| Flows {
            me: me.clone(),
            store,
            dispatcher,
            queue,
            sqs,
            events,
            clock,
            rng,
            driving: Default::default(),
            drive_wake: Default::default(),
        })
    }

    pub fn machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.sqs.region(),
            self.sqs.account()
        )
    }

    /// A state machine named by its ARN.
    pub fn machine_name(arn: &str) -> Result<String, FlowsError> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts[..] {
            ["arn", _, "states", _, _, "stateMachine", name] => Ok(name.to_string()),
            _ => Err(FlowsError::new(
                "InvalidArn",
                format!("Invalid Arn: '{arn}'"),
            )),
        }
    }

    /// ValidateStateMachineDefinition: the problems, none if it is valid.
    pub fn validate(definition: &str) -> Vec<crate::asl::Diagnostic> {
        StateMachine::parse(definition).err().unwrap_or_default()
    }

    pub async fn create(&self, mut m: Machine) -> Result<Machine, FlowsError> {
        check_name(&m.name)?;
        if m.kind.is_empty() {
            m.kind = "STANDARD".into();
        }
        if m.kind != "STANDARD" && m.kind != "EXPRESS" {
            return Err(FlowsError::new("ValidationException", format!(
                "1 validation error detected: Value '{}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]",
                m.kind
            )));
        }
        let definition = StateMachine::parse(&m.definition)
            .map_err(|d| FlowsError::new("InvalidDefinition", invalid_definition(&d)))?;
        check_express(&m, &definition)?;
        m.created_ms = self.clock.now_ms();
        m.revision_id = uuid::Uuid::new_v4().to_string();
        let value = serde_json::to_value(&m).map_err(|e| FlowsError::internal(e.to_string()))?;
        match self
            .store
            .create_document(STATE_MACHINE, &m.name, &value)
            .await
        {
            Ok(_) => Ok(m),
            Err(StoreError::Conflict(_)) => {
                // AWS answers an identical create with the existing machine.
                let (have, _) = self.get(&m.name).await?;
                if have.definition == m.definition
                    && have.role_arn == m.role_arn
                    && have.kind == m.kind
                {
                    return Ok(have);
                }
                Err(FlowsError::new(
                    "StateMachineAlreadyExists",
                    format!(
                        "State Machine Already Exists: '{}'",
                        self.machine_arn(&m.name)
                    ),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, name: &str) -> Result<(Machine, u64), FlowsError> {
        match self.store.get_document(STATE_MACHINE, name).await? {
            Some(d) => Ok((
                serde_json::from_value(d.value).map_err(|e| FlowsError::internal(e.to_string()))?,
                d.revision,
            )),
            None => Err(FlowsError::new(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{}'", self.machine_arn(name)),
            )),
        }
    }

    pub async fn list(&self) -> Result<Vec<Machine>, FlowsError> {
        Ok(self
            .store
            .list_documents(STATE_MACHINE, "")
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    /// UpdateStateMachine: the fields given replace the stored ones.
    pub async fn update(
        &self,
        name: &str,
        change: impl Fn(&mut Machine),
    ) -> Result<Machine, FlowsError> {
        loop {
            let (mut m, revision) = self.get(name).await?;
            change(&mut m);
            let definition = StateMachine::parse(&m.definition)
                .map_err(|d| FlowsError::new("InvalidDefinition", invalid_definition(&d)))?;
            check_express(&m, &definition)?;
            m.revision_id = uuid::Uuid::new_v4().to_string();
            let value =
                serde_json::to_value(&m).map_err(|e| FlowsError::internal(e.to_string()))?;
            match self
                .store
                .update_document(STATE_MACHINE, name, &value, revision)
                .await
            {
                Ok(_) => return Ok(m),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// DeleteStateMachine, with its versions and aliases.
    pub async fn delete(&self, name: &str) -> Result<(), FlowsError> {
        for kind in [crate::versions::VERSION, crate::versions::ALIAS] {
            for d in self.store.list_documents(kind, &format!("{name}/")).await? {
                self.store.delete_document(kind, &d.name).await?;
            }
        }
        self.store.delete_document(STATE_MACHINE, name).await?;
        Ok(())
    }

    /// What starting an execution checks: an EXPRESS machine, JSON input
    /// within bounds, a valid name. The machine, input and name.
    pub(crate) async fn prepare(
        &self,
        machine_name: &str,
        name: Option<String>,
        input: &str,
        standard_too: bool,
    ) -> Result<(Machine, Value, String), FlowsError> {
        // `name:qualifier`: a version or an alias of the machine.
        let m = self.resolve(machine_name).await?;
        if m.kind != "EXPRESS" && !standard_too {
            return Err(FlowsError::new(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine",
            ));
        }
        if input.len() > MAX_PAYLOAD_BYTES {
            return Err(FlowsError::new(
                "InvalidExecutionInput",
                "Input is larger than 256 KB",
            ));
        }
        let input: Value = serde_json::from_str(if input.is_empty() { "{}" } else { input })
            .map_err(|e| {
                FlowsError::new(
                    "InvalidExecutionInput",
                    format!("Invalid State Machine Execution Input: '{e}'"),
                )
            })?;
        let name = name.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        check_name(&name)?;
        Ok((m, input, name))
    }

    fn express_arn(&self, machine_name: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:express:{machine_name}:{name}:{}",
            self.sqs.region(),
            self.sqs.account(),
            uuid::Uuid::new_v4()
        )
    }

    /// StartExecution of an EXPRESS machine: stored on a queue before it
    /// answers and run by whichever node takes it, at least once (as AWS
    /// runs asynchronous EXPRESS executions). Its ARN and start time.
    pub async fn start(
        &self,
        machine_name: &str,
        name: Option<String>,
        input: &str,
    ) -> Result<(String, i64), FlowsError> {
        let (m, value, name) = self.prepare(machine_name, name, input, true).await?;
        if m.kind == "STANDARD" {
            return self.start_standard(&m, name, input, &value, None, 0).await;
        }
        let input = value;
        let execution_arn = self.express_arn(&m.name, &name);
        let started_ms = self.clock.now_ms();
        let start = json!({
            "machine": machine_name,
            "name": name,
            "arn": execution_arn,
            "input": input,
            "started_ms": started_ms,
        });
        self.starts().await?;
        let entry = wisp_queues::SendEntry {
            body: start.to_string(),
            ..Default::default()
        };
        let sent = self
            .sqs
            .send(STARTS, &[entry], "states")
            .await
            .map_err(|e| FlowsError::internal(e.message))?;
        if let Some(Err(e)) = sent.into_iter().next() {
            return Err(FlowsError::internal(e.message));
        }
        Ok((execution_arn, started_ms))
    }

    async fn starts(&self) -> Result<(), FlowsError> {
        let attributes = BTreeMap::from([
            (
                "VisibilityTimeout".to_string(),
                START_VISIBILITY_SECONDS.to_string(),
            ),
            ("MaximumMessageSize".to_string(), "1048576".to_string()),
            ("MessageRetentionPeriod".to_string(), "345600".to_string()),
        ]);
        self.sqs
            .internal_queue(STARTS, &attributes)
            .await
            .map(|_| ())
            .map_err(|e| FlowsError::internal(e.message))
    }

    /// Starts running the EXPRESS executions started asynchronously, and
    /// driving the STANDARD executions that fall due.
    pub fn start_running(self: &Arc<Self>) {
        tokio::spawn(self.clone().drive_loop());
        let me = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(STARTS_IN_FLIGHT));
            loop {
                let received = match me.starts().await {
                    Ok(()) => me
                        .sqs
                        .receive(
                            STARTS,
                            wisp_queues::ReceiveOptions {
                                max_messages: Some(10),
                                visibility_timeout: Some(START_VISIBILITY_SECONDS),
                                wait_seconds: None,
                                wait_ms: Some(20_000),
                            },
                        )
                        .await
                        .map_err(|e| e.message),
                    Err(e) => Err(e.message),
                };
                let messages = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take execution starts");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for m in messages {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let me = me.clone();
                    tokio::spawn(async move {
                        me.run_started(&m.body).await;
                        if let Err(e) = me
                            .sqs
                            .delete(STARTS, std::slice::from_ref(&m.receipt_handle))
                            .await
                        {
                            tracing::warn!(error = %e.message, "cannot remove a finished start; it may run again");
                        }
                        drop(permit);
                    });
                }
            }
        });
    }

    async fn run_started(self: &Arc<Self>, body: &str) {
        let Ok(start) = serde_json::from_str::<Value>(body) else {
            tracing::warn!("dropping an unreadable execution start");
            return;
        };
        let machine = start["machine"].as_str().unwrap_or_default();
        let Ok(m) = self.resolve(machine).await else {
            tracing::warn!(machine, "the state machine of a started execution is gone");
            return;
        };
        let finished = self
            .execute(
                &m,
                start["name"].as_str().unwrap_or_default().to_string(),
                start["arn"].as_str().unwrap_or_default().to_string(),
                start["input"].clone(),
            )
            .await;
        if let Ok(Finished {
            result: Err(failure),
            execution_arn,
            ..
        }) = finished
        {
            tracing::info!(execution = %execution_arn, error = %failure.error, cause = %failure.cause, "execution failed");
        }
    }

    /// Runs an EXPRESS execution to its end (StartSyncExecution).
    pub async fn run_express(
        self: &Arc<Self>,
        machine_name: &str,
        name: Option<String>,
        input: &str,
    ) -> Result<Finished, FlowsError> {
        let (m, input, name) = self.prepare(machine_name, name, input, false).await?;
        let execution_arn = self.express_arn(&m.name, &name);
        self.execute(&m, name, execution_arn, input).await
    }

    async fn execute(
        self: &Arc<Self>,
        m: &Machine,
        name: String,
        execution_arn: String,
        input: Value,
    ) -> Result<Finished, FlowsError> {
        let machine_name = m.name.as_str();
        let definition = StateMachine::parse(&m.definition)
            .map_err(|d| FlowsError::new("InvalidDefinition", invalid_definition(&d)))?;
        let started_ms = self.clock.now_ms();
        metrics::counter!("wisp_executions_started_total", "state_machine" => machine_name.to_string())
            .increment(1);
        let cx = json!({
            "Execution": {
                "Id": execution_arn,
                "Name": name,
                "Input": input,
                "StartTime": crate::time_text(started_ms),
                "RoleArn": m.role_arn,
            },
            "StateMachine": {"Id": self.machine_arn(machine_name), "Name": machine_name},
        });
        let env = Tasks {
            flows: self.clone(),
            trigger: format!("states:{execution_arn}"),
        };
        let limit = Duration::from_secs(
            definition
                .timeout_seconds
                .unwrap_or(EXPRESS_SECONDS)
                .min(EXPRESS_SECONDS),
        );
        let logging = Logging::of(m.logging_configuration.as_ref());
        let logged = logging.map(|_| Logged {
            tasks: &env,
            region: self.sqs.region().to_string(),
            events: std::sync::Mutex::new(vec![crate::history::execution_started(
                started_ms,
                &input,
                &m.role_arn,
            )]),
        });
        let run_env: &dyn run::Env = match &logged {
            Some(l) => l,
            None => &env,
        };
        let result = match tokio::time::timeout(
            limit,
            run::run(&definition, input.clone(), &cx, Default::default(), run_env),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                crate::errors::TIMEOUT,
                "The execution timed out.",
            )),
        };
        let result = result.and_then(|out| {
            if out.to_string().len() > MAX_PAYLOAD_BYTES {
                return Err(Failure::new(
                    "States.DataLimitExceeded",
                    "The state/task returned a result with a size exceeding the maximum number of bytes service limit.",
                ));
            }
            Ok(out)
        });
        let status = match &result {
            Ok(_) => "SUCCEEDED",
            Err(f) if f.error == crate::errors::TIMEOUT => "TIMED_OUT",
            Err(_) => "FAILED",
        };
        metrics::counter!("wisp_executions_total", "state_machine" => machine_name.to_string(), "status" => status)
            .increment(1);
        let stopped_ms = self.clock.now_ms();
        if let (Some(logging), Some(logged)) = (logging, logged) {
            let mut events = logged.events.into_inner().unwrap_or_default();
            events.push(match &result {
                Ok(out) => crate::history::execution_succeeded(stopped_ms, out),
                Err(f) if status == "TIMED_OUT" => {
                    crate::history::execution_ended("ExecutionTimedOut", stopped_ms, f)
                }
                Err(f) => crate::history::execution_ended("ExecutionFailed", stopped_ms, f),
            });
            let record = express_log::record(machine_name, &name, started_ms, stopped_ms, &result);
            let lines = logging.lines(events, &execution_arn);
            self.dispatcher.record(record, lines);
        }
        Ok(Finished {
            execution_arn,
            name,
            started_ms,
            stopped_ms,
            input,
            result,
        })
    }

    /// A Lambda function's result for a Task, or its error by name.
    async fn invoke(
        &self,
        function: &str,
        payload: &Value,
        trigger: &str,
    ) -> Result<(Value, String), Failure> {
        let (name, qualifier) = function_of(function);
        let version = self
            .dispatcher
            .resolve_for_invoke(&name, qualifier.as_deref())
            .await
            .map_err(|e| Failure::new("Lambda.ResourceNotFoundException", e.to_string()))?;
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.sqs.region(),
            self.sqs.account()
        );
        let request =
            wisp_dispatch::invocation_request(bytes::Bytes::from(payload.to_string()), &arn, None)
                .map_err(|e| Failure::new("Lambda.ServiceException", e.to_string()))?;
        let dispatched = self.dispatcher.invoke(&version, request, trigger).await;
        match dispatched.response {
            Ok(r) => {
                let failed = r.status().is_server_error();
                let body = collect_limited(r.into_body(), MAX_SYNC_PAYLOAD_BYTES)
                    .await
                    .map_err(|e| Failure::new("Lambda.ServiceException", e.to_string()))?;
                let value: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
                if failed {
                    let error = value["errorType"]
                        .as_str()
                        .unwrap_or("Lambda.Unknown")
                        .to_string();
                    return Err(Failure::new(error, value.to_string()));
                }
                Ok((value, dispatched.version))
            }
            Err(e) if e.kind() == ErrorKind::Guest => {
                let cause = json!({"errorMessage": e.message, "errorType": e.lambda_error_type()});
                Err(Failure::new(e.lambda_error_type(), cause.to_string()))
            }
            Err(e) if e.cause.is_throttle() => {
                Err(Failure::new("Lambda.TooManyRequestsException", e.message))
            }
            Err(e) => Err(Failure::new("Lambda.ServiceException", e.message)),
        }
    }

    /// Runs a Task's integration; `trigger` names the execution in the
    /// records of the invocations it makes.
    pub(crate) async fn task(&self, call: TaskCall, trigger: &str) -> Result<Value, Failure> {
        let resource = call.resource.as_str();
        let service = resource
            .strip_prefix("arn:aws:states:::")
            .map(|s| s.strip_suffix(crate::tokens::WAIT_FOR_TOKEN).unwrap_or(s));
        let waits = resource.ends_with(crate::tokens::WAIT_FOR_TOKEN);
        match service {
            Some("lambda:invoke") if waits => {
                // The function is invoked asynchronously; it (or whoever
                // it hands the token to) answers with SendTaskSuccess.
                let function = call.input["FunctionName"].as_str().ok_or_else(|| {
                    Failure::new(crate::errors::RUNTIME, "lambda:invoke needs Parameters.FunctionName")
                })?;
                let (name, qualifier) = function_of(function);
                let payload = call.input.get("Payload").cloned().unwrap_or(json!({}));
                let request = wisp_dispatch::AsyncRequest {
                    invoked_arn: format!(
                        "arn:aws:lambda:{}:{}:function:{name}",
                        self.sqs.region(),
                        self.sqs.account()
                    ),
                    function: name,
                    qualifier: qualifier.unwrap_or_else(|| "$LATEST".into()),
                    payload: bytes::Bytes::from(payload.to_string()),
                    source: trigger.into(),
                    client_context: None,
                    idempotency_key: None,
                };
                match self.queue.accept(request).await {
                    Ok(_) => Ok(json!({"StatusCode": 202, "Payload": ""})),
                    Err(wisp_dispatch::AcceptError::NoFunction(f)) => Err(Failure::new(
                        "Lambda.ResourceNotFoundException",
                        format!("Function not found: {f}"),
                    )),
                    Err(e) => Err(Failure::new("Lambda.ServiceException", e.to_string())),
                }
            }
            Some("states:startExecution") if !waits => {
                self.start_child(&call.input, None, 1).await
            }
            Some("http:invoke") if !waits => self.http_invoke(&call, trigger).await,
            None if resource.contains(":lambda:") && resource.contains(":function:") => {
                self.invoke(resource, &call.input, trigger).await.map(|(v, _)| v)
            }
            Some("lambda:invoke") => {
                let function = call.input["FunctionName"].as_str().ok_or_else(|| {
                    Failure::new(crate::errors::RUNTIME, "lambda:invoke needs Parameters.FunctionName")
                })?;
                let payload = call.input.get("Payload").cloned().unwrap_or(json!({}));
                let (value, version) = self.invoke(function, &payload, trigger).await?;
                Ok(json!({
                    "ExecutedVersion": version,
                    "Payload": value,
                    "SdkHttpMetadata": {"HttpStatusCode": 200},
                    "SdkResponseMetadata": {"RequestId": uuid::Uuid::new_v4().to_string()},
                    "StatusCode": 200,
                }))
            }
            Some("sqs:sendMessage") => {
                let url = call.input["QueueUrl"].as_str().unwrap_or_default();
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                let body = match &call.input["MessageBody"] {
                    Value::String(s) => s.clone(),
                    Value::Null => return Err(Failure::new("SQS.InvalidParameterValueException", "MessageBody is required")),
                    other => other.to_string(),
                };
                let entry = wisp_queues::SendEntry {
                    body,
                    delay_seconds: call.input["DelaySeconds"].as_i64(),
                    group_id: call.input["MessageGroupId"].as_str().map(String::from),
                    deduplication_id: call.input["MessageDeduplicationId"].as_str().map(String::from),
                    ..Default::default()
                };
                let sent = self
                    .sqs
                    .send(&name, &[entry], "states")
                    .await
                    .map_err(|e| Failure::new(format!("SQS.{}", e.error_type), e.message))?;
                match sent.into_iter().next() {
                    Some(Ok(r)) => Ok(json!({"MessageId": r.message_id, "MD5OfMessageBody": r.md5_of_body})),
                    Some(Err(e)) => Err(Failure::new(format!("SQS.{}", e.error_type), e.message)),
                    None => Err(Failure::new("SQS.ServiceException", "nothing was sent")),
                }
            }
            Some("events:putEvents") => {
                // The integration takes a Detail as JSON as well as text.
                let mut given = call.input["Entries"].clone();
                for e in given.as_array_mut().into_iter().flatten() {
                    if let Some(d) = e.get_mut("Detail").filter(|d| !d.is_string()) {
                        *d = Value::String(d.to_string());
                    }
                }
                let entries: Vec<wisp_events::envelope::Entry> = serde_json::from_value(given)
                .map_err(|e| Failure::new("EventBridge.ValidationException", e.to_string()))?;
                let results = self
                    .events
                    .put_events(entries)
                    .await
                    .map_err(|e| Failure::new(format!("EventBridge.{}", e.error_type), e.message))?;
                let failed = results.iter().filter(|r| r.is_err()).count();
                let entries: Vec<Value> = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(id) => json!({"EventId": id}),
                        Err(e) => json!({"ErrorCode": e.code, "ErrorMessage": e.message}),
                    })
                    .collect();
                if failed > 0 {
                    return Err(Failure::new(
                        "EventBridge.FailedEntry",
                        json!({"Entries": entries, "FailedEntryCount": failed}).to_string(),
                    ));
                }
                Ok(json!({"Entries": entries, "FailedEntryCount": 0}))
            }
            _ => Err(Failure::new(
                "States.Runtime",
                format!("The resource {resource} is not one wisp runs (Lambda functions, lambda:invoke, sqs:sendMessage, events:putEvents, states:startExecution, http:invoke and activities are)"),
            )),
        }
    }
}

/// What an EXPRESS machine may not hold, as AWS refuses it: Tasks that
/// wait for a token, an activity or a child execution.
fn check_express(m: &Machine, definition: &StateMachine) -> Result<(), FlowsError> {
    fn walk(machine: &StateMachine, at: &str, out: &mut Vec<String>) {
        for (name, state) in &machine.states {
            let here = format!("{at}/States/{name}");
            match &state.kind {
                crate::asl::Kind::Task { resource, .. }
                    if crate::tokens::callback_of(resource).is_some() =>
                {
                    out.push(format!("{here}/Resource"));
                }
                crate::asl::Kind::Parallel { branches } => {
                    for (i, b) in branches.iter().enumerate() {
                        walk(b, &format!("{here}/Branches[{i}]"), out);
                    }
                }
                crate::asl::Kind::Map(map) => {
                    walk(&map.processor, &format!("{here}/ItemProcessor"), out)
                }
                _ => {}
            }
        }
    }
    if m.kind != "EXPRESS" {
        return Ok(());
    }
    let mut found = Vec::new();
    walk(definition, "", &mut found);
    match found.first() {
        None => Ok(()),
        Some(at) => Err(FlowsError::new(
            "InvalidDefinition",
            format!("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Express state machine does not support '.sync', '.waitForTaskToken' or activity tasks at {at}'"),
        )),
    }
}

/// A function name, ARN or partial ARN, and its qualifier.
fn function_of(given: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = given.split(':').collect();
    match parts[..] {
        ["arn", _, "lambda", _, _, "function", name] => (name.into(), None),
        ["arn", _, "lambda", _, _, "function", name, q] => (name.into(), Some(q.into())),
        [name, q] => (name.into(), Some(q.into())),
        _ => (given.to_string(), None),
    }
}

/// The Env of an execution: tasks through the engine, time on its clock.
pub(crate) struct Tasks {
    pub(crate) flows: Arc<Flows>,
    /// What the records of its invocations name as their trigger: the
    /// execution.
    pub(crate) trigger: String,
}

#[async_trait::async_trait]
impl Env for Tasks {
    async fn task(&self, call: TaskCall) -> Result<Value, Failure> {
        let timeout = call.timeout_seconds;
        let work = self.flows.task(call, &self.trigger);
        match timeout {
            Some(s) => tokio::time::timeout(Duration::from_secs(s), work)
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::new(crate::errors::TIMEOUT, "The task timed out."))
                }),
            None => work.await,
        }
    }

    async fn sleep_until(&self, until_ms: i64) {
        let wait = until_ms - self.flows.clock.now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    fn now_ms(&self) -> i64 {
        self.flows.clock.now_ms()
    }

    fn rng(&self) -> &dyn Rng {
        self.flows.rng.as_ref()
    }
}

#[async_trait::async_trait]
impl wisp_events::engine::Starter for Flows {
    async fn start_execution(&self, arn: &str, input: &str) -> Result<(), (bool, String)> {
        let name = Flows::machine_name(arn).map_err(|e| (false, e.message))?;
        match self.start(&name, None, input).await {
            Ok(_) => Ok(()),
            Err(e) => Err((e.internal, e.message)),
        }
    }
}
