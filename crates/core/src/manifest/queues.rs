//! `[queue.NAME]` and `[[trigger]]`: SQS queues and the event source
//! mappings that feed functions from them.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::ManifestError;
use crate::pattern::Pattern;

/// A queue as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestQueue {
    pub name: String,
    /// CreateQueue's attributes (SQS's names and string values).
    pub attributes: BTreeMap<String, String>,
    /// The dead-letter queue and after how many receives.
    pub dead_letter: Option<(String, u32)>,
}

/// A trigger: a queue feeding a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTrigger {
    pub queue: String,
    pub function: String,
    pub batch_size: Option<u32>,
    pub batching_window_secs: Option<u32>,
    pub report_batch_item_failures: bool,
    pub max_concurrency: Option<u32>,
    /// The filter's pattern, as JSON text.
    pub filter: Option<String>,
    pub enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    fifo: Option<bool>,
    visibility_timeout: Option<Spanned<String>>,
    delay: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    receive_wait: Option<Spanned<String>>,
    max_message_size: Option<Spanned<u32>>,
    content_based_deduplication: Option<Spanned<bool>>,
    dead_letter: Option<Spanned<RawDeadLetter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    queue: String,
    max_receive_count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    queue: Spanned<String>,
    function: Spanned<String>,
    batch_size: Option<Spanned<u32>>,
    batching_window: Option<Spanned<String>>,
    #[serde(default)]
    report_batch_item_failures: bool,
    max_concurrency: Option<Spanned<u32>>,
    filter: Option<Spanned<toml::Value>>,
    enabled: Option<bool>,
}

type Locate<'a> = &'a dyn Fn(Range<usize>, String, Option<String>) -> ManifestError;

/// A duration in whole seconds within `min..=max`.
fn seconds(
    d: &Spanned<String>,
    what: &str,
    min: u64,
    max: u64,
    locate: Locate<'_>,
) -> Result<String, ManifestError> {
    let parsed = crate::duration::parse(d.get_ref()).map_err(|m| locate(d.span(), m, None))?;
    let secs = parsed.as_secs();
    if parsed.subsec_nanos() != 0 || !(min..=max).contains(&secs) {
        return Err(locate(
            d.span(),
            format!(
                "{what} `{}` must be whole seconds from {min}s to {max}s",
                d.get_ref()
            ),
            None,
        ));
    }
    Ok(secs.to_string())
}

fn check_name(name: &str, fifo: bool) -> Result<(), String> {
    let chars = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let ok = name.len() <= 80
        && match name.strip_suffix(".fifo") {
            Some(stem) => fifo && chars(stem),
            None => !fifo && chars(name),
        };
    if ok {
        Ok(())
    } else if fifo {
        Err(format!(
            "FIFO queue `{name}` needs a name of 1 to 80 of A-Z, a-z, 0-9, - and _ ending in .fifo"
        ))
    } else {
        Err(format!("queue `{name}`: names are 1 to 80 of A-Z, a-z, 0-9, - and _ (a name ending in .fifo needs `fifo = true`)"))
    }
}

pub(super) fn queue(
    name: &str,
    q: RawQueue,
    span: Range<usize>,
    locate: Locate<'_>,
) -> Result<ManifestQueue, ManifestError> {
    let fifo = q.fifo.unwrap_or(false);
    check_name(name, fifo).map_err(|m| {
        locate(
            span.clone(),
            m,
            Some("rename the [queue.NAME] table".into()),
        )
    })?;
    let mut attributes = BTreeMap::new();
    if fifo {
        attributes.insert("FifoQueue".into(), "true".into());
    }
    let mut put = |key: &str, v: Option<&Spanned<String>>, what: &str, min: u64, max: u64| {
        if let Some(d) = v {
            attributes.insert(key.into(), seconds(d, what, min, max, locate)?);
        }
        Ok::<(), ManifestError>(())
    };
    put(
        "VisibilityTimeout",
        q.visibility_timeout.as_ref(),
        "visibility_timeout",
        0,
        43_200,
    )?;
    put("DelaySeconds", q.delay.as_ref(), "delay", 0, 900)?;
    put(
        "MessageRetentionPeriod",
        q.retention.as_ref(),
        "retention",
        60,
        1_209_600,
    )?;
    put(
        "ReceiveMessageWaitTimeSeconds",
        q.receive_wait.as_ref(),
        "receive_wait",
        0,
        20,
    )?;
    if let Some(size) = &q.max_message_size {
        let n = *size.get_ref();
        if !(1024..=1_048_576).contains(&n) {
            return Err(locate(
                size.span(),
                format!("max_message_size {n} must be from 1024 to 1048576 bytes"),
                None,
            ));
        }
        attributes.insert("MaximumMessageSize".into(), n.to_string());
    }
    if let Some(c) = &q.content_based_deduplication {
        if !fifo {
            return Err(locate(
                c.span(),
                "content_based_deduplication is for FIFO queues".into(),
                Some("add `fifo = true` (and a .fifo name)".into()),
            ));
        }
        attributes.insert("ContentBasedDeduplication".into(), c.get_ref().to_string());
    }
    let dead_letter = match &q.dead_letter {
        Some(d) => {
            let raw = d.get_ref();
            if !(1..=1000).contains(&raw.max_receive_count) {
                return Err(locate(
                    d.span(),
                    format!(
                        "max_receive_count {} must be from 1 to 1000",
                        raw.max_receive_count
                    ),
                    None,
                ));
            }
            if raw.queue == name {
                return Err(locate(
                    d.span(),
                    format!("queue `{name}` cannot be its own dead-letter queue"),
                    None,
                ));
            }
            Some((raw.queue.clone(), raw.max_receive_count))
        }
        None => None,
    };
    Ok(ManifestQueue {
        name: name.to_string(),
        attributes,
        dead_letter,
    })
}

