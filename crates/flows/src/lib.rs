//! Workflows as Step Functions has them: the Amazon States Language. This
//! crate holds the language itself, pure and without I/O — paths into
//! JSON (`path`), payload templates and intrinsic functions (`payload`,
//! `intrinsics`), Choice rules (`choice`), errors and their Retry and Catch
//! matching (`errors`) and the definition with its checks (`asl`) — so
//! the execution engine above it is a loop of plain steps.

pub mod asl;
pub mod callbacks;
pub mod choice;
pub mod durable;
pub mod engine;
pub mod errors;
pub mod executions;
pub mod express_log;
pub mod history;
pub mod http_task;
pub mod inline;
pub mod intrinsics;
pub mod jsonata;
pub mod map_runs;
pub mod path;
pub mod payload;
pub mod run;
pub mod step;
pub mod test_state;
pub mod tokens;
pub mod versions;

/// A time as the context object and history write it (RFC 3339, ms).
pub fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
