//! Issue 4: a region on PostgreSQL. The behaviour tests run on both backends (see support.rs);
//! these check what only the PostgreSQL path has: its URL and its server.

use sovereign_cloud::{Policies, RegionOptions, RegionState};
use sovereign_model::RegionId;

async fn open_with(dir: &std::path::Path, database: &str) -> String {
    let mut options = RegionOptions::new(
        dir.to_path_buf(),
        RegionId::parse("in-mumbai").unwrap(),
        Policies::embedded().unwrap(),
    );
    options.database = Some(database.to_owned());
    match RegionState::open(options).await {
        Ok(_) => panic!("{database} opened"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_bad_url_or_an_unreachable_server_is_a_clear_error_issue_4() {
    let dir = tempfile::tempdir().unwrap();
    let error = open_with(dir.path(), "mysql://db.internal/in_mumbai").await;
    assert!(error.contains("is not a PostgreSQL URL"), "{error}");

    let error = open_with(dir.path(), "postgres://sovereign@db.internal:notaport/x").await;
    assert!(error.contains("invalid URL"), "{error}");

    // Nobody listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://sovereign:hunter2@127.0.0.1:{port}/in_mumbai");
    let error = open_with(dir.path(), &url).await;
    assert!(
        error.contains(&format!(
            "cannot connect to postgres://127.0.0.1:{port}/in_mumbai"
        )),
        "{error}"
    );
    assert!(
        !error.contains("hunter2"),
        "the password is printed: {error}"
    );
    // Nothing was created in SQLite instead.
    assert!(!dir.path().join("regions/in-mumbai/store.sqlite").exists());
}

#[tokio::test]
async fn a_missing_database_is_a_clear_error_issue_4() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = fresh_database_url();
    let missing = format!("{}_missing", fresh);
    let error = open_with(dir.path(), &missing).await;
    assert!(error.contains("cannot connect to"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

#[tokio::test]
async fn the_schema_is_created_once_and_its_version_recorded_issue_4() {
    let url = fresh_database_url();
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut options = RegionOptions::new(
            dir.path().to_path_buf(),
            RegionId::parse("in-mumbai").unwrap(),
            Policies::embedded().unwrap(),
        );
        options.database = Some(url.clone());
        let state = RegionState::open(options).await.unwrap();
        drop(state);
    }
    let db = crate::support::TestDb::Postgres(url);
    assert_eq!(db.count("SELECT count(*) FROM schema_version"), 1);
    assert_eq!(db.count("SELECT version FROM schema_version"), 5);
    assert_eq!(
        db.count("SELECT count(*) FROM counters WHERE name = 'backup_change'"),
        1
    );
}

fn fresh_database_url() -> String {
    crate::support::fresh_database()
}

/// Issue 4: when the server drops the store's connections (a restart, an administrator), the
/// store reconnects: at most the write or read that found its connection gone fails.
#[tokio::test]
async fn the_store_reconnects_after_the_server_drops_its_connections_issue_4() {
    let url = fresh_database_url();
    let store = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || sovereign_cloud::store::Store::open_postgres(&url))
            .await
            .unwrap()
            .unwrap()
    };
    store
        .register_operator("ana".into(), vec![1; 32], 1)
        .await
        .unwrap();
    assert_eq!(store.operators().await.unwrap().len(), 1);
    let database = url.rsplit('/').next().unwrap().to_owned();
    let terminated = crate::support::off_runtime(|| {
        let admin = url.replace(&format!("/{database}"), "/postgres");
        let mut admin = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .unwrap()
            .len()
    });
    assert!(terminated >= 2, "writer and reader: {terminated}");
    // The first write may find its connection gone; the next one reconnects.
    let first = store.register_operator("ben".into(), vec![2; 32], 2).await;
    let second = store.register_operator("cat".into(), vec![3; 32], 3).await;
    assert!(second.is_ok(), "{second:?}");
    let _ = store.operators().await;
    let names: Vec<String> = store
        .operators()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let expected: Vec<&str> = if first.is_ok() {
        vec!["ana", "ben", "cat"]
    } else {
        vec!["ana", "cat"]
    };
    assert_eq!(names, expected);
}
