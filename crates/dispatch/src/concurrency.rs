//! Admission by concurrency, as Lambda does it: an account-wide limit,
//! out of which functions may reserve a share. A function with a
//! reservation runs at most that many at once (0 disables it); the others
//! share what is left unreserved.
//!
//! In a cluster every limit is the cluster's: each node admits its share
//! of it, the limit split evenly over the live nodes with the remainder
//! going to the first ones by id, so the shares add up to the limit
//! exactly. A node whose share is used throttles even while another has
//! room; while membership changes (a node joins or dies, within a few
//! heartbeats) the total may briefly be off by the shares in motion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wisp_core::Cause;

/// Why an invocation was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's reserved concurrency is in use (or is 0).
    Reserved,
    /// The unreserved share of the account limit is in use.
    Account,
}

impl Throttle {
    /// Why the call failed.
    pub fn cause(self) -> Cause {
        match self {
            Throttle::Reserved => Cause::ReservedConcurrency,
            Throttle::Account => Cause::AccountConcurrency,
        }
    }

    /// Lambda's `Reason` for the 429.
    pub fn reason(self) -> &'static str {
        self.cause().error_type()
    }
}

#[derive(Debug, Default)]
struct State {
    reserved: HashMap<String, usize>,
    reserved_total: usize,
    /// Running now, by function. An entry stays at 0 once its last call
    /// ends (until the function is deleted): a function called one at a
    /// time would otherwise be inserted, name copied, on every call.
    in_flight: HashMap<Arc<str>, usize>,
    unreserved_in_flight: usize,
}

/// Concurrency limits and what is running against them.
#[derive(Debug)]
pub struct Concurrency {
    limit: usize,
    state: Mutex<State>,
    /// This node's place among the live nodes: (rank, nodes).
    share: Mutex<(usize, usize)>,
}

/// One admitted invocation; dropping it frees its slot.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<Concurrency>,
    function: Arc<str>,
    reserved: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut s) = self.owner.state.lock() {
            if let Some(n) = s.in_flight.get_mut(&self.function) {
                *n = n.saturating_sub(1);
            }
            if !self.reserved {
                s.unreserved_in_flight = s.unreserved_in_flight.saturating_sub(1);
            }
        }
    }
}

impl Concurrency {
    pub fn new(limit: usize) -> Arc<Concurrency> {
        Arc::new(Concurrency {
            limit,
            state: Mutex::new(State::default()),
            share: Mutex::new((0, 1)),
        })
    }

    /// Makes this node the `rank`th of `nodes` live ones (0-based), each
    /// admitting its share of every limit. Says whether that changed it.
    pub fn set_share(&self, rank: usize, nodes: usize) -> bool {
        let Ok(mut s) = self.share.lock() else {
            return false;
        };
        let new = (rank.min(nodes.max(1) - 1), nodes.max(1));
        std::mem::replace(&mut *s, new) != new
    }

