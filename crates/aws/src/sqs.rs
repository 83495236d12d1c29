//! SQS on the wire: AWS JSON 1.0, `X-Amz-Target: AmazonSQS.<Operation>`.
//! Turns each operation's input shape into a call on the queue engine and
//! its answer into the output shape; errors carry SQS's query code so
//! botocore raises the modeled exception classes.

use std::collections::BTreeMap;

use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use wisp_queues::message::{AttributeValue, MessageAttribute};
use wisp_queues::{Message, ReceiveOptions, SendEntry, Sqs, SqsError};

use crate::json_protocol::{self, JsonError, JsonVersion};

const V: JsonVersion = JsonVersion::V1_0;

/// The X-Amz-Target prefix of SQS.
pub const TARGET: &str = "AmazonSQS";

/// Who is calling, and how they reached us.
pub struct Caller {
    /// `http://host:port` as the client addressed the API.
    pub base_url: String,
    /// The caller's access key, SQS's SenderId.
    pub sender_id: String,
}

fn error(e: SqsError) -> JsonError {
    let status = if e.internal {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    JsonError::new(V, status, e.error_type, e.message).with_query_code(e.query_code)
}

/// Serves one SQS operation.
pub async fn handle(
    sqs: &std::sync::Arc<Sqs>,
    caller: &Caller,
    operation: &str,
    body: &Bytes,
) -> Response {
    use axum::response::IntoResponse;
    match call(sqs, caller, operation, body).await {
        Ok(v) => json_protocol::ok(V, &v),
        Err(e) => e.into_response(),
    }
}

fn input<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, JsonError> {
    json_protocol::input(V, body)
}

#[derive(Deserialize)]
struct WireAttribute {
    #[serde(rename = "DataType")]
    data_type: Option<String>,
    #[serde(rename = "StringValue")]
    string_value: Option<String>,
    #[serde(rename = "BinaryValue")]
    binary_value: Option<String>,
}

fn attributes_in(
    given: Option<BTreeMap<String, WireAttribute>>,
) -> Result<BTreeMap<String, MessageAttribute>, SqsError> {
    let mut out = BTreeMap::new();
    for (name, a) in given.unwrap_or_default() {
        let data_type = a.data_type.ok_or_else(|| {
            SqsError::invalid(format!(
                "The message attribute '{name}' must contain non-empty message attribute type."
            ))
        })?;
        let value = match (a.string_value, a.binary_value) {
            (_, Some(b)) => AttributeValue::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| {
                        SqsError::invalid(format!(
                            "The message attribute '{name}' has a BinaryValue that is not base64."
                        ))
                    })?,
            ),
            (s, None) => AttributeValue::String(s.unwrap_or_default()),
        };
        out.insert(name, MessageAttribute { data_type, value });
    }
    Ok(out)
}

