//! Async invocation policy: what happens after each delivery attempt of a
//! queued event (done, retry when, or give up and why), and the record a
//! destination receives. Pure: time and randomness come in as arguments.

use serde_json::{json, Value};

use crate::clock::Rng;
use crate::limits::{MAX_ASYNC_RETRIES, MAX_EVENT_AGE_SECS};

/// A function's async settings: Lambda's FunctionEventInvokeConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncPolicy {
    /// Retries after a function error (0-2); throttles do not count.
    pub max_retries: u32,
    /// How long an event may wait, retries included, before it is given up.
    pub max_event_age_ms: i64,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        AsyncPolicy {
            max_retries: MAX_ASYNC_RETRIES,
            max_event_age_ms: MAX_EVENT_AGE_SECS as i64 * 1000,
            on_success: None,
            on_failure: None,
        }
    }
}

/// Where a destination record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A function, by name and qualifier: the record is its event.
    Function {
        function: String,
        qualifier: Option<String>,
    },
    /// An SQS queue, by name: the record is a message's body.
    Queue { name: String },
}

impl Destination {
    /// A function ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)
    /// or a queue ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`). Other services
    /// (topics, buses) are not destinations wisp can deliver to yet: `None`.
    pub fn from_arn(arn: &str) -> Option<Destination> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", _, _, "function", name] => Some(Destination::Function {
                function: name.to_string(),
                qualifier: None,
            }),
            ["arn", _, "lambda", _, _, "function", name, q] => Some(Destination::Function {
                function: name.to_string(),
                qualifier: Some(q.to_string()),
            }),
            ["arn", _, "sqs", _, _, name] if !name.is_empty() => Some(Destination::Queue {
                name: name.to_string(),
            }),
            _ => None,
        }
    }

    /// The name the manifest uses: `NAME`, `NAME:QUALIFIER`,
    /// `function:NAME` or `queue:NAME`.
    pub fn parse(text: &str) -> Result<Destination, String> {
        if let Some(name) = text.strip_prefix("queue:") {
            let ok = !name.is_empty()
                && name.len() <= 80
                && name
                    .strip_suffix(".fifo")
                    .unwrap_or(name)
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(format!(
                    "`{text}`: a queue name is 1 to 80 of A-Z, a-z, 0-9, - and _ (and .fifo)"
                ));
            }
            return Ok(Destination::Queue {
                name: name.to_string(),
            });
        }
        let rest = text.strip_prefix("function:").unwrap_or(text);
        if let Some(kind) = ["topic:", "bus:"].iter().find(|p| text.starts_with(**p)) {
            return Err(format!(
                "`{text}`: {} destinations are not available yet; name a function or a queue",
                kind.trim_end_matches(':')
            ));
        }
        let (function, qualifier) = match rest.split_once(':') {
            Some((f, q)) => (f, Some(q.to_string())),
            None => (rest, None),
        };
        crate::function::validate_name(function).map_err(|e| format!("`{text}`: {e}"))?;
        Ok(Destination::Function {
            function: function.to_string(),
            qualifier,
        })
    }

    pub fn arn(&self, region: &str) -> String {
        match self {
            Destination::Function {
                function,
                qualifier,
            } => {
                let base = format!(
                    "arn:aws:lambda:{region}:{}:function:{function}",
                    crate::ACCOUNT_ID
                );
                match qualifier {
                    Some(q) => format!("{base}:{q}"),
                    None => base,
                }
            }
            Destination::Queue { name } => {
                format!("arn:aws:sqs:{region}:{}:{name}", crate::ACCOUNT_ID)
            }
        }
    }
}

impl AsyncPolicy {
    /// Reads a stored FunctionEventInvokeConfig (Lambda's field names);
    /// missing fields keep Lambda's defaults.
    pub fn from_event_invoke(v: &Value) -> AsyncPolicy {
        let mut p = AsyncPolicy::default();
        if let Some(n) = v["MaximumRetryAttempts"].as_u64() {
            p.max_retries = (n as u32).min(MAX_ASYNC_RETRIES);
        }
        if let Some(n) = v["MaximumEventAgeInSeconds"].as_u64() {
            p.max_event_age_ms = n.min(MAX_EVENT_AGE_SECS) as i64 * 1000;
        }
        let dest = |which: &str| {
            v["DestinationConfig"][which]["Destination"]
                .as_str()
                .and_then(Destination::from_arn)
        };
        p.on_success = dest("OnSuccess");
        p.on_failure = dest("OnFailure");
        p
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Success,
    /// The function failed (error, timeout, crash): counts against the retries.
    FunctionError,
    /// Concurrency was exhausted, or the platform failed: retried until the
    /// event is too old, without using up a retry.
    Throttled,
}

/// Why an event was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
    /// A keyed event's run was cut off by the server stopping; running it
    /// again could apply it twice (wisp's own condition, not Lambda's).
    Interrupted,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
            Condition::Interrupted => "Interrupted",
        }
    }
}

