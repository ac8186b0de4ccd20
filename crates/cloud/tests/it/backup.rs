use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn puts_are_idempotent_and_versions_detect_conflicts() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.contacts").await;
    let v1 = json!({"name": "Ravi", "phones": ["+919800000001"]});
    let created = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&token),
            Some(v1.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.headers["etag"], "\"1\"");
    // The same put again (a retry): same answer, nothing new.
    let again = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&token),
            Some(v1.clone()),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["version"], 1);

    let v2 = json!({"name": "Ravi K", "phones": ["+919800000001"]});
    let updated = app
        .raw(
            app.request(Method::PUT, "/v1/backup/contacts/c1", &token)
                .header("if-match", "\"1\"")
                .json(&v2),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["version"], 2);
    // A second device still at version 1 is told of the conflict, and of the current version.
    let stale = app
        .raw(
            app.request(Method::PUT, "/v1/backup/contacts/c1", &token)
                .header("if-match", "\"1\"")
                .json(&json!({"name": "Other"})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.code(), "version_conflict");
    assert_eq!(stale.body["current_version"], 2);
    let create_only = app
        .raw(
            app.request(Method::PUT, "/v1/backup/contacts/c1", &token)
                .header("if-none-match", "*")
                .json(&json!({"name": "Other"})),
        )
        .await;
    assert_eq!(create_only.status, StatusCode::PRECONDITION_FAILED);
    let bad_etag = app
        .raw(
            app.request(Method::PUT, "/v1/backup/contacts/c1", &token)
                .header("if-match", "yesterday")
                .json(&v2),
        )
        .await;
    assert_eq!(bad_etag.status, StatusCode::UNPROCESSABLE_ENTITY);

    let got = app.get("/v1/backup/contacts/c1", &token).await;
    assert_eq!(got.body["data"], v2);
    assert_eq!(got.headers["etag"], "\"2\"");
}

#[tokio::test]
async fn incremental_sync_with_a_cursor_and_tombstones() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.sms").await;
    let sms = |text: &str| json!({"address": "+919800000001", "text": text, "direction": "inbox", "at": "2026-03-01T10:00:00Z"});
    for (id, text) in [("s1", "one"), ("s2", "two")] {
        app.call(
            Method::PUT,
            &format!("/v1/backup/sms/{id}"),
            Some(&token),
            Some(sms(text)),
        )
        .await;
    }
    let all = app.get("/v1/backup/sms", &token).await;
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["data"]["text"], "one");
    let cursor = all.body["cursor"].as_str().unwrap().to_owned();

    app.call(
        Method::PUT,
        "/v1/backup/sms/s3",
        Some(&token),
        Some(sms("three")),
    )
    .await;
    let deleted = app
        .call(Method::DELETE, "/v1/backup/sms/s1", Some(&token), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let since = app
        .get(&format!("/v1/backup/sms?since={cursor}"), &token)
        .await;
    let changes: Vec<(String, bool)> = since.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(changes, [("s3".to_owned(), false), ("s1".to_owned(), true)]);
    assert!(
        since.body["items"][1].get("data").is_none(),
        "tombstones carry no data"
    );
    assert_eq!(
        app.get("/v1/backup/sms/s1", &token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/backup/sms/s1", Some(&token), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let bad = app.get("/v1/backup/sms?since=abc", &token).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/v1/backup/videos", &token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn photos_round_trip_through_the_object_store() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.photos").await;
    let photo: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/IMG_0001.jpg", &token)
                .header("content-type", "image/jpeg")
                .body(photo.clone()),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let got = app
        .raw(app.request(Method::GET, "/v1/backup/photos/IMG_0001.jpg", &token))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "image/jpeg");
    assert_eq!(got.bytes, photo);
    let listing = app.get("/v1/backup/photos", &token).await;
    assert_eq!(listing.body["items"][0]["size"], 100_000);
    // Replacing the photo leaves exactly one blob behind.
    let put = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/IMG_0001.jpg", &token)
                .header("content-type", "image/jpeg")
                .body(vec![1u8; 10]),
        )
        .await;
    assert_eq!(put.body["version"], 2);
    let blobs = crate::accounts::walk(&app.data_dir().join("regions/in-mumbai/blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let wrong_type = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/x", &token)
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let too_big = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/big", &token)
                .header("content-type", "image/jpeg")
                .body(vec![0u8; app.state.policies.limits.photo_bytes_max + 1]),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        crate::accounts::walk(&app.data_dir().join("regions/in-mumbai/blobs")).len(),
        1
    );
}

#[tokio::test]
async fn nobody_reaches_another_users_records() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "backup.contacts").await;
    app.grant(&bob, "backup.contacts").await;
    app.call(
        Method::PUT,
        "/v1/backup/contacts/secret",
        Some(&alice),
        Some(json!({"name": "Alice's friend"})),
    )
    .await;
    let reply = app.get("/v1/backup/contacts/secret", &bob).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
    let listing = app.get("/v1/backup/contacts", &bob).await;
    assert!(listing.body["items"].as_array().unwrap().is_empty());
    assert_eq!(
        app.call(
            Method::DELETE,
            "/v1/backup/contacts/secret",
            Some(&bob),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Bob writing the same id creates Bob's own item; Alice's is untouched.
    app.call(
        Method::PUT,
        "/v1/backup/contacts/secret",
        Some(&bob),
        Some(json!({"name": "Bob's"})),
    )
    .await;
    assert_eq!(
        app.get("/v1/backup/contacts/secret", &alice).await.body["data"]["name"],
        "Alice's friend"
    );
}
