//! A queue's settable attributes, as CreateQueue and SetQueueAttributes
//! take them: every bound, default and rule of SQS, with its error codes
//! and messages, so botocore raises the same exceptions it does on AWS.

use std::collections::BTreeMap;

use serde_json::Value;

/// Longest queue name (SQS: 80 characters, `.fifo` included).
pub const MAX_QUEUE_NAME_LEN: usize = 80;
/// Most source queues a `byQueue` RedriveAllowPolicy names.
pub const MAX_REDRIVE_SOURCES: usize = 10;

/// Why attributes or a name were refused, with SQS's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AttributeError {
    /// `InvalidAttributeName`, `InvalidAttributeValue`, `InvalidParameterValue`.
    pub code: &'static str,
    pub message: String,
}

fn bad_value(name: &str) -> AttributeError {
    AttributeError {
        code: "InvalidAttributeValue",
        message: format!("Invalid value for the parameter {name}."),
    }
}

fn bad_value_because(name: &str, why: &str) -> AttributeError {
    AttributeError {
        code: "InvalidAttributeValue",
        message: format!("Invalid value for the parameter {name}. Reason: {why}"),
    }
}

fn unknown(name: &str) -> AttributeError {
    AttributeError {
        code: "InvalidAttributeName",
        message: format!("Unknown Attribute {name}."),
    }
}

/// Where a dead-letter queue is and after how many receives a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
}