/// What to do with an event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Try again at this time (ms since epoch).
    RetryAt(i64),
    GiveUp(Condition),
}

/// Exponential backoff with full jitter: the n-th wait (from 0) is uniform
/// in `[0, min(cap, base * 2^n))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1000,
            cap_ms: 300_000,
        }
    }
}

impl Backoff {
    pub fn delay_ms(&self, n: u32, rng: &dyn Rng) -> i64 {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << n.min(32))
            .min(self.cap_ms);
        (rng.unit() * ceiling as f64) as i64
    }
}

/// Where an event stands before an attempt's outcome is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventState {
    pub enqueued_ms: i64,
    /// Attempts that ended in a function error so far.
    pub errors: u32,
    /// Attempts that were throttled so far.
    pub throttles: u32,
}

impl EventState {
    /// Whether the event is past its age and must be given up unrun.
    pub fn expired(&self, policy: &AsyncPolicy, now_ms: i64) -> bool {
        now_ms - self.enqueued_ms >= policy.max_event_age_ms
    }
}

/// Decides the next step after an attempt. A retry is never scheduled past
/// the event's age limit: it then comes due exactly at the limit and is
/// given up as `EventAgeExceeded`.
pub fn next_step(
    policy: &AsyncPolicy,
    backoff: &Backoff,
    state: EventState,
    attempt: Attempt,
    now_ms: i64,
    rng: &dyn Rng,
) -> Next {
    let wait = match attempt {
        Attempt::Success => return Next::Done,
        Attempt::FunctionError if state.errors >= policy.max_retries => {
            return Next::GiveUp(Condition::RetriesExhausted)
        }
        Attempt::FunctionError => backoff.delay_ms(state.errors, rng),
        Attempt::Throttled => backoff.delay_ms(state.throttles, rng),
    };
    let deadline = state.enqueued_ms + policy.max_event_age_ms;
    if now_ms >= deadline {
        return Next::GiveUp(Condition::EventAgeExceeded);
    }
    Next::RetryAt((now_ms + wait).min(deadline))
}

/// What the function answered, for a destination record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response {
    pub status: u16,
    pub executed_version: String,
    pub function_error: bool,
    pub payload: Vec<u8>,
}

/// The record Lambda sends to an on-success or on-failure destination.
pub fn destination_record(
    request_id: &str,
    function_arn: &str,
    condition: Condition,
    approximate_invoke_count: u32,
    timestamp_ms: i64,
    request_payload: &[u8],
    response: Option<&Response>,
) -> Value {
    let mut record = json!({
        "version": "1.0",
        "timestamp": iso8601(timestamp_ms),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": approximate_invoke_count,
        },
        "requestPayload": payload_value(request_payload),
    });
    if let Some(r) = response {
        let mut ctx = json!({ "statusCode": r.status, "executedVersion": r.executed_version });
        if r.function_error {
            ctx["functionError"] = "Unhandled".into();
        }
        record["responseContext"] = ctx;
        record["responsePayload"] = payload_value(&r.payload);
    }
    record
}

