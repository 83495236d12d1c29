//! The SQS queue store's transitions. Times are real (milliseconds since
//! the epoch) and visibility timeouts short: a backend may keep its timers
//! on a server's clock (JetStream redelivers on its own), so the checks
//! wait for what they expect, up to a few seconds, instead of jumping a
//! fake clock.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::sqs::{
    DeadLetter, FifoKeys, NewMessage, QueueRow, ReceiveRequest, Received, StoredMessage,
    VisibilityChange,
};
use crate::{QueueStore, StoreError};

/// How long a received message stays invisible in these checks.
pub const VISIBILITY_MS: i64 = 400;

/// Now, in milliseconds since the epoch.
pub fn now() -> i64 {
    use wisp_core::clock::Clock;
    wisp_core::clock::SystemClock.now_ms()
}

/// Every check, on a store with no queues yet.
pub async fn queues(s: &dyn QueueStore) {
    lifecycle(s).await;
    stored_once_by_id(s).await;
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

/// A message sent at `at`, visible at once, kept for a long while.
pub fn message(id: &str, at: i64) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        body: format!("body of {id}"),
        extra: "{}".into(),
        sent_ms: at,
        visible_ms: at,
        expires_ms: at + 1_000_000,
        fifo: None,
        once_until_ms: None,
    }
}

fn fifo(id: &str, group: &str, dedup: &str, at: i64, window_ms: i64) -> NewMessage {
    NewMessage {
        fifo: Some(FifoKeys {
            group_id: group.into(),
            deduplication_id: dedup.into(),
            per_group: false,
            dedupe_until_ms: at + window_ms,
        }),
        ..message(id, at)
    }
}

pub fn receive(q: &str, max: usize, now: i64) -> ReceiveRequest {
    ReceiveRequest {
        queue: q.into(),
        max_messages: max,
        visibility_ms: VISIBILITY_MS,
        now_ms: now,
        fifo: q.ends_with(".fifo"),
        dead_letter: None,
    }
}

fn ids(r: &Received) -> Vec<&str> {
    r.messages.iter().map(|m| m.message_id.as_str()).collect()
}

