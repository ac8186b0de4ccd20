use reqwest::Method;
use serde_json::json;

use crate::support::*;

/// Every byte the region wrote to disk: the database, its WAL and the blobs (on PostgreSQL,
/// everything the region's database holds).
fn everything_on_disk(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for path in crate::accounts::walk(&app.data_dir().join("regions")) {
        bytes.extend(std::fs::read(path).unwrap());
    }
    if app.database.is_some() {
        bytes.extend(app.db().bytes_at_rest());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_personal_data_in_the_clear_at_rest() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    for scope in [
        "messaging",
        "backup.contacts",
        "backup.sms",
        "backup.photos",
    ] {
        app.grant(&alice, scope).await;
    }
    app.grant(&bob, "messaging").await;
    app.call(
        Method::POST,
        "/v1/messages",
        Some(&alice),
        Some(json!({"to": BOB, "body": "meet at the blue door"})),
    )
    .await;
    app.call(
        Method::PUT,
        "/v1/backup/contacts/c1",
        Some(&alice),
        Some(json!({"name": "Priya Raman", "phones": ["+919833344455"]})),
    )
    .await;
    app.call(
        Method::PUT,
        "/v1/backup/sms/s1",
        Some(&alice),
        Some(json!({"address": "+919844455566", "text": "your parcel is here", "direction": "inbox", "at": "2026-01-01T00:00:00Z"})),
    )
    .await;
    let photo = b"PHOTO-PLAINTEXT-MARKER".repeat(100);
    app.raw(
        app.request(Method::PUT, "/v1/backup/photos/p1", &alice)
            .header("content-type", "image/jpeg")
            .body(photo),
    )
    .await;
    // The export proves the data is there and readable by its owner...
    let export = app.get("/v1/me/export", &alice).await;
    let export_text = String::from_utf8_lossy(&export.bytes).into_owned();
    for visible in [
        "meet at the blue door",
        "Priya Raman",
        "your parcel is here",
        ALICE,
    ] {
        assert!(export_text.contains(visible), "export lacks {visible}");
    }
    // ...and the files hold none of it in the clear.
    let disk = everything_on_disk(&app);
    assert!(disk.len() > 10_000);
    let secrets: [&[u8]; 11] = [
        ALICE.as_bytes(),
        &ALICE.as_bytes()[1..],
        BOB.as_bytes(),
        &BOB.as_bytes()[3..],
        b"meet at the blue door",
        b"Priya Raman",
        b"919833344455",
        b"919844455566",
        b"your parcel is here",
        b"PHOTO-PLAINTEXT-MARKER",
        b"test phone",
    ];
    for secret in secrets {
        assert!(
            !contains(&disk, secret),
            "{} found in the clear on disk",
            String::from_utf8_lossy(secret)
        );
    }
}

#[tokio::test]
async fn a_sealed_field_moved_to_another_record_does_not_open() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    app.grant(&alice, "backup.contacts").await;
    app.call(
        Method::PUT,
        "/v1/backup/contacts/a",
        Some(&alice),
        Some(json!({"name": "First"})),
    )
    .await;
    app.call(
        Method::PUT,
        "/v1/backup/contacts/b",
        Some(&alice),
        Some(json!({"name": "Second"})),
    )
    .await;
    app.db()
        .execute(
            "UPDATE backup_items SET data_sealed = (SELECT data_sealed FROM backup_items WHERE item_id = 'a') WHERE item_id = 'b'",
            &[],
        )
        .unwrap();
    let reply = app.get("/v1/backup/contacts/b", &alice).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.code(), "internal");
    assert!(!String::from_utf8_lossy(&reply.bytes).contains("First"));
}
