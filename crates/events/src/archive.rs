//! Archives and replays. An archive keeps the events of one bus that
//! match its pattern (all of them without one), stored with the
//! deliveries before PutEvents answers, for its retention. A replay sends
//! an archive's events from a time range back to the bus, to all its rules
//! or the ones named, each carrying `replay-name`; it runs a page at a
//! time from a durable timer, so a replay survives the node running it,
//! and a page sent twice is stored once.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wisp_core::pattern::Pattern;
use wisp_queues::SendEntry;
use wisp_store::{LeasedTimer, StoreError, Timer};

use crate::deliver::DELIVERIES;
use crate::engine::{internal, Events};
use crate::EventsError;

/// Document kinds.
pub const ARCHIVE: &str = "archive";
pub const REPLAY: &str = "replay";
/// The timer kind of running replays.
pub(crate) const REPLAY_TIMER: &str = "replay";
/// Events replayed per timer firing.
const PAGE: usize = 100;
/// How long a replayed delivery is stored once by its id.
const ONCE_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Archive {
    pub archive_name: String,
    /// The bus's name (its ARN is shown).
    pub bus: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    /// 0: kept for good.
    #[serde(default)]
    pub retention_days: u32,
    #[serde(default)]
    pub created_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Replay {
    pub replay_name: String,
    pub archive: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub bus: String,
    /// Rules (by name, on `bus`) to replay to; empty: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    pub event_start_ms: i64,
    pub event_end_ms: i64,
    /// STARTING, RUNNING, CANCELLING, COMPLETED, CANCELLED or FAILED.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub replay_start_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_end_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_last_replayed_ms: Option<i64>,
    /// Where the next page starts.
    #[serde(default)]
    pub cursor: u64,
    #[serde(default)]
    pub replayed: u64,
}

/// One archive as matching needs it.
pub(crate) struct Compiled {
    name: String,
    pattern: Option<Pattern>,
    retention_days: u32,
}

/// The archives of each bus, compiled.
#[derive(Default)]
pub(crate) struct Archives(std::sync::Mutex<HashMap<String, Arc<Vec<Compiled>>>>);

impl Archives {
    pub(crate) fn forget_all(&self) {
        if let Ok(mut all) = self.0.lock() {
            all.clear();
        }
    }
}

pub fn check_archive_name(name: &str) -> Result<(), EventsError> {
    crate::model::check_chars("archiveName", name, 48, &[])
}

pub fn check_replay_name(name: &str) -> Result<(), EventsError> {
    crate::model::check_chars("replayName", name, 64, &[])
}

impl Events {
    pub fn archive_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:archive/{name}",
            self.region(),
            self.account()
        )
    }

    pub fn replay_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:replay/{name}",
            self.region(),
            self.account()
        )
    }

    /// An archive named by its name or ARN.
    pub fn archive_name(given: &str) -> String {
        given
            .split_once(":archive/")
            .map_or(given, |(_, n)| n)
            .to_string()
    }

    // ---- archives

    pub async fn get_archive(&self, name: &str) -> Result<(Archive, u64), EventsError> {
        check_archive_name(name)?;
        self.get_doc(ARCHIVE, "Archive", name).await
    }

    pub async fn create_archive(&self, mut a: Archive) -> Result<Archive, EventsError> {
        check_archive_name(&a.archive_name)?;
        self.require_bus(&a.bus).await?;
        check_archive_fields(&a)?;
        a.created_ms = self.clock.now_ms();
        self.put_doc(ARCHIVE, "Archive", &a.archive_name.clone(), &a, None)
            .await?;
        self.archives.forget_all();
        Ok(a)
    }

    /// UpdateArchive: the fields given replace the stored ones.
    pub async fn update_archive(
        &self,
        name: &str,
        description: Option<String>,
        pattern: Option<String>,
        retention_days: Option<u32>,
    ) -> Result<Archive, EventsError> {
        loop {
            let (mut a, revision) = self.get_archive(name).await?;
            if let Some(d) = &description {
                a.description = Some(d.clone());
            }
            if let Some(p) = &pattern {
                a.event_pattern = Some(p.clone());
            }
            if let Some(r) = retention_days {
                a.retention_days = r;
            }
            check_archive_fields(&a)?;
            let value = serde_json::to_value(&a).map_err(internal)?;
            match self
                .store
                .update_document(ARCHIVE, name, &value, revision)
                .await
            {
                Ok(_) => {
                    self.archives.forget_all();
                    return Ok(a);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn delete_archive(&self, name: &str) -> Result<(), EventsError> {
        self.get_archive(name).await?;
        self.store.delete_document(ARCHIVE, name).await?;
        self.store.drop_archive(name).await?;
        self.archives.forget_all();
        Ok(())
    }

    pub async fn list_archives(&self, prefix: &str) -> Result<Vec<Archive>, EventsError> {
        Ok(self
            .store
            .list_documents(ARCHIVE, prefix)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    /// An archive's event count and size.
    pub async fn archive_size(&self, name: &str) -> Result<(u64, u64), EventsError> {
        Ok(self.store.archive_size(name).await?)
    }

    async fn bus_archives(&self, bus: &str) -> Result<Arc<Vec<Compiled>>, EventsError> {
        if let Some(a) = self
            .archives
            .0
            .lock()
            .ok()
            .and_then(|a| a.get(bus).cloned())
        {
            return Ok(a);
        }
        let compiled: Vec<Compiled> = self
            .list_archives("")
            .await?
            .into_iter()
            .filter(|a| a.bus == bus)
            .map(|a| Compiled {
                pattern: a
                    .event_pattern
                    .as_deref()
                    .and_then(|p| Pattern::parse(p).ok()),
                name: a.archive_name,
                retention_days: a.retention_days,
            })
            .collect();
        let compiled = Arc::new(compiled);
        if let Ok(mut all) = self.archives.0.lock() {
            all.insert(bus.to_string(), compiled.clone());
        }
        Ok(compiled)
    }

    /// Stores the events of a PutEvents call in the archives they match,
    /// before the call answers. Replayed events are not archived again.
    pub(crate) async fn archive<'a>(
        &self,
        events: &[(&'a str, &'a Value)],
        now_ms: i64,
    ) -> Result<(), EventsError> {
        let mut by_archive: HashMap<(String, u32), Vec<(i64, String)>> = HashMap::new();
        for (bus, event) in events {
            if event.get("replay-name").is_some() {
                continue;
            }
            let archives = self.bus_archives(bus).await?;
            for a in archives.iter() {
                if a.pattern.as_ref().is_none_or(|p| p.matches(event)) {
                    by_archive
                        .entry((a.name.clone(), a.retention_days))
                        .or_default()
                        .push((now_ms, event.to_string()));
                }
            }
        }
        for ((name, days), events) in by_archive {
            let expires = (days > 0).then(|| now_ms + days as i64 * 86_400_000);
            self.store.append_archive(&name, events, expires).await?;
        }
        Ok(())
    }

    // ---- replays

    pub async fn get_replay(&self, name: &str) -> Result<(Replay, u64), EventsError> {
        check_replay_name(name)?;
        self.get_doc(REPLAY, "Replay", name).await
    }

    pub async fn list_replays(&self, prefix: &str) -> Result<Vec<Replay>, EventsError> {
        Ok(self
            .store
            .list_documents(REPLAY, prefix)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    /// StartReplay: stored as STARTING and run from a timer.
    pub async fn start_replay(&self, mut r: Replay) -> Result<Replay, EventsError> {
        check_replay_name(&r.replay_name)?;
        let (archive, _) = self.get_archive(&r.archive).await?;
        if r.bus != archive.bus {
            return Err(EventsError::validation(format!(
                "Parameter Destination.Arn is not valid. Reason: the destination must be the event bus the archive {} is on ({}).",
                archive.archive_name,
                self.bus_arn(&archive.bus)
            )));
        }
        if r.event_start_ms >= r.event_end_ms {
            return Err(EventsError::validation(
                "Parameter EventStartTime is not valid. Reason: EventStartTime must be before EventEndTime.",
            ));
        }
        let now = self.clock.now_ms();
        if r.event_end_ms > now {
            return Err(EventsError::validation(
                "Parameter EventEndTime is not valid. Reason: EventEndTime must not be in the future.",
            ));
        }
        for rule in &r.rules {
            self.get_rule(&r.bus, rule).await?;
        }
        r.state = "STARTING".into();
        r.replay_start_ms = now;
        self.put_doc(REPLAY, "Replay", &r.replay_name.clone(), &r, None)
            .await?;
        self.store
            .set_timer(&Timer {
                kind: REPLAY_TIMER.into(),
                id: r.replay_name.clone(),
                due_ms: now,
                payload: String::new(),
            })
            .await?;
        self.scheduler_wake.notify_one();
        Ok(r)
    }

    /// CancelReplay: a replay still running stops after its page.
    pub async fn cancel_replay(&self, name: &str) -> Result<Replay, EventsError> {
        self.change_replay(name, |r| match r.state.as_str() {
            "STARTING" | "RUNNING" => {
                r.state = "CANCELLING".into();
                Ok(())
            }
            other => Err(EventsError::illegal_status(format!(
                "Replay {name} is {other}: only a starting or running replay can be cancelled."
            ))),
        })
        .await
    }

    async fn change_replay(
        &self,
        name: &str,
        change: impl Fn(&mut Replay) -> Result<(), EventsError>,
    ) -> Result<Replay, EventsError> {
        loop {
            let (mut r, revision) = self.get_replay(name).await?;
            change(&mut r)?;
            let value = serde_json::to_value(&r).map_err(internal)?;
            match self
                .store
                .update_document(REPLAY, name, &value, revision)
                .await
            {
                Ok(_) => return Ok(r),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One page of a replay, fired from its timer.
    pub(crate) async fn fire_replay(&self, leased: &LeasedTimer) -> Result<(), EventsError> {
        let name = &leased.timer.id;
        let (r, _) = match self.get_replay(name).await {
            Ok(r) => r,
            Err(e) if !e.internal => {
                self.store.settle_timer(leased, None, None).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let now = self.clock.now_ms();
        if r.state == "CANCELLING" {
            self.change_replay(name, |r| {
                r.state = "CANCELLED".into();
                r.replay_end_ms = Some(now);
                Ok(())
            })
            .await?;
            self.store.settle_timer(leased, None, None).await?;
            return Ok(());
        }
        if r.state != "STARTING" && r.state != "RUNNING" {
            self.store.settle_timer(leased, None, None).await?;
            return Ok(());
        }
        let page = self
            .store
            .read_archive(&r.archive, r.event_start_ms, r.event_end_ms, r.cursor, PAGE)
            .await?;
        let set = self.rule_set(&r.bus).await?;
        let mut entries = Vec::new();
        for archived in &page {
            let Ok(mut event) = serde_json::from_str::<Value>(&archived.event) else {
                continue;
            };
            event["replay-name"] = Value::String(r.replay_name.clone());
            for compiled in set.matching(&event) {
                let rule = &compiled.rule;
                if !r.rules.is_empty() && !r.rules.contains(&rule.name) {
                    continue;
                }
                for d in self.deliveries_for(&r.bus, rule, &event, now, 0) {
                    entries.push(SendEntry {
                        body: serde_json::to_string(&d).map_err(internal)?,
                        message_id: Some(format!(
                            "replay:{}:{}#{}/{}",
                            r.replay_name, archived.seq, rule.name, d.target.id
                        )),
                        once_for_ms: Some(ONCE_MS),
                        ..SendEntry::default()
                    });
                }
            }
        }
        if !entries.is_empty() {
            self.deliveries().await?;
            for chunk in entries.chunks(10) {
                for result in self.sqs.send(DELIVERIES, chunk, "replay").await? {
                    result?;
                }
            }
        }
        let done = page.len() < PAGE;
        let last = page.last().map(|a| (a.seq, a.time_ms));
        let count = page.len() as u64;
        self.change_replay(name, |r| {
            if let Some((seq, time_ms)) = last {
                r.cursor = seq;
                r.event_last_replayed_ms = Some(time_ms);
            }
            r.replayed += count;
            match (done, r.state.as_str()) {
                (true, "CANCELLING") => {
                    r.state = "CANCELLED".into();
                    r.replay_end_ms = Some(now);
                }
                (true, _) => {
                    r.state = "COMPLETED".into();
                    r.replay_end_ms = Some(now);
                }
                (false, "STARTING") => r.state = "RUNNING".into(),
                _ => {}
            }
            Ok(())
        })
        .await?;
        let next = (!done).then_some(now);
        self.store.settle_timer(leased, next, None).await?;
        Ok(())
    }
}

fn check_archive_fields(a: &Archive) -> Result<(), EventsError> {
    if let Some(p) = &a.event_pattern {
        Pattern::parse(p).map_err(|e| EventsError::pattern(e.to_string()))?;
    }
    if a.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 512)
    {
        return Err(EventsError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 512",
        ));
    }
    Ok(())
}
