//! Schedules: EventBridge Scheduler's schedules and groups, and the
//! schedules of EventBridge rules (`ScheduleExpression`), fired from
//! durable timers.
//!
//! Each enabled schedule has one timer, due at its next tick (plus a
//! random offset inside its flexible window). Whichever node leases the
//! timer fires the tick: it stores the tick's delivery on the bus's
//! delivery queue under an id made of the arming and the tick, so a tick
//! fired twice (a node dying between storing and settling) is stored
//! once, then re-arms the timer for the next tick after both the fired
//! one and now. So a tick fires once; ticks missed while no node ran
//! collapse into one, fired when a node comes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_queues::SendEntry;
use wisp_store::{LeasedTimer, StoreError, Timer};

use crate::archive::REPLAY_TIMER;
use crate::deliver::{Delivery, ScheduleRun, DELIVERIES};
use crate::engine::{internal, Events};
use crate::envelope::{self, Entry};
use crate::expression::{self, Expression};
use crate::model::{self, DeadLetterConfig, RetryPolicy, Rule, SqsParameters, Target};
use crate::EventsError;

/// Document kinds.
pub const SCHEDULE: &str = "schedule";
pub const GROUP: &str = "schedule-group";
/// The group every account has, which cannot be deleted.
pub const DEFAULT_GROUP: &str = "default";

/// Timer kinds: a Scheduler schedule's, a scheduled rule's.
const SCHEDULE_TIMER: &str = "schedule";
const RULE_TIMER: &str = "rule";
/// How long a node holds a due timer while it fires it.
const LEASE_MS: i64 = 60_000;
/// How long a tick's delivery is stored once by its id.
const ONCE_MS: i64 = 24 * 3600 * 1000;
/// Most schedules per group (AWS allows a million per account; one list
/// of a group is read whole).
pub const MAX_SCHEDULES_PER_GROUP: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub modified_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Schedule {
    pub name: String,
    pub group_name: String,
    pub schedule_expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression_timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// ENABLED or DISABLED.
    pub state: String,
    /// `None`: the window is OFF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flexible_window_minutes: Option<u32>,
    /// NONE or DELETE.
    pub action_after_completion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub target: ScheduleTarget,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub modified_ms: i64,
    /// When its last tick fired (a one-time schedule, or one past its
    /// end date): it is not armed again until it is updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleTarget {
    pub arn: String,
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_parameters: Option<SqsParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bridge_parameters: Option<EventBridgeParameters>,
    /// Parameters of targets wisp does not run (ECS, Kinesis, SageMaker),
    /// refused when given; kept so nothing given is silently dropped.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventBridgeParameters {
    pub detail_type: String,
    pub source: String,
}

/// What a timer carries: the tick it fires (before the window's offset),
/// and the arming it belongs to (which, with the tick, names the tick's
/// delivery).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    tick: i64,
    arming: String,
}

impl Schedule {
    pub fn key(&self) -> String {
        schedule_key(&self.group_name, &self.name)
    }

    pub fn enabled(&self) -> bool {
        self.state == "ENABLED"
    }

    fn expression(&self) -> Result<(Expression, jiff::tz::TimeZone), String> {
        Ok((
            Expression::parse(&self.schedule_expression, true)?,
            expression::time_zone(self.schedule_expression_timezone.as_deref())?,
        ))
    }

    /// The first tick at or after `from_ms` (and its start date), before
    /// its end date.
    pub fn first_tick(&self, from_ms: i64) -> Option<i64> {
        let (e, tz) = self.expression().ok()?;
        if let Expression::At(_) = e {
            // AWS ignores the start and end dates of a one-time schedule,
            // and invokes with a minute's precision: a time passed within
            // its minute fires at once (a request a moment late).
            let at = e.next_after(i64::MIN / 2, 0, &tz)?;
            let minute_end = at.div_euclid(60_000) * 60_000 + 60_000;
            return match at >= from_ms {
                true => Some(at),
                false => (from_ms < minute_end).then_some(from_ms),
            };
        }
        let next = match (&e, self.start_ms) {
            // A rate fires first at its start date, else one period from
            // now, and counts its periods from there.
            (Expression::Rate { .. }, Some(start)) if start >= from_ms => Some(start),
            (Expression::Rate { .. }, Some(start)) => e.next_after(from_ms, start, &tz),
            (Expression::Rate { .. }, None) => e.next_after(from_ms, from_ms, &tz),
            (_, start) => {
                let from = from_ms.max(start.unwrap_or(i64::MIN));
                e.next_after(from - 1, from, &tz)
            }
        }?;
        self.before_end(next)
    }

    /// The tick after `fired`, skipping those before `now_ms` (missed
    /// while nothing ran: they fire once, as `fired`).
    pub fn tick_after(&self, fired: i64, now_ms: i64) -> Option<i64> {
        let (e, tz) = self.expression().ok()?;
        if e.is_one_time() {
            return None;
        }
        let next = e.next_after(fired.max(now_ms), fired, &tz)?;
        self.before_end(next)
    }

