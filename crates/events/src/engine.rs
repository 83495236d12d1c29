//! Buses and rules (stored as documents), PutEvents, and the rule sets
//! each node keeps compiled per bus (dropped when a rule changes, here or
//! on another node).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wisp_core::clock::{Clock, Rng};
use wisp_core::pattern::Pattern;
use wisp_dispatch::AsyncQueue;
use wisp_queues::{SendEntry, Sqs};
use wisp_store::{Document, Store, StoreError};

use crate::deliver::{Delivery, DELIVERIES};
use crate::envelope::{self, Context, Entry, EntryError, Input};
use crate::index::RuleSet;
use crate::model::{self, Bus, Rule, Target, BUS, DEFAULT_BUS, RULE};
use crate::EventsError;

/// What starts a state machine's execution for a rule or a schedule:
/// the workflows engine, which sits above this crate.
#[async_trait::async_trait]
pub trait Starter: Send + Sync {
    /// Starts an execution of the state machine `arn` with `input`;
    /// `Err((retry, message))` if it cannot (retry: trying again may help).
    async fn start_execution(&self, arn: &str, input: &str) -> Result<(), (bool, String)>;
}

/// One entry's outcome in PutEvents.
pub type EntryResult = Result<String, EntryError>;

pub struct Events {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sqs: Arc<Sqs>,
    pub(crate) queue: Arc<AsyncQueue>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Rng>,
    /// Compiled rules by bus.
    rules: Mutex<HashMap<String, Arc<RuleSet>>>,
    /// Compiled archives by bus.
    pub(crate) archives: crate::archive::Archives,
    /// The HTTP client and state of API destinations.
    pub(crate) outbound: crate::http::Outbound,
    /// What `wisp events tail` reads.
    pub(crate) tail: crate::tail::Tail,
    /// Starts state machine executions (targets of rules and schedules);
    /// set once workflows are wired.
    pub(crate) starter: std::sync::OnceLock<Arc<dyn Starter>>,
    /// Wakes this node's scheduler when a timer is armed here.
    pub(crate) scheduler_wake: tokio::sync::Notify,
}

impl Events {
    pub fn new(
        store: Arc<dyn Store>,
        sqs: Arc<Sqs>,
        queue: Arc<AsyncQueue>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Arc<Events> {
        Arc::new(Events {
            store,
            sqs,
            queue,
            clock,
            rng,
            rules: Mutex::new(HashMap::new()),
            archives: Default::default(),
            tail: Default::default(),
            outbound: Default::default(),
            starter: std::sync::OnceLock::new(),
            scheduler_wake: tokio::sync::Notify::new(),
        })
    }

    pub fn region(&self) -> &str {
        self.sqs.region()
    }

    /// Lets rules and schedules start executions of state machines.
    pub fn set_starter(&self, starter: Arc<dyn Starter>) {
        let _ = self.starter.set(starter);
    }

    pub fn account(&self) -> &str {
        self.sqs.account()
    }

    pub fn bus_arn(&self, bus: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:event-bus/{bus}",
            self.region(),
            self.account()
        )
    }

    pub fn rule_arn(&self, bus: &str, rule: &str) -> String {
        let scope = match bus {
            DEFAULT_BUS => String::new(),
            other => format!("{other}/"),
        };
        format!(
            "arn:aws:events:{}:{}:rule/{scope}{rule}",
            self.region(),
            self.account()
        )
    }

    /// A bus named by its name or ARN (`None`: the default bus).
    pub fn bus_name(&self, given: Option<&str>) -> Result<String, EventsError> {
        let name = match given {
            None | Some("") => return Ok(DEFAULT_BUS.into()),
            Some(g) if g.starts_with("arn:") => g
                .split_once(":event-bus/")
                .map(|(_, n)| n.to_string())
                .ok_or_else(|| EventsError::validation(format!("{g} is not an event bus ARN.")))?,
            Some(g) => g.to_string(),
        };
        model::check_bus_name(&name)?;
        Ok(name)
    }

