//! STANDARD executions: durable, one committed step at a time. An
//! execution's row holds where it is (`At`); each step — entering a
//! state, a Task's result, a Wait ending — is committed with the history
//! events it makes before the next begins. Nothing of an execution lives
//! in memory between steps it waits on: a Wait or a Retry's delay is a
//! timer, and whichever node takes the due timer drives the execution on.
//!
//! While a node drives an execution it keeps the execution's timer a
//! lease ahead, so if the node dies the timer falls due and another (or
//! the same, restarted) takes over from the last commit: a Task in flight
//! at the crash runs again, and its history shows it started again. Two
//! drivers at once (a stalled node coming back) cannot both commit a
//! step: commits are compare-and-sets, and the loser walks away.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_store::{Execution, StoreError, Timer};

use crate::asl::{invalid_definition, Kind, State, StateMachine};
use crate::engine::{Flows, FlowsError, Tasks};
use crate::history;
use crate::inline::Inline;
use crate::map_runs::{self, MapRun};
use crate::path::Scope;
use crate::run;
use crate::step::{self, Failure, Outcome, Recovery, Vars};
use crate::tokens;

/// The timer kind of executions.
pub const EXECUTION_TIMER: &str = "execution";
/// How far ahead a driving node keeps its executions' timers, and how
/// often it moves them on.
const LEASE_MS: i64 = 10_000;
const RENEW: Duration = Duration::from_secs(3);
/// AWS's history quota and longest execution.
pub const MAX_HISTORY_EVENTS: u64 = 25_000;
const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;

/// Where an execution is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "at")]
enum At {
    /// Started; nothing committed yet.
    Start,
    /// About to enter `state` with `input` (its raw input); `tries`
    /// counts each retrier's retries so far.
    Enter {
        state: String,
        input: Value,
        tries: Vec<u32>,
    },
    /// The state's work has started: run again if its driver is gone.
    /// `token`: the attempt's task token, for a Task that waits for one.
    Work {
        state: String,
        input: Value,
        tries: Vec<u32>,
        work: step::Work,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// A Task waiting for its token (SendTaskSuccess/Failure), for a
    /// worker (an activity) or for a child execution (`child`: its
    /// machine and name), until its timeout and heartbeat deadlines.
    Callback {
        state: String,
        input: Value,
        tries: Vec<u32>,
        work: step::Work,
        token: String,
        timeout_at: Option<i64>,
        heartbeat_at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<(String, String)>,
        /// Whether the request was made (the service answered).
        #[serde(default)]
        requested: bool,
    },
    /// A Parallel's branches or a Map's items, each run as an execution
    /// of its own (durable like this one) that answers `token` with its
    /// index when it ends; `started` of them so far, their results as
    /// they come.
    Join {
        state: String,
        input: Value,
        tries: Vec<u32>,
        work: step::Work,
        token: String,
        run: String,
        started: usize,
        results: Vec<Option<Result<Value, Failure>>>,
        /// When it began (a map run's start).
        #[serde(default)]
        since: i64,
        /// A DISTRIBUTED Map's label (or state name): its items are a
        /// map run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_run: Option<String>,
    },
    /// A waiting Task's result came (its event is in the history).
    Returned {
        state: String,
        input: Value,
        tries: Vec<u32>,
        work: step::Work,
        result: Result<Value, Failure>,
    },
    /// Waiting out a retry's delay.
    Retry {
        state: String,
        input: Value,
        tries: Vec<u32>,
        until_ms: i64,
    },
    /// In a Wait state.
    Wait {
        state: String,
        until_ms: i64,
        next: Option<String>,
        output: Value,
        /// The Wait's Assign, set when it ends.
        #[serde(default, skip_serializing_if = "Vars::is_empty")]
        assigned: Vars,
    },
    Done,
}

/// The execution a child (`states:startExecution.sync`) answers when it
/// ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Parent {
    pub token: String,
    /// `.sync:2`: Input and Output as JSON, not text.
    pub v2: bool,
    /// A branch's or an item's index: the child is part of its parent's
    /// Parallel or Map, and answers with its own output or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// What an execution's row holds besides what is listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Progress {
    at: At,
    pub role_arn: String,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// How many executions started this one, each by the one before.
    #[serde(default)]
    pub depth: u32,
    /// A branch's or an item's context object: its execution's (and the
    /// Map item's), not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cx: Option<Value>,
    /// Branches still running when the execution ended: to stop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<(String, String)>,
    /// The workflow variables (a branch starts with its parent's).
    #[serde(default, skip_serializing_if = "Vars::is_empty")]
    pub vars: Vars,
    /// The map runs of its DISTRIBUTED Maps that ended (the latest
    /// ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map_runs: Vec<MapRun>,
    /// Its Parallels and inline Maps, whose branches' events its history
    /// shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<Inline>,
}