    fn before_end(&self, tick: i64) -> Option<i64> {
        match self.end_ms {
            Some(end) if tick > end => None,
            _ => Some(tick),
        }
    }

    /// When a tick's timer is due: the tick, or a random moment in the
    /// flexible window after it (`unit` in [0, 1)).
    pub fn due(&self, tick: i64, unit: f64) -> i64 {
        let window = self.flexible_window_minutes.unwrap_or(0) as f64 * 60_000.0;
        tick + (window * unit) as i64
    }
}

pub fn schedule_key(group: &str, name: &str) -> String {
    format!("{group}/{name}")
}

fn check_name(what: &str, value: &str) -> Result<(), EventsError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        return Ok(());
    }
    Err(EventsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9a-zA-Z-_.]+$ and have length between 1 and 64"
    )))
}

pub fn check_group_name(name: &str) -> Result<(), EventsError> {
    check_name("name", name)
}

/// A rule's schedule as a timer sees it: UTC, counted from `from`.
fn rule_expression(rule: &Rule) -> Option<Expression> {
    Expression::parse(rule.schedule_expression.as_deref()?, false).ok()
}

/// PutRule's check of a ScheduleExpression.
pub fn check_rule_schedule(expression: &str) -> Result<(), EventsError> {
    Expression::parse(expression, false)
        .map(|_| ())
        .map_err(|_| EventsError::validation("Parameter ScheduleExpression is not valid."))
}

impl Schedule {
    /// Every check CreateSchedule and UpdateSchedule make, with AWS's
    /// error types; the defaults AWS fills in are filled in.
    pub fn check(&mut self) -> Result<(), EventsError> {
        check_name("name", &self.name)?;
        check_name("groupName", &self.group_name)?;
        if self.schedule_expression.is_empty() || self.schedule_expression.len() > 256 {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'scheduleExpression' failed to satisfy constraint: Member must have length between 1 and 256",
            ));
        }
        Expression::parse(&self.schedule_expression, true).map_err(|e| {
            EventsError::validation(format!(
                "Invalid Schedule Expression {}: {e}",
                self.schedule_expression
            ))
        })?;
        expression::time_zone(self.schedule_expression_timezone.as_deref()).map_err(|e| {
            EventsError::validation(format!("Invalid ScheduleExpressionTimezone: {e}"))
        })?;
        if let Some(d) = &self.description {
            if d.chars().count() > 512 {
                return Err(EventsError::validation(
                    "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 512",
                ));
            }
        }
        if let (Some(start), Some(end)) = (self.start_ms, self.end_ms) {
            if end <= start {
                return Err(EventsError::validation(
                    "The EndDate must be after the StartDate.",
                ));
            }
        }
        if !["ENABLED", "DISABLED"].contains(&self.state.as_str()) {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]",
                self.state
            )));
        }
        if !["NONE", "DELETE"].contains(&self.action_after_completion.as_str()) {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{}' at 'actionAfterCompletion' failed to satisfy constraint: Member must satisfy enum value set: [NONE, DELETE]",
                self.action_after_completion
            )));
        }
        if self
            .flexible_window_minutes
            .is_some_and(|m| !(1..=1440).contains(&m))
        {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'flexibleTimeWindow.maximumWindowInMinutes' failed to satisfy constraint: Member must have value between 1 and 1440",
            ));
        }
        self.check_target()?;
        let policy = self.target.retry_policy.get_or_insert(RetryPolicy {
            maximum_retry_attempts: None,
            maximum_event_age_in_seconds: None,
        });
        policy
            .maximum_retry_attempts
            .get_or_insert(model::DEFAULT_RETRY_ATTEMPTS);
        policy
            .maximum_event_age_in_seconds
            .get_or_insert(model::DEFAULT_EVENT_AGE_SECONDS);
        Ok(())
    }

    fn check_target(&self) -> Result<(), EventsError> {
        let t = &self.target;
        if t.arn.is_empty() || t.arn.len() > 1600 {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'target.arn' failed to satisfy constraint: Member must have length between 1 and 1600",
            ));
        }
        if t.role_arn.is_empty() || t.role_arn.len() > 1600 {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'target.roleArn' failed to satisfy constraint: Member must have length between 1 and 1600",
            ));
        }
        if let Some(key) = t.other.keys().next() {
            return Err(EventsError::validation(format!(
                "{key} is not supported: wisp's scheduler delivers to Lambda functions, SQS queues and event buses."
            )));
        }
        let kind = target_kind(&t.arn).ok_or_else(|| {
            EventsError::validation(format!(
                "Invalid target ARN {}: wisp's scheduler delivers to Lambda functions, SQS queues, event buses and state machines (universal targets and other services are not supported).",
                t.arn
            ))
        })?;
        if let Some(input) = &t.input {
            if input.is_empty() || input.len() > 256 * 1024 {
                return Err(EventsError::validation(
                    "1 validation error detected: Value at 'target.input' failed to satisfy constraint: Member must have length between 1 and 262144",
                ));
            }
        }
        if let Some(p) = &t.retry_policy {
            Target {
                retry_policy: Some(*p),
                ..Default::default()
            }
            .check_shape()?;
        }
        if let Some(arn) = t.dead_letter_config.as_ref().and_then(|d| d.arn.as_ref()) {
            if !arn.starts_with("arn:") || !arn.contains(":sqs:") {
                return Err(EventsError::validation(format!(
                    "DeadLetterConfig must be an SQS queue ARN, not {arn}."
                )));
            }
        }
        match (kind, &t.event_bridge_parameters) {
            (TargetKind::Bus, None) => Err(EventsError::validation(
                "EventBridgeParameters (DetailType and Source) are required for an event bus target.",
            )),
            (TargetKind::Bus, Some(p)) => {
                if p.detail_type.is_empty() || p.detail_type.len() > 128 {
                    return Err(EventsError::validation(
                        "1 validation error detected: Value at 'target.eventBridgeParameters.detailType' failed to satisfy constraint: Member must have length between 1 and 128",
                    ));
                }
                if p.source.is_empty() || p.source.len() > 256 || p.source.starts_with("aws.") {
                    return Err(EventsError::validation(
                        "1 validation error detected: Value at 'target.eventBridgeParameters.source' failed to satisfy constraint: Member must have length between 1 and 256 and not start with aws.",
                    ));
                }
                let detail = t.input.as_deref().unwrap_or("{}");
                match serde_json::from_str::<Value>(detail) {
                    Ok(Value::Object(_)) => Ok(()),
                    _ => Err(EventsError::validation(
                        "The Input of an event bus target is the event's detail: a JSON object.",
                    )),
                }
            }
            (_, Some(_)) => Err(EventsError::validation(
                "EventBridgeParameters are for event bus targets only.",
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Function,
    Queue,
    Bus,
    StateMachine,
}

fn target_kind(arn: &str) -> Option<TargetKind> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, "lambda", _, _, rest] if rest.starts_with("function:") => {
            Some(TargetKind::Function)
        }
        ["arn", _, "sqs", _, _, name] if !name.is_empty() => Some(TargetKind::Queue),
        ["arn", _, "events", _, _, rest] if rest.starts_with("event-bus/") => Some(TargetKind::Bus),
        ["arn", _, "states", _, _, rest] if rest.starts_with("stateMachine:") => {
            Some(TargetKind::StateMachine)
        }
        _ => None,
    }
}

