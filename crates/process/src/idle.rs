//! The idle list of a pool, shared with its workers: a worker puts itself
//! here when it can take the next call; the pool takes the warmest.

use std::sync::Mutex;
// tokio's clock, so tests can move it (paused time).
use tokio::time::Instant;

use crate::worker::WorkerHandle;

/// Where workers wait for jobs, shared by a pool and its workers: a worker
/// puts itself here when its process asks for the next event.
#[derive(Default)]
pub(crate) struct Idle {
    inner: Mutex<IdleInner>,
}

#[derive(Default)]
struct IdleInner {
    workers: Vec<(WorkerHandle, Instant)>,
    /// Workers alive (starting, busy or idle).
    live: usize,
    closed: bool,
}

impl Idle {
    /// The most recently idle worker (the warmest).
    pub(crate) fn pop(&self) -> Option<WorkerHandle> {
        let mut inner = self.inner.lock().ok()?;
        while let Some((w, _)) = inner.workers.pop() {
            if !w.is_closed() {
                return Some(w);
            }
        }
        None
    }

    /// Counts a new worker in, unless `max` are alive or the pool closed.
    pub(crate) fn reserve(&self, max: usize) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.closed || inner.live >= max {
            return false;
        }
        inner.live += 1;
        true
    }

    pub(crate) fn live(&self) -> usize {
        self.inner.lock().map(|i| i.live).unwrap_or(0)
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.inner.lock().map(|i| i.workers.len()).unwrap_or(0)
    }

    /// Returns false when the pool is closed and the worker should stop.
    pub(crate) fn push(&self, worker: WorkerHandle) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.closed {
            return false;
        }
        if !inner.workers.iter().any(|(w, _)| w.id == worker.id) {
            inner.workers.push((worker, Instant::now()));
        }
        true
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.workers.retain(|(w, _)| w.id != id);
        }
    }

    pub(crate) fn gone(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.workers.retain(|(w, _)| w.id != id);
            inner.live = inner.live.saturating_sub(1);
        }
    }

    pub(crate) fn release_reservation(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.live = inner.live.saturating_sub(1);
        }
    }

    /// Takes the workers idle since before `cutoff`, keeping `keep` workers alive.
    pub(crate) fn expired(&self, cutoff: Instant, keep: usize) -> Vec<WorkerHandle> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut spare = inner.live.saturating_sub(keep);
        let mut out = Vec::new();
        inner.workers.retain(|(w, since)| {
            if spare > 0 && *since < cutoff {
                spare -= 1;
                out.push(w.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// Closes the pool: no worker goes idle again; the idle ones are returned.
    pub(crate) fn close(&self) -> Vec<WorkerHandle> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner.closed = true;
        inner.workers.drain(..).map(|(w, _)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KEEP_WARM: Duration = Duration::from_secs(10);

    /// Keep-warm expiry at its bound, in paused time: a worker idle for
    /// exactly keep-warm stays, one a tick longer goes, oldest first, and
    /// the provisioned count is never stopped.
    #[tokio::test(start_paused = true)]
    async fn workers_idle_past_keep_warm_expire_and_provisioned_ones_stay() {
        let idle = Idle::default();
        let mut channels = Vec::new();
        for id in 1..=3 {
            assert!(idle.reserve(10));
            let (worker, rx) = WorkerHandle::for_test(id);
            channels.push(rx);
            assert!(idle.push(worker));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Worker 1 went idle 3 s ago, 2 at 2 s, 3 at 1 s.
        tokio::time::advance(KEEP_WARM - Duration::from_secs(3)).await;
        let cutoff = || Instant::now() - KEEP_WARM;
        assert!(
            idle.expired(cutoff(), 0).is_empty(),
            "exactly keep-warm: kept"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let gone: Vec<u64> = idle.expired(cutoff(), 0).iter().map(|w| w.id).collect();
        assert_eq!(gone, [1]);
        idle.gone(1);
        // Two provisioned: past keep-warm, both stay.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(idle.expired(cutoff(), 2).is_empty());
        let gone: Vec<u64> = idle.expired(cutoff(), 1).iter().map(|w| w.id).collect();
        assert_eq!(gone, [2]);
        assert_eq!(idle.pop().map(|w| w.id), Some(3), "the warmest is taken");
    }
}
