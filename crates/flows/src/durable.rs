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

use crate::asl::{invalid_definition, State, StateMachine};
use crate::engine::{Flows, FlowsError, Tasks};
use crate::history;
use crate::run;
use crate::step::{self, Failure, Outcome, Recovery};

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
    Work {
        state: String,
        input: Value,
        tries: Vec<u32>,
        work: step::Work,
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
    },
    Done,
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
}

impl Progress {
    pub fn started(role_arn: &str) -> Progress {
        Progress {
            at: At::Start,
            role_arn: role_arn.to_string(),
            output: None,
            error: None,
        }
    }
}

/// Why a drive stopped.
enum Stop {
    /// Waiting until then.
    Park(i64),
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

    /// Drives an execution on until it waits, ends, or another takes it;
    /// nothing if this node drives it already.
    pub(crate) async fn drive(self: &Arc<Self>, machine: &str, name: &str) {
        let key = format!("{machine}/{name}");
        if !self.driving.lock().unwrap().insert(key.clone()) {
            return;
        }
        struct Unmark<'a>(&'a Flows, String);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                self.0.driving.lock().unwrap().remove(&self.1);
            }
        }
        let _unmark = Unmark(self, key);
        let steps = self.steps(machine, name);
        tokio::pin!(steps);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RENEW, RENEW);
        let stopped = loop {
            tokio::select! {
                s = &mut steps => break s,
                _ = renew.tick() => {
                    let due = self.clock.now_ms() + LEASE_MS;
                    if let Err(e) = self.store.set_timer(&Self::timer_of(machine, name, due)).await {
                        tracing::warn!(error = %e, machine, name, "cannot extend an execution's lease");
                    }
                }
            }
        };
        let settled = match stopped {
            Ok(Stop::Park(until)) => self
                .store
                .set_timer(&Self::timer_of(machine, name, until))
                .await
                .map(|_| ()),
            Ok(Stop::Over) => self
                .store
                .cancel_timer(EXECUTION_TIMER, &format!("{machine}/{name}"))
                .await
                .map(|_| ()),
            Ok(Stop::Lost) => Ok(()),
            Err(e) => {
                // The timer stays a lease ahead: it is tried again then.
                tracing::warn!(error = %e, machine, name, "an execution step failed; it is retried");
                Ok(())
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, machine, name, "cannot set an execution's timer");
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
                        let (machine, name) = (machine.to_string(), name.to_string());
                        let me = self.clone();
                        tokio::spawn(async move { me.drive(&machine, &name).await });
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
        let cx = json!({
            "Execution": {
                "Id": self.execution_arn(machine, name),
                "Name": name,
                "Input": input,
                "StartTime": crate::time_text(e.started_ms),
                "RoleArn": p.role_arn,
            },
            "StateMachine": {"Id": self.machine_arn(machine), "Name": machine},
        });
        let env = Tasks {
            flows: self.clone(),
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
                    let scx = state_cx(&cx, &state, now, &tries);
                    let outcome = step::enter(st, &input, &scx, now, self.rng.as_ref());
                    self.apply(
                        &definition,
                        &mut e,
                        &mut p,
                        st,
                        input,
                        tries,
                        outcome,
                        now,
                        &region,
                        &mut events,
                    );
                }
                At::Work {
                    state,
                    input,
                    mut tries,
                    work,
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
                    let scx = state_cx(&cx, &state, now, &tries);
                    let done = run::work_of(st, work.clone(), &scx, &env).await;
                    let now = self.clock.now_ms();
                    match done {
                        Ok(result) => {
                            events.push(history::work_succeeded(&work, now, &result));
                            let o = step::finish(st, &input, result, &scx, self.rng.as_ref());
                            self.apply(
                                &definition,
                                &mut e,
                                &mut p,
                                st,
                                input,
                                tries,
                                o,
                                now,
                                &region,
                                &mut events,
                            );
                        }
                        Err(f) => {
                            events.push(history::work_failed(&work, now, &f));
                            match step::recover(st, &input, f, &tries, self.rng.as_ref()) {
                                Recovery::Retry { retrier, delay_ms } => {
                                    tries[retrier] += 1;
                                    p.at = At::Retry {
                                        state,
                                        input,
                                        tries,
                                        until_ms: now.saturating_add(delay_ms),
                                    };
                                }
                                Recovery::Then(o) => {
                                    self.apply(
                                        &definition,
                                        &mut e,
                                        &mut p,
                                        st,
                                        input,
                                        tries,
                                        o,
                                        now,
                                        &region,
                                        &mut events,
                                    );
                                }
                            }
                        }
                    }
                }
                At::Retry {
                    state,
                    input,
                    tries,
                    until_ms,
                } => {
                    if now < until_ms {
                        return Ok(Stop::Park(until_ms.min(deadline)));
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
                } => {
                    if now < until_ms {
                        return Ok(Stop::Park(until_ms.min(deadline)));
                    }
                    let st = state_of(&definition, &state)?;
                    events.push(history::state_exited(st, now, &output));
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
                Stop::Park(_) => {}
                stop => return Ok(stop),
            }
        }
    }

    /// Commits a step: `Park(0)` to go on, `Over` once the execution
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
        metrics::counter!("wisp_state_transitions_total", "state_machine" => e.machine.clone())
            .increment(1);
        if e.status != "RUNNING" {
            metrics::counter!("wisp_executions_total", "state_machine" => e.machine.clone(), "status" => e.status.clone())
                .increment(1);
            return Ok(Stop::Over);
        }
        Ok(Stop::Park(0))
    }

    /// Applies a step's outcome: the next place and the events that say
    /// how it got there.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        definition: &StateMachine,
        e: &mut Execution,
        p: &mut Progress,
        st: &State,
        input: Value,
        tries: Vec<u32>,
        outcome: Outcome,
        now: i64,
        region: &str,
        events: &mut Vec<Value>,
    ) {
        match outcome {
            Outcome::Next { next, output } => {
                events.push(history::state_exited(st, now, &output));
                p.at = At::Enter {
                    tries: zeros(definition, &next),
                    state: next,
                    input: output,
                };
            }
            Outcome::End(output) => {
                events.push(history::state_exited(st, now, &output));
                events.push(end(e, p, now, Ok(output)));
            }
            Outcome::Fail(f) => events.push(end(e, p, now, Err(("FAILED", f)))),
            Outcome::Wait {
                until_ms,
                next,
                output,
            } => {
                p.at = At::Wait {
                    state: st.name.clone(),
                    until_ms,
                    next,
                    output,
                };
            }
            Outcome::Work(work) => {
                events.extend(history::work_started(&work, now, region));
                p.at = At::Work {
                    state: st.name.clone(),
                    input,
                    tries,
                    work,
                };
            }
        }
    }
}

fn state_of<'a>(definition: &'a StateMachine, name: &str) -> Result<&'a State, FlowsError> {
    definition
        .states
        .get(name)
        .ok_or_else(|| FlowsError::internal(format!("state {name} is not in the definition")))
}

/// The context object while in `state`.
fn state_cx(cx: &Value, state: &str, now: i64, tries: &[u32]) -> Value {
    let mut scx = cx.clone();
    scx["State"] = json!({
        "Name": state,
        "EnteredTime": crate::time_text(now),
        "RetryCount": tries.iter().sum::<u32>(),
    });
    scx
}
