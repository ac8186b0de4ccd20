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
    assert_eq!(db.count("SELECT version FROM schema_version"), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM counters WHERE name = 'backup_change'"),
        1
    );
}

fn fresh_database_url() -> String {
    crate::support::fresh_database()
}
