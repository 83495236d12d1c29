//! Delivery: each matched rule and target is a message on a queue wisp
//! keeps for itself, taken by whichever node has room. A delivery that
//! fails is made visible again after a backoff with jitter while the
//! target's RetryPolicy allows (attempts and event age); then it goes to
//! the target's dead-letter queue with AWS's attributes, or, without one,
//! to the kept failures (another internal queue, 14 days) and a metric.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wisp_dispatch::{AcceptError, AsyncRequest};
use wisp_queues::message::{AttributeValue, MessageAttribute};
use wisp_queues::{Message, ReceiveOptions, SendEntry};

use crate::engine::Events;
use crate::model::{RetryPolicy, Target};

/// The queue of pending deliveries, and of those given up on without a
/// dead-letter queue.
pub const DELIVERIES: &str = "wisp~events";
pub const FAILED: &str = "wisp~events-failed";

/// How long a delivery is hidden from other deliverers while one tries
/// it: longer than an attempt takes, short enough that what a crashed
/// node held is soon tried elsewhere.
const VISIBILITY_SECONDS: i64 = 15;
/// Deliveries in flight at once on a node.
const IN_FLIGHT: usize = 256;
/// Most buses an event is forwarded through: a loop of buses sending
/// to each other ends there (the last forward fails, to its DLQ).
pub const MAX_BUS_HOPS: u8 = 5;
/// The longest wait between two attempts.
const MAX_BACKOFF_SECONDS: f64 = 300.0;

/// One rule-target pair to deliver an event to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub bus: String,
    pub rule: String,
    pub target: Target,
    /// What the target gets (the event, or its Input/InputPath/transform).
    pub input: String,
    pub event_id: String,
    pub accepted_ms: i64,
    /// Set when a schedule's tick made the delivery (`bus` is then the
    /// schedule's group, `rule` its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleRun>,
    /// How many buses forwarded the event before this one.
    #[serde(default)]
    pub hops: u8,
}

/// One tick of a schedule, as its dead-letter messages and its Input's
/// context attributes name it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRun {
    pub arn: String,
    pub scheduled_ms: i64,
    pub execution_id: String,
}

impl Delivery {
    /// The labels of its metrics: a rule's bus and name, or a schedule's
    /// group (as `scheduler/<group>`) and name.
    fn labels(&self) -> [(&'static str, String); 2] {
        match self.schedule {
            Some(_) => [
                ("bus", format!("scheduler/{}", self.bus)),
                ("rule", self.rule.clone()),
            ],
            None => [("bus", self.bus.clone()), ("rule", self.rule.clone())],
        }
    }
}

/// Why an attempt failed: an ERROR_CODE as AWS's dead-letter messages
/// carry it, a message, and whether trying again may help.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    pub retry: bool,
}

impl Failure {
    pub(crate) fn not_found(message: String) -> Failure {
        Failure {
            code: "RESOURCE_NOT_FOUND",
            message,
            retry: false,
        }
    }

    pub(crate) fn transient(code: &'static str, message: String) -> Failure {
        Failure {
            code,
            message,
            retry: true,
        }
    }
}

/// The wait before attempt `attempt + 1`: doubling from a second, capped
/// at five minutes, with the upper half jittered.
pub fn backoff_seconds(attempt: u32, unit: f64) -> i64 {
    let full = 2f64
        .powi(attempt.saturating_sub(1).min(16) as i32)
        .min(MAX_BACKOFF_SECONDS);
    (full * (0.5 + 0.5 * unit)).ceil().max(1.0) as i64
}

fn string_attribute(value: String) -> MessageAttribute {
    MessageAttribute {
        data_type: "String".into(),
        value: AttributeValue::String(value),
    }
}

impl Events {
    /// Starts taking deliveries on this node.
    pub fn start_delivering(self: &Arc<Self>) {
        tokio::spawn(self.clone().deliver_loop());
    }