/// Checks that dead-letter queues are declared and of their source's
/// type, and orders the queues so that each comes after its dead-letter
/// queue (a redrive policy names a queue that exists).
pub(super) fn order_dead_letters(
    queues: Vec<(ManifestQueue, Range<usize>)>,
    locate: Locate<'_>,
) -> Result<Vec<ManifestQueue>, ManifestError> {
    check_dead_letters(&queues, locate)?;
    let mut left = queues;
    let mut ordered: Vec<ManifestQueue> = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|(q, _)| {
            q.dead_letter
                .as_ref()
                .is_none_or(|(d, _)| ordered.iter().any(|o| &o.name == d))
        });
        if ready.is_empty() {
            let (q, span) = &rest[0];
            return Err(locate(
                span.clone(),
                format!("queue `{}` is in a cycle of dead-letter queues", q.name),
                None,
            ));
        }
        ordered.extend(ready.into_iter().map(|(q, _)| q));
        left = rest;
    }
    Ok(ordered)
}

fn check_dead_letters(
    queues: &[(ManifestQueue, Range<usize>)],
    locate: Locate<'_>,
) -> Result<(), ManifestError> {
    for (q, span) in queues {
        let Some((dlq, _)) = &q.dead_letter else {
            continue;
        };
        let Some((target, _)) = queues.iter().find(|(t, _)| &t.name == dlq) else {
            return Err(locate(
                span.clone(),
                format!(
                    "queue `{}` names an undeclared dead-letter queue `{dlq}`",
                    q.name
                ),
                Some(format!("declare it: [queue.{dlq}]")),
            ));
        };
        let fifo = |q: &ManifestQueue| q.attributes.contains_key("FifoQueue");
        if fifo(q) != fifo(target) {
            return Err(locate(span.clone(), format!("queue `{}` and its dead-letter queue `{dlq}` must both be FIFO or both standard", q.name), None));
        }
    }
    Ok(())
}

pub(super) fn trigger(
    t: RawTrigger,
    queues: &[ManifestQueue],
    functions: &[String],
    locate: Locate<'_>,
) -> Result<ManifestTrigger, ManifestError> {
    let queue = t.queue.get_ref().clone();
    if !queues.iter().any(|q| q.name == queue) {
        return Err(locate(
            t.queue.span(),
            format!("trigger reads unknown queue `{queue}`"),
            Some(format!("declare it: [queue.{queue}]")),
        ));
    }
    let function = t.function.get_ref().clone();
    if !functions.contains(&function) {
        return Err(locate(
            t.function.span(),
            format!("trigger points at unknown function `{function}`"),
            Some("declare it in a [function.NAME] table".into()),
        ));
    }
    let batch_size = t.batch_size.as_ref().map(|b| (*b.get_ref(), b.span()));
    if let Some((n, span)) = &batch_size {
        if !(1..=10_000).contains(n) {
            return Err(locate(
                span.clone(),
                format!("batch_size {n} must be from 1 to 10000"),
                None,
            ));
        }
    }
    let window = match &t.batching_window {
        Some(w) => Some(
            seconds(w, "batching_window", 0, 300, locate)?
                .parse::<u32>()
                .unwrap_or(0),
        ),
        None => None,
    };
    if let Some((n, span)) = &batch_size {
        if *n > 10 && window.unwrap_or(0) == 0 {
            return Err(locate(span.clone(), format!("batch_size {n} needs a batching_window"), Some("Lambda takes more than 10 messages a batch only with `batching_window = \"1s\"` or more".into())));
        }
    }
    if let Some(m) = &t.max_concurrency {
        if !(2..=1000).contains(m.get_ref()) {
            return Err(locate(
                m.span(),
                format!("max_concurrency {} must be from 2 to 1000", m.get_ref()),
                None,
            ));
        }
    }
    let filter = match &t.filter {
        Some(f) => {
            let json = serde_json::to_value(f.get_ref())
                .map_err(|e| locate(f.span(), e.to_string(), None))?;
            Pattern::from_value(&json).map_err(|e| {
                locate(
                    f.span(),
                    format!("filter: {}", e.0),
                    Some(
                        "an EventBridge pattern, e.g. `filter = { body = { kind = [\"order\"] } }`"
                            .into(),
                    ),
                )
            })?;
            Some(json.to_string())
        }
        None => None,
    };
    Ok(ManifestTrigger {
        queue,
        function,
        batch_size: batch_size.map(|(n, _)| n),
        batching_window_secs: window,
        report_batch_item_failures: t.report_batch_item_failures,
        max_concurrency: t.max_concurrency.map(|m| *m.get_ref()),
        filter,
        enabled: t.enabled.unwrap_or(true),
    })
}