/// Receives (with `request`, at the time of each try) until `want`
/// messages came, or five seconds passed; what came, in order, each
/// message once (its first receive here).
async fn receive_until(
    s: &dyn QueueStore,
    request: impl Fn(i64) -> ReceiveRequest,
    want: usize,
) -> Vec<StoredMessage> {
    let mut got = Vec::new();
    let deadline = now() + 5000;
    while got.len() < want && now() < deadline {
        for m in s.receive_messages(request(now())).await.unwrap().messages {
            if !got
                .iter()
                .any(|g: &StoredMessage| g.message_id == m.message_id)
            {
                got.push(m);
            }
        }
        if got.len() < want {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    got
}

fn names(messages: &[StoredMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.message_id.as_str()).collect()
}

/// A standard message wisp sends under an id of its own, with a window:
/// sent again inside the window (even after it was received and
/// deleted), it is not stored again. (What happens after the window is
/// not checked: JetStream's own duplicate window runs on the real clock.)
async fn stored_once_by_id(s: &dyn QueueStore) {
    s.create_queue(queue("once")).await.unwrap();
    let t0 = now();
    let once = |id: &str, until| NewMessage {
        once_until_ms: Some(until),
        ..message(id, t0)
    };
    let first = s
        .send_messages("once", vec![once("tick", t0 + 60_000)], t0)
        .await
        .unwrap();
    assert!(!first[0].duplicate);
    let got = receive_until(s, |at| receive("once", 10, at), 1).await;
    assert_eq!(names(&got), ["tick"]);
    let deleted = s
        .delete_messages("once", vec![got[0].receipt])
        .await
        .unwrap();
    assert_eq!(deleted, [true]);
    let again = s
        .send_messages(
            "once",
            vec![once("tick", t0 + 60_000), once("other", t0 + 60_000)],
            now(),
        )
        .await
        .unwrap();
    assert!(again[0].duplicate, "inside its window: not stored again");
    assert_eq!(again[0].message_id, "tick");
    assert!(!again[1].duplicate);
    let c = s.queue_counts("once", now()).await.unwrap();
    assert_eq!(c.visible, 1);
}

async fn lifecycle(s: &dyn QueueStore) {
    s.create_queue(queue("a")).await.unwrap();
    assert!(matches!(
        s.create_queue(queue("a")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.send_messages("nope", vec![message("x", now())], now())
            .await,
        Err(StoreError::NotFound(_))
    ));
    let t0 = now();
    let mut delayed = message("m3", t0);
    delayed.visible_ms = t0 + 1500;
    let sent = s
        .send_messages("a", vec![message("m1", t0), message("m2", t0), delayed], t0)
        .await
        .unwrap();
    assert_eq!(sent.len(), 3);
    assert!(sent
        .iter()
        .all(|m| !m.duplicate && m.sequence_number.is_none()));
    let c = s.queue_counts("a", now()).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (2, 0, 1));
    assert!(c.oldest_sent_ms.is_some());

    let t1 = now();
    let got = s.receive_messages(receive("a", 10, t1)).await.unwrap();
    assert_eq!(ids(&got), ["m1", "m2"]);
    assert_eq!(got.messages[0].receive_count, 1);
    assert_eq!(got.messages[0].first_receive_ms, t1);
    assert_eq!(got.messages[0].body, "body of m1");
    let c = s.queue_counts("a", now()).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 2, 1));

    // Visibility runs out: received again, with a new receipt; the old
    // one no longer deletes it.
    let again = receive_until(s, |t| receive("a", 2, t), 2).await;
    assert_eq!(names(&again), ["m1", "m2"]);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].first_receive_ms, t1);
    let old = got.messages[0].receipt;
    assert_eq!(s.delete_messages("a", vec![old]).await.unwrap(), [false]);
    let new = again[0].receipt;
    assert_eq!(s.delete_messages("a", vec![new]).await.unwrap(), [true]);
    assert_eq!(s.delete_messages("a", vec![new]).await.unwrap(), [false]);

    // Visibility changes: in flight, stale, not in flight.
    let m2 = again[1].receipt;
    let stale = got.messages[1].receipt;
    let changed = s
        .change_visibility("a", vec![(m2, now() + 200), (stale, now() + 5000)], now())
        .await
        .unwrap();
    assert_eq!(
        changed,
        [VisibilityChange::Changed, VisibilityChange::Stale]
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        s.change_visibility("a", vec![(m2, now() + 5000)], now())
            .await
            .unwrap(),
        [VisibilityChange::NotInFlight]
    );
    // m2 comes back; m3 once its delay is over.
    let back = receive_until(s, |t| receive("a", 5, t), 2).await;
    assert_eq!(names(&back), ["m2", "m3"]);
    assert_eq!(back[1].receive_count, 1);

    assert_eq!(s.purge_queue("a").await.unwrap(), 2);
    assert_eq!(
        s.queue_counts("a", now()).await.unwrap(),
        Default::default()
    );
    s.send_messages("a", vec![message("after", now())], now())
        .await
        .unwrap();
    let after = receive_until(s, |t| receive("a", 5, t), 1).await;
    assert_eq!(names(&after), ["after"]);
    s.delete_queue("a").await.unwrap();
    assert!(s.get_queue("a").await.unwrap().is_none());
    assert!(matches!(
        s.delete_queue("a").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn fifo_order_and_dedupe(s: &dyn QueueStore) {
    s.create_queue(queue("f.fifo")).await.unwrap();
    let t = now();
    let sent = s
        .send_messages(
            "f.fifo",
            vec![
                fifo("a1", "A", "d1", t, 300),
                fifo("b1", "B", "d2", t, 300_000),
                fifo("a2", "A", "d3", t, 300_000),
                fifo("dup", "A", "d1", t, 300),
            ],
            t,
        )
        .await
        .unwrap();
    let seqs: Vec<_> = sent.iter().map(|s| s.sequence_number.unwrap()).collect();
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2]);
    assert!(sent[3].duplicate);
    assert_eq!(sent[3].message_id, "a1");
    assert_eq!(seqs[3], seqs[0]);

    // A group with one in flight is blocked; the others go on.
    let first = s
        .receive_messages(receive("f.fifo", 1, now()))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a1"]);
    let second = s
        .receive_messages(receive("f.fifo", 10, now()))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["b1"]);
    assert!(s
        .receive_messages(receive("f.fifo", 10, now()))
        .await
        .unwrap()
        .messages
        .is_empty());
    // a1 fails (visibility runs out): it comes back, still before a2.
    let mut retry = receive_until(s, |t| receive("f.fifo", 10, t), 3).await;
    let order = names(&retry);
    let at = |id| order.iter().position(|n| *n == id);
    assert!(at("a1") < at("a2"), "{order:?}");
    retry.sort_by_key(|m| m.sequence_number);
    assert_eq!(names(&retry), ["a1", "b1", "a2"]);
    assert_eq!(retry[0].group_id.as_deref(), Some("A"));
    assert_eq!(retry[0].deduplication_id.as_deref(), Some("d1"));
    assert_eq!(retry[0].sequence_number, Some(seqs[0]));
    // The window ends: the same deduplication id is a new message.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let t = now();
    let later = s
        .send_messages("f.fifo", vec![fifo("a3", "A", "d1", t, 300)], t)
        .await
        .unwrap();
    assert!(!later[0].duplicate);
    assert!(later[0].sequence_number.unwrap() > seqs[2]);
    // Within a group's scope, the same id in another group is new.
    let mut scoped = fifo("c1", "C", "d2", t, 300_000);
    scoped.fifo.as_mut().unwrap().per_group = true;
    let scoped = s.send_messages("f.fifo", vec![scoped], t).await.unwrap();
    assert!(!scoped[0].duplicate);
}

