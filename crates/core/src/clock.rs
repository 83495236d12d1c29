//! The one seam for wall-clock time, so expiry and retention logic is
//! testable without waiting.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where wisp reads the wall clock.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Where wisp draws randomness for retry jitter, so tests can fix it.
pub trait Rng: Send + Sync + 'static {
    /// A number in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// The thread-local generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRng;

impl Rng for ThreadRng {
    fn unit(&self) -> f64 {
        rand::random::<f64>()
    }
}