impl Progress {
    pub fn started(role_arn: &str, parent: Option<Parent>, depth: u32) -> Progress {
        Progress {
            at: At::Start,
            role_arn: role_arn.to_string(),
            output: None,
            error: None,
            parent,
            depth,
            cx: None,
            orphans: Vec::new(),
            vars: Vars::new(),
            map_runs: Vec::new(),
            inline: Vec::new(),
        }
    }

    /// Keeps an ended map run (the latest `map_runs::KEPT`).
    pub(crate) fn keep_map_run(&mut self, ran: MapRun) {
        self.map_runs.push(ran);
        let over = self.map_runs.len().saturating_sub(map_runs::KEPT);
        self.map_runs.drain(..over);
    }

    /// Keeps where an inline Parallel or Map started (the latest
    /// `inline::KEPT`).
    fn keep_inline(&mut self, join: Inline) {
        self.inline.push(join);
        let over = self.inline.len().saturating_sub(crate::inline::KEPT);
        self.inline.drain(..over);
    }

    /// The map run going on now, if the execution is in one.
    pub(crate) fn live_map_run(&self) -> Option<MapRun> {
        match &self.at {
            At::Join {
                run,
                started,
                results,
                work,
                since,
                map_run: Some(label),
                ..
            } => Some(MapRun::of_join(label, run, *since, work, *started, results)),
            _ => None,
        }
    }

    /// Changes the running map run `run`'s concurrency and tolerated
    /// failures; whether it is running.
    pub(crate) fn tune_map_run(
        &mut self,
        given: &str,
        concurrency: Option<u64>,
        tolerated: Option<u64>,
    ) -> bool {
        match &mut self.at {
            At::Join {
                run,
                work:
                    step::Work::Map {
                        max_concurrency,
                        tolerated_failures,
                        ..
                    },
                map_run: Some(_),
                ..
            } if run == given => {
                if let Some(c) = concurrency {
                    *max_concurrency = c;
                }
                if let Some(t) = tolerated {
                    *tolerated_failures = t;
                }
                true
            }
            _ => false,
        }
    }

    /// The work of the Task waiting for `given`, if one is.
    pub fn waiting_for(&self, given: &str) -> Option<&step::Work> {
        match &self.at {
            At::Callback { token, work, .. } | At::Join { token, work, .. } if token == given => {
                Some(work)
            }
            _ => None,
        }
    }

    /// A branch's or an item's result, kept until its state concludes;
    /// the events that say so. `None` if no Join waits for `given` or the
    /// index had its result already.
    pub fn record(
        &mut self,
        given: &str,
        index: usize,
        result: Result<Value, Failure>,
        now: i64,
    ) -> Option<Vec<Value>> {
        let At::Join {
            token,
            results,
            state,
            work,
            started,
            ..
        } = &mut self.at
        else {
            return None;
        };
        let slot = results.get_mut(index).filter(|r| r.is_none())?;
        if token != given {
            return None;
        }
        *slot = Some(result.clone());
        let step::Work::Map {
            distributed: false, ..
        } = work
        else {
            *started = (*started).max(index + 1);
            return Some(Vec::new());
        };
        // Starts go in order: an answer from past the committed starts
        // says those started too.
        let mut events: Vec<Value> = (*started..=index)
            .map(|i| history::map_iteration_started(state, i, now))
            .collect();
        *started = (*started).max(index + 1);
        events.push(history::map_iteration(state, index, result.is_ok(), now));
        Some(events)
    }

    /// The result of the Task waiting for `given`: the execution goes on
    /// from it. `false` if no Task waits for `given`.
    pub fn resolve(&mut self, given: &str, result: Result<Value, Failure>) -> bool {
        let At::Callback {
            state,
            input,
            tries,
            work,
            token,
            ..
        } = &self.at
        else {
            return false;
        };
        if token != given {
            return false;
        }
        self.at = At::Returned {
            state: state.clone(),
            input: input.clone(),
            tries: tries.clone(),
            work: work.clone(),
            result,
        };
        true
    }