async fn dead_letters_and_moves(s: &dyn QueueStore) {
    s.create_queue(queue("src")).await.unwrap();
    s.create_queue(queue("dlq")).await.unwrap();
    let t = now();
    s.send_messages("src", vec![message("poison", t), message("fine", t)], t)
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
    let r1 = s.receive_messages(with_dl(now())).await.unwrap();
    assert_eq!(r1.messages.len(), 2);
    let fine = r1.messages.iter().find(|m| m.message_id == "fine").unwrap();
    s.delete_messages("src", vec![fine.receipt]).await.unwrap();
    let r2 = receive_until(s, with_dl, 1).await;
    assert_eq!(names(&r2), ["poison"]);
    assert_eq!(r2[0].receive_count, 2);
    // The third receive finds it received twice: it goes to the DLQ.
    let mut dead_lettered = 0;
    let deadline = now() + 5000;
    while dead_lettered == 0 && now() < deadline {
        let r3 = s.receive_messages(with_dl(now())).await.unwrap();
        assert!(r3.messages.is_empty());
        dead_lettered = r3.dead_lettered;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(dead_lettered, 1);
    let in_dlq = receive_until(s, |t| receive("dlq", 10, t), 1).await;
    assert_eq!(names(&in_dlq), ["poison"]);
    assert_eq!(in_dlq[0].receive_count, 1);
    assert_eq!(
        in_dlq[0].dead_letter_source.as_deref(),
        Some(dl.source_arn.as_str())
    );
    // Redrive back to where it came from, as a new message.
    let moved = s.move_messages("dlq", None, 10, now()).await.unwrap();
    assert_eq!((moved.moved, moved.remaining), (1, 0));
    let home = receive_until(s, |t| receive("src", 10, t), 1).await;
    assert_eq!(names(&home), ["poison"]);
    assert_eq!(home[0].receive_count, 1);
    assert_eq!(home[0].dead_letter_source, None);
}

async fn retention(s: &dyn QueueStore) {
    s.create_queue(queue("r")).await.unwrap();
    let t = now();
    let mut short = message("short", t);
    short.expires_ms = t + 100;
    s.send_messages("r", vec![short, message("long", t)], t)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let got = s.receive_messages(receive("r", 10, now())).await.unwrap();
    assert_eq!(ids(&got), ["long"]);
    let t = now();
    let mut gone = message("gone", t);
    gone.expires_ms = t + 100;
    s.send_messages("r", vec![gone], t).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.expire_messages(now()).await.unwrap(), 1);
    assert_eq!(s.queue_counts("r", now()).await.unwrap().in_flight, 1);
}
