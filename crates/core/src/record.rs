//! What every invocation leaves behind: a record and its log lines.

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// The record of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    pub version: String,
    /// What started it: `gateway`, `api`, ...
    pub trigger: String,
    /// Milliseconds since the epoch when it started.
    pub started_at_ms: i64,
    /// Whether this invocation had to prepare the function first.
    pub cold: bool,
    /// Time spent preparing (loading the compiled artifact, starting a worker), if cold.
    pub init_duration_us: Option<u64>,
    pub duration_us: u64,
    /// Duration rounded up to the millisecond, as Lambda bills.
    pub billed_ms: u64,
    pub memory_limit_mb: u32,
    pub max_memory_bytes: u64,
    pub outcome: Outcome,
    pub error_kind: Option<ErrorKind>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// HTTP status the function answered with, when it answered.
    pub status: Option<u16>,
    /// Which delivery of its event this was: 1 for the first (and for
    /// every synchronous call), 2 for the first retry, and so on. Every
    /// attempt has a record of its own under the event's request id.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

/// A first attempt that has not run yet: a success with no duration,
/// memory or status, the start of every record.
impl Default for InvocationRecord {
    fn default() -> InvocationRecord {
        InvocationRecord {
            request_id: String::new(),
            function: String::new(),
            version: String::new(),
            trigger: String::new(),
            started_at_ms: 0,
            cold: false,
            init_duration_us: None,
            duration_us: 0,
            billed_ms: 0,
            memory_limit_mb: 0,
            max_memory_bytes: 0,
            outcome: Outcome::Success,
            error_kind: None,
            error_type: None,
            error_message: None,
            status: None,
            attempt: first_attempt(),
        }
    }
}

/// Marks an invocation's request with the delivery attempt it is (in the
/// request's extensions); without it an invocation is attempt 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryAttempt(pub u32);

/// A line an invocation wrote: its stream, capture time (ms since the
/// epoch) and text.
pub type LogLine = (LogStream, i64, String);

/// A finished invocation as the store keeps it: the record and the lines
/// the function wrote, together in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub record: InvocationRecord,
    pub lines: Vec<LogLine>,
}

impl InvocationRecord {
    /// The invocation's log as Lambda writes it: START, the function's
    /// lines, END and REPORT. The platform lines are derived from the
    /// record, never stored; `seq` is the invocation's place in the log.
    pub fn log_entries(&self, seq: i64, lines: Vec<LogLine>) -> Vec<LogEntry> {
        let entry = |stream, ts_ms, message: String| LogEntry {
            seq,
            request_id: self.request_id.clone(),
            function: self.function.clone(),
            ts_ms,
            stream,
            message,
        };
        let mut out = Vec::with_capacity(lines.len() + 3);
        out.push(entry(
            LogStream::Platform,
            self.started_at_ms,
            format!(
                "START RequestId: {} Version: {}",
                self.request_id, self.version
            ),
        ));
        out.extend(
            lines
                .into_iter()
                .map(|(stream, ts, message)| entry(stream, ts, message)),
        );
        // A cold invocation starts its handler once init is done: END
        // follows the lines the handler wrote, not only its duration.
        let end_us = self.init_duration_us.unwrap_or(0) + self.duration_us;
        let end_ms = self.started_at_ms + (end_us / 1000) as i64;
        out.push(entry(
            LogStream::Platform,
            end_ms,
            format!("END RequestId: {}", self.request_id),
        ));
        out.push(entry(LogStream::Platform, end_ms, self.report_line()));
        out
    }

    /// Lambda's REPORT line.
    pub fn report_line(&self) -> String {
        let mut report = format!(
            "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            self.request_id,
            self.duration_us as f64 / 1000.0,
            self.billed_ms,
            self.memory_limit_mb,
            self.max_memory_bytes.div_ceil(1024 * 1024),
        );
        if let Some(init) = self.init_duration_us {
            report.push_str(&format!("\tInit Duration: {:.2} ms", init as f64 / 1000.0));
        }
        if let Some(t) = &self.error_type {
            report.push_str(&format!("\tStatus: error\tError Type: {t}"));
        }
        report
    }
}