    /// A heartbeat for `given`: its deadline moves on. When the Task is
    /// next due, or `None` if no Task waits for `given`.
    pub fn beat(&mut self, given: &str, now: i64) -> Option<i64> {
        let At::Callback {
            token,
            work,
            timeout_at,
            heartbeat_at,
            ..
        } = &mut self.at
        else {
            return None;
        };
        if token != given {
            return None;
        }
        if let step::Work::Task {
            heartbeat_seconds: Some(s),
            ..
        } = work
        {
            *heartbeat_at = Some(now.saturating_add(*s as i64 * 1000));
        }
        Some(earliest(*timeout_at, *heartbeat_at).unwrap_or(i64::MAX))
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How often a Task waiting on a child execution looks at the child, in
/// case the child's answer was lost with its node.
const CHILD_LOOK_MS: i64 = 60_000;

/// A state's work, to conclude.
struct Step<'a> {
    definition: &'a StateMachine,
    st: &'a State,
    state: String,
    input: Value,
    tries: Vec<u32>,
    work: step::Work,
}

/// Why a drive stopped.
enum Stop {
    /// Waiting until then (`.0`), at revision `.1`.
    Park(i64, u64),
    /// Committed; go on.
    Go,
    /// The execution is over (or gone).
    Over,
    /// Another writer came first; it carries the execution on.
    Lost,
}

/// Ends an execution in `e` with `kind`'s event: SUCCEEDED with output,
/// or FAILED / TIMED_OUT / ABORTED with a failure.
pub(crate) fn end(
    e: &mut Execution,
    p: &mut Progress,
    now: i64,
    result: Result<Value, (&str, Failure)>,
) -> Value {
    if let At::Join {
        run,
        started,
        results,
        work,
        since,
        map_run,
        ..
    } = &p.at
    {
        p.orphans = (0..*started)
            .filter(|i| results[*i].is_none())
            .map(|i| branch_name(&e.machine, &e.name, run, i))
            .collect();
        // A run that ended with its state is kept already.
        let ran = map_run
            .as_ref()
            .filter(|_| !p.map_runs.iter().any(|r| &r.run == run))
            .map(|label| MapRun::of_join(label, run, *since, work, *started, results));
        if let Some(ran) = ran {
            p.keep_map_run(ran.ended("ABORTED", now));
        }
    }
    p.at = At::Done;
    e.stopped_ms = Some(now);
    match result {
        Ok(output) => {
            e.status = "SUCCEEDED".into();
            let event = history::execution_succeeded(now, &output);
            p.output = Some(output);
            event
        }
        Err((status, f)) => {
            e.status = status.into();
            let kind = match status {
                "TIMED_OUT" => "ExecutionTimedOut",
                "ABORTED" => "ExecutionAborted",
                _ => "ExecutionFailed",
            };
            let event = history::execution_ended(kind, now, &f);
            p.error = Some(f);
            event
        }
    }
}

/// Numbers `events` after the `stored` ones, each following the last.
pub(crate) fn number(events: &mut [Value], stored: u64) {
    for (i, ev) in events.iter_mut().enumerate() {
        let id = stored + 1 + i as u64;
        ev["id"] = json!(id);
        ev["previousEventId"] = json!(id - 1);
    }
}

fn zeros(machine: &StateMachine, state: &str) -> Vec<u32> {
    vec![0; machine.states.get(state).map_or(0, |s| s.retry.len())]
}

impl Flows {
    pub(crate) fn timer_of(machine: &str, name: &str, due_ms: i64) -> Timer {
        Timer {
            kind: EXECUTION_TIMER.into(),
            id: format!("{machine}/{name}"),
            due_ms,
            payload: String::new(),
        }
    }

    /// The lease a new execution starts with: if its node dies before
    /// the first step, the timer brings it back.
    pub(crate) async fn arm(&self, machine: &str, name: &str) -> Result<(), FlowsError> {
        let due = self.clock.now_ms() + LEASE_MS;
        self.store
            .set_timer(&Self::timer_of(machine, name, due))
            .await?;
        Ok(())
    }

    /// Drives an execution on in a task of its own. (Boxed: a step may
    /// start a child execution, which is driven the same way.)
    pub(crate) fn spawn_drive(self: &Arc<Self>, machine: &str, name: &str) {
        let (me, machine, name) = (self.clone(), machine.to_string(), name.to_string());
        let drive: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move { me.drive(&machine, &name).await });
        tokio::spawn(drive);
    }

