//! Executions: created once by name, committed by compare-and-set with
//! their history appended in order, listed newest first by status, read
//! back in id ranges, purged once stopped long enough.

use serde_json::json;

use crate::{Execution, ExecutionStore, StoreError};

fn execution(machine: &str, name: &str, started_ms: i64) -> Execution {
    Execution {
        machine: machine.into(),
        name: name.into(),
        status: "RUNNING".into(),
        started_ms,
        stopped_ms: None,
        definition: r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#.into(),
        input: r#"{"n":1}"#.into(),
        state: json!({"at": "start"}),
        events: 0,
        revision: 0,
    }
}

/// On a store with no executions yet.
pub async fn executions<S: ExecutionStore + ?Sized>(s: &S) {
    let mut a = execution("m", "a", 1_000);
    a.revision = s.create_execution(&a).await.unwrap();
    assert!(matches!(
        s.create_execution(&execution("m", "a", 2_000)).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.get_execution("m", "a").await.unwrap().unwrap();
    assert_eq!(got, a);
    assert!(s.get_execution("m", "nope").await.unwrap().is_none());
    assert!(s.get_execution("other", "a").await.unwrap().is_none());

    // A commit appends events after the last and moves the revision.
    let stale = a.clone();
    a.state = json!({"at": "A"});
    let first = [
        json!({"id": 1, "type": "ExecutionStarted"}),
        json!({"id": 2}),
    ];
    s.commit_execution(&mut a, &first).await.unwrap();
    assert_eq!(a.events, 2);
    assert_ne!(a.revision, stale.revision);
    // A writer still at the old revision loses, and writes nothing.
    let mut lost = stale.clone();
    lost.state = json!({"at": "lost"});
    assert!(matches!(
        s.commit_execution(&mut lost, &[json!({"id": 1, "lost": true})])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.read_history("m", "a", 1, 10).await.unwrap(), first);
    a.status = "SUCCEEDED".into();
    a.stopped_ms = Some(5_000);
    a.state = json!({"output": {"ok": true}});
    s.commit_execution(&mut a, &[json!({"id": 3, "type": "ExecutionSucceeded"})])
        .await
        .unwrap();
    let got = s.get_execution("m", "a").await.unwrap().unwrap();
    assert_eq!(got, a);
    assert_eq!(got.events, 3);
    assert_eq!(got.definition, stale.definition, "the definition stays");
    let history = s.read_history("m", "a", 2, 3).await.unwrap();
    assert_eq!(
        history,
        [
            json!({"id": 2}),
            json!({"id": 3, "type": "ExecutionSucceeded"})
        ]
    );
    assert_eq!(s.read_history("m", "a", 3, 3).await.unwrap().len(), 1);
    assert!(s.read_history("m", "a", 4, 9).await.unwrap().is_empty());

    // A commit to an execution that is gone.
    let mut ghost = execution("m", "ghost", 1);
    ghost.revision = 1;
    assert!(matches!(
        s.commit_execution(&mut ghost, &[]).await,
        Err(StoreError::NotFound(_))
    ));

    // Listing: one machine's, newest first, by status.
    let mut b = execution("m", "b", 3_000);
    b.revision = s.create_execution(&b).await.unwrap();
    s.commit_execution(&mut b, &[json!({"id": 1})])
        .await
        .unwrap();
    s.create_execution(&execution("m2", "c", 4_000))
        .await
        .unwrap();
    let names = |l: Vec<Execution>| l.into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_executions("m", None).await.unwrap()),
        ["b", "a"]
    );
    assert_eq!(
        names(s.list_executions("m", Some("RUNNING")).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        names(s.list_executions("m", Some("SUCCEEDED")).await.unwrap()),
        ["a"]
    );
    assert_eq!(names(s.list_executions("m2", None).await.unwrap()), ["c"]);
    assert!(s.list_executions("none", None).await.unwrap().is_empty());

    // Many events in one commit come back in order.
    let mut c = s.get_execution("m2", "c").await.unwrap().unwrap();
    let many: Vec<_> = (1..=150).map(|i| json!({"id": i})).collect();
    s.commit_execution(&mut c, &many[..100]).await.unwrap();
    s.commit_execution(&mut c, &many[100..]).await.unwrap();
    assert_eq!(s.read_history("m2", "c", 1, 150).await.unwrap(), many);
    assert_eq!(
        s.read_history("m2", "c", 99, 102).await.unwrap(),
        many[98..102]
    );

    // Purging takes the stopped ones before the time, with their history.
    assert_eq!(s.purge_executions("m", 5_000).await.unwrap(), 0);
    assert_eq!(s.purge_executions("m", 5_001).await.unwrap(), 1);
    assert!(s.get_execution("m", "a").await.unwrap().is_none());
    assert!(s.read_history("m", "a", 1, 3).await.unwrap().is_empty());
    assert!(s.get_execution("m", "b").await.unwrap().is_some());
}