/// A platform line (START, END, REPORT) as Lambda writes it when the
/// function's LogFormat is JSON: `platform.start` and `platform.report`
/// records (there is no END), dropped below the SystemLogLevel (both are
/// INFO). `None`: not such a line, keep it; `Some(None)`: drop it.
pub fn platform_json(
    message: &str,
    ts_ms: i64,
    system_level: Option<&str>,
) -> Option<Option<String>> {
    let kind = ["START", "END", "REPORT"]
        .into_iter()
        .find(|k| message.starts_with(&format!("{k} RequestId: ")))?;
    let shown = system_level.is_none_or(|l| matches!(l, "TRACE" | "DEBUG" | "INFO"));
    if kind == "END" || !shown {
        return Some(None);
    }
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(ts_ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let fields: Vec<(&str, &str)> = message
        .split('\t')
        .flat_map(|part| {
            // START's fields share its line: "START RequestId: x Version: y".
            let mut out = Vec::new();
            let mut rest = part.trim();
            for k in ["START ", "REPORT "] {
                rest = rest.strip_prefix(k).unwrap_or(rest);
            }
            if let Some((id, version)) = rest.split_once(" Version: ") {
                out.push(("Version", version));
                rest = id;
            }
            if let Some((k, v)) = rest.split_once(": ") {
                out.push((k, v));
            }
            out
        })
        .collect();
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let number = |name: &str| {
        field(name)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| match n.fract() == 0.0 {
                true => serde_json::Value::from(n as i64),
                false => serde_json::Value::from(n),
            })
    };
    let request_id = field("RequestId").unwrap_or_default();
    let record = match kind {
        "START" => serde_json::json!({"requestId": request_id, "version": field("Version")}),
        _ => {
            let mut metrics = serde_json::json!({
                "durationMs": number("Duration"),
                "billedDurationMs": number("Billed Duration"),
                "memorySizeMB": number("Memory Size"),
                "maxMemoryUsedMB": number("Max Memory Used"),
            });
            if let Some(init) = number("Init Duration") {
                metrics["initDurationMs"] = init;
            }
            let mut r = serde_json::json!({
                "requestId": request_id,
                "metrics": metrics,
                "status": field("Status").unwrap_or("success"),
            });
            if let Some(t) = field("Error Type") {
                r["errorType"] = t.into();
            }
            r
        }
    };
    let kind = if kind == "START" {
        "platform.start"
    } else {
        "platform.report"
    };
    Some(Some(
        serde_json::json!({"time": time, "type": kind, "record": record}).to_string(),
    ))
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines wisp writes about the invocation (START, END, REPORT, denials).
    Platform,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<LogStream> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            "platform" => Some(LogStream::Platform),
            _ => None,
        }
    }
}

/// One line of output, keyed by request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, assigned by the store; 0 before it is stored.
    #[serde(default)]
    pub seq: i64,
    pub request_id: String,
    pub function: String,
    pub ts_ms: i64,
    pub stream: LogStream,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_lines_in_json_are_lambdas_records() {
        let start = platform_json("START RequestId: r1 Version: $LATEST", 0, None)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&start).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "1970-01-01T00:00:00Z", "type": "platform.start",
                "record": {"requestId": "r1", "version": "$LATEST"}})
        );
        let report = "REPORT RequestId: r1\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 30.00 ms\tStatus: error\tError Type: Runtime.Unknown";
        let v: serde_json::Value =
            serde_json::from_str(&platform_json(report, 0, Some("INFO")).unwrap().unwrap())
                .unwrap();
        assert_eq!(v["type"], "platform.report");
        assert_eq!(
            v["record"],
            serde_json::json!({"requestId": "r1", "status": "error", "errorType": "Runtime.Unknown",
                "metrics": {"durationMs": 1.5, "billedDurationMs": 2, "memorySizeMB": 128,
                    "maxMemoryUsedMB": 40, "initDurationMs": 30}})
        );
        assert_eq!(platform_json("END RequestId: r1", 0, None), Some(None));
        assert_eq!(platform_json(report, 0, Some("WARN")), Some(None));
        assert_eq!(platform_json("hello", 0, None), None);
    }

    /// A cold start's END and REPORT come after init and the handler, so
    /// they follow the lines the handler wrote in time as in order.
    #[test]
    fn end_follows_init_and_the_handler() {
        let record = InvocationRecord {
            request_id: "r".into(),
            function: "f".into(),
            version: "$LATEST".into(),
            trigger: "api".into(),
            started_at_ms: 1_000,
            cold: true,
            init_duration_us: Some(30_000),
            duration_us: 2_500,
            billed_ms: 3,
            memory_limit_mb: 128,
            ..InvocationRecord::default()
        };
        let entries = record.log_entries(7, vec![(LogStream::Stdout, 1_031, "hi".into())]);
        let times: Vec<i64> = entries.iter().map(|e| e.ts_ms).collect();
        assert_eq!(times, [1_000, 1_031, 1_032, 1_032]);
        assert!(entries[2].message.starts_with("END RequestId: r"));
        assert!(entries[3].message.contains("Init Duration: 30.00 ms"));
        assert!(entries.iter().all(|e| e.seq == 7));
    }
}