    /// Drives an execution on until it waits, ends, or another takes it;
    /// nothing if this node drives it already.
    async fn drive(self: &Arc<Self>, machine: &str, name: &str) {
        let key = format!("{machine}/{name}");
        {
            let mut driving = self.driving.lock().unwrap();
            if let Some(again) = driving.get_mut(&key) {
                // Driven here already: its driver looks again before it
                // stops (a result may have come meanwhile).
                *again = true;
                return;
            }
            driving.insert(key.clone(), false);
        }
        struct Unmark<'a>(&'a Flows, String);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                self.0.driving.lock().unwrap().remove(&self.1);
            }
        }
        let _unmark = Unmark(self, key);
        loop {
            let stopped = self.drive_once(machine, name).await;
            let settled = match stopped {
                Ok(Stop::Park(until, revision)) => {
                    let parked = self
                        .store
                        .set_timer(&Self::timer_of(machine, name, until))
                        .await;
                    // A result may have come while it parked (a task
                    // token answered): then go on at once.
                    match self.store.get_execution(machine, name).await {
                        Ok(Some(e)) if e.revision != revision && e.status == "RUNNING" => continue,
                        _ => parked,
                    }
                }
                Ok(Stop::Over) => self
                    .store
                    .cancel_timer(EXECUTION_TIMER, &format!("{machine}/{name}"))
                    .await
                    .map(|_| ()),
                Ok(Stop::Lost | Stop::Go) => Ok(()),
                Err(e) => {
                    // The timer stays a lease ahead: it is tried again then.
                    tracing::warn!(error = %e, machine, name, "an execution step failed; it is retried");
                    Ok(())
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, machine, name, "cannot set an execution's timer");
            }
            let again = self
                .driving
                .lock()
                .unwrap()
                .get_mut(&format!("{machine}/{name}"))
                .map(std::mem::take)
                .unwrap_or(false);
            if again {
                continue;
            }
            return;
        }
    }

    /// Runs steps while keeping the execution's lease.
    async fn drive_once(self: &Arc<Self>, machine: &str, name: &str) -> Result<Stop, FlowsError> {
        let steps = self.steps(machine, name);
        tokio::pin!(steps);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RENEW, RENEW);
        loop {
            tokio::select! {
                s = &mut steps => return s,
                _ = renew.tick() => {
                    let due = self.clock.now_ms() + LEASE_MS;
                    if let Err(e) = self.store.set_timer(&Self::timer_of(machine, name, due)).await {
                        tracing::warn!(error = %e, machine, name, "cannot extend an execution's lease");
                    }
                }
            }
        }
    }

    /// Takes due execution timers and drives them, for as long as the
    /// engine lives.
    pub(crate) async fn drive_loop(self: Arc<Self>) {
        loop {
            let now = self.clock.now_ms();
            match self
                .store
                .lease_due_timers(EXECUTION_TIMER, now, LEASE_MS, 256)
                .await
            {
                Ok(due) => {
                    for leased in due {
                        let Some((machine, name)) = leased.timer.id.split_once('/') else {
                            continue;
                        };
                        self.spawn_drive(machine, name);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot take due executions"),
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(500), self.drive_wake.notified()).await;
        }
    }

    async fn steps(self: &Arc<Self>, machine: &str, name: &str) -> Result<Stop, FlowsError> {
        let Some(mut e) = self.store.get_execution(machine, name).await? else {
            return Ok(Stop::Over);
        };
        if e.status != "RUNNING" {
            return Ok(Stop::Over);
        }
        let mut p: Progress = serde_json::from_value(e.state.clone())
            .map_err(|err| FlowsError::internal(format!("unreadable execution state: {err}")))?;
        let input: Value = serde_json::from_str(&e.input).unwrap_or_else(|_| json!({}));
        let definition = match StateMachine::parse(&e.definition) {
            Ok(d) => d,
            Err(d) => {
                let f = Failure::new(crate::errors::RUNTIME, invalid_definition(&d));
                let now = self.clock.now_ms();
                let mut events = vec![end(&mut e, &mut p, now, Err(("FAILED", f)))];
                return self.commit(&mut e, &p, &mut events).await;
            }
        };
        let limit_ms = definition
            .timeout_seconds
            .map_or(YEAR_MS, |s| (s as i64).saturating_mul(1000).min(YEAR_MS));
        let deadline = e.started_ms.saturating_add(limit_ms);
        let cx = p.cx.clone().unwrap_or_else(|| {
            json!({
                "Execution": {
                    "Id": self.execution_arn(machine, name),
                    "Name": name,
                    "Input": input,
                    "StartTime": crate::time_text(e.started_ms),
                    "RoleArn": p.role_arn,
                },
                "StateMachine": {"Id": self.machine_arn(machine), "Name": machine},
            })
        });
        let mut first_join = false;
        let env = Tasks {
            flows: self.clone(),
            trigger: format!(
                "states:{}",
                cx["Execution"]["Id"].as_str().unwrap_or_default()
            ),
        };
        let region = self.sqs.region().to_string();
        let mut first = true;
        loop {
            let now = self.clock.now_ms();
            let mut events = Vec::new();
            if now >= deadline {
                let f = Failure::new(crate::errors::TIMEOUT, "The execution timed out.");
                events.push(end(&mut e, &mut p, now, Err(("TIMED_OUT", f))));
                return self.commit(&mut e, &p, &mut events).await;
            }
            let resumed = std::mem::take(&mut first);
            let park = |until: i64, e: &Execution| Ok(Stop::Park(until.min(deadline), e.revision));
            match p.at.clone() {
                At::Start => {
                    events.push(history::execution_started(
                        e.started_ms,
                        &input,
                        &p.role_arn,
                    ));
                    p.at = At::Enter {
                        tries: zeros(&definition, &definition.start_at),
                        state: definition.start_at.clone(),
                        input: input.clone(),
                    };
                }
                At::Enter {
                    state,
                    input,
                    tries,
                } => {
                    let st = state_of(&definition, &state)?;
                    if tries.iter().all(|t| *t == 0) {
                        events.push(history::state_entered(st, now, &input));
                    }
                    let token = match &st.kind {
                        Kind::Task { resource, .. } if tokens::callback_of(resource).is_some() => {
                            Some(tokens::new_token(machine, name))
                        }
                        _ => None,
                    };
                    let scx = state_cx(&cx, &state, now, &tries, token.as_deref());
                    let scope = Scope {
                        context: &scx,
                        vars: &p.vars,
                    };
                    let outcome = step::enter(st, &input, scope, now, self.rng.as_ref());
                    let step = Step {
                        definition: &definition,
                        st,
                        state,
                        input,
                        tries,
                        work: step::Work::Parallel { input: Value::Null },
                    };
                    self.apply(step, outcome, &mut e, &mut p, now, &region, &mut events);
                    if let At::Work { token: t, .. } = &mut p.at {
                        *t = token;
                    }
                }
                At::Work {
                    state,
                    input,
                    tries,
                    work,
                    token,
                } => {
                    let st = state_of(&definition, &state)?;
                    if resumed {
                        // Left in flight by a driver that is gone: run it
                        // again, and say so in the history.
                        let mut again = vec![history::task_started(&work, now)];
                        if let Stop::Lost | Stop::Over = self.commit(&mut e, &p, &mut again).await?
                        {
                            return Ok(Stop::Lost);
                        }
                    }
                    let scx = state_cx(&cx, &state, now, &tries, token.as_deref());
                    let callback = match &work {
                        step::Work::Task { resource, .. } => tokens::callback_of(resource),
                        _ => None,
                    };
                    let step = Step {
                        definition: &definition,
                        st,
                        state,
                        input,
                        tries,
                        work,
                    };
                    match (callback, token) {
                        (Some(_), Some(token)) => {
                            // Waiting is committed before the request is
                            // made: its answer may come at once.
                            p.at = waiting(step, token, now);
                        }
                        _ if !matches!(step.work, step::Work::Task { .. }) => {
                            let total = match &step.work {
                                step::Work::Parallel { .. } => match &st.kind {
                                    Kind::Parallel { branches } => branches.len(),
                                    _ => 0,
                                },
                                step::Work::Map { items, .. } => items.len(),
                                step::Work::Task { .. } => 0,
                            };
                            let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
                            let map_run = map_runs::label_of(st).map(String::from);
                            if let Some(label) = &map_run {
                                let arn = self.map_run_arn(machine, label, name, &run);
                                events.push(history::map_run_started(&arn, now));
                            }
                            let is_run = map_run.is_some();
                            if !is_run {
                                // Its start is the last event so far.
                                p.keep_inline(Inline {
                                    after: e.events + events.len() as u64,
                                    run: run.clone(),
                                    map: matches!(step.work, step::Work::Map { .. }),
                                });
                            }
                            p.at = At::Join {
                                state: step.state,
                                input: step.input,
                                tries: step.tries,
                                work: step.work,
                                token: tokens::new_token(machine, name),
                                run,
                                started: 0,
                                results: vec![None; total],
                                since: now,
                                map_run,
                            };
                            // A map run's start is in the history (and its
                            // ARN known) before its children start.
                            if !is_run {
                                continue;
                            }
                        }
                        _ => {
                            let work = step.work.clone();
                            let done = run::work_of(st, work, &scx, &p.vars, &env).await;
                            let now = self.clock.now_ms();
                            self.conclude(
                                step,
                                done,
                                true,
                                &scx,
                                &mut e,
                                &mut p,
                                now,
                                &region,
                                &mut events,
                            );
                        }
                    }
                }
                At::Callback {
                    state,
                    input,
                    tries,
                    work,
                    token,
                    timeout_at,
                    heartbeat_at,
                    child,
                    requested,
                } => {
                    let st = state_of(&definition, &state)?;
                    if !requested {
                        let callback = match &work {
                            step::Work::Task { resource, .. } => tokens::callback_of(resource),
                            _ => None,
                        };
                        let Some(callback) = callback else {
                            return Err(FlowsError::internal("a waiting state that is not a Task"));
                        };
                        let asked = self
                            .request(&callback, &work, &token, &p, &env.trigger)
                            .await;
                        let now = self.clock.now_ms();
                        let scx = state_cx(&cx, &state, now, &tries, Some(&token));
                        match asked {
                            Ok(answer) => {
                                events.extend(history::task_submitted(&work, now, &answer));
                                let child = match callback {
                                    tokens::Callback::Child { .. } => answer["ExecutionArn"]
                                        .as_str()
                                        .and_then(|a| Flows::execution_of(a).ok()),
                                    _ => None,
                                };
                                p.at = At::Callback {
                                    state,
                                    input,
                                    tries,
                                    work,
                                    token,
                                    timeout_at,
                                    heartbeat_at,
                                    child,
                                    requested: true,
                                };
                            }
                            Err(f) => {
                                let step = Step {
                                    definition: &definition,
                                    st,
                                    state,
                                    input,
                                    tries,
                                    work,
                                };
                                self.conclude(
                                    step,
                                    Err(f),
                                    true,
                                    &scx,
                                    &mut e,
                                    &mut p,
                                    now,
                                    &region,
                                    &mut events,
                                );
                            }
                        }
                        match self.commit(&mut e, &p, &mut events).await? {
                            Stop::Go => continue,
                            stop => return Ok(stop),
                        }
                    }
                    let late = |at: Option<i64>| at.is_some_and(|t| now >= t);
                    let done = if late(heartbeat_at) {
                        Err(Failure::new(
                            crate::errors::HEARTBEAT_TIMEOUT,
                            "The task's heartbeat timed out.",
                        ))
                    } else if late(timeout_at) {
                        Err(Failure::new(crate::errors::TIMEOUT, "The task timed out."))
                    } else {
                        let ended = match &child {
                            Some((m, n)) => self.child_result(m, n).await?,
                            None => None,
                        };
                        match ended {
                            Some(result) => result,
                            None => {
                                let mut until =
                                    earliest(timeout_at, heartbeat_at).unwrap_or(i64::MAX);
                                if child.is_some() {
                                    until = until.min(now.saturating_add(CHILD_LOOK_MS));
                                }
                                return park(until, &e);
                            }
                        }
                    };
                    let scx = state_cx(&cx, &state, now, &tries, Some(&token));
                    let step = Step {
                        definition: &definition,
                        st,
                        state,
                        input,
                        tries,
                        work,
                    };
                    self.conclude(
                        step,
                        done,
                        true,
                        &scx,
                        &mut e,
                        &mut p,
                        now,
                        &region,
                        &mut events,
                    );
                }
                At::Join {
                    state,
                    input,
                    tries,
                    work,
                    token,
                    run,
                    mut started,
                    mut results,
                    since,
                    map_run,
                } => {
                    let st = state_of(&definition, &state)?;
                    // Answers a lost node could not give: look at the
                    // children that ran long.
                    if !resumed_join_checked(&mut first_join) {
                        for (i, slot) in results.iter_mut().enumerate().take(started) {
                            if slot.is_none() {
                                let (m, n) = branch_name(machine, name, &run, i);
                                if let Some(r) = self.child_result(&m, &n).await? {
                                    let inline = matches!(
                                        work,
                                        step::Work::Map {
                                            distributed: false,
                                            ..
                                        }
                                    );
                                    events.extend(inline.then(|| {
                                        history::map_iteration(&state, i, r.is_ok(), now)
                                    }));
                                    *slot = Some(r);
                                }
                            }
                        }
                    }
                    let done = joined(st, &work, &results);
                    let scx = state_cx(&cx, &state, now, &tries, None);
                    if let Some(done) = done {
                        for (i, slot) in results.iter().enumerate().take(started) {
                            if slot.is_none() {
                                let (m, n) = branch_name(machine, name, &run, i);
                                self.stop_branch(&m, &n).await;
                            }
                        }
                        if let Some(label) = &map_run {
                            events.push(history::map_run_ended(&done, now));
                            let status = if done.is_ok() { "SUCCEEDED" } else { "FAILED" };
                            let ran = MapRun::of_join(label, &run, since, &work, started, &results);
                            p.keep_map_run(ran.ended(status, now));
                        }
                        let step = Step {
                            definition: &definition,
                            st,
                            state,
                            input,
                            tries,
                            work,
                        };
                        self.conclude(
                            step,
                            done,
                            true,
                            &scx,
                            &mut e,
                            &mut p,
                            now,
                            &region,
                            &mut events,
                        );
                    } else {
                        let at_once = match &work {
                            step::Work::Map {
                                max_concurrency: 0,
                                distributed: true,
                                ..
                            } => map_runs::MAX_CONCURRENCY,
                            step::Work::Map {
                                max_concurrency: 0, ..
                            } => run::DEFAULT_MAP_CONCURRENCY,
                            step::Work::Map {
                                max_concurrency, ..
                            } => *max_concurrency as usize,
                            _ => usize::MAX,
                        };
                        // A branch may answer before its start is
                        // committed: it is not running then.
                        let mut running = results[..started].iter().filter(|r| r.is_none()).count();
                        let mut more = 0;
                        while started < results.len() && running < at_once {
                            let (m, n) = branch_name(machine, name, &run, started);
                            self.start_branch(
                                &e,
                                &p,
                                &state,
                                &work,
                                started,
                                (&m, &n),
                                &token,
                                &scx,
                            )
                            .await?;
                            if matches!(
                                work,
                                step::Work::Map {
                                    distributed: false,
                                    ..
                                }
                            ) {
                                events.push(history::map_iteration_started(&state, started, now));
                            }
                            if results[started].is_none() {
                                running += 1;
                            }
                            started += 1;
                            more += 1;
                        }
                        p.at = At::Join {
                            state,
                            input,
                            tries,
                            work,
                            token,
                            run,
                            started,
                            results,
                            since,
                            map_run,
                        };
                        if events.is_empty() && more == 0 {
                            return park(now.saturating_add(CHILD_LOOK_MS), &e);
                        }
                    }
                }
                At::Returned {
                    state,
                    input,
                    tries,
                    work,
                    result,
                } => {
                    let st = state_of(&definition, &state)?;
                    let scx = state_cx(&cx, &state, now, &tries, None);
                    let step = Step {
                        definition: &definition,
                        st,
                        state,
                        input,
                        tries,
                        work,
                    };
                    self.conclude(
                        step,
                        result,
                        false,
                        &scx,
                        &mut e,
                        &mut p,
                        now,
                        &region,
                        &mut events,
                    );
                }
                At::Retry {
                    state,
                    input,
                    tries,
                    until_ms,
                } => {
                    if now < until_ms {
                        return park(until_ms, &e);
                    }
                    p.at = At::Enter {
                        state,
                        input,
                        tries,
                    };
                    continue;
                }
                At::Wait {
                    state,
                    until_ms,
                    next,
                    output,
                    assigned,
                } => {
                    if now < until_ms {
                        return park(until_ms, &e);
                    }
                    let st = state_of(&definition, &state)?;
                    events.push(history::state_exited(st, now, &output, &assigned));
                    p.vars.extend(assigned);
                    match next {
                        Some(next) => {
                            p.at = At::Enter {
                                tries: zeros(&definition, &next),
                                state: next,
                                input: output,
                            }
                        }
                        None => events.push(end(&mut e, &mut p, now, Ok(output))),
                    }
                }
                At::Done => return Ok(Stop::Over),
            }
            match self.commit(&mut e, &p, &mut events).await? {
                Stop::Go => {}
                stop => return Ok(stop),
            }
        }
    }

    /// Goes on from a state's work done: its event (unless already in
    /// the history), then its output, a retry, a catch or the failure.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &self,
        step: Step<'_>,
        done: Result<Value, Failure>,
        record: bool,
        scx: &Value,
        e: &mut Execution,
        p: &mut Progress,
        now: i64,
        region: &str,
        events: &mut Vec<Value>,
    ) {
        match done {
            Ok(result) => {
                if record {
                    events.push(history::work_succeeded(&step.work, now, &result));
                }
                let scope = Scope {
                    context: scx,
                    vars: &p.vars,
                };
                let o = step::finish(step.st, &step.input, result, scope, self.rng.as_ref());
                self.apply(step, o, e, p, now, region, events);
            }
            Err(f) => {
                if record {
                    events.push(history::work_failed(&step.work, now, &f));
                }
                let scope = Scope {
                    context: scx,
                    vars: &p.vars,
                };
                let rng = self.rng.as_ref();
                match step::recover(step.st, &step.input, f, &step.tries, scope, rng) {
                    Recovery::Retry { retrier, delay_ms } => {
                        let mut tries = step.tries;
                        tries[retrier] += 1;
                        p.at = At::Retry {
                            state: step.state,
                            input: step.input,
                            tries,
                            until_ms: now.saturating_add(delay_ms),
                        };
                    }
                    Recovery::Then(o) => self.apply(step, o, e, p, now, region, events),
                }
            }
        }
    }

    /// Commits a step: `Go` to go on, `Over` once the execution
    /// ended, `Lost` if another write came first. Past the history
    /// quota, the execution fails instead.
    async fn commit(
        &self,
        e: &mut Execution,
        p: &Progress,
        events: &mut Vec<Value>,
    ) -> Result<Stop, FlowsError> {
        let mut p = p.clone();
        if e.events + events.len() as u64 >= MAX_HISTORY_EVENTS && e.status == "RUNNING" {
            let now = self.clock.now_ms();
            let f = Failure::new(
                crate::errors::RUNTIME,
                format!("The execution reached the maximum number of history events ({MAX_HISTORY_EVENTS})."),
            );
            let keep = (MAX_HISTORY_EVENTS - 1).saturating_sub(e.events) as usize;
            events.truncate(keep);
            events.push(end(e, &mut p, now, Err(("FAILED", f))));
        }
        number(events, e.events);
        e.state = serde_json::to_value(&p).map_err(|err| FlowsError::internal(err.to_string()))?;
        match self.store.commit_execution(e, events).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(Stop::Lost),
            Err(err) => return Err(err.into()),
        }
        // A branch's transitions are its machine's; its end is not an
        // execution's.
        let branch = e.machine.strip_suffix("~branches");
        let machine = branch.unwrap_or(&e.machine).to_string();
        metrics::counter!("wisp_state_transitions_total", "state_machine" => machine.clone())
            .increment(1);
        if e.status != "RUNNING" {
            if branch.is_none() {
                metrics::counter!("wisp_executions_total", "state_machine" => machine, "status" => e.status.clone())
                    .increment(1);
            }
            self.answer_parent(e, &p).await;
            for (m, n) in &p.orphans {
                self.stop_branch(m, n).await;
            }
            return Ok(Stop::Over);
        }
        Ok(Stop::Go)
    }

    /// Applies a step's outcome: the next place and the events that say
    /// how it got there.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        step: Step<'_>,
        outcome: Outcome,
        e: &mut Execution,
        p: &mut Progress,
        now: i64,
        region: &str,
        events: &mut Vec<Value>,
    ) {
        let Step {
            definition,
            st,
            input,
            tries,
            ..
        } = step;
        match outcome {
            Outcome::Next {
                next,
                output,
                assigned,
            } => {
                events.push(history::state_exited(st, now, &output, &assigned));
                p.vars.extend(assigned);
                p.at = At::Enter {
                    tries: zeros(definition, &next),
                    state: next,
                    input: output,
                };
            }
            Outcome::End { output, .. } => {
                events.push(history::state_exited(st, now, &output, &Vars::new()));
                events.push(end(e, p, now, Ok(output)));
            }
            Outcome::Fail(f) => events.push(end(e, p, now, Err(("FAILED", f)))),
            Outcome::Wait {
                until_ms,
                next,
                output,
                assigned,
            } => {
                p.at = At::Wait {
                    state: st.name.clone(),
                    until_ms,
                    next,
                    output,
                    assigned,
                };
            }
            Outcome::Work(work) => {
                events.extend(history::work_started(&work, now, region));
                p.at = At::Work {
                    state: st.name.clone(),
                    input,
                    tries,
                    work,
                    token: None,
                };
            }
        }
    }
}

