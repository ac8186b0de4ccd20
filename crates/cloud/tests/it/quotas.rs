//! Per-user quotas: each one refuses the write past it with 507 `quota_exceeded`, in the
//! write's own commit (two concurrent writes cannot both take the last place), counted in the
//! metrics.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

fn contact(n: usize) -> serde_json::Value {
    json!({"name": format!("Contact {n}"), "phones": ["+919800000001"]})
}

#[tokio::test]
async fn backup_items_past_the_quota_are_refused_and_a_replacement_is_not() {
    let app = spawn_app_with(|p| p.limits.backup_items_per_kind_max = 3).await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.contacts").await;
    app.grant(&token, "backup.sms").await;
    let (client, owner) = (&app, &token);
    let put = move |path: String, body: serde_json::Value| async move {
        client
            .call(Method::PUT, &path, Some(owner), Some(body))
            .await
    };
    let put_contact =
        move |name: &str, n: usize| put(format!("/v1/backup/contacts/{name}"), contact(n));
    for n in 0..3 {
        let put = put_contact(&format!("c{n}"), n).await;
        assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    }
    let refused = put_contact("c3", 3).await;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    assert_eq!(refused.code(), "quota_exceeded");
    assert_eq!(refused.body["quota"], "contacts_items");
    assert_eq!(refused.body["limit"], 3);
    assert!(
        refused.body["detail"].as_str().unwrap().contains("3 items"),
        "{:?}",
        refused.body
    );
    let listing = app.get("/v1/backup/contacts", &token).await;
    assert_eq!(listing.body["items"].as_array().unwrap().len(), 3);
    // Replacing a live item is not one more; another kind has its own quota.
    let replaced = put_contact("c0", 10).await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    let sms = put(
        "/v1/backup/sms/s0".to_owned(),
        json!({"address": "+919800000001", "text": "hi", "direction": "inbox", "at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(sms.status, StatusCode::CREATED, "{:?}", sms.body);
    // A deleted item frees its place.
    let deleted = app
        .call(Method::DELETE, "/v1/backup/contacts/c1", Some(&token), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let now_fits = put_contact("c3", 3).await;
    assert_eq!(now_fits.status, StatusCode::CREATED, "{:?}", now_fits.body);
    let metrics = app.get("/metrics", "").await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        text.contains("sovereign_quota_refusals_total{quota=\"contacts_items\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn photos_past_their_total_bytes_are_refused_and_leave_no_blob() {
    let app = spawn_app_with(|p| p.limits.photos_bytes_per_user_max = 10_000).await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.photos").await;
    let put = |name: &str, size: usize| {
        app.raw(
            app.request(Method::PUT, &format!("/v1/backup/photos/{name}"), &token)
                .header("content-type", "image/jpeg")
                .body(vec![7u8; size]),
        )
    };
    assert_eq!(put("a.jpg", 6_000).await.status, StatusCode::CREATED);
    let refused = put("b.jpg", 4_001).await;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.code(), "quota_exceeded");
    assert_eq!(refused.body["quota"], "photos_bytes");
    assert_eq!(refused.body["limit"], 10_000);
    // Exactly up to the limit fits; replacing a photo counts only its new size.
    assert_eq!(put("b.jpg", 4_000).await.status, StatusCode::CREATED);
    assert_eq!(put("a.jpg", 5_000).await.status, StatusCode::OK);
    assert_eq!(
        put("a.jpg", 6_001).await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // The refused photos' sealed blobs were removed: only the two stored ones remain.
    let blobs = walk_files(&app.data_dir().join("regions/in-mumbai/blobs"));
    assert_eq!(blobs.len(), 2, "{blobs:?}");
}

#[tokio::test]
async fn concurrent_puts_cannot_both_take_the_last_place() {
    let app = spawn_app_with(|p| p.limits.backup_items_per_kind_max = 5).await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.contacts").await;
    for n in 0..4 {
        let path = format!("/v1/backup/contacts/c{n}");
        let put = app
            .call(Method::PUT, &path, Some(&token), Some(contact(n)))
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    // One place left, eight writers racing for it.
    let racers = (10..18).map(|n| {
        let path = format!("/v1/backup/contacts/c{n}");
        let app = &app;
        let token = &token;
        async move {
            app.call(Method::PUT, &path, Some(token), Some(contact(n)))
                .await
                .status
        }
    });
    let answers = futures_util::future::join_all(racers).await;
    let created = answers
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::INSUFFICIENT_STORAGE)
        .count();
    assert_eq!((created, refused), (1, 7), "{answers:?}");
    let listing = app.get("/v1/backup/contacts", &token).await;
    assert_eq!(listing.body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_full_inbox_refuses_new_messages_until_some_are_read() {
    let app = spawn_app_with(|p| p.limits.inbox_pending_per_user_max = 3).await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    let send = |body: String, id: Option<String>| {
        let mut message = json!({"to": BOB, "body": body});
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        app.call(Method::POST, "/v1/messages", Some(&alice), Some(message))
    };
    let mut ids = Vec::new();
    for n in 0..3 {
        let sent = send(format!("message {n}"), None).await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
        ids.push(sent.body["id"].as_str().unwrap().to_owned());
    }
    let refused = send("one too many".into(), None).await;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.code(), "quota_exceeded");
    assert_eq!(refused.body["quota"], "inbox_pending");
    // Nothing of the refused message was kept, not even the sender's copy.
    let sent_box = app.get("/v1/messages?box=sent", &alice).await;
    assert_eq!(sent_box.body["messages"].as_array().unwrap().len(), 3);
    // Bob reads one: there is room for one more.
    let ack = app
        .call(
            Method::POST,
            &format!("/v1/messages/{}/ack", ids[0]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(ack.status, StatusCode::NO_CONTENT);
    assert_eq!(
        send("now it fits".into(), None).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send("full again".into(), None).await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
}

#[tokio::test]
async fn a_full_inbox_abroad_is_refused_by_its_region_and_told_to_the_sender() {
    let cloud = spawn_regions_with(&["in-mumbai", "br-saopaulo"], |p| {
        p.limits.inbox_pending_per_user_max = 2;
    })
    .await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let _bruno = cloud.user("br-saopaulo", BRUNO).await;
    let send = |body: &'static str| {
        cloud.call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BRUNO, "body": body})),
        )
    };
    assert_eq!(send("one").await.status, StatusCode::ACCEPTED);
    assert_eq!(send("two").await.status, StatusCode::ACCEPTED);
    let refused = send("three").await;
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.code(), "quota_exceeded");
    assert_eq!(refused.body["quota"], "inbox_pending");
    assert_eq!(refused.body["limit"], 2);
    let stored = cloud
        .db("br-saopaulo")
        .count("SELECT count(*) FROM messages WHERE box = 'inbox'");
    assert_eq!(stored, 2);
}

/// Every file under `dir`, recursively (none if it does not exist).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
