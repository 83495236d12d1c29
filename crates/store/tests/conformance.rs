//! The shared checks (`wisp_store::conformance`) on the embedded store.

use wisp_store::conformance::{
    archives, code, documents, events, executions, keys, queues, records, registry, timers,
};
use wisp_store::SqliteStore;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_registry() {
    let (_dir, s) = store();
    registry::registry(&s).await;
}

#[tokio::test]
async fn sqlite_code() {
    let (_dir, s) = store();
    code::code(&s).await;
}

#[tokio::test]
async fn sqlite_records() {
    let (_dir, s) = store();
    records::records(&s).await;
}

#[tokio::test]
async fn sqlite_keys() {
    let (_dir, s) = store();
    keys::keys(&s).await;
    keys::keys_go_with_their_function(&s).await;
}

#[tokio::test]
async fn sqlite_queues() {
    let (_dir, s) = store();
    queues::queues(&s).await;
}

#[tokio::test]
async fn sqlite_events() {
    let (_dir, s) = store();
    events::events(&s).await;
}

#[tokio::test]
async fn sqlite_documents() {
    let (_dir, s) = store();
    documents::documents(&s).await;
}

#[tokio::test]
async fn sqlite_timers() {
    let (_dir, s) = store();
    timers::timers(&s).await;
}

#[tokio::test]
async fn sqlite_archives() {
    let (_dir, s) = store();
    archives::archives(&s).await;
}

#[tokio::test]
async fn sqlite_archives_purge_what_expired() {
    use wisp_store::ArchiveStore;
    let (_dir, s) = store();
    s.append_archive("a", vec![(1, "{}".into())], Some(100))
        .await
        .unwrap();
    s.append_archive("a", vec![(2, "{}".into())], None)
        .await
        .unwrap();
    assert_eq!(s.purge_archives(100).await.unwrap(), 1);
    assert_eq!(s.archive_size("a").await.unwrap().0, 1);
}

#[tokio::test]
async fn sqlite_executions() {
    let (_dir, s) = store();
    executions::executions(&s).await;
}
