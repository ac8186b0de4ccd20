//! Withdrawn and deleted data leave nothing behind (issue 12, finding 5): no orphaned blobs, no
//! erased sealed bytes in any file of the region, the `moved_*` tables swept.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::blobs::Blobs;
use sovereign_cloud::erasure::{self, BLOB_ORPHAN_GRACE_MS};

use crate::accounts::walk;
use crate::support::*;

fn blobs_dir(app: &TestApp) -> PathBuf {
    app.data_dir().join("regions/in-mumbai/blobs")
}

fn region_dir(app: &TestApp) -> PathBuf {
    app.data_dir().join("regions/in-mumbai")
}

/// Makes a blob look as old as the sweep's grace and a minute more.
fn age(file: &Path) {
    let old = SystemTime::now() - Duration::from_millis(BLOB_ORPHAN_GRACE_MS as u64 + 60_000);
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

async fn put_photo(app: &TestApp, token: &str, id: &str, bytes: Vec<u8>) {
    let put = app
        .raw(
            app.request(Method::PUT, &format!("/v1/backup/photos/{id}"), token)
                .header("content-type", "image/jpeg")
                .body(bytes),
        )
        .await;
    assert!(put.status.is_success(), "{:?}", put.body);
}

fn blob_path_of(app: &TestApp, owner: &str, id: &str) -> String {
    app.db()
        .query_row(
            "SELECT blob_path FROM backup_items WHERE owner_id = ?1 AND item_id = ?2",
            &[SqlValue::from(owner), SqlValue::from(id)],
            |r| r.get(0),
        )
        .unwrap()
}

async fn user_id(app: &TestApp, token: &str) -> String {
    let me = app.get("/v1/me", token).await;
    me.body["user_id"].as_str().unwrap().to_owned()
}

async fn withdraw(app: &TestApp, token: &str, scope: &str) {
    let reply = app
        .call(
            Method::DELETE,
            &format!("/v1/consents/{scope}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

#[tokio::test]
async fn orphaned_blobs_are_swept_and_referenced_or_new_ones_never() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    let alice_id = user_id(&app, &alice).await;
    let bob_id = user_id(&app, &bob).await;
    app.grant(&alice, "backup.photos").await;
    app.grant(&bob, "backup.photos").await;
    let dir = blobs_dir(&app);

    // A photo with its row: never swept, however old.
    put_photo(&app, &alice, "keep", vec![1; 5000]).await;
    let keep = blob_path_of(&app, &alice_id, "keep");

    // A replace whose delete of the old blob failed: the old blob is back on disk.
    put_photo(&app, &alice, "replaced", vec![2; 5000]).await;
    let replaced_old = blob_path_of(&app, &alice_id, "replaced");
    let replaced_bytes = std::fs::read(dir.join(&replaced_old)).unwrap();
    put_photo(&app, &alice, "replaced", vec![3; 5000]).await;
    assert!(!dir.join(&replaced_old).exists());
    std::fs::write(dir.join(&replaced_old), &replaced_bytes).unwrap();

    // A withdrawal whose delete of the blob failed.
    put_photo(&app, &bob, "withdrawn", vec![4; 5000]).await;
    let withdrawn = blob_path_of(&app, &bob_id, "withdrawn");
    let withdrawn_bytes = std::fs::read(dir.join(&withdrawn)).unwrap();
    withdraw(&app, &bob, "backup.photos").await;
    std::fs::write(dir.join(&withdrawn), &withdrawn_bytes).unwrap();

    // A put that crashed (or whose client went away) between the blob and the row.
    let crashed = Blobs::new_path(&alice_id);
    app.state.blobs.put(&crashed, vec![5; 100]).await.unwrap();
    // A move's copy (or its catch-up) that stopped before the row: a user unknown here.
    let stranger = uuid::Uuid::new_v4().to_string();
    let moved = Blobs::new_path(&stranger);
    app.state.blobs.put(&moved, vec![6; 100]).await.unwrap();

    let orphans = [&replaced_old, &withdrawn, &crashed, &moved];
    for path in orphans.iter().copied().chain([&keep]) {
        age(&dir.join(path));
    }
    // Being written now: no row yet, but young.
    let in_flight = Blobs::new_path(&alice_id);
    app.state.blobs.put(&in_flight, vec![7; 100]).await.unwrap();

    let mut swept = erasure::sweep_orphan_blobs(&app.state).await.unwrap();
    swept.sort();
    let mut expected: Vec<String> = orphans.iter().map(|p| (*p).clone()).collect();
    expected.sort();
    assert_eq!(swept, expected);
    for path in orphans {
        assert!(!dir.join(path).exists(), "{path} still there");
    }
    assert!(dir.join(&keep).exists());
    assert!(dir.join(&in_flight).exists());
    let got = app
        .raw(app.request(Method::GET, "/v1/backup/photos/keep", &alice))
        .await;
    assert_eq!(got.bytes, vec![1; 5000]);
    // The live version of the replaced photo is untouched too.
    let got = app
        .raw(app.request(Method::GET, "/v1/backup/photos/replaced", &alice))
        .await;
    assert_eq!(got.bytes, vec![3; 5000]);
    // A second sweep finds nothing more.
    assert!(
        erasure::sweep_orphan_blobs(&app.state)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 32 bytes from the middle of a sealed value: ciphertext, so found only where it was copied.
fn needle(sealed: &[u8]) -> Vec<u8> {
    assert!(sealed.len() >= 64, "{}", sealed.len());
    let mid = sealed.len() / 2;
    sealed[mid - 16..mid + 16].to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn after_a_withdrawal_no_file_of_the_region_holds_the_erased_sealed_bytes() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    let alice_id = user_id(&app, &alice).await;
    let bob_id = user_id(&app, &bob).await;
    for scope in [
        "backup.contacts",
        "backup.sms",
        "backup.photos",
        "messaging",
    ] {
        app.grant(&alice, scope).await;
    }
    app.grant(&bob, "messaging").await;
    let long = "x".repeat(200);
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&alice),
            Some(json!({"name": format!("Ravi {long}"), "phones": ["+919800000001"]})),
        )
        .await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/sms/s1",
            Some(&alice),
            Some(json!({"address": "+919800000001", "text": "meet at nine",
                        "direction": "inbox", "at": "2026-03-01T10:00:00Z"})),
        )
        .await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    put_photo(&app, &alice, "p1", vec![9; 20_000]).await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "a secret for alice"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    // Other users' rows and unrelated writes keep pages and the WAL busy around the erased ones.
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c2",
            Some(&alice),
            Some(json!({"name": "stays until withdrawn too"})),
        )
        .await;
    assert!(reply.status.is_success());

    // The sealed bytes as stored, read before the withdrawal.
    let db = app.db();
    let mut needles = Vec::new();
    for id in ["c1", "s1"] {
        let sealed: Vec<u8> = db
            .query_row(
                "SELECT data_sealed FROM backup_items WHERE owner_id = ?1 AND item_id = ?2",
                &[SqlValue::from(alice_id.as_str()), SqlValue::from(id)],
                |r| r.get(0),
            )
            .unwrap();
        needles.push((id.to_owned(), needle(&sealed)));
    }
    let photo = std::fs::read(blobs_dir(&app).join(blob_path_of(&app, &alice_id, "p1"))).unwrap();
    needles.push(("p1".to_owned(), needle(&photo)));
    let body: Vec<u8> = db
        .query_row(
            "SELECT body_sealed FROM messages WHERE owner_id = ?1 AND box = 'inbox'",
            &[SqlValue::from(alice_id.as_str())],
            |r| r.get(0),
        )
        .unwrap();
    needles.push((
        "inbox".to_owned(),
        body[body.len() / 2 - 8..body.len() / 2 + 8].to_vec(),
    ));
    // The same bytes are really in the region's files before (the search can find them).
    let files = walk(&region_dir(&app));
    let all: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    for (what, n) in &needles {
        if app.database.is_none() || what == "p1" {
            assert!(contains(&all, n), "{what} not found before the withdrawal");
        }
    }

    for scope in [
        "backup.contacts",
        "backup.sms",
        "backup.photos",
        "messaging",
    ] {
        withdraw(&app, &alice, scope).await;
    }
    // The withdrawal scrubbed already; scrubbing again works on both backends (PostgreSQL's
    // VACUUM outside any transaction) and finds nothing more to do.
    app.state.store.scrub().await.unwrap();
    let files = walk(&region_dir(&app));
    if app.database.is_none() {
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "store.sqlite"), "{names:?}");
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (what, n) in &needles {
            assert!(
                !contains(&bytes, n),
                "{what}'s sealed bytes are still in {}",
                file.display()
            );
        }
    }
    // Bob's own copy of what he sent is his, and stays.
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM messages WHERE owner_id = '{bob_id}'"
        )),
        1
    );
}