fn attributes_out(attributes: &BTreeMap<String, MessageAttribute>) -> Value {
    let mut m = Map::new();
    for (name, a) in attributes {
        let v = match &a.value {
            AttributeValue::String(s) => json!({"DataType": a.data_type, "StringValue": s}),
            AttributeValue::Binary(b) => json!({
                "DataType": a.data_type,
                "BinaryValue": base64::engine::general_purpose::STANDARD.encode(b),
            }),
        };
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendInput {
    id: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<i64>,
    message_attributes: Option<BTreeMap<String, WireAttribute>>,
    message_system_attributes: Option<BTreeMap<String, WireAttribute>>,
    message_deduplication_id: Option<String>,
    message_group_id: Option<String>,
}

impl SendInput {
    fn entry(self) -> Result<SendEntry, SqsError> {
        Ok(SendEntry {
            body: self
                .message_body
                .ok_or_else(|| SqsError::missing("MessageBody"))?,
            delay_seconds: self.delay_seconds,
            attributes: attributes_in(self.message_attributes)?,
            system_attributes: attributes_in(self.message_system_attributes)?,
            deduplication_id: self.message_deduplication_id,
            group_id: self.message_group_id,
            message_id: None,
            once_for_ms: None,
        })
    }
}

fn send_output(r: &wisp_queues::SendResult, id: Option<&str>) -> Value {
    let mut v = json!({"MessageId": r.message_id, "MD5OfMessageBody": r.md5_of_body});
    if let Some(id) = id {
        v["Id"] = json!(id);
    }
    if let Some(m) = &r.md5_of_attributes {
        v["MD5OfMessageAttributes"] = json!(m);
    }
    if let Some(m) = &r.md5_of_system_attributes {
        v["MD5OfMessageSystemAttributes"] = json!(m);
    }
    if let Some(s) = &r.sequence_number {
        v["SequenceNumber"] = json!(s);
    }
    v
}

fn failed(id: &str, e: &SqsError) -> Value {
    json!({"Id": id, "SenderFault": !e.internal, "Code": e.error_type, "Message": e.message})
}

fn message_output(m: &Message, system: &[String], names: &[String]) -> Value {
    let mut v = json!({
        "MessageId": m.message_id,
        "ReceiptHandle": m.receipt_handle,
        "MD5OfBody": m.md5_of_body,
        "Body": m.body,
    });
    let attrs = m.system_attributes(system);
    if !attrs.is_empty() {
        v["Attributes"] = json!(attrs);
    }
    let selected = m.message_attributes(names);
    if let Some(md5) = wisp_queues::message::md5_of_attributes(&selected) {
        v["MD5OfMessageAttributes"] = json!(md5);
        v["MessageAttributes"] = attributes_out(&selected);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueInput {
    queue_url: Option<String>,
}

fn queue_name(url: Option<String>) -> Result<String, SqsError> {
    let url = url.ok_or_else(|| SqsError::missing("QueueUrl"))?;
    Sqs::name_from_url(&url)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HandleEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}

/// Checks a batch's ids as SQS does and returns them.
fn batch_ids<'a>(ids: impl Iterator<Item = &'a Option<String>>) -> Result<Vec<String>, SqsError> {
    let ids: Vec<String> = ids.map(|i| i.clone().unwrap_or_default()).collect();
    wisp_queues::engine::check_batch_ids(ids.iter().map(String::as_str))?;
    Ok(ids)
}

fn batch_result(ids: &[String], results: Vec<Result<Value, SqsError>>) -> Value {
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (id, r) in ids.iter().zip(results) {
        match r {
            Ok(mut v) => {
                v["Id"] = json!(id);
                ok.push(v);
            }
            Err(e) => failures.push(failed(id, &e)),
        }
    }
    json!({"Successful": ok, "Failed": failures})
}

/// Pagination over names: the token is the last name returned.
fn page(
    names: Vec<String>,
    max: Option<i64>,
    token: Option<String>,
) -> Result<(Vec<String>, Option<String>), SqsError> {
    let Some(max) = max else {
        return Ok((
            names
                .into_iter()
                .take(wisp_queues::engine::MAX_LIST)
                .collect(),
            None,
        ));
    };
    if !(1..=wisp_queues::engine::MAX_LIST as i64).contains(&max) {
        return Err(SqsError::invalid_value(
            "MaxResults",
            max,
            "Must be between 1 and 1000, if provided.",
        ));
    }
    let after = match token {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("Invalid NextToken."))?,
        ),
    };
    let rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let more = rest.len() > max as usize;
    let shown: Vec<String> = rest.into_iter().take(max as usize).collect();
    let next = match (more, shown.last()) {
        (true, Some(last)) => Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)),
        _ => None,
    };
    Ok((shown, next))
}