    /// Drops what is compiled of a bus's rules (a rule changed).
    pub fn forget(&self, bus: &str) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.remove(bus);
        }
    }

    /// Follows a changed document (from any node).
    pub fn changed(&self, kind: &str, name: &str) {
        match kind {
            RULE => {
                if let Some((bus, _)) = name.rsplit_once('/') {
                    self.forget(bus);
                }
            }
            BUS => self.forget(name),
            crate::archive::ARCHIVE => self.archives.forget_all(),
            _ => {}
        }
    }

    pub fn forget_all(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
        self.archives.forget_all();
    }

    // ---- documents

    /// A document of `kind` and its revision; `what` names the kind in
    /// the not-found message.
    pub(crate) async fn get_doc<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        what: &str,
        name: &str,
    ) -> Result<(T, u64), EventsError> {
        match self.store.get_document(kind, name).await? {
            Some(d) => Ok((
                serde_json::from_value(d.value).map_err(internal)?,
                d.revision,
            )),
            None => Err(EventsError::not_found(format!(
                "{what} {name} does not exist."
            ))),
        }
    }

    /// Creates a document (`revision` `None`; a taken name is
    /// ResourceAlreadyExistsException) or replaces it at `revision`
    /// (ConcurrentModificationException if another write came first).
    pub(crate) async fn put_doc<T: serde::Serialize>(
        &self,
        kind: &str,
        what: &str,
        name: &str,
        value: &T,
        revision: Option<u64>,
    ) -> Result<(), EventsError> {
        let value = to_value(value)?;
        let written = match revision {
            Some(r) => self.store.update_document(kind, name, &value, r).await,
            None => self.store.create_document(kind, name, &value).await,
        };
        match written {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) if revision.is_none() => Err(EventsError::exists(
                format!("{what} {name} already exists."),
            )),
            Err(e) => Err(e.into()),
        }
    }

    // ---- buses

    pub async fn get_bus(&self, name: &str) -> Result<Option<Bus>, EventsError> {
        match self.store.get_document(BUS, name).await? {
            Some(d) => Ok(Some(serde_json::from_value(d.value).map_err(internal)?)),
            None if name == DEFAULT_BUS => Ok(Some(Bus {
                name: DEFAULT_BUS.into(),
                ..Default::default()
            })),
            None => Ok(None),
        }
    }

    pub async fn require_bus(&self, name: &str) -> Result<Bus, EventsError> {
        self.get_bus(name)
            .await?
            .ok_or_else(|| EventsError::not_found(format!("Event bus {name} does not exist.")))
    }

    pub async fn create_bus(&self, mut bus: Bus) -> Result<Bus, EventsError> {
        model::check_bus_name(&bus.name)?;
        if bus.name == DEFAULT_BUS || self.get_bus(&bus.name).await?.is_some() {
            return Err(EventsError::exists(format!(
                "Event bus {} already exists.",
                bus.name
            )));
        }
        check_description(bus.description.as_deref())?;
        let now = self.clock.now_ms();
        (bus.created_ms, bus.modified_ms) = (now, now);
        match self
            .store
            .create_document(BUS, &bus.name, &to_value(&bus)?)
            .await
        {
            Ok(_) => Ok(bus),
            Err(StoreError::Conflict(_)) => Err(EventsError::exists(format!(
                "Event bus {} already exists.",
                bus.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes a bus by `change`, by compare-and-set (the default bus is
    /// stored on its first change).
    pub async fn update_bus(
        &self,
        name: &str,
        change: impl Fn(&mut Bus) -> Result<(), EventsError>,
    ) -> Result<Bus, EventsError> {
        loop {
            let stored = self.store.get_document(BUS, name).await?;
            let mut bus = match &stored {
                Some(d) => serde_json::from_value(d.value.clone()).map_err(internal)?,
                None => self.require_bus(name).await?,
            };
            change(&mut bus)?;
            bus.modified_ms = self.clock.now_ms();
            let value = to_value(&bus)?;
            let written = match &stored {
                Some(d) => {
                    self.store
                        .update_document(BUS, name, &value, d.revision)
                        .await
                }
                None => self.store.create_document(BUS, name, &value).await,
            };
            match written {
                Ok(_) => return Ok(bus),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every bus, the default one first, by name.
    pub async fn list_buses(&self, prefix: &str) -> Result<Vec<Bus>, EventsError> {
        let mut out = Vec::new();
        let stored = self.store.list_documents(BUS, prefix).await?;
        if DEFAULT_BUS.starts_with(prefix) && !stored.iter().any(|d| d.name == DEFAULT_BUS) {
            out.push(Bus {
                name: DEFAULT_BUS.into(),
                ..Default::default()
            });
        }
        for d in stored {
            out.push(serde_json::from_value(d.value).map_err(internal)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes a bus and its rules. Deleting one that is not there
    /// succeeds, as on AWS.
    pub async fn delete_bus(&self, name: &str) -> Result<(), EventsError> {
        if name == DEFAULT_BUS {
            return Err(EventsError::validation("Cannot delete event bus default."));
        }
        model::check_bus_name(name)?;
        for d in self.rule_documents(name).await? {
            self.store.delete_document(RULE, &d.name).await?;
        }
        self.store.delete_document(BUS, name).await?;
        self.forget(name);
        Ok(())
    }

    // ---- rules

    async fn rule_documents(&self, bus: &str) -> Result<Vec<Document>, EventsError> {
        let prefix = format!("{bus}/");
        Ok(self
            .store
            .list_documents(RULE, &prefix)
            .await?
            .into_iter()
            // A bus `a` must not see the rules of bus `a/b`.
            .filter(|d| !d.name[prefix.len()..].contains('/'))
            .collect())
    }

    pub async fn list_rules(&self, bus: &str) -> Result<Vec<Rule>, EventsError> {
        self.require_bus(bus).await?;
        self.rule_documents(bus)
            .await?
            .into_iter()
            .map(|d| serde_json::from_value(d.value).map_err(internal))
            .collect()
    }

    pub async fn get_rule(&self, bus: &str, name: &str) -> Result<(Rule, u64), EventsError> {
        model::check_rule_name(name)?;
        self.require_bus(bus).await?;
        match self
            .store
            .get_document(RULE, &model::rule_key(bus, name))
            .await?
        {
            Some(d) => Ok((
                serde_json::from_value(d.value).map_err(internal)?,
                d.revision,
            )),
            None => Err(EventsError::not_found(format!(
                "Rule {name} does not exist on EventBus {bus}."
            ))),
        }
    }

    /// PutRule: creates the rule or replaces its definition (its targets
    /// and tags stay).
    pub async fn put_rule(&self, given: Rule) -> Result<String, EventsError> {
        model::check_rule_name(&given.name)?;
        let bus = given.event_bus_name.clone();
        self.require_bus(&bus).await?;
        check_description(given.description.as_deref())?;
        match (&given.event_pattern, &given.schedule_expression) {
            (None, None) => {
                return Err(EventsError::validation(
                    "Parameter(s) EventPattern or ScheduleExpression must be specified.",
                ))
            }
            (Some(p), _) => {
                Pattern::parse(p).map_err(|e| EventsError::pattern(e.to_string()))?;
            }
            _ => {}
        }
        if let Some(e) = &given.schedule_expression {
            crate::scheduler::check_rule_schedule(e)?;
        }
        if given.schedule_expression.is_some() && bus != DEFAULT_BUS {
            return Err(EventsError::validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
        if ![
            "ENABLED",
            "DISABLED",
            "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
        ]
        .contains(&given.state.as_str())
        {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]",
                given.state
            )));
        }
        let key = model::rule_key(&bus, &given.name);
        loop {
            let written = match self.store.get_document(RULE, &key).await? {
                Some(d) => {
                    let old: Rule = serde_json::from_value(d.value).map_err(internal)?;
                    let mut rule = given.clone();
                    rule.targets = old.targets;
                    rule.tags.extend(old.tags);
                    self.store
                        .update_document(RULE, &key, &to_value(&rule)?, d.revision)
                        .await
                }
                None => {
                    if self.rule_documents(&bus).await?.len() >= model::MAX_RULES_PER_BUS {
                        return Err(EventsError::limit(format!(
                            "The requested resource exceeds the maximum number allowed: {} rules on a bus.",
                            model::MAX_RULES_PER_BUS
                        )));
                    }
                    self.store
                        .create_document(RULE, &key, &to_value(&given)?)
                        .await
                }
            };
            match written {
                Ok(_) => break,
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.forget(&bus);
        self.arm_rule(&bus, &given.name).await?;
        Ok(self.rule_arn(&bus, &given.name))
    }

    /// Changes a rule by `change`, by compare-and-set.
    pub async fn update_rule<T>(
        &self,
        bus: &str,
        name: &str,
        change: impl Fn(&mut Rule) -> Result<T, EventsError>,
    ) -> Result<T, EventsError> {
        loop {
            let (mut rule, revision) = self.get_rule(bus, name).await?;
            let out = change(&mut rule)?;
            let key = model::rule_key(bus, name);
            match self
                .store
                .update_document(RULE, &key, &to_value(&rule)?, revision)
                .await
            {
                Ok(_) => {
                    self.forget(bus);
                    self.arm_rule(bus, name).await?;
                    return Ok(out);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// DeleteRule: a rule with targets stays unless forced. Deleting one
    /// that is not there succeeds.
    pub async fn delete_rule(&self, bus: &str, name: &str, force: bool) -> Result<(), EventsError> {
        match self.get_rule(bus, name).await {
            Ok((rule, _)) if !rule.targets.is_empty() && !force => Err(EventsError::validation(
                "Rule can't be deleted since it has targets.",
            )),
            Ok(_) => {
                self.store
                    .delete_document(RULE, &model::rule_key(bus, name))
                    .await?;
                self.forget(bus);
                self.arm_rule(bus, name).await?;
                Ok(())
            }
            Err(e) if e.error_type == "ResourceNotFoundException" => {
                self.require_bus(bus).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// PutTargets: each target added or replaced (by id) on its own;
    /// the refused ones with their error code and message.
    pub async fn put_targets(
        &self,
        bus: &str,
        rule: &str,
        targets: Vec<Target>,
    ) -> Result<Vec<(String, &'static str, String)>, EventsError> {
        if targets.is_empty() || targets.len() > 100 {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length between 1 and 100",
            ));
        }
        for t in &targets {
            t.check_shape()?;
        }
        let mut failed = Vec::new();
        let mut valid = Vec::new();
        for t in targets {
            match t.check().and_then(|_| self.check_target_arn(bus, &t.arn)) {
                Ok(()) => valid.push(t),
                Err(e) => failed.push((t.id, e.error_type, e.message)),
            }
        }
        self.update_rule(bus, rule, |r| {
            let mut refused = Vec::new();
            for t in &valid {
                match r.targets.iter().position(|have| have.id == t.id) {
                    Some(i) => r.targets[i] = t.clone(),
                    None if r.targets.len() >= model::MAX_TARGETS_PER_RULE => refused.push((
                        t.id.clone(),
                        "LimitExceededException",
                        format!(
                            "The requested resource exceeds the maximum number allowed: {} targets on a rule.",
                            model::MAX_TARGETS_PER_RULE
                        ),
                    )),
                    None => r.targets.push(t.clone()),
                }
            }
            Ok(refused)
        })
        .await
        .map(|refused| failed.into_iter().chain(refused).collect())
    }

    fn check_target_arn(&self, bus: &str, arn: &str) -> Result<(), EventsError> {
        let supported = [":lambda:", ":sqs:", ":events:", ":stateMachine:"];
        if !arn.starts_with("arn:") || !supported.iter().any(|s| arn.contains(s)) {
            return Err(EventsError::validation(format!(
                "Parameter {arn} is not valid: wisp delivers to Lambda functions, SQS queues, event buses, API destinations and state machines."
            )));
        }
        if arn.contains(":events:") && self.bus_name(Some(arn)).ok().as_deref() == Some(bus) {
            return Err(EventsError::validation(
                "A rule cannot target the event bus it is on.",
            ));
        }
        Ok(())
    }

    pub async fn remove_targets(
        &self,
        bus: &str,
        rule: &str,
        ids: Vec<String>,
    ) -> Result<Vec<(String, &'static str, String)>, EventsError> {
        if ids.is_empty() || ids.len() > 100 {
            return Err(EventsError::validation(
                "1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must have length between 1 and 100",
            ));
        }
        self.update_rule(bus, rule, |r| {
            let mut failed = Vec::new();
            for id in &ids {
                match r.targets.iter().position(|t| &t.id == id) {
                    Some(i) => {
                        r.targets.remove(i);
                    }
                    None => failed.push((
                        id.clone(),
                        "ResourceNotFoundException",
                        format!("Target {id} does not exist on rule {}.", r.name),
                    )),
                }
            }
            Ok(failed)
        })
        .await
    }

    /// The compiled rules of a bus, cached.
    pub async fn rule_set(&self, bus: &str) -> Result<Arc<RuleSet>, EventsError> {
        if let Some(set) = self.rules.lock().ok().and_then(|r| r.get(bus).cloned()) {
            return Ok(set);
        }
        let rules = self
            .rule_documents(bus)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value::<Rule>(d.value).ok());
        let set = Arc::new(RuleSet::new(rules));
        if let Ok(mut cache) = self.rules.lock() {
            cache.insert(bus.to_string(), set.clone());
        }
        Ok(set)
    }

    // ---- events

    /// PutEvents: each entry accepted (its event id) or refused on its
    /// own. Accepted means: every delivery it matched is stored; if
    /// storing fails, every entry that needed it is refused with
    /// InternalFailure, so nothing is acknowledged that could be lost.
    pub async fn put_events(&self, entries: Vec<Entry>) -> Result<Vec<EntryResult>, EventsError> {
        if entries.is_empty() || entries.len() > envelope::MAX_ENTRIES {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {}",
                envelope::MAX_ENTRIES
            )));
        }
        let size: usize = entries.iter().map(Entry::size).sum();
        if size > envelope::MAX_ENTRIES_BYTES {
            return Err(EventsError::validation(
                "Total size of the entries in the request is over the limit.",
            ));
        }
        let now = self.clock.now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut events = Vec::new();
        for entry in &entries {
            let id = uuid::Uuid::new_v4().to_string();
            let built = match self.bus_name(entry.event_bus_name.as_deref()) {
                Ok(bus) => match self.get_bus(&bus).await? {
                    Some(_) => envelope::build(entry, &id, self.account(), self.region(), now)
                        .map(|e| (bus, e)),
                    None => Err(EntryError {
                        code: "ResourceNotFoundException",
                        message: format!("Event bus {bus} does not exist."),
                    }),
                },
                Err(e) => Err(EntryError {
                    code: "InvalidArgument",
                    message: e.message,
                }),
            };
            match built {
                Ok((bus, event)) => {
                    events.push((results.len(), bus, event));
                    results.push(Ok(id));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let accepted = self
            .accept(events.iter().map(|(_, bus, e)| (bus.as_str(), e)), now, 0)
            .await;
        if let Err(e) = accepted {
            tracing::warn!(error = %e, "could not store event deliveries");
            for (i, _, _) in &events {
                results[*i] = Err(EntryError {
                    code: "InternalFailure",
                    message: "The event could not be stored; send it again.".into(),
                });
            }
        }
        Ok(results)
    }

    /// Matches events against their buses' rules and stores a delivery
    /// for every matched rule and target, and each event in the archives
    /// it matches, durably, before returning.
    /// `hops` counts the buses the events came through before (0 for
    /// PutEvents), so a loop of buses forwarding to each other ends.
    pub async fn accept<'a>(
        &self,
        events: impl Iterator<Item = (&'a str, &'a Value)>,
        now_ms: i64,
        hops: u8,
    ) -> Result<usize, EventsError> {
        let events: Vec<(&str, &Value)> = events.collect();
        self.archive(&events, now_ms).await?;
        let mut deliveries = Vec::new();
        for (bus, event) in events {
            metrics::counter!("wisp_events_in_total", "bus" => bus.to_string()).increment(1);
            let set = self.rule_set(bus).await?;
            let tailed = self.tail.watched(now_ms);
            let mut matched = Vec::new();
            for compiled in set.matching(event) {
                let rule = &compiled.rule;
                if tailed {
                    matched.push(rule.name.clone());
                }
                metrics::counter!("wisp_events_matched_total", "bus" => bus.to_string(), "rule" => rule.name.clone()).increment(1);
                for delivery in self.deliveries_for(bus, rule, event, now_ms, hops) {
                    deliveries.push(SendEntry {
                        body: serde_json::to_string(&delivery).map_err(internal)?,
                        ..SendEntry::default()
                    });
                }
            }
            if tailed {
                self.tail.record(bus, event, matched, now_ms);
            }
        }
        let n = deliveries.len();
        if n > 0 {
            self.deliveries().await?;
            for result in self.sqs.send(DELIVERIES, &deliveries, "events").await? {
                result?;
            }
        }
        Ok(n)
    }

    /// `wisp events tail`: what `bus` accepted on this node after `after`
    /// (`None`: from now on; the answer's last seq is where to go on).
    pub fn tail(&self, bus: &str, after: Option<u64>) -> (Vec<crate::tail::Tailed>, u64) {
        let now = self.clock.now_ms();
        let after = after.unwrap_or_else(|| self.tail.last());
        let events = self.tail.read(bus, after, now);
        let last = events.last().map_or(after, |t| t.seq);
        (events, last)
    }

    /// What a matched rule's targets get of an event: one delivery each.
    pub(crate) fn deliveries_for(
        &self,
        bus: &str,
        rule: &Rule,
        event: &Value,
        now_ms: i64,
        hops: u8,
    ) -> Vec<Delivery> {
        let rule_arn = self.rule_arn(bus, &rule.name);
        let cx = Context {
            rule_name: &rule.name,
            rule_arn: &rule_arn,
            ingestion_ms: now_ms,
        };
        let mut out = Vec::with_capacity(rule.targets.len());
        for target in &rule.targets {
            let input = match Input::of(target) {
                Ok(i) => i.render(event, &cx),
                Err(e) => {
                    tracing::warn!(rule = %rule.name, target = %target.id, error = %e, "target input cannot be made");
                    continue;
                }
            };
            out.push(Delivery {
                bus: bus.to_string(),
                rule: rule.name.clone(),
                target: target.clone(),
                input,
                event_id: event["id"].as_str().unwrap_or_default().to_string(),
                accepted_ms: now_ms,
                schedule: None,
                hops,
            });
        }
        out
    }

    /// The queue deliveries wait on, made on first use.
    pub(crate) async fn deliveries(&self) -> Result<(), EventsError> {
        let attributes = internal_queue_attributes(60);
        self.sqs.internal_queue(DELIVERIES, &attributes).await?;
        Ok(())
    }

    /// TestEventPattern.
    pub fn test_pattern(pattern: &str, event: &str) -> Result<bool, EventsError> {
        let pattern = Pattern::parse(pattern).map_err(|e| EventsError::pattern(e.to_string()))?;
        let event: Value = serde_json::from_str(event)
            .map_err(|_| EventsError::validation("Parameter Event is not valid."))?;
        for field in [
            "id",
            "account",
            "source",
            "time",
            "region",
            "resources",
            "detail-type",
        ] {
            if event.get(field).is_none() {
                return Err(EventsError::validation(format!(
                    "Parameter Event is not valid. Reason: Provided JSON does not contain required field '{field}'"
                )));
            }
        }
        Ok(pattern.matches(&event))
    }
}

/// The attributes of the queues the bus keeps for itself: messages up
/// to 1 MiB (an event of 256 KiB plus its delivery), kept 14 days.
pub(crate) fn internal_queue_attributes(visibility_seconds: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "VisibilityTimeout".to_string(),
            visibility_seconds.to_string(),
        ),
        ("MaximumMessageSize".to_string(), "1048576".to_string()),
        ("MessageRetentionPeriod".to_string(), "1209600".to_string()),
    ])
}

fn check_description(d: Option<&str>) -> Result<(), EventsError> {
    match d {
        Some(d) if d.chars().count() > 512 => Err(EventsError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 512",
        )),
        _ => Ok(()),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, EventsError> {
    serde_json::to_value(v).map_err(internal)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> EventsError {
    EventsError::internal(e.to_string())
}
