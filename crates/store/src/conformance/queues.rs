//! The SQS queue store's transitions.

use std::collections::BTreeMap;

use crate::sqs::{DeadLetter, FifoKeys, NewMessage, QueueRow, ReceiveRequest, VisibilityChange};
use crate::{QueueStore, StoreError};

/// Every check, on a store with no queues yet.
pub async fn queues(s: &dyn QueueStore) {
    lifecycle(s).await;
    fifo_order_and_dedupe(s).await;
    dead_letters_and_moves(s).await;
    retention(s).await;
}

pub fn queue(name: &str) -> QueueRow {
    QueueRow {
        name: name.into(),
        attributes: BTreeMap::from([("VisibilityTimeout".into(), "30".into())]),
        tags: BTreeMap::new(),
        created_ms: 1,
        modified_ms: 1,
    }
}

pub fn message(id: &str, at: i64) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        body: format!("body of {id}"),
        extra: "{}".into(),
        sent_ms: at,
        visible_ms: at,
        expires_ms: at + 1_000_000,
        fifo: None,
    }
}

fn fifo(id: &str, group: &str, dedup: &str, at: i64) -> NewMessage {
    NewMessage {
        fifo: Some(FifoKeys {
            group_id: group.into(),
            deduplication_id: dedup.into(),
            per_group: false,
            dedupe_until_ms: at + 300_000,
        }),
        ..message(id, at)
    }
}

pub fn receive(q: &str, max: usize, now: i64) -> ReceiveRequest {
    ReceiveRequest {
        queue: q.into(),
        max_messages: max,
        visibility_ms: 30_000,
        now_ms: now,
        fifo: q.ends_with(".fifo"),
        dead_letter: None,
    }
}

fn ids(r: &crate::sqs::Received) -> Vec<&str> {
    r.messages.iter().map(|m| m.message_id.as_str()).collect()
}

async fn lifecycle(s: &dyn QueueStore) {
    s.create_queue(queue("a")).await.unwrap();
    assert!(matches!(
        s.create_queue(queue("a")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.send_messages("nope", vec![message("x", 0)], 0).await,
        Err(StoreError::NotFound(_))
    ));
    let sent = s
        .send_messages(
            "a",
            vec![message("m1", 10), message("m2", 10), {
                let mut d = message("m3", 10);
                d.visible_ms = 5_000;
                d
            }],
            10,
        )
        .await
        .unwrap();
    assert_eq!(sent.len(), 3);
    let c = s.queue_counts("a", 20).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (2, 0, 1));

    let got = s.receive_messages(receive("a", 10, 20)).await.unwrap();
    assert_eq!(ids(&got), ["m1", "m2"]);
    assert_eq!(got.next_visible_ms, Some(5_000));
    assert_eq!(got.messages[0].receive_count, 1);
    assert_eq!(got.messages[0].first_receive_ms, 20);
    let c = s.queue_counts("a", 20).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 2, 1));

    // Visibility runs out: received again, with a new receipt; the old
    // one no longer deletes it.
    let again = s.receive_messages(receive("a", 1, 40_000)).await.unwrap();
    assert_eq!(ids(&again), ["m3"]);
    let again = s.receive_messages(receive("a", 2, 40_000)).await.unwrap();
    assert_eq!(ids(&again), ["m1", "m2"]);
    assert_eq!(again.messages[0].receive_count, 2);
    assert_eq!(again.messages[0].first_receive_ms, 20);
    let old = got.messages[0].receipt;
    assert_eq!(s.delete_messages("a", vec![old]).await.unwrap(), [false]);
    let new = again.messages[0].receipt;
    assert_eq!(s.delete_messages("a", vec![new]).await.unwrap(), [true]);
    assert_eq!(s.delete_messages("a", vec![new]).await.unwrap(), [false]);

    // Visibility changes: in flight, stale, not in flight.
    let m2 = again.messages[1].receipt;
    let changed = s
        .change_visibility("a", vec![(m2, 40_000), (old, 50_000)], 40_000)
        .await
        .unwrap();
    assert_eq!(
        changed,
        [VisibilityChange::Changed, VisibilityChange::Stale]
    );
    assert_eq!(
        s.change_visibility("a", vec![(m2, 41_000)], 40_001)
            .await
            .unwrap(),
        [VisibilityChange::NotInFlight]
    );
    let back = s.receive_messages(receive("a", 5, 40_001)).await.unwrap();
    assert_eq!(ids(&back), ["m2"]);

    assert_eq!(s.purge_queue("a").await.unwrap(), 2);
    assert_eq!(s.queue_counts("a", 0).await.unwrap().visible, 0);
    s.delete_queue("a").await.unwrap();
    assert!(s.get_queue("a").await.unwrap().is_none());
    assert!(matches!(
        s.delete_queue("a").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn fifo_order_and_dedupe(s: &dyn QueueStore) {
    s.create_queue(queue("f.fifo")).await.unwrap();
    let sent = s
        .send_messages(
            "f.fifo",
            vec![
                fifo("a1", "A", "d1", 0),
                fifo("b1", "B", "d2", 0),
                fifo("a2", "A", "d3", 0),
                fifo("dup", "A", "d1", 0),
            ],
            0,
        )
        .await
        .unwrap();
    let seqs: Vec<_> = sent.iter().map(|s| s.sequence_number.unwrap()).collect();
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2]);
    assert!(sent[3].duplicate);
    assert_eq!(sent[3].message_id, "a1");
    assert_eq!(seqs[3], seqs[0]);

    // A group with one in flight is blocked; the others go on.
    let first = s.receive_messages(receive("f.fifo", 1, 1)).await.unwrap();
    assert_eq!(ids(&first), ["a1"]);
    let second = s.receive_messages(receive("f.fifo", 10, 1)).await.unwrap();
    assert_eq!(ids(&second), ["b1"]);
    assert!(s
        .receive_messages(receive("f.fifo", 10, 1))
        .await
        .unwrap()
        .messages
        .is_empty());
    // a1 fails (visibility runs out): it comes back, still before a2.
    let retry = s
        .receive_messages(receive("f.fifo", 10, 31_000))
        .await
        .unwrap();
    assert_eq!(ids(&retry), ["a1", "b1", "a2"]);
    // The window ends: the same deduplication id is a new message.
    let later = s
        .send_messages("f.fifo", vec![fifo("a3", "A", "d1", 400_000)], 400_000)
        .await
        .unwrap();
    assert!(!later[0].duplicate);
}

