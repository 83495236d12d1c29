//! Timers: arming, leasing due ones (once, earliest first, kinds apart),
//! settling only under the lease held, re-arming voiding a lease, a lease
//! that ends making the timer due again.

use crate::{Timer, TimerStore};

fn timer(kind: &str, id: &str, due_ms: i64) -> Timer {
    Timer {
        kind: kind.into(),
        id: id.into(),
        due_ms,
        payload: format!("{id}@{due_ms}"),
    }
}

/// On a store with no timers yet. Lease calls retry briefly: a backend
/// may learn of a timer just armed a moment later (never earlier).
pub async fn timers<S: TimerStore + ?Sized>(s: &S) {
    assert_eq!(s.next_timer_due("tick").await.unwrap(), None);
    s.set_timer(&timer("tick", "b", 2_000)).await.unwrap();
    s.set_timer(&timer("tick", "a", 1_000)).await.unwrap();
    s.set_timer(&timer("tick", "later", 9_000)).await.unwrap();
    s.set_timer(&timer("wait", "a", 500)).await.unwrap();
    assert_eq!(
        s.get_timer("tick", "a").await.unwrap(),
        Some(timer("tick", "a", 1_000))
    );
    assert_eq!(s.next_timer_due("tick").await.unwrap(), Some(1_000));

    // Due ones, earliest first, of the kind asked for only.
    let leased = lease_until(s, "tick", 5_000, 2).await;
    let ids: Vec<&str> = leased.iter().map(|l| l.timer.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(leased[0].timer.payload, "a@1000");
    // On a lease, they are not handed out again.
    assert!(s
        .lease_due_timers("tick", 5_000, 1_000, 10)
        .await
        .unwrap()
        .is_empty());

    // Settling re-arms (keeping the payload) or removes.
    assert!(s.settle_timer(&leased[0], Some(7_000), None).await.unwrap());
    assert!(
        !s.settle_timer(&leased[0], None, None).await.unwrap(),
        "a lease settles once"
    );
    assert_eq!(
        s.get_timer("tick", "a").await.unwrap().unwrap().due_ms,
        7_000
    );
    assert_eq!(
        s.get_timer("tick", "a").await.unwrap().unwrap().payload,
        "a@1000"
    );

    // Armed again while leased: the old lease no longer settles it.
    s.set_timer(&timer("tick", "b", 8_000)).await.unwrap();
    assert!(!s.settle_timer(&leased[1], None, None).await.unwrap());
    assert_eq!(
        s.get_timer("tick", "b").await.unwrap().unwrap().due_ms,
        8_000
    );

    // A lease that ends makes the timer due again, for another taker;
    // the first lease is then void.
    let first = lease_until(s, "tick", 7_500, 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].timer.id, "a");
    let second = lease_until(s, "tick", 8_600, 2).await;
    let ids: Vec<&str> = second.iter().map(|l| l.timer.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "a's lease ended at 8500");
    assert!(!s.settle_timer(&first[0], None, None).await.unwrap());
    assert!(s
        .settle_timer(&second[0], None, Some("new".into()))
        .await
        .unwrap());
    assert_eq!(s.get_timer("tick", "a").await.unwrap(), None);

    // Settled with a new payload.
    assert!(s
        .settle_timer(&second[1], Some(20_000), Some("next".into()))
        .await
        .unwrap());
    assert_eq!(
        s.get_timer("tick", "b").await.unwrap().unwrap().payload,
        "next"
    );

    // Cancelled: gone, and its lease void.
    let later = lease_until(s, "tick", 10_000, 1).await;
    assert_eq!(later.len(), 1);
    assert!(s.cancel_timer("tick", "later").await.unwrap());
    assert!(!s.cancel_timer("tick", "later").await.unwrap());
    assert!(!s.settle_timer(&later[0], Some(30_000), None).await.unwrap());
    assert_eq!(s.get_timer("tick", "later").await.unwrap(), None);

    // The other kind was never touched; awkward ids are kept as given.
    assert_eq!(s.get_timer("wait", "a").await.unwrap().unwrap().due_ms, 500);
    let odd = "group/név.with dots*>";
    s.set_timer(&timer("wait", odd, 600)).await.unwrap();
    let waits = lease_until(s, "wait", 1_000, 2).await;
    let ids: Vec<&str> = waits.iter().map(|l| l.timer.id.as_str()).collect();
    assert_eq!(ids, ["a", odd]);
    assert_eq!(s.next_timer_due("tick").await.unwrap(), Some(20_000));
}

/// Leases until `want` timers came back (or a few seconds passed).
async fn lease_until<S: TimerStore + ?Sized>(
    s: &S,
    kind: &str,
    now_ms: i64,
    want: usize,
) -> Vec<crate::LeasedTimer> {
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(
            s.lease_due_timers(kind, now_ms, 1_000, want - got.len())
                .await
                .unwrap(),
        );
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    got.sort_by_key(|l| (l.timer.due_ms, l.timer.id.clone()));
    got
}