#[tokio::test]
async fn a_copy_of_yesterdays_files_cannot_open_a_withdrawn_scope_even_with_the_key_files() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let alice_id = user_id(&app, &alice).await;
    for scope in ["backup.contacts", "backup.photos", "backup.sms"] {
        app.grant(&alice, scope).await;
    }
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&alice),
            Some(json!({"name": "Ravi", "phones": ["+919800000001"]})),
        )
        .await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/sms/s1",
            Some(&alice),
            Some(json!({"address": "+919800000001", "text": "kept",
                        "direction": "inbox", "at": "2026-03-01T10:00:00Z"})),
        )
        .await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    put_photo(&app, &alice, "p1", vec![8; 1000]).await;

    // Yesterday's copy of the region's data directory: the database's rows as stored (the
    // user's wrapped data key among them) and the blobs.
    let db = app.db();
    let wrapped: Vec<u8> = db
        .query_row(
            "SELECT wrapped_key FROM users WHERE id = ?1",
            &[SqlValue::from(alice_id.as_str())],
            |r| r.get(0),
        )
        .unwrap();
    let sealed_of = |id: &str| -> Vec<u8> {
        db.query_row(
            "SELECT data_sealed FROM backup_items WHERE owner_id = ?1 AND item_id = ?2",
            &[SqlValue::from(alice_id.as_str()), SqlValue::from(id)],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (contact, sms) = (sealed_of("c1"), sealed_of("s1"));
    let photo_path = blob_path_of(&app, &alice_id, "p1");
    let copy = tempfile::tempdir().unwrap();
    for file in walk(&region_dir(&app)) {
        let to = copy
            .path()
            .join(file.strip_prefix(region_dir(&app)).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
    let photo = std::fs::read(copy.path().join("blobs").join(&photo_path)).unwrap();

    withdraw(&app, &alice, "backup.contacts").await;
    withdraw(&app, &alice, "backup.photos").await;

    // Today's key files, loaded as the region loads them.
    let region = sovereign_model::RegionId::parse("in-mumbai").unwrap();
    let keys = sovereign_cloud::keys::RegionKeys::load_or_create(&app.data_dir(), &region).unwrap();
    let user = sovereign_cloud::domain::UserId::from_stored(alice_id.clone());
    let data_key = keys.unwrap(&wrapped, &user).unwrap();
    let aad =
        |record: &str, field: &str| format!("backup/{alice_id}/{record}/{field}").into_bytes();
    // The user's data key (the account is still there) opens none of it.
    assert!(
        data_key
            .open(&aad("contacts:c1", "data"), &contact)
            .is_err()
    );
    assert!(
        data_key
            .open(&aad("photos:p1", &photo_path), &photo)
            .is_err()
    );
    // The withdrawn scopes' keys are gone from the key store; the granted one's is there and
    // still opens its data, so the copy is a real one.
    use sovereign_model::ConsentScope;
    assert!(
        keys.scope_key(&user, ConsentScope::BackupContacts)
            .unwrap()
            .is_none()
    );
    assert!(
        keys.scope_key(&user, ConsentScope::BackupPhotos)
            .unwrap()
            .is_none()
    );
    let sms_key = keys
        .scope_key(&user, ConsentScope::BackupSms)
        .unwrap()
        .unwrap();
    assert!(sms_key.open(&aad("sms:s1", "data"), &sms).is_ok());
    assert!(sms_key.open(&aad("contacts:c1", "data"), &contact).is_err());
    // No file of the key store holds anything that opens the withdrawn data as a wrapped key.
    let key_files = walk(&app.data_dir().join("keys"));
    assert!(!key_files.is_empty());
    for file in key_files {
        let bytes = std::fs::read(&file).unwrap();
        for scope in [ConsentScope::BackupContacts, ConsentScope::BackupPhotos] {
            let owner = format!("scope-key/{alice_id}/{}", scope.as_str());
            let kek_bytes = std::fs::read(app.data_dir().join("keys/in-mumbai.kek")).unwrap();
            let kek = sovereign_crypto::KeyEncryptionKey::from_bytes(&kek_bytes).unwrap();
            if let Ok(key) = kek.unwrap(&bytes, owner.as_bytes()) {
                assert!(key.open(&aad("contacts:c1", "data"), &contact).is_err());
                panic!("{} still holds a withdrawn scope's key", file.display());
            }
        }
    }
    // And the user can grant again and back up anew, under a new key.
    app.grant(&alice, "backup.contacts").await;
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&alice),
            Some(json!({"name": "Ravi again"})),
        )
        .await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    let got = app.get("/v1/backup/contacts/c1", &alice).await;
    assert_eq!(got.body["data"]["name"], "Ravi again");
    let new_key = keys
        .scope_key(&user, ConsentScope::BackupContacts)
        .unwrap()
        .unwrap();
    assert!(new_key.open(&aad("contacts:c1", "data"), &contact).is_err());
}

#[tokio::test]
async fn a_copy_of_yesterdays_files_cannot_open_withdrawn_messages_even_with_the_key_files() {
    use sovereign_model::ConsentScope;
    let app = spawn_app().await;
    let (alice, bob) = (app.user(ALICE).await, app.user(BOB).await);
    let (alice_id, bob_id) = (user_id(&app, &alice).await, user_id(&app, &bob).await);
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "meet at the gate"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let id = sent.body["id"].as_str().unwrap().to_owned();

    // Yesterday's copy of the rows: Alice's sent copy, Bob's inbox copy, their wrapped keys.
    let db = app.db();
    let row = |owner: &str, table_box: &str| -> (Vec<u8>, Vec<u8>) {
        db.query_row(
            "SELECT body_sealed, wrapped_key FROM messages JOIN users ON users.id = owner_id \
             WHERE owner_id = ?1 AND box = ?2",
            &[SqlValue::from(owner), SqlValue::from(table_box)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (alice_body, alice_wrapped) = row(&alice_id, "sent");
    let (bob_body, bob_wrapped) = row(&bob_id, "inbox");

    withdraw(&app, &alice, "messaging").await;

    let region = sovereign_model::RegionId::parse("in-mumbai").unwrap();
    let keys = sovereign_cloud::keys::RegionKeys::load_or_create(&app.data_dir(), &region).unwrap();
    let aad = |owner: &str, record: &str| format!("messages/{owner}/{record}/body").into_bytes();
    let (alice_user, bob_user) = (
        sovereign_cloud::domain::UserId::from_stored(alice_id.clone()),
        sovereign_cloud::domain::UserId::from_stored(bob_id.clone()),
    );
    // Alice's account key (her account is still there) does not open her withdrawn messages,
    // and her messaging key is gone.
    let alice_key = keys.unwrap(&alice_wrapped, &alice_user).unwrap();
    let record = format!("sent:{id}");
    assert!(
        alice_key
            .open(&aad(&alice_id, &record), &alice_body)
            .is_err()
    );
    assert!(
        keys.scope_key(&alice_user, ConsentScope::Messaging)
            .unwrap()
            .is_none()
    );
    // Bob did not withdraw: his inbox copy is sealed with his messaging key, which opens it
    // (so the copy is a real one), and not with his account key.
    let bob_key = keys.unwrap(&bob_wrapped, &bob_user).unwrap();
    let record = format!("inbox:{id}");
    assert!(bob_key.open(&aad(&bob_id, &record), &bob_body).is_err());
    let bob_messaging = keys
        .scope_key(&bob_user, ConsentScope::Messaging)
        .unwrap()
        .unwrap();
    assert_eq!(
        bob_messaging
            .open(&aad(&bob_id, &record), &bob_body)
            .unwrap(),
        b"meet at the gate"
    );
    let page = app.get("/v1/messages", &bob).await;
    assert_eq!(page.body["messages"][0]["body"], "meet at the gate");
}

#[tokio::test]
async fn the_sms_outbox_is_readable_by_the_server_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    app.sign_up(ALICE).await;
    let outbox = app.dir.path().join("sms-outbox.jsonl");
    let mode = std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the outbox of sign-in codes has mode {mode:o}");
    // One left world-readable (by an older version, or by hand) is narrowed at the next code.
    std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o644)).unwrap();
    app.sign_up(BOB).await;
    let mode = std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn the_insider_cannot_truncate_the_consent_history() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    app.grant(&alice, "backup.contacts").await;
    let db = app.db();
    let before = db.count("SELECT COUNT(*) FROM consent_events");
    assert!(before >= 1);
    // PostgreSQL's TRUNCATE skips row triggers; SQLite has none, and its unqualified DELETE
    // (what it does instead) runs them.
    let statement = if app.database.is_some() {
        "TRUNCATE consent_events"
    } else {
        "DELETE FROM consent_events"
    };
    let error = db.execute_batch(statement).unwrap_err();
    assert!(error.contains("consent history is append-only"), "{error}");
    assert_eq!(db.count("SELECT COUNT(*) FROM consent_events"), before);
}

#[tokio::test]
async fn moved_away_users_and_tokens_are_swept_after_their_time() {
    let app = spawn_app().await;
    let db = app.db();
    let now = app.state.now_ms();
    // As a finished move leaves them: where the user went, and their tokens until they expire.
    for (user, moved_at) in [("u-old", now), ("u-recent", now)] {
        db.execute(
            "INSERT INTO moved_users (user_id, region, moved_at) VALUES (?1, 'sg-singapore', ?2)",
            &[SqlValue::from(user), SqlValue::Int(moved_at)],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO moved_tokens (token_digest, user_id, expires_at) VALUES (?1, 'u-old', ?2)",
        &[SqlValue::Blob(vec![1; 32]), SqlValue::Int(now + 1000)],
    )
    .unwrap();
    assert_eq!(
        erasure::sweep_moved(&app.state).await.unwrap(),
        sovereign_cloud::store::MovedSweep::default()
    );
    // The token expires; the users stay until their time.
    app.clock.advance_ms(1000);
    let swept = erasure::sweep_moved(&app.state).await.unwrap();
    assert_eq!((swept.tokens, swept.users), (1, 0));
    app.clock.advance_ms(erasure::MOVED_USER_KEEP_MS);
    let swept = erasure::sweep_moved(&app.state).await.unwrap();
    assert_eq!((swept.tokens, swept.users), (0, 2));
    assert_eq!(db.count("SELECT COUNT(*) FROM moved_users"), 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM moved_tokens"), 0);
}

#[tokio::test]
async fn a_scope_key_left_by_a_crash_after_the_withdrawal_commit_is_destroyed() {
    use sovereign_model::ConsentScope;
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let alice_id = user_id(&app, &alice).await;
    for scope in ["backup.contacts", "backup.sms"] {
        app.grant(&alice, scope).await;
    }
    for (kind, body) in [
        ("contacts/c1", json!({"name": "Ravi"})),
        (
            "sms/s1",
            json!({"address": "+919800000001", "text": "hi", "direction": "inbox",
                          "at": "2026-03-01T10:00:00Z"}),
        ),
    ] {
        let reply = app
            .call(
                Method::PUT,
                &format!("/v1/backup/{kind}"),
                Some(&alice),
                Some(body),
            )
            .await;
        assert!(reply.status.is_success(), "{:?}", reply.body);
    }
    // The withdrawal's commit, and then the process dies before the key is destroyed.
    app.state
        .store
        .withdraw(
            alice_id.clone(),
            ConsentScope::BackupContacts,
            app.state.now_ms(),
        )
        .await
        .unwrap();
    let user = sovereign_cloud::domain::UserId::from_stored(alice_id.clone());
    let keys_dir = app
        .data_dir()
        .join(format!("keys/in-mumbai.scopes/{alice_id}"));
    let contacts_key = keys_dir.join("backup.contacts.key");
    let sms_key = keys_dir.join("backup.sms.key");
    assert!(contacts_key.exists() && sms_key.exists());
    // Young keys are left alone (one a move has just installed, ahead of its consents).
    assert_eq!(
        erasure::sweep_stale_scope_keys(&app.state).await.unwrap(),
        0
    );
    age(&contacts_key);
    age(&sms_key);
    assert_eq!(
        erasure::sweep_stale_scope_keys(&app.state).await.unwrap(),
        1
    );
    assert!(!contacts_key.exists());
    assert!(
        app.state
            .keys
            .scope_key(&user, ConsentScope::BackupContacts)
            .unwrap()
            .is_none()
    );
    // The granted scope keeps its key and its data.
    assert!(sms_key.exists());
    let got = app.get("/v1/backup/sms/s1", &alice).await;
    assert_eq!(got.body["data"]["text"], "hi");
}