    /// This node's share of a cluster-wide `limit`.
    pub fn share_of(&self, limit: usize) -> usize {
        let (rank, nodes) = self.share.lock().map(|s| *s).unwrap_or((0, 1));
        limit / nodes + usize::from(rank < limit % nodes)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What must stay unreserved: Lambda keeps 100; a smaller account keeps a tenth.
    pub fn min_unreserved(&self) -> usize {
        100.min(self.limit / 10)
    }

    /// The account limit minus all reservations.
    pub fn unreserved(&self) -> usize {
        let total = self.state.lock().map(|s| s.reserved_total).unwrap_or(0);
        self.limit.saturating_sub(total)
    }

    pub fn reserved(&self, function: &str) -> Option<usize> {
        self.state.lock().ok()?.reserved.get(function).copied()
    }

    /// Sets (or with `None` removes) a function's reservation; refuses one
    /// that would leave less than `min_unreserved` for everyone else.
    pub fn set_reserved(&self, function: &str, reserved: Option<usize>) -> Result<(), String> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| "concurrency state poisoned".to_string())?;
        let current = s.reserved.get(function).copied().unwrap_or(0);
        let total = s.reserved_total - current + reserved.unwrap_or(0);
        if reserved.is_some() && self.limit.saturating_sub(total) < self.min_unreserved() {
            return Err(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                self.min_unreserved()
            ));
        }
        s.reserved_total = total;
        match reserved {
            Some(n) => s.reserved.insert(function.to_string(), n),
            None => s.reserved.remove(function),
        };
        Ok(())
    }

    /// Admits one invocation of `function`, or says why not.
    pub fn admit(self: &Arc<Self>, function: &str) -> Result<Permit, Throttle> {
        let mut s = self.state.lock().map_err(|_| Throttle::Account)?;
        let running = s.in_flight.get(function).copied().unwrap_or(0);
        let reserved = match s.reserved.get(function) {
            Some(&limit) => {
                if running >= self.share_of(limit) {
                    return Err(Throttle::Reserved);
                }
                true
            }
            None => {
                let unreserved = self.limit.saturating_sub(s.reserved_total);
                if s.unreserved_in_flight >= self.share_of(unreserved) {
                    return Err(Throttle::Account);
                }
                s.unreserved_in_flight += 1;
                false
            }
        };
        let function = match s.in_flight.get_key_value(function) {
            Some((name, _)) => name.clone(),
            None => Arc::from(function),
        };
        *s.in_flight.entry(function.clone()).or_insert(0) += 1;
        Ok(Permit {
            owner: self.clone(),
            function,
            reserved,
        })
    }

    /// How many more invocations of `function` would be admitted now.
    pub fn headroom(&self, function: &str) -> usize {
        let Ok(s) = self.state.lock() else { return 0 };
        match s.reserved.get(function) {
            Some(&limit) => self
                .share_of(limit)
                .saturating_sub(s.in_flight.get(function).copied().unwrap_or(0)),
            None => self
                .share_of(self.limit.saturating_sub(s.reserved_total))
                .saturating_sub(s.unreserved_in_flight),
        }
    }

    /// Drops what is kept of a deleted function that has nothing running.
    pub fn forget(&self, function: &str) {
        if let Ok(mut s) = self.state.lock() {
            if s.in_flight.get(function) == Some(&0) {
                s.in_flight.remove(function);
            }
        }
    }

    /// Invocations of `function` running now.
    pub fn in_flight(&self, function: &str) -> usize {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.in_flight.get(function).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares of a limit over the live nodes add up to the limit, the
    /// remainder going to the first nodes.
    #[test]
    fn each_node_admits_its_share_of_the_cluster_limits() {
        let nodes: Vec<Arc<Concurrency>> = (0..3)
            .map(|rank| {
                let c = Concurrency::new(1000);
                c.set_share(rank, 3);
                c.set_reserved("f", Some(4)).unwrap();
                c.set_reserved("one", Some(1)).unwrap();
                c
            })
            .collect();
        let shares: Vec<usize> = nodes.iter().map(|c| c.headroom("f")).collect();
        assert_eq!(shares, [2, 1, 1]);
        let one: Vec<usize> = nodes.iter().map(|c| c.headroom("one")).collect();
        assert_eq!(one, [1, 0, 0]);
        // The unreserved 995 split 332 + 332 + 331.
        let unreserved: Vec<usize> = nodes.iter().map(|c| c.headroom("other")).collect();
        assert_eq!(unreserved, [332, 332, 331]);
        let held: Vec<Permit> = (0..2).map(|_| nodes[0].admit("f").unwrap()).collect();
        assert_eq!(nodes[0].admit("f").unwrap_err(), Throttle::Reserved);
        assert_eq!(nodes[2].admit("one").unwrap_err(), Throttle::Reserved);
        drop(held);
        // A node alone again has the whole limit.
        nodes[2].set_share(0, 1);
        assert_eq!(nodes[2].headroom("f"), 4);
    }

    /// A function's count goes back to 0 when its calls end, keeps its
    /// entry while it exists, and loses it once forgotten.
    #[test]
    fn finished_calls_free_their_slots_and_forget_drops_the_entry() {
        let c = Concurrency::new(2);
        let a = c.admit("f").unwrap();
        let b = c.admit("f").unwrap();
        assert_eq!(c.admit("g").unwrap_err(), Throttle::Account);
        c.forget("f"); // still running: kept
        assert_eq!(c.in_flight("f"), 2);
        drop((a, b));
        assert_eq!(c.in_flight("f"), 0);
        assert!(c.state.lock().unwrap().in_flight.contains_key("f"));
        c.forget("f");
        assert!(!c.state.lock().unwrap().in_flight.contains_key("f"));
        let _again = c.admit("f").unwrap();
        assert_eq!(c.in_flight("f"), 1);
    }

    #[test]
    fn reserved_zero_disables_a_function() {
        let c = Concurrency::new(1000);
        c.set_reserved("f", Some(0)).unwrap();
        assert_eq!(c.admit("f").unwrap_err(), Throttle::Reserved);
        assert!(c.admit("g").is_ok());
    }

    #[test]
    fn reservations_cap_their_function_and_shrink_the_pool() {
        let c = Concurrency::new(20);
        c.set_reserved("f", Some(2)).unwrap();
        let a = c.admit("f").unwrap();
        let _b = c.admit("f").unwrap();
        assert_eq!(c.admit("f").unwrap_err(), Throttle::Reserved);
        drop(a);
        let _c = c.admit("f").unwrap();
        // 18 left for everyone else.
        let others: Vec<_> = (0..18)
            .map(|i| c.admit(&format!("g{i}")).unwrap())
            .collect();
        assert_eq!(c.admit("h").unwrap_err(), Throttle::Account);
        assert_eq!(c.headroom("h"), 0);
        assert_eq!(c.headroom("f"), 0);
        drop(others);
        assert_eq!(c.headroom("h"), 18);
        assert!(c.admit("h").is_ok());
    }

    #[test]
    fn a_reservation_must_leave_the_minimum_unreserved() {
        let c = Concurrency::new(1000);
        assert!(c.set_reserved("f", Some(900)).is_ok());
        assert!(c.set_reserved("g", Some(1)).is_err());
        assert!(c.set_reserved("f", Some(901)).is_err());
        c.set_reserved("f", None).unwrap();
        assert_eq!(c.unreserved(), 1000);
        assert!(c.set_reserved("g", Some(900)).is_ok());
    }
}