/// Fills the context attributes AWS fills in a schedule's Input.
fn with_context(input: &str, run: &ScheduleRun) -> String {
    input
        .replace("<aws.scheduler.schedule-arn>", &run.arn)
        .replace(
            "<aws.scheduler.scheduled-time>",
            &envelope::rfc3339(run.scheduled_ms),
        )
        .replace("<aws.scheduler.execution-id>", &run.execution_id)
}

impl Events {
    pub fn schedule_arn(&self, group: &str, name: &str) -> String {
        format!(
            "arn:aws:scheduler:{}:{}:schedule/{group}/{name}",
            self.region(),
            self.account()
        )
    }

    pub fn group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:scheduler:{}:{}:schedule-group/{group}",
            self.region(),
            self.account()
        )
    }

    // ---- groups

    pub async fn get_group(&self, name: &str) -> Result<Option<Group>, EventsError> {
        match self.store.get_document(GROUP, name).await? {
            Some(d) => Ok(Some(serde_json::from_value(d.value).map_err(internal)?)),
            None if name == DEFAULT_GROUP => Ok(Some(Group {
                name: DEFAULT_GROUP.into(),
                ..Default::default()
            })),
            None => Ok(None),
        }
    }

    pub async fn require_group(&self, name: &str) -> Result<Group, EventsError> {
        check_group_name(name)?;
        self.get_group(name)
            .await?
            .ok_or_else(|| EventsError::not_found(format!("Schedule group {name} does not exist.")))
    }

    pub async fn create_group(
        &self,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<String, EventsError> {
        check_group_name(name)?;
        let now = self.clock.now_ms();
        let group = Group {
            name: name.into(),
            tags,
            created_ms: now,
            modified_ms: now,
        };
        let taken =
            || EventsError::scheduler_conflict(format!("Schedule group {name} already exists."));
        if name == DEFAULT_GROUP {
            return Err(taken());
        }
        match self
            .store
            .create_document(
                GROUP,
                name,
                &serde_json::to_value(&group).map_err(internal)?,
            )
            .await
        {
            Ok(_) => Ok(self.group_arn(name)),
            Err(StoreError::Conflict(_)) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_groups(&self, prefix: &str) -> Result<Vec<Group>, EventsError> {
        let mut groups: Vec<Group> = self
            .store
            .list_documents(GROUP, prefix)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect();
        if DEFAULT_GROUP.starts_with(prefix) && !groups.iter().any(|g| g.name == DEFAULT_GROUP) {
            groups.push(Group {
                name: DEFAULT_GROUP.into(),
                ..Default::default()
            });
            groups.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(groups)
    }

    /// DeleteScheduleGroup: the group and every schedule in it.
    pub async fn delete_group(&self, name: &str) -> Result<(), EventsError> {
        self.require_group(name).await?;
        if name == DEFAULT_GROUP {
            return Err(EventsError::validation(
                "The default schedule group cannot be deleted.",
            ));
        }
        for s in self.list_schedules(Some(name), "").await? {
            self.delete_schedule(&s.group_name, &s.name).await?;
        }
        self.store.delete_document(GROUP, name).await?;
        Ok(())
    }

    /// Changes a group's tags by `change`, by compare-and-set.
    pub async fn update_group_tags(
        &self,
        name: &str,
        change: impl Fn(&mut BTreeMap<String, String>),
    ) -> Result<(), EventsError> {
        self.require_group(name).await?;
        loop {
            let doc = self.store.get_document(GROUP, name).await?;
            let (mut group, revision) = match doc {
                Some(d) => (
                    serde_json::from_value::<Group>(d.value).map_err(internal)?,
                    Some(d.revision),
                ),
                None => (
                    Group {
                        name: name.into(),
                        ..Default::default()
                    },
                    None,
                ),
            };
            change(&mut group.tags);
            if group.tags.len() > 200 {
                return Err(EventsError::validation(
                    "A schedule group has at most 200 tags.",
                ));
            }
            group.modified_ms = self.clock.now_ms();
            let value = serde_json::to_value(&group).map_err(internal)?;
            let written = match revision {
                Some(r) => self.store.update_document(GROUP, name, &value, r).await,
                None => self.store.create_document(GROUP, name, &value).await,
            };
            match written {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    // ---- schedules

    pub async fn get_schedule(&self, group: &str, name: &str) -> Result<Schedule, EventsError> {
        check_name("name", name)?;
        check_group_name(group)?;
        let missing = || EventsError::not_found(format!("Schedule {name} does not exist."));
        match self
            .store
            .get_document(SCHEDULE, &schedule_key(group, name))
            .await?
        {
            Some(d) => serde_json::from_value(d.value).map_err(internal),
            None => Err(missing()),
        }
    }

    /// A schedule's next tick (its window's offset not added), if it has one.
    pub async fn next_fire(&self, group: &str, name: &str) -> Result<Option<i64>, EventsError> {
        Ok(self
            .store
            .get_timer(SCHEDULE_TIMER, &schedule_key(group, name))
            .await?
            .map(|t| serde_json::from_str::<Tick>(&t.payload).map_or(t.due_ms, |tick| tick.tick)))
    }

    /// When a scheduled rule's timer is next due, if it has one.
    pub async fn next_rule_fire(&self, bus: &str, name: &str) -> Result<Option<i64>, EventsError> {
        Ok(self
            .store
            .get_timer(RULE_TIMER, &model::rule_key(bus, name))
            .await?
            .map(|t| t.due_ms))
    }

    /// Schedules of one group (or all), by group and name.
    pub async fn list_schedules(
        &self,
        group: Option<&str>,
        prefix: &str,
    ) -> Result<Vec<Schedule>, EventsError> {
        let scope = match group {
            Some(g) => {
                self.require_group(g).await?;
                format!("{g}/")
            }
            None => String::new(),
        };
        Ok(self
            .store
            .list_documents(SCHEDULE, &scope)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value::<Schedule>(d.value).ok())
            .filter(|s| s.name.starts_with(prefix))
            .collect())
    }

    /// CreateSchedule; its ARN.
    pub async fn create_schedule(&self, mut s: Schedule) -> Result<String, EventsError> {
        s.check()?;
        self.require_group(&s.group_name).await?;
        let now = self.clock.now_ms();
        (s.created_ms, s.modified_ms) = (now, now);
        if self
            .store
            .list_documents(SCHEDULE, &format!("{}/", s.group_name))
            .await?
            .len()
            >= MAX_SCHEDULES_PER_GROUP
        {
            return Err(EventsError::quota(format!(
                "A schedule group holds at most {MAX_SCHEDULES_PER_GROUP} schedules on wisp."
            )));
        }
        let value = serde_json::to_value(&s).map_err(internal)?;
        match self.store.create_document(SCHEDULE, &s.key(), &value).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(EventsError::scheduler_conflict(format!(
                    "Schedule {} already exists.",
                    s.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.arm_schedule(&s, None).await?;
        self.wake_scheduler();
        Ok(self.schedule_arn(&s.group_name, &s.name))
    }

    /// UpdateSchedule: replaces the whole definition (as AWS does: what
    /// is not given returns to its default).
    pub async fn update_schedule(&self, mut s: Schedule) -> Result<String, EventsError> {
        s.check()?;
        self.require_group(&s.group_name).await?;
        let key = s.key();
        loop {
            let Some(d) = self.store.get_document(SCHEDULE, &key).await? else {
                return Err(EventsError::not_found(format!(
                    "Schedule {} does not exist.",
                    s.name
                )));
            };
            let old: Schedule = serde_json::from_value(d.value).map_err(internal)?;
            s.created_ms = old.created_ms;
            // Done stays done while its ticks stay where they were (a
            // deploy that changes nothing does not fire it again).
            let same_ticks = old.schedule_expression == s.schedule_expression
                && old.schedule_expression_timezone == s.schedule_expression_timezone;
            s.completed_ms = old.completed_ms.filter(|_| same_ticks);
            s.modified_ms = self.clock.now_ms();
            let value = serde_json::to_value(&s).map_err(internal)?;
            match self
                .store
                .update_document(SCHEDULE, &key, &value, d.revision)
                .await
            {
                Ok(_) => break,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Keep the arming (and so the delivery id of a tick that is due
        // now) when the ticks stay where they were.
        let arming = self
            .store
            .get_timer(SCHEDULE_TIMER, &key)
            .await?
            .and_then(|t| serde_json::from_str::<Tick>(&t.payload).ok())
            .map(|t| t.arming);
        self.arm_schedule(&s, arming).await?;
        self.wake_scheduler();
        Ok(self.schedule_arn(&s.group_name, &s.name))
    }

    pub async fn delete_schedule(&self, group: &str, name: &str) -> Result<(), EventsError> {
        self.get_schedule(group, name).await?;
        let key = schedule_key(group, name);
        self.store.delete_document(SCHEDULE, &key).await?;
        self.store.cancel_timer(SCHEDULE_TIMER, &key).await?;
        Ok(())
    }

    /// Sets (or cancels) a schedule's timer for its first tick from now.
    async fn arm_schedule(&self, s: &Schedule, arming: Option<String>) -> Result<(), EventsError> {
        let key = s.key();
        let now = self.clock.now_ms();
        let armable = s.enabled() && s.completed_ms.is_none();
        match armable.then(|| s.first_tick(now)).flatten() {
            Some(tick) => {
                let payload = Tick {
                    tick,
                    arming: arming.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                };
                self.store
                    .set_timer(&Timer {
                        kind: SCHEDULE_TIMER.into(),
                        id: key,
                        due_ms: s.due(tick, self.rng.unit()),
                        payload: serde_json::to_string(&payload).map_err(internal)?,
                    })
                    .await?;
            }
            None => {
                self.store.cancel_timer(SCHEDULE_TIMER, &key).await?;
            }
        }
        Ok(())
    }

    /// Sets (or cancels) a rule's timer after PutRule, EnableRule,
    /// DisableRule or DeleteRule. A rule whose schedule is unchanged and
    /// armed keeps its timer.
    pub(crate) async fn arm_rule(&self, bus: &str, name: &str) -> Result<(), EventsError> {
        let key = model::rule_key(bus, name);
        let rule = match self.store.get_document(model::RULE, &key).await? {
            Some(d) => serde_json::from_value::<Rule>(d.value).ok(),
            None => None,
        };
        let schedule = rule
            .as_ref()
            .filter(|r| r.enabled())
            .and_then(|r| Some((r.schedule_expression.clone()?, rule_expression(r)?)));
        let Some((text, e)) = schedule else {
            self.store.cancel_timer(RULE_TIMER, &key).await?;
            return Ok(());
        };
        let armed = self.store.get_timer(RULE_TIMER, &key).await?;
        if armed.is_some_and(|t| {
            serde_json::from_str::<Value>(&t.payload)
                .ok()
                .is_some_and(|p| p["expression"] == text.as_str())
        }) {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let Some(tick) = e.next_after(now, now, &jiff::tz::TimeZone::UTC) else {
            self.store.cancel_timer(RULE_TIMER, &key).await?;
            return Ok(());
        };
        let payload = json!({
            "tick": tick,
            "arming": uuid::Uuid::new_v4().to_string(),
            "expression": text,
        });
        self.store
            .set_timer(&Timer {
                kind: RULE_TIMER.into(),
                id: key,
                due_ms: tick,
                payload: payload.to_string(),
            })
            .await?;
        self.wake_scheduler();
        Ok(())
    }

    // ---- firing

    fn wake_scheduler(&self) {
        self.scheduler_wake.notify_one();
    }

    /// Starts firing due schedules on this node, after arming any
    /// enabled schedule or scheduled rule that lost its timer (a crash
    /// between storing it and arming it).
    pub fn start_scheduling(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.rearm_missing().await {
                tracing::warn!(error = %e, "cannot check schedules' timers");
            }
            me.fire_loop().await;
        });
    }

    async fn rearm_missing(&self) -> Result<(), EventsError> {
        for s in self.list_schedules(None, "").await? {
            if s.enabled()
                && s.completed_ms.is_none()
                && self
                    .store
                    .get_timer(SCHEDULE_TIMER, &s.key())
                    .await?
                    .is_none()
            {
                self.arm_schedule(&s, None).await?;
            }
        }
        for d in self.store.list_documents(model::RULE, "").await? {
            if let Ok(rule) = serde_json::from_value::<Rule>(d.value) {
                if rule.schedule_expression.is_some() {
                    self.arm_rule(&rule.event_bus_name, &rule.name).await?;
                }
            }
        }
        Ok(())
    }

    async fn fire_loop(self: Arc<Self>) {
        loop {
            let mut fired = 0;
            for kind in [SCHEDULE_TIMER, RULE_TIMER, REPLAY_TIMER] {
                let now = self.clock.now_ms();
                match self.store.lease_due_timers(kind, now, LEASE_MS, 64).await {
                    Ok(due) => {
                        fired += due.len();
                        for leased in due {
                            let me = self.clone();
                            tokio::spawn(async move { me.fire(leased).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot take due timers"),
                }
            }
            if fired == 0 {
                // Another node may arm a timer too: look again within a
                // second (a tick is at most that late).
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.scheduler_wake.notified(),
                )
                .await;
            }
        }
    }

    async fn fire(&self, leased: LeasedTimer) {
        let id = leased.timer.id.clone();
        let outcome = match leased.timer.kind.as_str() {
            SCHEDULE_TIMER => self.fire_schedule(&leased).await,
            REPLAY_TIMER => self.fire_replay(&leased).await,
            _ => self.fire_rule(&leased).await,
        };
        if let Err(e) = outcome {
            // The lease runs out and the tick is fired again (stored once).
            tracing::warn!(timer = %id, error = %e, "cannot fire a schedule; trying again");
        }
    }

    async fn fire_schedule(&self, leased: &LeasedTimer) -> Result<(), EventsError> {
        let t = &leased.timer;
        let tick: Tick = serde_json::from_str(&t.payload).map_err(internal)?;
        let (group, name) = t.id.split_once('/').unwrap_or(("", &t.id));
        let s = match self.get_schedule(group, name).await {
            // Completed: its last tick was stored before it was marked.
            Ok(s) if s.enabled() && s.completed_ms.is_none() => s,
            Ok(_)
            | Err(EventsError {
                internal: false, ..
            }) => {
                self.store.settle_timer(leased, None, None).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let arn = self.schedule_arn(group, name);
        let run = ScheduleRun {
            arn: arn.clone(),
            scheduled_ms: tick.tick,
            execution_id: format!("{}-{}", &tick.arming[..8.min(tick.arming.len())], tick.tick),
        };
        let now = self.clock.now_ms();
        let raw = s.target.input.clone().unwrap_or_else(|| "{}".into());
        let mut input = with_context(&raw, &run);
        if let Some(p) = &s.target.event_bridge_parameters {
            // A bus target gets an event whose detail is the input.
            let entry = Entry {
                source: Some(p.source.clone()),
                detail_type: Some(p.detail_type.clone()),
                detail: Some(input),
                resources: vec![arn.clone()],
                ..Default::default()
            };
            let id = uuid::Uuid::new_v4().to_string();
            input = envelope::build(&entry, &id, self.account(), self.region(), tick.tick)
                .map_err(|e| EventsError::validation(e.message))?
                .to_string();
        }
        let delivery = Delivery {
            bus: group.to_string(),
            rule: name.to_string(),
            target: Target {
                id: name.to_string(),
                arn: s.target.arn.clone(),
                role_arn: Some(s.target.role_arn.clone()),
                retry_policy: s.target.retry_policy,
                dead_letter_config: s.target.dead_letter_config.clone(),
                sqs_parameters: s.target.sqs_parameters.clone(),
                ..Default::default()
            },
            input,
            event_id: run.execution_id.clone(),
            accepted_ms: now,
            schedule: Some(run),
            hops: 0,
        };
        self.store_tick(&tick, vec![(String::new(), delivery)])
            .await?;
        metrics::counter!("wisp_schedules_fired_total", "group" => group.to_string(), "schedule" => name.to_string()).increment(1);
        match s.tick_after(tick.tick, now) {
            Some(next) => {
                let payload = Tick {
                    tick: next,
                    arming: tick.arming,
                };
                let payload = serde_json::to_string(&payload).map_err(internal)?;
                let due = s.due(next, self.rng.unit());
                self.store
                    .settle_timer(leased, Some(due), Some(payload))
                    .await?;
            }
            None => {
                // Done: deleted, or marked so that nothing arms it again
                // (a restart re-arms schedules that lost their timer), and
                // only then the timer let go.
                match s.action_after_completion.as_str() {
                    "DELETE" => {
                        self.store.delete_document(SCHEDULE, &t.id).await?;
                    }
                    _ => self.mark_completed(&t.id, now).await?,
                }
                self.store.settle_timer(leased, None, None).await?;
            }
        }
        Ok(())
    }

    async fn fire_rule(&self, leased: &LeasedTimer) -> Result<(), EventsError> {
        let t = &leased.timer;
        let tick: Tick = serde_json::from_str(&t.payload).map_err(internal)?;
        let (bus, name) = t.id.rsplit_once('/').unwrap_or(("", &t.id));
        let rule = match self.get_rule(bus, name).await {
            Ok((r, _)) if r.enabled() => r,
            Ok(_)
            | Err(EventsError {
                internal: false, ..
            }) => {
                self.store.settle_timer(leased, None, None).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(e) = rule_expression(&rule) else {
            self.store.settle_timer(leased, None, None).await?;
            return Ok(());
        };
        let now = self.clock.now_ms();
        let rule_arn = self.rule_arn(bus, name);
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account(),
            "time": envelope::rfc3339(tick.tick),
            "region": self.region(),
            "resources": [rule_arn],
            "detail": {},
        });
        metrics::counter!("wisp_events_in_total", "bus" => bus.to_string()).increment(1);
        metrics::counter!("wisp_events_matched_total", "bus" => bus.to_string(), "rule" => name.to_string()).increment(1);
        let deliveries = self
            .deliveries_for(bus, &rule, &event, now, 0)
            .into_iter()
            .map(|d| (d.target.id.clone(), d))
            .collect();
        self.store_tick(&tick, deliveries).await?;
        let next = e.next_after(tick.tick.max(now), tick.tick, &jiff::tz::TimeZone::UTC);
        let mut payload: Value = serde_json::from_str(&t.payload).map_err(internal)?;
        payload["tick"] = json!(next);
        self.store
            .settle_timer(leased, next, Some(payload.to_string()))
            .await?;
        Ok(())
    }

    /// Marks a schedule's last tick fired (unless it changed meanwhile:
    /// an update armed it again).
    async fn mark_completed(&self, key: &str, now_ms: i64) -> Result<(), EventsError> {
        let Some(d) = self.store.get_document(SCHEDULE, key).await? else {
            return Ok(());
        };
        let mut s: Schedule = serde_json::from_value(d.value).map_err(internal)?;
        s.completed_ms = Some(now_ms);
        let value = serde_json::to_value(&s).map_err(internal)?;
        match self
            .store
            .update_document(SCHEDULE, key, &value, d.revision)
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a tick's deliveries, each once under the tick's id.
    async fn store_tick(
        &self,
        tick: &Tick,
        deliveries: Vec<(String, Delivery)>,
    ) -> Result<(), EventsError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let entries = deliveries
            .into_iter()
            .map(|(target, d)| {
                Ok(SendEntry {
                    body: serde_json::to_string(&d).map_err(internal)?,
                    message_id: Some(format!("{}@{}#{target}", tick.arming, tick.tick)),
                    once_for_ms: Some(ONCE_MS),
                    ..SendEntry::default()
                })
            })
            .collect::<Result<Vec<_>, EventsError>>()?;
        self.deliveries().await?;
        for result in self.sqs.send(DELIVERIES, &entries, "scheduler").await? {
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn schedule(expression: &str, tz: Option<&str>) -> Schedule {
        Schedule {
            name: "s".into(),
            group_name: "default".into(),
            schedule_expression: expression.into(),
            schedule_expression_timezone: tz.map(Into::into),
            state: "ENABLED".into(),
            action_after_completion: "NONE".into(),
            target: ScheduleTarget {
                arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
                role_arn: "arn:aws:iam::000000000000:role/r".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn missed_ticks_fire_once_then_the_schedule_goes_on_from_now() {
        let s = schedule("rate(5 minutes)", None);
        let fired = ms("2026-12-04T00:05:00Z");
        // Down for an hour: the next tick is the first after now, on the
        // rate's phase.
        let now = ms("2026-12-04T01:07:30Z");
        assert_eq!(s.tick_after(fired, now), Some(ms("2026-12-04T01:10:00Z")));
        // On time: simply the next.
        assert_eq!(
            s.tick_after(fired, fired + 200),
            Some(ms("2026-12-04T00:10:00Z"))
        );
    }

    #[test]
    fn start_and_end_dates_bound_the_ticks() {
        let mut s = schedule("cron(0 9 * * ? *)", Some("Europe/Berlin"));
        s.start_ms = Some(ms("2026-12-10T00:00:00Z"));
        s.end_ms = Some(ms("2026-12-11T12:00:00Z"));
        let now = ms("2026-12-04T00:00:00Z");
        let first = s.first_tick(now).unwrap();
        assert_eq!(first, ms("2026-12-10T08:00:00Z"));
        let second = s.tick_after(first, first).unwrap();
        assert_eq!(second, ms("2026-12-11T08:00:00Z"));
        assert_eq!(s.tick_after(second, second), None);
        // A rate fires first at its start date, or a period from now.
        let mut r = schedule("rate(1 hour)", None);
        assert_eq!(r.first_tick(now), Some(now + 3_600_000));
        r.start_ms = Some(ms("2026-12-10T00:30:00Z"));
        assert_eq!(r.first_tick(now), Some(ms("2026-12-10T00:30:00Z")));
        r.start_ms = Some(ms("2026-12-01T00:30:00Z"));
        assert_eq!(r.first_tick(now), Some(ms("2026-12-04T00:30:00Z")));
    }

    #[test]
    fn the_flexible_window_delays_within_its_minutes() {
        let mut s = schedule("rate(1 hour)", None);
        assert_eq!(s.due(1_000, 0.7), 1_000);
        s.flexible_window_minutes = Some(15);
        assert_eq!(s.due(1_000, 0.0), 1_000);
        assert_eq!(s.due(1_000, 0.5), 1_000 + 450_000);
        assert!(s.due(1_000, 0.9999) < 1_000 + 900_000);
    }

    #[test]
    fn a_one_time_schedule_has_one_tick() {
        let s = schedule("at(2026-12-24T18:00:00)", Some("Europe/Berlin"));
        let now = ms("2026-12-04T00:00:00Z");
        let tick = s.first_tick(now).unwrap();
        assert_eq!(tick, ms("2026-12-24T17:00:00Z"));
        assert_eq!(s.tick_after(tick, tick + 5), None);
        assert_eq!(s.first_tick(ms("2026-12-25T00:00:00Z")), None);
        // Passed within its minute: fires at once (AWS's precision is a
        // minute); passed longer ago: never.
        let late = ms("2026-12-24T17:00:42Z");
        assert_eq!(s.first_tick(late), Some(late));
        assert_eq!(s.first_tick(ms("2026-12-24T17:01:00Z")), None);
        // A one-time schedule ignores its start and end dates.
        let mut dated = s.clone();
        dated.end_ms = Some(ms("2026-12-01T00:00:00Z"));
        assert_eq!(dated.first_tick(ms("2026-12-04T00:00:00Z")), Some(tick));
    }

    #[test]
    fn targets_and_fields_are_checked_with_aws_errors() {
        let mut ok = schedule("rate(1 minute)", None);
        ok.check().unwrap();
        assert_eq!(
            ok.target.retry_policy.unwrap().maximum_retry_attempts,
            Some(185)
        );
        type Change = Box<dyn Fn(&mut Schedule)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "expression",
                Box::new(|s| s.schedule_expression = "rate(1 minutes)".into()),
            ),
            (
                "zone",
                Box::new(|s| s.schedule_expression_timezone = Some("Nowhere/City".into())),
            ),
            ("name", Box::new(|s| s.name = "a/b".into())),
            ("state", Box::new(|s| s.state = "ON".into())),
            (
                "window",
                Box::new(|s| s.flexible_window_minutes = Some(1441)),
            ),
            (
                "dates",
                Box::new(|s| (s.start_ms, s.end_ms) = (Some(10), Some(5))),
            ),
            (
                "universal",
                Box::new(|s| s.target.arn = "arn:aws:scheduler:::aws-sdk:sqs:sendMessage".into()),
            ),
            (
                "ecs",
                Box::new(|s| {
                    s.target.other.insert("EcsParameters".into(), json!({}));
                }),
            ),
            (
                "bus needs parameters",
                Box::new(|s| {
                    s.target.arn = "arn:aws:events:us-east-1:000000000000:event-bus/default".into()
                }),
            ),
            (
                "retry",
                Box::new(|s| {
                    s.target.retry_policy = Some(RetryPolicy {
                        maximum_retry_attempts: Some(186),
                        maximum_event_age_in_seconds: None,
                    })
                }),
            ),
        ];
        for (what, change) in cases {
            let mut s = schedule("rate(1 minute)", None);
            change(&mut s);
            let e = s.check().expect_err(what);
            assert_eq!(e.error_type, "ValidationException", "{what}");
        }
        let mut bus = schedule("rate(1 minute)", None);
        bus.target.arn = "arn:aws:events:us-east-1:000000000000:event-bus/default".into();
        bus.target.event_bridge_parameters = Some(EventBridgeParameters {
            detail_type: "Tick".into(),
            source: "cron".into(),
        });
        bus.check().unwrap();
        bus.target.input = Some("[1]".into());
        assert!(
            bus.check().is_err(),
            "a bus target's input is a detail object"
        );
    }
}
