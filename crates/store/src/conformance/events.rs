//! The async event queue: acceptance with de-duplication by key, leases
//! of due events, settlement (remove, retry, follow-ups, kept failures,
//! key outcomes), stats.

use std::time::Duration;

use crate::{
    Claim, Enqueued, EventQueue, KeyOutcome, KeyStore, NewEvent, QueuedEvent, Registry, Settle,
    Settlement,
};

pub fn event(id: &str, function: &str, key: Option<&str>, due: i64) -> NewEvent {
    NewEvent {
        request_id: id.into(),
        function: function.into(),
        qualifier: "$LATEST".into(),
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        context: "{}".into(),
        idempotency_key: key.map(Into::into),
        enqueued_ms: 0,
        due_ms: due,
    }
}

/// Leases at `now` until `want` events come (a backend may hand a not-yet
/// -due event back with a real-time delay), for up to two seconds.
async fn lease_until<S: EventQueue + ?Sized>(
    s: &S,
    now: i64,
    want: usize,
) -> (Vec<QueuedEvent>, Option<i64>) {
    let mut got = Vec::new();
    let mut next = None;
    for _ in 0..200 {
        let (events, n) = s.lease_events("f", now, 10).await.unwrap();
        got.extend(events);
        next = n;
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (got, next)
}

/// On a store with no functions yet.
pub async fn events<S: Registry + EventQueue + KeyStore + ?Sized>(s: &S) {
    s.create_function(super::registry::version("f", "x"))
        .await
        .unwrap();
    let got = s
        .enqueue_events(
            vec![
                event("a", "f", Some("k"), 0),
                event("b", "f", Some("k"), 0),
                event("c", "f", None, 50),
                event("d", "gone", None, 0),
            ],
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Enqueued::Accepted,
            Enqueued::Duplicate {
                request_id: "a".into()
            },
            Enqueued::Accepted,
            Enqueued::NoFunction
        ]
    );
    let (leased, next) = s.lease_events("f", 10, 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].request_id, "a");
    assert_eq!(leased[0].payload, b"{\"id\":\"a\"}");
    assert_eq!(next, Some(50));
    let a = leased[0].clone();
    // A leased event is not handed out again; c is due at 50.
    let (leased, _) = lease_until(s, 100, 1).await;
    assert_eq!(leased.len(), 1, "{leased:?}");
    let c = leased[0].clone();
    assert_eq!(c.request_id, "c");
    let stats = s.queue_stats().await.unwrap();
    assert_eq!((stats[0].function.as_str(), stats[0].depth), ("f", 2));
    s.settle_events(vec![
        Settlement {
            id: a.id,
            settle: Settle::Remove,
            follow_ups: vec![event("a-dest", "nowhere", None, 0)],
            failed: None,
            key: Some((
                "f".into(),
                "k".into(),
                KeyOutcome::Done {
                    result: b"r".to_vec(),
                    expires_ms: 1000,
                },
            )),
        },
        Settlement {
            id: c.id,
            settle: Settle::Retry {
                due_ms: 500,
                errors: 1,
                throttles: 0,
                last_response: Some("{\"x\":1}".into()),
            },
            follow_ups: vec![],
            failed: None,
            key: None,
        },
    ])
    .await
    .unwrap();
    // The key now replays; a new event with it is a duplicate until it
    // expires.
    assert_eq!(
        s.claim_key("f", "k", "z", 100, 2000).await.unwrap(),
        Claim::Done {
            request_id: "a".into(),
            result: b"r".to_vec()
        }
    );
    let again = s
        .enqueue_events(vec![event("e", "f", Some("k"), 0)], 200)
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Enqueued::Duplicate {
            request_id: "a".into()
        }]
    );
    // After it expires, the key takes a new event.
    let later = s
        .enqueue_events(vec![event("g", "f", Some("k"), 5000)], 1500)
        .await
        .unwrap();
    assert_eq!(later, vec![Enqueued::Accepted]);

    let (leased, next) = s.lease_events("f", 499, 10).await.unwrap();
    assert!(leased.is_empty(), "{leased:?}");
    assert_eq!(next, Some(500));
    let (leased, _) = lease_until(s, 500, 1).await;
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(
        (
            leased[0].request_id.as_str(),
            leased[0].errors,
            leased[0].last_response.as_deref()
        ),
        ("c", 1, Some("{\"x\":1}"))
    );
    let stats = s.queue_stats().await.unwrap();
    assert_eq!(stats[0].depth, 2, "c and g");
    assert_eq!(stats[0].failed, 1);
    let failed = s.list_failed_events("f", 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].request_id, "a");
    assert!(failed[0].record.contains("`nowhere` does not exist"));

    // A settlement of an event that is gone is ignored.
    s.settle_events(vec![Settlement {
        id: 1 << 40,
        settle: Settle::Remove,
        follow_ups: vec![],
        failed: None,
        key: None,
    }])
    .await
    .unwrap();
    // Deleting the function drops its events.
    s.delete_function("f").await.unwrap();
    s.create_function(super::registry::version("f", "x"))
        .await
        .unwrap();
    assert!(s
        .queue_stats()
        .await
        .unwrap()
        .iter()
        .all(|q| q.depth == 0 && q.failed == 0));
    assert!(s.list_failed_events("f", 10).await.unwrap().is_empty());
}