/// A payload as JSON when it is JSON, else as a string.
fn payload_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// `2019-11-14T18:16:05.568Z`.
pub fn iso8601(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Rng for Fixed {
        fn unit(&self) -> f64 {
            self.0
        }
    }

    fn state(errors: u32, throttles: u32) -> EventState {
        EventState {
            enqueued_ms: 1_000_000,
            errors,
            throttles,
        }
    }

    #[test]
    fn function_errors_retry_up_to_the_limit_then_give_up() {
        let p = AsyncPolicy::default();
        let b = Backoff::default();
        let now = 1_000_500;
        let top = Fixed(0.999_999);
        assert_eq!(
            next_step(&p, &b, state(0, 0), Attempt::FunctionError, now, &top),
            Next::RetryAt(now + 999)
        );
        assert_eq!(
            next_step(&p, &b, state(1, 0), Attempt::FunctionError, now, &top),
            Next::RetryAt(now + 1999)
        );
        assert_eq!(
            next_step(&p, &b, state(2, 0), Attempt::FunctionError, now, &top),
            Next::GiveUp(Condition::RetriesExhausted)
        );
        let none = AsyncPolicy {
            max_retries: 0,
            ..p.clone()
        };
        assert_eq!(
            next_step(&none, &b, state(0, 0), Attempt::FunctionError, now, &top),
            Next::GiveUp(Condition::RetriesExhausted)
        );
        assert_eq!(
            next_step(&p, &b, state(2, 0), Attempt::Success, now, &top),
            Next::Done
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_exponential_ceiling_and_is_capped() {
        let b = Backoff {
            base_ms: 100,
            cap_ms: 1000,
        };
        assert_eq!(b.delay_ms(0, &Fixed(0.0)), 0);
        assert_eq!(b.delay_ms(3, &Fixed(0.5)), 400);
        assert_eq!(b.delay_ms(4, &Fixed(0.5)), 500);
        assert_eq!(b.delay_ms(40, &Fixed(0.5)), 500);
    }

    #[test]
    fn throttles_do_not_use_retries_and_stop_at_the_event_age() {
        let p = AsyncPolicy {
            max_retries: 0,
            max_event_age_ms: 60_000,
            ..AsyncPolicy::default()
        };
        let b = Backoff::default();
        let s = state(0, 20);
        // Far into the backoff, the retry is clamped to the age limit...
        assert_eq!(
            next_step(&p, &b, s, Attempt::Throttled, 1_010_000, &Fixed(0.9)),
            Next::RetryAt(1_060_000)
        );
        // ...where the event is given up.
        assert!(s.expired(&p, 1_060_000));
        assert!(!s.expired(&p, 1_059_999));
        assert_eq!(
            next_step(&p, &b, s, Attempt::Throttled, 1_060_000, &Fixed(0.9)),
            Next::GiveUp(Condition::EventAgeExceeded)
        );
    }

    #[test]
    fn reads_event_invoke_config_and_destinations() {
        let p = AsyncPolicy::from_event_invoke(&json!({
            "MaximumRetryAttempts": 0,
            "MaximumEventAgeInSeconds": 120,
            "DestinationConfig": {
                "OnSuccess": {},
                "OnFailure": { "Destination": "arn:aws:lambda:us-east-1:000000000000:function:failed:live" }
            }
        }));
        assert_eq!(p.max_retries, 0);
        assert_eq!(p.max_event_age_ms, 120_000);
        assert_eq!(p.on_success, None);
        assert_eq!(
            p.on_failure,
            Some(Destination::Function {
                function: "failed".into(),
                qualifier: Some("live".into())
            })
        );
        assert_eq!(
            AsyncPolicy::from_event_invoke(&json!({})),
            AsyncPolicy::default()
        );
        assert_eq!(
            Destination::from_arn("arn:aws:sqs:us-east-1:000000000000:q"),
            Some(Destination::Queue { name: "q".into() })
        );
        assert_eq!(
            Destination::from_arn("arn:aws:sns:us-east-1:000000000000:t"),
            None
        );
    }

    #[test]
    fn manifest_destinations_name_functions_and_queues() {
        let function = |f: &str, q: Option<&str>| Destination::Function {
            function: f.into(),
            qualifier: q.map(str::to_string),
        };
        assert_eq!(
            Destination::parse("function:audit"),
            Ok(function("audit", None))
        );
        assert_eq!(
            Destination::parse("audit:live"),
            Ok(function("audit", Some("live")))
        );
        let q = Destination::parse("queue:failed").unwrap();
        assert_eq!(
            q,
            Destination::Queue {
                name: "failed".into()
            }
        );
        assert_eq!(
            q.arn("eu-west-1"),
            "arn:aws:sqs:eu-west-1:000000000000:failed"
        );
        assert!(Destination::parse("queue:bad name").is_err());
        assert!(Destination::parse("topic:t")
            .unwrap_err()
            .contains("topic destinations are not available yet"));
        assert!(Destination::parse("bad name").is_err());
    }

    #[test]
    fn destination_record_has_lambdas_shape() {
        let record = destination_record(
            "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
            Condition::RetriesExhausted,
            3,
            1_573_755_365_568,
            br#"{"ORDER_IDS":["9e07af03"]}"#,
            Some(&Response {
                status: 200,
                executed_version: "$LATEST".into(),
                function_error: true,
                payload: br#"{"errorMessage":"boom"}"#.to_vec(),
            }),
        );
        assert_eq!(
            record,
            json!({
                "version": "1.0",
                "timestamp": "2019-11-14T18:16:05.568Z",
                "requestContext": {
                    "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                    "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": 3
                },
                "requestPayload": { "ORDER_IDS": ["9e07af03"] },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled"
                },
                "responsePayload": { "errorMessage": "boom" }
            })
        );
        let unrun = destination_record(
            "r",
            "arn",
            Condition::EventAgeExceeded,
            0,
            0,
            b"not json",
            None,
        );
        assert_eq!(unrun["requestPayload"], "not json");
        assert!(unrun.get("responseContext").is_none());
    }
}
