//! One validator per bounded setting, shared by the manifest and the API,
//! so `wisp.toml` and an SDK call accept exactly the same values.

use crate::limits;

/// An inclusive range a setting must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub min: u64,
    pub max: u64,
}

/// MaximumRetryAttempts / `async.max_retries` (Lambda: 0 to 2).
pub const ASYNC_RETRIES: Bound = Bound {
    min: 0,
    max: limits::MAX_ASYNC_RETRIES as u64,
};
/// MaximumEventAgeInSeconds / `async.max_event_age` (Lambda: 60 to 21,600).
pub const EVENT_AGE_SECS: Bound = Bound {
    min: limits::MIN_EVENT_AGE_SECS,
    max: limits::MAX_EVENT_AGE_SECS,
};
/// MemorySize / `memory_mb`.
pub const MEMORY_MB: Bound = Bound {
    min: limits::MIN_MEMORY_MB as u64,
    max: limits::MAX_MEMORY_MB as u64,
};
/// Timeout / `timeout`, in seconds.
pub const TIMEOUT_SECS: Bound = Bound {
    min: limits::MIN_TIMEOUT_SECS,
    max: limits::MAX_TIMEOUT_SECS,
};

impl Bound {
    /// `value` if it is in range, else a message naming `field` and the range.
    pub fn check(&self, field: &str, value: i64) -> Result<u64, String> {
        match u64::try_from(value) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{field} must be between {} and {}; it is {value}",
                self.min, self.max
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_holds_at_its_ends() {
        for bound in [ASYNC_RETRIES, EVENT_AGE_SECS, MEMORY_MB, TIMEOUT_SECS] {
            let (min, max) = (bound.min as i64, bound.max as i64);
            assert_eq!(bound.check("x", min), Ok(bound.min));
            assert_eq!(bound.check("x", max), Ok(bound.max));
            assert!(bound.check("x", max + 1).is_err());
            assert!(bound.check("x", min - 1).is_err());
        }
        assert_eq!(
            ASYNC_RETRIES.check("MaximumRetryAttempts", 3),
            Err("MaximumRetryAttempts must be between 0 and 2; it is 3".into())
        );
    }
}
