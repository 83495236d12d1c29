//! Durable timers: something to do at a time, kept until it is done
//! (schedules' next ticks, workflows' Wait states). A timer is armed
//! under a kind and an id; whoever takes its kind's due timers holds each
//! on a lease, so one node fires it, and settles it (removes it, or
//! re-arms it for its next time) only if it was not armed again or
//! cancelled meanwhile. A node that dies holding a lease loses it when
//! the lease ends: the timer is then due again, for someone else.

use crate::Result;

/// A timer: `payload` is the firer's to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub kind: String,
    pub id: String,
    pub due_ms: i64,
    pub payload: String,
}

/// A due timer on a lease; `token` names this lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedTimer {
    pub timer: Timer,
    pub token: u64,
}

#[async_trait::async_trait]
pub trait TimerStore: Send + Sync {
    /// Arms a timer, or moves one already armed under its kind and id
    /// (a lease held on it no longer settles it).
    async fn set_timer(&self, timer: &Timer) -> Result<()>;

    /// Removes a timer; whether it was there.
    async fn cancel_timer(&self, kind: &str, id: &str) -> Result<bool>;

    async fn get_timer(&self, kind: &str, id: &str) -> Result<Option<Timer>>;

    /// Up to `limit` of `kind`'s timers due at `now_ms` and not on a
    /// lease, earliest first, each now leased to the caller until
    /// `now_ms + lease_ms`.
    async fn lease_due_timers(
        &self,
        kind: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<LeasedTimer>>;

    /// Settles a leased timer: re-armed at `next_due_ms` (same kind, id
    /// and payload unless `payload` is given) or removed. `false`, and
    /// nothing changed, if it was armed again or cancelled since the
    /// lease was taken, or the lease ended and another took it.
    async fn settle_timer(
        &self,
        leased: &LeasedTimer,
        next_due_ms: Option<i64>,
        payload: Option<String>,
    ) -> Result<bool>;

    /// When the earliest of `kind`'s timers is due (leased or not).
    async fn next_timer_due(&self, kind: &str) -> Result<Option<i64>>;
}