/// Whether the children of a Join were looked at in this drive (once:
/// when it takes the execution up).
fn resumed_join_checked(checked: &mut bool) -> bool {
    std::mem::replace(checked, true)
}

/// The machine and name of a branch's or item's execution.
pub(crate) fn branch_name(machine: &str, name: &str, run: &str, index: usize) -> (String, String) {
    (
        format!("{machine}~branches"),
        format!("{name}~{run}~{index}"),
    )
}

/// A Join's result once its state can conclude: a Parallel when every
/// branch ended or one failed; a Map when every item ended, or a failure
/// it does not tolerate came.
fn joined(
    st: &State,
    work: &step::Work,
    results: &[Option<Result<Value, Failure>>],
) -> Option<Result<Value, Failure>> {
    let tolerant = run::tolerant(st);
    let tolerated = match work {
        step::Work::Map {
            tolerated_failures, ..
        } => *tolerated_failures,
        _ => 0,
    };
    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count() as u64;
    let fatal = match work {
        step::Work::Map { .. } if tolerant => failed > tolerated,
        _ => failed > 0,
    };
    if fatal {
        if !tolerant {
            return results.iter().find_map(|r| match r {
                Some(Err(f)) => Some(Err(f.clone())),
                _ => None,
            });
        }
        let total = results.len();
        return Some(Err(Failure::new(
            crate::errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            format!("{failed} of {total} items failed; {tolerated} were tolerated."),
        )));
    }
    if results.iter().any(Option::is_none) {
        return None;
    }
    let all: Vec<Result<Value, Failure>> = results.iter().flatten().cloned().collect();
    Some(match work {
        step::Work::Map { .. } => run::map_outcome(all, tolerant, tolerated),
        _ => all
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    })
}

