//! Archives: appends read back by time range and cursor, in append order,
//! archives apart, sizes, dropping.

use crate::ArchiveStore;

fn event(n: i64) -> String {
    format!(r#"{{"n":{n}}}"#)
}

/// On a store with no archives yet; times are near the real clock (a
/// backend may keep them by it).
pub async fn archives<S: ArchiveStore + ?Sized>(s: &S) {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(s.archive_size("a").await.unwrap(), (0, 0));
    assert!(s
        .read_archive("a", 0, i64::MAX, 0, 10)
        .await
        .unwrap()
        .is_empty());
    let first: Vec<(i64, String)> = (0..5).map(|n| (t0 + n * 10, event(n))).collect();
    s.append_archive("a", first, None).await.unwrap();
    s.append_archive("b", vec![(t0, event(100))], None)
        .await
        .unwrap();
    s.append_archive("a", vec![(t0 + 50, event(5))], Some(t0 + 60_000))
        .await
        .unwrap();

    let all = s.read_archive("a", t0, t0 + 1_000, 0, 100).await.unwrap();
    let ns: Vec<&str> = all.iter().map(|a| a.event.as_str()).collect();
    assert_eq!(ns, (0..6).map(event).collect::<Vec<_>>());
    assert_eq!(all[2].time_ms, t0 + 20);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

    // A time range, read page by page after a cursor.
    let page = s.read_archive("a", t0 + 10, t0 + 40, 0, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|a| a.event.clone()).collect::<Vec<_>>(),
        [event(1), event(2)]
    );
    let rest = s
        .read_archive("a", t0 + 10, t0 + 40, page[1].seq, 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|a| a.event.clone()).collect::<Vec<_>>(),
        [event(3)]
    );

    let (count, bytes) = s.archive_size("a").await.unwrap();
    assert_eq!(count, 6);
    assert!(bytes >= 6 * 7, "{bytes}");
    assert_eq!(s.archive_size("b").await.unwrap().0, 1);

    s.drop_archive("a").await.unwrap();
    assert_eq!(s.archive_size("a").await.unwrap().0, 0);
    assert!(s
        .read_archive("a", 0, i64::MAX, 0, 10)
        .await
        .unwrap()
        .is_empty());
    let b = s.read_archive("b", 0, i64::MAX, 0, 10).await.unwrap();
    assert_eq!(b.len(), 1, "another archive is untouched");
}