    async fn deliver_loop(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        loop {
            let received = match self.deliveries().await {
                Ok(()) => {
                    self.sqs
                        .receive(
                            DELIVERIES,
                            ReceiveOptions {
                                max_messages: Some(10),
                                visibility_timeout: Some(VISIBILITY_SECONDS),
                                wait_seconds: None,
                                wait_ms: Some(20_000),
                            },
                        )
                        .await
                }
                Err(e) => Err(wisp_queues::SqsError::internal(e.message)),
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot take event deliveries");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for m in messages {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    me.deliver(m).await;
                    drop(permit);
                });
            }
        }
    }

    async fn deliver(&self, m: Message) {
        let d: Delivery = match serde_json::from_str(&m.body) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an unreadable event delivery");
                return self.settle(&m).await;
            }
        };
        let labels = d.labels();
        let mut d = d;
        if d.schedule.is_some() {
            d.input = d.input.replace(
                "<aws.scheduler.attempt-number>",
                &m.receive_count.to_string(),
            );
        }
        let failure = match self.send_to_target(&d).await {
            Ok(()) => {
                metrics::counter!("wisp_events_delivered_total", &labels).increment(1);
                return self.settle(&m).await;
            }
            Err(f) => f,
        };
        let policy = d.target.retry_policy.as_ref();
        let age_ms = self.clock.now_ms() - d.accepted_ms;
        let retries_left = m.receive_count <= RetryPolicy::attempts(policy);
        let young = age_ms < RetryPolicy::max_age_ms(policy);
        if failure.retry && retries_left && young {
            metrics::counter!("wisp_events_retried_total", &labels).increment(1);
            let wait = backoff_seconds(m.receive_count, self.rng.unit());
            let changed = self
                .sqs
                .change_visibility(DELIVERIES, &[(m.receipt_handle.clone(), Some(wait))])
                .await;
            if let Err(e) = changed {
                tracing::warn!(error = %e.message, "cannot put a delivery off; it comes back after its visibility");
            }
            return;
        }
        let exhausted = match (failure.retry, retries_left) {
            (false, _) => None,
            (true, false) => Some("MaximumRetryAttempts"),
            (true, true) => Some("MaximumEventAgeInSeconds"),
        };
        if self.give_up(&d, &failure, exhausted, m.receive_count).await {
            self.settle(&m).await;
        }
    }

    async fn settle(&self, m: &Message) {
        if let Err(e) = self
            .sqs
            .delete(DELIVERIES, std::slice::from_ref(&m.receipt_handle))
            .await
        {
            tracing::warn!(error = %e.message, "cannot remove a finished delivery; it may be made again");
        }
    }

    /// One attempt at handing `d` to its target.
    async fn send_to_target(&self, d: &Delivery) -> Result<(), Failure> {
        let arn = d.target.arn.as_str();
        if arn.contains(":lambda:") {
            return self.to_function(d).await;
        }
        if arn.contains(":sqs:") {
            return self
                .to_queue(
                    arn,
                    &d.input,
                    d.target.sqs_parameters.as_ref(),
                    &d.event_id,
                    BTreeMap::new(),
                )
                .await;
        }
        if arn.contains(":api-destination/") {
            return self.to_http(d).await;
        }
        if arn.contains(":states:") {
            let Some(starter) = self.starter.get() else {
                return Err(Failure::transient(
                    "INTERNAL_ERROR",
                    "workflows are not running".into(),
                ));
            };
            return starter
                .start_execution(arn, &d.input)
                .await
                .map_err(|(retry, message)| Failure {
                    code: if retry {
                        "INTERNAL_ERROR"
                    } else {
                        "SDK_CLIENT_ERROR"
                    },
                    message,
                    retry,
                });
        }
        if arn.contains(":events:") {
            let bus = self
                .bus_name(Some(arn))
                .map_err(|e| Failure::not_found(e.message))?;
            if self.get_bus(&bus).await.ok().flatten().is_none() {
                return Err(Failure::not_found(format!(
                    "Event bus {bus} does not exist."
                )));
            }
            if d.hops >= MAX_BUS_HOPS {
                return Err(Failure {
                    code: "SDK_CLIENT_ERROR",
                    message: format!(
                        "the event went through {MAX_BUS_HOPS} buses already: a loop of buses forwarding to each other?"
                    ),
                    retry: false,
                });
            }
            let event: Value = serde_json::from_str(&d.input).map_err(|e| Failure {
                code: "SDK_CLIENT_ERROR",
                message: format!("the input is not an event: {e}"),
                retry: false,
            })?;
            return self
                .accept(
                    std::iter::once((bus.as_str(), &event)),
                    self.clock.now_ms(),
                    d.hops + 1,
                )
                .await
                .map(|_| ())
                .map_err(|e| Failure::transient("INTERNAL_ERROR", e.message));
        }
        Err(Failure::not_found(format!(
            "{arn} is not a target wisp delivers to"
        )))
    }

    async fn to_function(&self, d: &Delivery) -> Result<(), Failure> {
        let arn = &d.target.arn;
        // arn:aws:lambda:region:account:function:name[:qualifier]
        let mut parts = arn.splitn(8, ':').skip(6);
        let function = parts.next().unwrap_or_default().to_string();
        let qualifier = parts.next().unwrap_or("$LATEST").to_string();
        let request = AsyncRequest {
            function,
            qualifier,
            payload: bytes::Bytes::from(d.input.clone()),
            source: "events".into(),
            invoked_arn: arn.clone(),
            client_context: None,
            idempotency_key: None,
        };
        match self.queue.accept(request).await {
            Ok(_) => Ok(()),
            Err(AcceptError::NoFunction(f)) => {
                Err(Failure::not_found(format!("Function not found: {f}")))
            }
            Err(e @ AcceptError::Store(_)) => {
                Err(Failure::transient("INTERNAL_ERROR", e.to_string()))
            }
        }
    }

    async fn to_queue(
        &self,
        arn: &str,
        body: &str,
        sqs: Option<&crate::model::SqsParameters>,
        event_id: &str,
        attributes: BTreeMap<String, MessageAttribute>,
    ) -> Result<(), Failure> {
        let name = self
            .sqs
            .name_from_arn(arn)
            .ok_or_else(|| Failure::not_found(format!("{arn} is not a queue here")))?;
        let fifo = match self.sqs.queue(&name).await {
            Ok(q) => q.attributes.fifo_queue,
            Err(e) if e.error_type == "QueueDoesNotExist" => {
                return Err(Failure::not_found(format!("Queue {arn} does not exist.")))
            }
            Err(e) => return Err(Failure::transient("INTERNAL_ERROR", e.message)),
        };
        let entry = SendEntry {
            body: body.to_string(),
            delay_seconds: None,
            attributes,
            system_attributes: BTreeMap::new(),
            // A FIFO queue de-duplicates a repeated delivery by event id.
            deduplication_id: fifo.then(|| event_id.to_string()),
            group_id: fifo.then(|| {
                sqs.and_then(|p| p.message_group_id.clone())
                    .unwrap_or_else(|| "events".into())
            }),
            ..SendEntry::default()
        };
        let sent = self.sqs.send(&name, &[entry], "events").await;
        match sent.map(|mut r| r.pop()) {
            Ok(Some(Ok(_))) => Ok(()),
            Ok(Some(Err(e))) => Err(Failure {
                code: "SDK_CLIENT_ERROR",
                message: e.message,
                retry: false,
            }),
            Ok(None) => Err(Failure::transient(
                "INTERNAL_ERROR",
                "nothing was sent".into(),
            )),
            Err(e) => Err(Failure::transient("INTERNAL_ERROR", e.message)),
        }
    }

    /// Sends a delivery that will not be made to its target's dead-letter
    /// queue, or keeps it with the failures; whether it is safe to drop.
    async fn give_up(
        &self,
        d: &Delivery,
        failure: &Failure,
        exhausted: Option<&str>,
        attempts: u32,
    ) -> bool {
        let labels = d.labels();
        let mut attributes = BTreeMap::from([
            (
                "ERROR_CODE".to_string(),
                string_attribute(failure.code.into()),
            ),
            (
                "ERROR_MESSAGE".to_string(),
                string_attribute(failure.message.chars().take(1000).collect()),
            ),
            (
                "TARGET_ARN".to_string(),
                string_attribute(d.target.arn.clone()),
            ),
            (
                "RETRY_ATTEMPTS".to_string(),
                MessageAttribute {
                    data_type: "Number".into(),
                    value: AttributeValue::String(attempts.saturating_sub(1).to_string()),
                },
            ),
        ]);
        match &d.schedule {
            // EventBridge Scheduler's attributes.
            Some(run) => {
                attributes.insert("SCHEDULE_ARN".into(), string_attribute(run.arn.clone()));
                attributes.insert(
                    "SCHEDULED_TIME".into(),
                    string_attribute(crate::envelope::rfc3339(run.scheduled_ms)),
                );
                attributes.insert(
                    "EXECUTION_ID".into(),
                    string_attribute(run.execution_id.clone()),
                );
            }
            None => {
                let rule_arn = self.rule_arn(&d.bus, &d.rule);
                attributes.insert("RULE_ARN".into(), string_attribute(rule_arn));
            }
        }
        if let Some(condition) = exhausted {
            attributes.insert(
                "EXHAUSTED_RETRY_CONDITION".into(),
                string_attribute(condition.into()),
            );
        }
        tracing::warn!(bus = %d.bus, rule = %d.rule, target = %d.target.id, code = failure.code, error = %failure.message, "event delivery failed");
        let dlq = d
            .target
            .dead_letter_config
            .as_ref()
            .and_then(|c| c.arn.as_deref());
        if let Some(dlq) = dlq {
            match self
                .to_queue(dlq, &d.input, None, &d.event_id, attributes)
                .await
            {
                Ok(()) => {
                    metrics::counter!("wisp_events_dead_lettered_total", &labels).increment(1);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(queue = dlq, error = %e.message, "cannot dead-letter an event; keeping it with the failures")
                }
            }
        }
        metrics::counter!("wisp_events_failed_total", &labels).increment(1);
        let kept = serde_json::json!({
            "delivery": d,
            "error_code": failure.code,
            "error_message": failure.message,
            "attempts": attempts,
            "failed_ms": self.clock.now_ms(),
        });
        let attributes = crate::engine::internal_queue_attributes(30);
        let stored = match self.sqs.internal_queue(FAILED, &attributes).await {
            Ok(_) => {
                let entry = SendEntry {
                    body: kept.to_string(),
                    ..SendEntry::default()
                };
                matches!(
                    self.sqs
                        .send(FAILED, &[entry], "events")
                        .await
                        .map(|mut r| r.pop()),
                    Ok(Some(Ok(_)))
                )
            }
            Err(_) => false,
        };
        if !stored {
            tracing::warn!("cannot keep a failed delivery; it stays queued and is tried again");
        }
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_jittered_and_capped() {
        assert_eq!(backoff_seconds(1, 0.0), 1);
        assert_eq!(backoff_seconds(1, 0.999), 1);
        assert_eq!(backoff_seconds(3, 0.999), 4);
        assert_eq!(backoff_seconds(3, 0.0), 2);
        assert_eq!(backoff_seconds(40, 0.999), 300);
        assert_eq!(backoff_seconds(40, 0.0), 150);
    }
}