/// Which source queues may use this queue as their dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveAllow {
    AllowAll,
    DenyAll,
    ByQueue(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeduplicationScope {
    Queue,
    MessageGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoThroughputLimit {
    PerQueue,
    PerMessageGroupId,
}

/// A queue's settable attributes, with SQS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAttributes {
    pub delay_seconds: u32,
    pub maximum_message_size: u32,
    pub message_retention_period: u32,
    pub receive_message_wait_time_seconds: u32,
    pub visibility_timeout: u32,
    pub policy: Option<String>,
    pub redrive_policy: Option<RedrivePolicy>,
    pub redrive_allow_policy: Option<RedriveAllow>,
    pub fifo_queue: bool,
    pub content_based_deduplication: bool,
    pub deduplication_scope: DeduplicationScope,
    pub fifo_throughput_limit: FifoThroughputLimit,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_period_seconds: u32,
    pub sqs_managed_sse_enabled: bool,
}

impl Default for QueueAttributes {
    fn default() -> Self {
        QueueAttributes {
            delay_seconds: 0,
            maximum_message_size: 1_048_576,
            message_retention_period: 345_600,
            receive_message_wait_time_seconds: 0,
            visibility_timeout: 30,
            policy: None,
            redrive_policy: None,
            redrive_allow_policy: None,
            fifo_queue: false,
            content_based_deduplication: false,
            deduplication_scope: DeduplicationScope::Queue,
            fifo_throughput_limit: FifoThroughputLimit::PerQueue,
            kms_master_key_id: None,
            kms_data_key_reuse_period_seconds: 300,
            sqs_managed_sse_enabled: true,
        }
    }
}

/// The integer attributes and their inclusive bounds.
const BOUNDS: [(&str, u32, u32); 6] = [
    ("DelaySeconds", 0, 900),
    ("MaximumMessageSize", 1024, 1_048_576),
    ("MessageRetentionPeriod", 60, 1_209_600),
    ("ReceiveMessageWaitTimeSeconds", 0, 20),
    ("VisibilityTimeout", 0, 43_200),
    ("KmsDataKeyReusePeriodSeconds", 60, 86_400),
];

/// Attributes only a FIFO queue has.
/// Every settable attribute's name.
pub const ATTRIBUTE_NAMES: [&str; 15] = [
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsDataKeyReusePeriodSeconds",
    "Policy",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "SqsManagedSseEnabled",
];

const FIFO_ONLY: [&str; 3] = [
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Checks a queue name: 1 to 80 of `A-Za-z0-9-_`, and for a FIFO queue
/// (`fifo`) the `.fifo` suffix, which only a FIFO queue may have.
pub fn check_queue_name(name: &str, fifo: bool) -> Result<(), AttributeError> {
    let stem = name.strip_suffix(".fifo");
    let chars_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let ok = name.len() <= MAX_QUEUE_NAME_LEN
        && match (fifo, stem) {
            (true, Some(stem)) => chars_ok(stem),
            (false, None) => chars_ok(name),
            _ => false,
        };
    if ok {
        return Ok(());
    }
    let message = if fifo || stem.is_some() {
        "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length."
    } else {
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
    };
    Err(AttributeError {
        code: "InvalidParameterValue",
        message: message.into(),
    })
}

impl QueueAttributes {
    /// The attributes of a new queue named `name`: SQS's defaults with
    /// `given` applied; FIFO-ness comes from `FifoQueue` and must agree
    /// with the name.
    pub fn create(
        name: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<QueueAttributes, AttributeError> {
        let mut attributes = QueueAttributes::default();
        if let Some(v) = given.get("FifoQueue") {
            // false is a standard queue, as when it is not given.
            attributes.fifo_queue = parse_bool("FifoQueue", v)?;
        }
        check_queue_name(name, attributes.fifo_queue)?;
        attributes.apply(given, true)?;
        Ok(attributes)
    }

    /// The attributes of a queue wisp keeps for itself, whose name is
    /// not one SQS allows (so no user's queue can take it).
    pub fn create_internal(
        given: &BTreeMap<String, String>,
    ) -> Result<QueueAttributes, AttributeError> {
        let mut attributes = QueueAttributes::default();
        attributes.apply(given, true)?;
        Ok(attributes)
    }

    /// Applies SetQueueAttributes' `given`; `FifoQueue` cannot change.
    pub fn set(&mut self, given: &BTreeMap<String, String>) -> Result<(), AttributeError> {
        let mut next = self.clone();
        next.apply(given, false)?;
        *self = next;
        Ok(())
    }

    fn apply(
        &mut self,
        given: &BTreeMap<String, String>,
        creating: bool,
    ) -> Result<(), AttributeError> {
        for (name, value) in given {
            if FIFO_ONLY.contains(&name.as_str()) && !self.fifo_queue {
                return Err(unknown(name));
            }
            if let Some((_, min, max)) = BOUNDS.iter().find(|(n, ..)| n == name) {
                let n: u32 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (*min..=*max).contains(n))
                    .ok_or_else(|| bad_value(name))?;
                match name.as_str() {
                    "DelaySeconds" => self.delay_seconds = n,
                    "MaximumMessageSize" => self.maximum_message_size = n,
                    "MessageRetentionPeriod" => self.message_retention_period = n,
                    "ReceiveMessageWaitTimeSeconds" => self.receive_message_wait_time_seconds = n,
                    "VisibilityTimeout" => self.visibility_timeout = n,
                    _ => self.kms_data_key_reuse_period_seconds = n,
                }
                continue;
            }
            match name.as_str() {
                "FifoQueue" if creating => {}
                "FifoQueue" => {
                    if parse_bool(name, value)? != self.fifo_queue {
                        return Err(bad_value_because(name, "a queue's type cannot change"));
                    }
                }
                "Policy" => self.policy = optional_json(name, value)?,
                "RedrivePolicy" => self.redrive_policy = redrive_policy(value)?,
                "RedriveAllowPolicy" => self.redrive_allow_policy = redrive_allow(value)?,
                "ContentBasedDeduplication" => {
                    self.content_based_deduplication = parse_bool(name, value)?
                }
                "DeduplicationScope" => {
                    self.deduplication_scope = match value.as_str() {
                        "queue" => DeduplicationScope::Queue,
                        "messageGroup" => DeduplicationScope::MessageGroup,
                        _ => return Err(bad_value(name)),
                    }
                }
                "FifoThroughputLimit" => {
                    self.fifo_throughput_limit = match value.as_str() {
                        "perQueue" => FifoThroughputLimit::PerQueue,
                        "perMessageGroupId" => FifoThroughputLimit::PerMessageGroupId,
                        _ => return Err(bad_value(name)),
                    }
                }
                "KmsMasterKeyId" => {
                    self.kms_master_key_id = Some(value.clone()).filter(|v| !v.is_empty())
                }
                "SqsManagedSseEnabled" => self.sqs_managed_sse_enabled = parse_bool(name, value)?,
                _ => return Err(unknown(name)),
            }
        }
        if self.fifo_throughput_limit == FifoThroughputLimit::PerMessageGroupId
            && self.deduplication_scope == DeduplicationScope::Queue
        {
            return Err(bad_value_because(
                "FifoThroughputLimit",
                "perMessageGroupId is only allowed with DeduplicationScope messageGroup",
            ));
        }
        Ok(())
    }

    /// The settable attributes as GetQueueAttributes shows them.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("DelaySeconds", self.delay_seconds.to_string());
        put("MaximumMessageSize", self.maximum_message_size.to_string());
        put(
            "MessageRetentionPeriod",
            self.message_retention_period.to_string(),
        );
        put(
            "ReceiveMessageWaitTimeSeconds",
            self.receive_message_wait_time_seconds.to_string(),
        );
        put("VisibilityTimeout", self.visibility_timeout.to_string());
        put(
            "SqsManagedSseEnabled",
            self.sqs_managed_sse_enabled.to_string(),
        );
        if let Some(p) = &self.policy {
            put("Policy", p.clone());
        }
        if let Some(r) = &self.redrive_policy {
            put(
                "RedrivePolicy",
                serde_json::json!({"deadLetterTargetArn": r.dead_letter_target_arn, "maxReceiveCount": r.max_receive_count}).to_string(),
            );
        }
        if let Some(a) = &self.redrive_allow_policy {
            let v = match a {
                RedriveAllow::AllowAll => serde_json::json!({"redrivePermission": "allowAll"}),
                RedriveAllow::DenyAll => serde_json::json!({"redrivePermission": "denyAll"}),
                RedriveAllow::ByQueue(arns) => {
                    serde_json::json!({"redrivePermission": "byQueue", "sourceQueueArns": arns})
                }
            };
            put("RedriveAllowPolicy", v.to_string());
        }
        if let Some(k) = &self.kms_master_key_id {
            put("KmsMasterKeyId", k.clone());
            put(
                "KmsDataKeyReusePeriodSeconds",
                self.kms_data_key_reuse_period_seconds.to_string(),
            );
        }
        if self.fifo_queue {
            put("FifoQueue", "true".into());
            put(
                "ContentBasedDeduplication",
                self.content_based_deduplication.to_string(),
            );
            let scope = match self.deduplication_scope {
                DeduplicationScope::Queue => "queue",
                DeduplicationScope::MessageGroup => "messageGroup",
            };
            put("DeduplicationScope", scope.into());
            let limit = match self.fifo_throughput_limit {
                FifoThroughputLimit::PerQueue => "perQueue",
                FifoThroughputLimit::PerMessageGroupId => "perMessageGroupId",
            };
            put("FifoThroughputLimit", limit.into());
        }
        m
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, AttributeError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_value(name)),
    }
}