async fn call(
    sqs: &std::sync::Arc<Sqs>,
    caller: &Caller,
    operation: &str,
    body: &Bytes,
) -> Result<Value, JsonError> {
    let url = |name: &str| sqs.url(&caller.base_url, name);
    let result: Result<Value, SqsError> = match operation {
        "CreateQueue" => {
            #[derive(Deserialize)]
            struct In {
                #[serde(rename = "QueueName")]
                queue_name: Option<String>,
                #[serde(rename = "Attributes")]
                attributes: Option<BTreeMap<String, String>>,
                tags: Option<BTreeMap<String, String>>,
            }
            let i: In = input(body)?;
            let name = i.queue_name.unwrap_or_default();
            sqs.create_queue(&name, &i.attributes.unwrap_or_default(), i.tags.unwrap_or_default())
                .await
                .map(|q| json!({"QueueUrl": url(&q.name)}))
        }
        "GetQueueUrl" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_name: Option<String>,
            }
            let i: In = input(body)?;
            match i.queue_name {
                None => Err(SqsError::missing("QueueName")),
                Some(name) => sqs.queue(&name).await.map(|q| json!({"QueueUrl": url(&q.name)})),
            }
        }
        "ListQueues" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_name_prefix: Option<String>,
                next_token: Option<String>,
                max_results: Option<i64>,
            }
            let i: In = input(body)?;
            async {
                let names = sqs.list_queues(i.queue_name_prefix.as_deref().unwrap_or("")).await?;
                let (names, next) = page(names, i.max_results, i.next_token)?;
                let mut v = json!({});
                if !names.is_empty() {
                    v["QueueUrls"] = json!(names.iter().map(|n| url(n)).collect::<Vec<_>>());
                }
                if let Some(t) = next {
                    v["NextToken"] = json!(t);
                }
                Ok(v)
            }
            .await
        }
        "DeleteQueue" => {
            let i: QueueInput = input(body)?;
            async { sqs.delete_queue(&queue_name(i.queue_url)?).await.map(|_| json!({})) }.await
        }
        "GetQueueAttributes" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                attribute_names: Option<Vec<String>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let attrs = sqs.get_attributes(&name, &i.attribute_names.unwrap_or_default()).await?;
                Ok(match attrs.is_empty() {
                    true => json!({}),
                    false => json!({"Attributes": attrs}),
                })
            }
            .await
        }
        "SetQueueAttributes" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                attributes: Option<BTreeMap<String, String>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let attrs = i.attributes.ok_or_else(|| SqsError::missing("Attributes"))?;
                sqs.set_attributes(&name, &attrs).await.map(|_| json!({}))
            }
            .await
        }
        "TagQueue" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                tags: Option<BTreeMap<String, String>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                sqs.tag(&name, i.tags.ok_or_else(|| SqsError::missing("Tags"))?)
                    .await
                    .map(|_| json!({}))
            }
            .await
        }
        "UntagQueue" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                tag_keys: Option<Vec<String>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                sqs.untag(&name, &i.tag_keys.ok_or_else(|| SqsError::missing("TagKeys"))?)
                    .await
                    .map(|_| json!({}))
            }
            .await
        }
        "ListQueueTags" => {
            let i: QueueInput = input(body)?;
            async {
                let q = sqs.queue(&queue_name(i.queue_url)?).await?;
                Ok(match q.tags.is_empty() {
                    true => json!({}),
                    false => json!({"Tags": q.tags}),
                })
            }
            .await
        }
        "SendMessage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                #[serde(flatten)]
                message: SendInput,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let entry = i.message.entry()?;
                let mut r = sqs.send(&name, &[entry], &caller.sender_id).await?;
                let r = r.pop().ok_or_else(|| SqsError::internal("no answer for the message"))??;
                Ok(send_output(&r, None))
            }
            .await
        }
        "SendMessageBatch" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                entries: Option<Vec<SendInput>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let entries = i.entries.unwrap_or_default();
                let ids = batch_ids(entries.iter().map(|e| &e.id))?;
                let total: usize = entries
                    .iter()
                    .map(|e| e.message_body.as_deref().map_or(0, str::len))
                    .sum();
                if total > wisp_queues::engine::MAX_BATCH_BYTES {
                    return Err(SqsError::batch(
                        "BatchRequestTooLong",
                        format!("Batch requests cannot be longer than {} bytes. You have sent {total} bytes.", wisp_queues::engine::MAX_BATCH_BYTES),
                    ));
                }
                let mut slots: Vec<Option<Result<Value, SqsError>>> = Vec::with_capacity(entries.len());
                let mut valid = Vec::new();
                for e in entries {
                    match e.entry() {
                        Ok(entry) => {
                            valid.push(entry);
                            slots.push(None);
                        }
                        Err(err) => slots.push(Some(Err(err))),
                    }
                }
                let mut sent = sqs.send(&name, &valid, &caller.sender_id).await?.into_iter();
                let results = slots
                    .into_iter()
                    .map(|slot| match slot {
                        Some(failed) => failed,
                        None => match sent.next() {
                            Some(r) => r.map(|r| send_output(&r, None)),
                            None => Err(SqsError::internal("no answer for the message")),
                        },
                    })
                    .collect();
                Ok(batch_result(&ids, results))
            }
            .await
        }
        "ReceiveMessage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                attribute_names: Option<Vec<String>>,
                message_system_attribute_names: Option<Vec<String>>,
                message_attribute_names: Option<Vec<String>>,
                max_number_of_messages: Option<i64>,
                visibility_timeout: Option<i64>,
                wait_time_seconds: Option<i64>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let mut system = i.attribute_names.unwrap_or_default();
                system.extend(i.message_system_attribute_names.unwrap_or_default());
                let names = i.message_attribute_names.unwrap_or_default();
                let got = sqs
                    .receive(
                        &name,
                        ReceiveOptions {
                            max_messages: i.max_number_of_messages,
                            visibility_timeout: i.visibility_timeout,
                            wait_seconds: i.wait_time_seconds,
                            wait_ms: None,
                        },
                    )
                    .await?;
                Ok(match got.is_empty() {
                    true => json!({}),
                    false => json!({
                        "Messages": got.iter().map(|m| message_output(m, &system, &names)).collect::<Vec<_>>()
                    }),
                })
            }
            .await
        }
        "DeleteMessage" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                receipt_handle: Option<String>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let handle = i.receipt_handle.ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
                let mut r = sqs.delete(&name, &[handle]).await?;
                r.pop().unwrap_or(Ok(()))?;
                Ok(json!({}))
            }
            .await
        }
        "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                entries: Option<Vec<HandleEntry>>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let entries = i.entries.unwrap_or_default();
                let ids = batch_ids(entries.iter().map(|e| &e.id))?;
                let handles: Vec<String> = entries
                    .iter()
                    .map(|e| e.receipt_handle.clone().unwrap_or_default())
                    .collect();
                let results = if operation == "DeleteMessageBatch" {
                    sqs.delete(&name, &handles).await?
                } else {
                    let changes: Vec<(String, Option<i64>)> = handles
                        .into_iter()
                        .zip(entries.iter().map(|e| e.visibility_timeout))
                        .collect();
                    sqs.change_visibility(&name, &changes).await?
                };
                let results = results.into_iter().map(|r| r.map(|_| json!({}))).collect();
                Ok(batch_result(&ids, results))
            }
            .await
        }
        "ChangeMessageVisibility" => {
            let i: HandleInput = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let handle = i.receipt_handle.ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
                let timeout = i.visibility_timeout.ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
                let mut r = sqs.change_visibility(&name, &[(handle, Some(timeout))]).await?;
                r.pop().unwrap_or(Ok(()))?;
                Ok(json!({}))
            }
            .await
        }
        "PurgeQueue" => {
            let i: QueueInput = input(body)?;
            async { sqs.purge(&queue_name(i.queue_url)?).await.map(|_| json!({})) }.await
        }
        "ListDeadLetterSourceQueues" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                queue_url: Option<String>,
                next_token: Option<String>,
                max_results: Option<i64>,
            }
            let i: In = input(body)?;
            async {
                let name = queue_name(i.queue_url)?;
                let names = sqs.dead_letter_sources(&name).await?;
                let (names, next) = page(names, i.max_results, i.next_token)?;
                let mut v = json!({"queueUrls": names.iter().map(|n| url(n)).collect::<Vec<_>>()});
                if let Some(t) = next {
                    v["NextToken"] = json!(t);
                }
                Ok(v)
            }
            .await
        }
        "StartMessageMoveTask" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                source_arn: Option<String>,
                destination_arn: Option<String>,
                max_number_of_messages_per_second: Option<i64>,
            }
            let i: In = input(body)?;
            async {
                let source = i.source_arn.ok_or_else(|| SqsError::missing("SourceArn"))?;
                let handle = sqs
                    .start_move(&source, i.destination_arn.as_deref(), i.max_number_of_messages_per_second)
                    .await?;
                Ok(json!({"TaskHandle": handle}))
            }
            .await
        }
        "ListMessageMoveTasks" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                source_arn: Option<String>,
                max_results: Option<i64>,
            }
            let i: In = input(body)?;
            async {
                let source = i.source_arn.ok_or_else(|| SqsError::missing("SourceArn"))?;
                let tasks = sqs.list_moves(&source, i.max_results).await?;
                let results: Vec<Value> = tasks
                    .iter()
                    .map(|t| {
                        let mut v = json!({
                            "Status": t.status,
                            "SourceArn": t.source_arn,
                            "ApproximateNumberOfMessagesMoved": t.moved,
                            "ApproximateNumberOfMessagesToMove": t.to_move,
                            "StartedTimestamp": t.started_ms,
                        });
                        if let Some(h) = &t.task_handle {
                            v["TaskHandle"] = json!(h);
                        }
                        if let Some(d) = &t.destination_arn {
                            v["DestinationArn"] = json!(d);
                        }
                        if let Some(r) = t.max_per_second {
                            v["MaxNumberOfMessagesPerSecond"] = json!(r);
                        }
                        if let Some(f) = &t.failure_reason {
                            v["FailureReason"] = json!(f);
                        }
                        v
                    })
                    .collect();
                Ok(json!({"Results": results}))
            }
            .await
        }
        "CancelMessageMoveTask" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                task_handle: Option<String>,
            }
            let i: In = input(body)?;
            async {
                let handle = i.task_handle.ok_or_else(|| SqsError::missing("TaskHandle"))?;
                let moved = sqs.cancel_move(&handle).await?;
                Ok(json!({"ApproximateNumberOfMessagesMoved": moved}))
            }
            .await
        }
        "AddPermission" | "RemovePermission" => Err(SqsError::unsupported(
            "Queue permissions are not kept by wisp: every caller with the server's credentials may use every queue.",
        )),
        other => return Err(JsonError::unknown_operation(V, &format!("{TARGET}.{other}"))),
    };
    result.map_err(error)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HandleInput {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}
