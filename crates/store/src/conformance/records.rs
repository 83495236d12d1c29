//! Invocation records and their logs.

use wisp_core::function::LATEST;
use wisp_core::{Finished, InvocationRecord, LogStream};

use crate::{LogQuery, RecordStore};

/// On a store with no records yet.
pub async fn records(store: &dyn RecordStore) {
    let record = |id: &str, at: i64| InvocationRecord {
        request_id: id.into(),
        function: "f".into(),
        version: LATEST.into(),
        trigger: "api".into(),
        started_at_ms: at,
        duration_us: 10,
        billed_ms: 1,
        memory_limit_mb: 128,
        status: Some(200),
        ..InvocationRecord::default()
    };
    let line = |at: i64, m: &str| (LogStream::Stdout, at, m.to_string());
    store
        .insert_invocations(vec![
            Finished {
                record: record("a", 100),
                lines: vec![line(100, "one")],
            },
            Finished {
                record: record("b", 200),
                lines: vec![line(200, "two"), line(201, "three")],
            },
            Finished {
                record: record("c", 300),
                lines: vec![],
            },
        ])
        .await
        .unwrap();
    let recent = store.list_invocations("f", 10).await.unwrap();
    assert_eq!(recent[0].request_id, "c");
    let q = |request_id: Option<&str>, after: Option<i64>| LogQuery {
        function: Some("f".into()),
        request_id: request_id.map(Into::into),
        since_ms: None,
        after_seq: after,
        limit: 100,
    };
    // START, the function's lines, END, REPORT.
    let b_logs = store.query_logs(q(Some("b"), None)).await.unwrap();
    let messages: Vec<&str> = b_logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 5, "{messages:?}");
    assert_eq!(messages[0], "START RequestId: b Version: $LATEST");
    assert_eq!(&messages[1..3], ["two", "three"]);
    assert_eq!(messages[3], "END RequestId: b");
    assert!(messages[4].starts_with("REPORT RequestId: b\tDuration: 0.01 ms"));
    assert_eq!(b_logs[1].stream, LogStream::Stdout);
    assert_eq!(b_logs[0].stream, LogStream::Platform);
    // Following from b: only c, whose lines are the platform's.
    let after = store
        .query_logs(q(None, Some(b_logs[0].seq)))
        .await
        .unwrap();
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|l| l.request_id == "c"));
    // A limit stops after a whole invocation.
    let first = store
        .query_logs(LogQuery {
            limit: 2,
            ..q(None, None)
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 4);
    // Each attempt of a retried async event keeps its record; the
    // request id gives the latest.
    let mut retried = record("a", 400);
    retried.outcome = wisp_core::Outcome::Error;
    retried.error_kind = Some(wisp_core::ErrorKind::Guest);
    retried.error_type = Some("Sandbox.Timedout".into());
    retried.error_message = Some("Task timed out after 1.00 seconds".into());
    retried.cold = true;
    retried.init_duration_us = Some(1234);
    retried.max_memory_bytes = u32::MAX as u64 + 7;
    retried.status = None;
    store
        .insert_invocations(vec![Finished {
            record: retried.clone(),
            lines: vec![],
        }])
        .await
        .unwrap();
    // Every field comes back as it went in.
    assert_eq!(store.get_invocation("a").await.unwrap(), Some(retried));
    // The first attempt's lines are still there, before the second's.
    let a_logs = store.query_logs(q(Some("a"), None)).await.unwrap();
    let messages: Vec<&str> = a_logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 7, "{messages:?}");
    assert_eq!(messages[1], "one");
    assert!(messages[3].starts_with("REPORT RequestId: a\tDuration: 0.01 ms"));
    assert_eq!(messages[4], "START RequestId: a Version: $LATEST");
    assert_eq!(
        store.purge_records_before(150).await.unwrap(),
        1,
        "a's first attempt, at 100"
    );
    assert_eq!(
        store
            .get_invocation("a")
            .await
            .unwrap()
            .unwrap()
            .started_at_ms,
        400
    );
    assert_eq!(store.purge_records_before(250).await.unwrap(), 1);
    assert!(store.get_invocation("b").await.unwrap().is_none());
    assert!(store.get_invocation("c").await.unwrap().is_some());
    assert_eq!(store.last_log_seq().await.unwrap(), 4);
    // All are old now, but the newest row stays: seq never goes back.
    assert_eq!(store.purge_records_before(1000).await.unwrap(), 1);
    let left = store.list_invocations("f", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(store.last_log_seq().await.unwrap(), 4);
    assert_eq!(store.purge_records_before(1000).await.unwrap(), 0);
    store
        .insert_invocations(vec![Finished {
            record: record("d", 2000),
            lines: vec![],
        }])
        .await
        .unwrap();
    assert_eq!(store.last_log_seq().await.unwrap(), 5);
}