/// A JSON document, or none for an empty string (which clears it).
fn optional_json(name: &str, value: &str) -> Result<Option<String>, AttributeError> {
    if value.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<Value>(value)
        .ok()
        .filter(Value::is_object)
        .map(|_| Some(value.to_string()))
        .ok_or_else(|| bad_value(name))
}

/// A queue ARN: `arn:<partition>:sqs:<region>:<account>:<name>`.
pub fn is_queue_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sqs"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && check_queue_name(parts[5], parts[5].ends_with(".fifo")).is_ok()
}

fn redrive_policy(value: &str) -> Result<Option<RedrivePolicy>, AttributeError> {
    const NAME: &str = "RedrivePolicy";
    if value.is_empty() {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_str(value).map_err(|_| bad_value_because(NAME, "Invalid JSON."))?;
    let arn = v["deadLetterTargetArn"].as_str().ok_or_else(|| {
        bad_value_because(
            NAME,
            "Redrive policy does not contain mandatory attribute: deadLetterTargetArn.",
        )
    })?;
    if !is_queue_arn(arn) {
        return Err(bad_value_because(
            NAME,
            "Invalid value for deadLetterTargetArn.",
        ));
    }
    // SQS takes the count as a number or a string of one.
    let count = match &v["maxReceiveCount"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        Value::Null => {
            return Err(bad_value_because(
                NAME,
                "Redrive policy does not contain mandatory attribute: maxReceiveCount.",
            ))
        }
        _ => None,
    };
    let count = count.filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
        bad_value_because(
            NAME,
            "Invalid value for maxReceiveCount: must be an integer from 1 to 1000.",
        )
    })?;
    Ok(Some(RedrivePolicy {
        dead_letter_target_arn: arn.to_string(),
        max_receive_count: count as u32,
    }))
}

fn redrive_allow(value: &str) -> Result<Option<RedriveAllow>, AttributeError> {
    const NAME: &str = "RedriveAllowPolicy";
    if value.is_empty() {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_str(value).map_err(|_| bad_value_because(NAME, "Invalid JSON."))?;
    let sources = v.get("sourceQueueArns");
    let allow = match v["redrivePermission"].as_str() {
        Some("allowAll") if sources.is_none() => RedriveAllow::AllowAll,
        Some("denyAll") if sources.is_none() => RedriveAllow::DenyAll,
        Some("byQueue") => {
            let arns: Vec<String> = sources
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if arns.is_empty()
                || arns.len() > MAX_REDRIVE_SOURCES
                || !arns.iter().all(|a| is_queue_arn(a))
            {
                return Err(bad_value_because(
                    NAME,
                    &format!("byQueue needs 1 to {MAX_REDRIVE_SOURCES} source queue ARNs in sourceQueueArns."),
                ));
            }
            RedriveAllow::ByQueue(arns)
        }
        Some("allowAll" | "denyAll") => {
            return Err(bad_value_because(
                NAME,
                "sourceQueueArns is only allowed with redrivePermission byQueue.",
            ))
        }
        _ => {
            return Err(bad_value_because(
                NAME,
                "redrivePermission must be allowAll, denyAll or byQueue.",
            ))
        }
    };
    Ok(Some(allow))
}

#[cfg(test)]
mod tests;
