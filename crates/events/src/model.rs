//! What is stored of buses and rules, in AWS's field names, so the API
//! shows it back as it was given. A rule holds its targets: they change
//! with it, by one compare-and-set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EventsError;

/// Document kinds.
pub const BUS: &str = "event-bus";
pub const RULE: &str = "rule";

/// The bus every account has, which cannot be deleted.
pub const DEFAULT_BUS: &str = "default";

/// Most rules on one bus, and targets on one rule (AWS's quotas).
pub const MAX_RULES_PER_BUS: usize = 300;
pub const MAX_TARGETS_PER_RULE: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub modified_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    pub name: String,
    pub event_bus_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    /// ENABLED, DISABLED or ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.state != "DISABLED"
    }
}

/// A rule's target. Parameters wisp does not act on (ECS, Batch, …) are
/// kept as given in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub id: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_transformer: Option<InputTransformer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_parameters: Option<SqsParameters>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputTransformer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_paths_map: Option<BTreeMap<String, String>>,
    pub input_template: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
}

/// AWS's defaults: 185 retries over at most 24 hours.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 185;
pub const DEFAULT_EVENT_AGE_SECONDS: u32 = 86_400;

impl RetryPolicy {
    pub fn attempts(policy: Option<&RetryPolicy>) -> u32 {
        policy
            .and_then(|p| p.maximum_retry_attempts)
            .unwrap_or(DEFAULT_RETRY_ATTEMPTS)
    }

    pub fn max_age_ms(policy: Option<&RetryPolicy>) -> i64 {
        policy
            .and_then(|p| p.maximum_event_age_in_seconds)
            .unwrap_or(DEFAULT_EVENT_AGE_SECONDS) as i64
            * 1000
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SqsParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
}

/// The document name of a rule: its bus, a `/`, its name (rule names
/// have no `/`; bus names may).
pub fn rule_key(bus: &str, rule: &str) -> String {
    format!("{bus}/{rule}")
}

pub(crate) fn check_chars(
    what: &str,
    value: &str,
    max: usize,
    extra: &[char],
) -> Result<(), EventsError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c));
    if ok {
        return Ok(());
    }
    Err(EventsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [{}\\.\\-_A-Za-z0-9]+ and have length between 1 and {max}",
        if extra.is_empty() { "" } else { "/" }
    )))
}

pub fn check_rule_name(name: &str) -> Result<(), EventsError> {
    check_chars("name", name, 64, &[])
}

pub fn check_bus_name(name: &str) -> Result<(), EventsError> {
    check_chars("name", name, 256, &['/'])
}

pub fn check_target_id(id: &str) -> Result<(), EventsError> {
    check_chars("targets.id", id, 64, &[])
}

impl Target {
    /// The bounds of the input shape, which fail the whole PutTargets.
    pub fn check_shape(&self) -> Result<(), EventsError> {
        if let Some(p) = &self.retry_policy {
            if p.maximum_retry_attempts.is_some_and(|n| n > 185) {
                return Err(EventsError::validation(
                    "1 validation error detected: Value at 'targets.member.retryPolicy.maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 185",
                ));
            }
            if p.maximum_event_age_in_seconds
                .is_some_and(|n| !(60..=86_400).contains(&n))
            {
                return Err(EventsError::validation(
                    "1 validation error detected: Value at 'targets.member.retryPolicy.maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 86400",
                ));
            }
        }
        Ok(())
    }

    /// AWS's checks of one target of PutTargets, which fail that target.
    pub fn check(&self) -> Result<(), EventsError> {
        check_target_id(&self.id)?;
        if self.arn.is_empty() || self.arn.len() > 1600 {
            return Err(EventsError::validation(
                "Parameter Arn is not valid: it must have length between 1 and 1600.",
            ));
        }
        let given = [
            self.input.is_some(),
            self.input_path.is_some(),
            self.input_transformer.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(EventsError::validation(
                "Only one of Input, InputPath, or InputTransformer must be provided.",
            ));
        }
        if let Some(input) = &self.input {
            if input.len() > 8192 || serde_json::from_str::<Value>(input).is_err() {
                return Err(EventsError::validation(
                    "Input for target is not valid JSON (at most 8192 characters).",
                ));
            }
        }
        if let Some(path) = &self.input_path {
            crate::envelope::JsonPath::parse(path).map_err(|e| {
                EventsError::validation(format!("InputPath for target {} is invalid: {e}", self.id))
            })?;
        }
        if let Some(t) = &self.input_transformer {
            crate::envelope::Template::compile(t).map_err(|e| {
                EventsError::validation(format!(
                    "InputTransformer for target {} is invalid: {e}",
                    self.id
                ))
            })?;
        }
        if let Some(arn) = self
            .dead_letter_config
            .as_ref()
            .and_then(|d| d.arn.as_ref())
        {
            if !arn.starts_with("arn:") || !arn.contains(":sqs:") {
                return Err(EventsError::validation(format!(
                    "DeadLetterConfig for target {} must be an SQS queue ARN, not {arn}.",
                    self.id
                )));
            }
        }
        Ok(())
    }
}