async fn dead_letters_and_moves(s: &dyn QueueStore) {
    s.create_queue(queue("src")).await.unwrap();
    s.create_queue(queue("dlq")).await.unwrap();
    s.send_messages("src", vec![message("poison", 0), message("fine", 0)], 0)
        .await
        .unwrap();
    let dl = DeadLetter {
        queue: "dlq".into(),
        source_arn: "arn:aws:sqs:us-east-1:000000000000:src".into(),
        max_receive_count: 2,
    };
    let with_dl = |now| ReceiveRequest {
        dead_letter: Some(dl.clone()),
        ..receive("src", 10, now)
    };
    let r1 = s.receive_messages(with_dl(0)).await.unwrap();
    assert_eq!(r1.messages.len(), 2);
    let fine = r1.messages.iter().find(|m| m.message_id == "fine").unwrap();
    s.delete_messages("src", vec![fine.receipt]).await.unwrap();
    let r2 = s.receive_messages(with_dl(30_000)).await.unwrap();
    assert_eq!(ids(&r2), ["poison"]);
    // The third receive finds it received twice: it goes to the DLQ.
    let r3 = s.receive_messages(with_dl(60_000)).await.unwrap();
    assert!(r3.messages.is_empty());
    assert_eq!(r3.dead_lettered, 1);
    let in_dlq = s
        .receive_messages(receive("dlq", 10, 60_000))
        .await
        .unwrap();
    assert_eq!(ids(&in_dlq), ["poison"]);
    assert_eq!(in_dlq.messages[0].receive_count, 1);
    assert_eq!(
        in_dlq.messages[0].dead_letter_source.as_deref(),
        Some(dl.source_arn.as_str())
    );
    // Redrive back to where it came from, as a new message.
    let moved = s.move_messages("dlq", None, 10, 70_000).await.unwrap();
    assert_eq!((moved.moved, moved.remaining), (1, 0));
    let home = s
        .receive_messages(receive("src", 10, 70_000))
        .await
        .unwrap();
    assert_eq!(ids(&home), ["poison"]);
    assert_eq!(home.messages[0].receive_count, 1);
}

async fn retention(s: &dyn QueueStore) {
    s.create_queue(queue("r")).await.unwrap();
    let mut short = message("short", 0);
    short.expires_ms = 100;
    s.send_messages("r", vec![short, message("long", 0)], 0)
        .await
        .unwrap();
    let got = s.receive_messages(receive("r", 10, 200)).await.unwrap();
    assert_eq!(ids(&got), ["long"]);
    let mut gone = message("gone", 0);
    gone.expires_ms = 300;
    s.send_messages("r", vec![gone], 0).await.unwrap();
    assert_eq!(s.expire_messages(400).await.unwrap(), 1);
}
