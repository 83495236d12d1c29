//! Errors as the States Language names them, and how Retry and Catch
//! match them: `States.ALL` matches any error but `States.Runtime`
//! (AWS: a runtime error is not retried or caught), `States.TaskFailed`
//! any error but `States.Timeout`, other names match exactly.

/// The predefined error names.
pub const ALL: &str = "States.ALL";
pub const TASK_FAILED: &str = "States.TaskFailed";
pub const TIMEOUT: &str = "States.Timeout";
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
pub const RUNTIME: &str = "States.Runtime";
pub const PERMISSIONS: &str = "States.Permissions";
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
pub const BRANCH_FAILED: &str = "States.BranchFailed";
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";

/// Whether an `ErrorEquals` list matches `error`.
pub fn matches(error_equals: &[String], error: &str) -> bool {
    error_equals.iter().any(|e| match e.as_str() {
        ALL => error != RUNTIME,
        TASK_FAILED => {
            error != TIMEOUT && error != RUNTIME && !error.starts_with("States.")
                || error == TASK_FAILED
                || error == HEARTBEAT_TIMEOUT
                || error == PERMISSIONS
        }
        name => name == error,
    })
}

/// A Retry rule's wait before retry number `attempt` (1-based), in
/// seconds: IntervalSeconds × BackoffRate^(attempt-1), capped by
/// MaxDelaySeconds, and with FULL jitter a random fraction of that
/// (`unit` in [0, 1)).
pub fn retry_delay(
    interval_seconds: f64,
    backoff_rate: f64,
    max_delay_seconds: Option<f64>,
    full_jitter: bool,
    attempt: u32,
    unit: f64,
) -> f64 {
    let mut delay =
        interval_seconds * backoff_rate.powi(attempt.saturating_sub(1).min(1000) as i32);
    if let Some(max) = max_delay_seconds {
        delay = delay.min(max);
    }
    if !delay.is_finite() {
        delay = max_delay_seconds.unwrap_or(31_622_400.0);
    }
    match full_jitter {
        true => delay * unit,
        false => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn error_names_match_as_aws_documents() {
        assert!(matches(&v(&[ALL]), "ValueError"));
        assert!(matches(&v(&[ALL]), TIMEOUT));
        assert!(!matches(&v(&[ALL]), RUNTIME));
        assert!(matches(&v(&[TASK_FAILED]), "ValueError"));
        assert!(matches(&v(&[TASK_FAILED]), HEARTBEAT_TIMEOUT));
        assert!(!matches(&v(&[TASK_FAILED]), TIMEOUT));
        assert!(matches(&v(&["ValueError", TIMEOUT]), TIMEOUT));
        assert!(!matches(&v(&["ValueError"]), "KeyError"));
    }

    #[test]
    fn retry_delays_back_off_cap_and_jitter() {
        assert_eq!(retry_delay(1.0, 2.0, None, false, 1, 0.5), 1.0);
        assert_eq!(retry_delay(1.0, 2.0, None, false, 4, 0.5), 8.0);
        assert_eq!(retry_delay(3.0, 2.0, Some(10.0), false, 4, 0.5), 10.0);
        assert_eq!(retry_delay(3.0, 2.0, Some(10.0), true, 4, 0.5), 5.0);
        assert_eq!(retry_delay(1.0, 2.0, Some(60.0), false, 100_000, 0.0), 60.0);
    }
}
