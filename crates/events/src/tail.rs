//! What `wisp events tail` shows: the events a node accepted lately, per
//! bus, each with the rules it matched. Kept only while someone tails
//! (a tail asked within the last minute), at most a thousand per bus.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// Most events kept per bus.
const KEPT: usize = 1000;
/// How long after a tail's last look events are still kept for it.
const WATCHED_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize)]
pub struct Tailed {
    pub seq: u64,
    pub time_ms: i64,
    pub event: Value,
    pub rules: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Tail {
    watched_until_ms: AtomicI64,
    next: AtomicU64,
    buses: Mutex<HashMap<String, VecDeque<Tailed>>>,
}

impl Tail {
    pub(crate) fn watched(&self, now_ms: i64) -> bool {
        self.watched_until_ms.load(Ordering::Relaxed) > now_ms
    }

    pub(crate) fn record(&self, bus: &str, event: &Value, rules: Vec<String>, now_ms: i64) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut buses) = self.buses.lock() else {
            return;
        };
        let kept = buses.entry(bus.to_string()).or_default();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(Tailed {
            seq,
            time_ms: now_ms,
            event: event.clone(),
            rules,
        });
    }

    /// The events of `bus` after `after` (0: the last few), and keeps
    /// recording for a while.
    pub(crate) fn read(&self, bus: &str, after: u64, now_ms: i64) -> Vec<Tailed> {
        self.watched_until_ms
            .store(now_ms + WATCHED_MS, Ordering::Relaxed);
        let Ok(buses) = self.buses.lock() else {
            return Vec::new();
        };
        buses
            .get(bus)
            .map(|kept| kept.iter().filter(|t| t.seq > after).cloned().collect())
            .unwrap_or_default()
    }

    /// Where a new tail starts: after everything recorded so far.
    pub(crate) fn last(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}