/// Where a callback Task waits, from before its request is made.
fn waiting(step: Step<'_>, token: String, now: i64) -> At {
    let (timeout, heartbeat) = match &step.work {
        step::Work::Task {
            timeout_seconds,
            heartbeat_seconds,
            ..
        } => (*timeout_seconds, *heartbeat_seconds),
        _ => (None, None),
    };
    let after = |s: Option<u64>| s.map(|s| now.saturating_add(s as i64 * 1000));
    At::Callback {
        state: step.state,
        input: step.input,
        tries: step.tries,
        work: step.work,
        token,
        timeout_at: after(timeout),
        heartbeat_at: after(heartbeat),
        child: None,
        requested: false,
    }
}

fn state_of<'a>(definition: &'a StateMachine, name: &str) -> Result<&'a State, FlowsError> {
    definition
        .states
        .get(name)
        .ok_or_else(|| FlowsError::internal(format!("state {name} is not in the definition")))
}

/// The context object while in `state` (with the Task's token, if it
/// waits for one).
fn state_cx(cx: &Value, state: &str, now: i64, tries: &[u32], token: Option<&str>) -> Value {
    let mut scx = cx.clone();
    scx["State"] = json!({
        "Name": state,
        "EnteredTime": crate::time_text(now),
        "RetryCount": tries.iter().sum::<u32>(),
    });
    if let Some(t) = token {
        scx["Task"] = json!({"Token": t});
    }
    scx
}
