//! A Parallel's branches and an inline Map's iterations run as
//! executions of their own (each durable, each with its own history),
//! but GetExecutionHistory shows them inside their parent's history, as
//! AWS does: between `ParallelStateStarted` and `ParallelStateSucceeded`,
//! and between each `MapIterationStarted` and `MapIterationSucceeded`.
//! The histories are merged when read: the parent's events in order, the
//! open branches' events among them by time, each branch wholly before
//! the event that closes it; then numbered again.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One inline Parallel or Map an execution ran: the id of the event that
/// started it and the run its branches or items are named by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inline {
    pub after: u64,
    pub run: String,
    pub map: bool,
}

/// The most inline Parallels and Maps whose events an execution keeps
/// showing (a loop over a Map runs out of history first).
pub const KEPT: usize = 2_000;

/// A branch's own events as they go in its parent's history: without its
/// start and end (the parent's events say those).
pub fn branch_events(mut events: Vec<Value>) -> Vec<Value> {
    events.retain(|e| {
        !e["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("Execution"))
    });
    events
}

/// The parent's `events` with its joins' branches (`joins[k].1[i]`: the
/// events of branch or item `i` of join `k`) merged in, numbered from 1.
pub fn merge(events: Vec<Value>, joins: Vec<(Inline, Vec<Vec<Value>>)>) -> Vec<Value> {
    let mut out = Vec::with_capacity(
        events.len()
            + joins
                .iter()
                .flat_map(|(_, b)| b.iter().map(Vec::len))
                .sum::<usize>(),
    );
    let mut joins: VecDeque<(Inline, Vec<VecDeque<Value>>)> = joins
        .into_iter()
        .map(|(j, branches)| (j, branches.into_iter().map(VecDeque::from).collect()))
        .collect();
    // The join whose branches are in the events now, and which of its
    // branches are open.
    let mut current: Option<(Inline, Vec<VecDeque<Value>>)> = None;
    let mut open: Vec<usize> = Vec::new();
    for ev in events {
        let id = ev["id"].as_u64().unwrap_or(0);
        let at = stamp(&ev);
        let kind = ev["type"].as_str().unwrap_or_default().to_string();
        let index = ev["mapIterationSucceededEventDetails"]["index"]
            .as_u64()
            .or(ev["mapIterationFailedEventDetails"]["index"].as_u64())
            .or(ev["mapIterationAbortedEventDetails"]["index"].as_u64());
        if let Some((_, branches)) = current.as_mut() {
            let forced: Vec<usize> = match (kind.as_str(), index) {
                (
                    "MapIterationSucceeded" | "MapIterationFailed" | "MapIterationAborted",
                    Some(i),
                ) => {
                    vec![i as usize]
                }
                (k, _) if closes(k) => open.clone(),
                _ => Vec::new(),
            };
            flush(&mut out, branches, &open, &forced, at);
            open.retain(|i| !branches[*i].is_empty() || !forced.contains(i));
        }
        // A new join closes what is left of the one before.
        if joins.front().is_some_and(|(j, _)| j.after == id) {
            if let Some((_, branches)) = current.as_mut() {
                let all = open.clone();
                flush(&mut out, branches, &open, &all, at);
            }
            current = joins.pop_front();
            open.clear();
            if let Some((j, branches)) = &current {
                if !j.map {
                    open = (0..branches.len()).collect();
                }
            }
        }
        out.push(ev);
        if let (Some((j, branches)), "MapIterationStarted") = (&current, kind.as_str()) {
            let started = out
                .last()
                .and_then(|e| e["mapIterationStartedEventDetails"]["index"].as_u64());
            if let Some(i) = started.map(|i| i as usize) {
                if j.map && i < branches.len() && !open.contains(&i) {
                    open.push(i);
                }
            }
        }
    }
    if let Some((_, branches)) = current.as_mut() {
        let all = open.clone();
        flush(&mut out, branches, &open, &all, i64::MIN);
    }
    for (i, ev) in out.iter_mut().enumerate() {
        ev["id"] = json!(i as u64 + 1);
        ev["previousEventId"] = json!(i as u64);
    }
    out
}

/// Whether an event of the parent ends every branch still open.
fn closes(kind: &str) -> bool {
    matches!(
        kind,
        "ParallelStateSucceeded"
            | "ParallelStateFailed"
            | "ParallelStateAborted"
            | "MapStateSucceeded"
            | "MapStateFailed"
            | "MapStateAborted"
    ) || kind.starts_with("Execution")
}

fn stamp(ev: &Value) -> i64 {
    ev["timestamp"].as_i64().unwrap_or(0)
}

/// Moves the open branches' events up to time `at` into `out`, oldest
/// first (a tie goes to the lower branch), and all of the `forced` ones.
fn flush(
    out: &mut Vec<Value>,
    branches: &mut [VecDeque<Value>],
    open: &[usize],
    forced: &[usize],
    at: i64,
) {
    let until = forced
        .iter()
        .filter_map(|i| branches.get(*i)?.back().map(stamp))
        .fold(at, i64::max);
    loop {
        let next = open
            .iter()
            .filter_map(|&i| Some((stamp(branches.get(i)?.front()?), i)))
            .filter(|(t, _)| *t <= until)
            .min();
        match next {
            Some((_, i)) => out.extend(branches[i].pop_front()),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, at: i64) -> Value {
        json!({"type": kind, "timestamp": at})
    }

    fn iteration(kind: &str, index: u64, at: i64) -> Value {
        let field = format!(
            "mapIteration{}EventDetails",
            kind.strip_prefix("MapIteration").unwrap_or(kind)
        );
        json!({"type": kind, "timestamp": at, field: {"name": "M", "index": index}})
    }

    fn numbered(mut events: Vec<Value>) -> Vec<Value> {
        crate::durable::number(&mut events, 0);
        events
    }

    fn kinds(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn parallel_branches_go_between_start_and_success_by_time() {
        let parent = numbered(vec![
            ev("ExecutionStarted", 0),
            ev("ParallelStateEntered", 1),
            ev("ParallelStateStarted", 1),
            ev("ParallelStateSucceeded", 9),
            ev("ParallelStateExited", 9),
            ev("ExecutionSucceeded", 9),
        ]);
        let a = branch_events(vec![
            ev("ExecutionStarted", 1),
            ev("PassStateEntered", 2),
            ev("PassStateExited", 5),
            ev("ExecutionSucceeded", 5),
        ]);
        let b = vec![ev("WaitStateEntered", 3), ev("WaitStateExited", 10)];
        let join = Inline {
            after: 3,
            run: "r".into(),
            map: false,
        };
        let out = merge(parent, vec![(join, vec![a, b])]);
        assert_eq!(
            kinds(&out),
            [
                "ExecutionStarted",
                "ParallelStateEntered",
                "ParallelStateStarted",
                "PassStateEntered",
                "WaitStateEntered",
                "PassStateExited",
                "WaitStateExited",
                "ParallelStateSucceeded",
                "ParallelStateExited",
                "ExecutionSucceeded",
            ]
        );
        for (i, e) in out.iter().enumerate() {
            assert_eq!(e["id"], json!(i + 1));
            assert_eq!(e["previousEventId"], json!(i));
        }
    }

    #[test]
    fn map_iterations_hold_their_items_events() {
        let parent = numbered(vec![
            ev("ExecutionStarted", 0),
            ev("MapStateEntered", 1),
            ev("MapStateStarted", 1),
            iteration("MapIterationStarted", 0, 1),
            iteration("MapIterationStarted", 1, 1),
            iteration("MapIterationSucceeded", 1, 2),
            iteration("MapIterationFailed", 0, 4),
            ev("MapStateFailed", 4),
            ev("ExecutionFailed", 4),
        ]);
        let item0 = vec![ev("TaskStateEntered", 1), ev("TaskStateExited", 3)];
        let item1 = vec![ev("PassStateEntered", 1), ev("PassStateExited", 1)];
        let join = Inline {
            after: 3,
            run: "r".into(),
            map: true,
        };
        let out = merge(parent, vec![(join, vec![item0, item1])]);
        assert_eq!(
            kinds(&out),
            [
                "ExecutionStarted",
                "MapStateEntered",
                "MapStateStarted",
                "MapIterationStarted",
                "TaskStateEntered",
                "MapIterationStarted",
                "PassStateEntered",
                "PassStateExited",
                "MapIterationSucceeded",
                "TaskStateExited",
                "MapIterationFailed",
                "MapStateFailed",
                "ExecutionFailed",
            ]
        );
    }

    #[test]
    fn branches_of_an_execution_stopped_midway_end_its_history() {
        let parent = numbered(vec![
            ev("ExecutionStarted", 0),
            ev("ParallelStateStarted", 1),
        ]);
        let join = Inline {
            after: 2,
            run: "r".into(),
            map: false,
        };
        let out = merge(parent, vec![(join, vec![vec![ev("PassStateEntered", 7)]])]);
        assert_eq!(
            kinds(&out),
            [
                "ExecutionStarted",
                "ParallelStateStarted",
                "PassStateEntered"
            ]
        );
    }
}
