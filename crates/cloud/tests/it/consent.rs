use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_model::ConsentScope;

use crate::support::*;

#[tokio::test]
async fn every_scope_is_off_with_its_notice() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let reply = app.get("/v1/consents", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    let consents = reply.body["consents"].as_array().unwrap();
    let scopes: Vec<&str> = consents
        .iter()
        .map(|c| c["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        [
            "messaging",
            "backup.contacts",
            "backup.sms",
            "backup.photos",
            "location",
            "diagnostics"
        ]
    );
    for consent in consents {
        assert_eq!(consent["granted"], false, "{consent}");
        let notice = &consent["notice"];
        assert_eq!(notice["version"], 1);
        assert_eq!(notice["region"], "in-mumbai");
        assert!(!notice["purpose"].as_str().unwrap().is_empty());
        assert!(!notice["retention"].as_str().unwrap().is_empty());
        assert!(!notice["data_categories"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn grant_and_withdraw_are_recorded_append_only() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let stale = app
        .call(
            Method::PUT,
            "/v1/consents/messaging",
            Some(&token),
            Some(json!({"notice_version": 0})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.code(), "notice_outdated");
    assert_eq!(stale.body["current_version"], 1);
    let unknown = app
        .call(
            Method::PUT,
            "/v1/consents/imei",
            Some(&token),
            Some(json!({"notice_version": 1})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    app.grant(&token, "messaging").await;
    app.grant(&token, "messaging").await; // granting again is not a new event
    let listed = app.get("/v1/consents", &token).await;
    let messaging = &listed.body["consents"][0];
    assert_eq!(messaging["granted"], true);
    assert_eq!(messaging["granted_notice_version"], 1);
    let reply = app
        .call(Method::DELETE, "/v1/consents/messaging", Some(&token), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["granted"], false);
    let history = app.get("/v1/consents/history", &token).await;
    let actions: Vec<(&str, &str)> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["scope"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("messaging", "grant"), ("messaging", "withdraw")]);

    // The store itself refuses to rewrite or drop history.
    let db = app.db();
    let update = db.execute("UPDATE consent_events SET action = 'grant'", &[]);
    assert!(update.unwrap_err().contains("append-only"));
    let delete = db.execute("DELETE FROM consent_events", &[]);
    assert!(delete.unwrap_err().contains("append-only"));
}

#[tokio::test]
async fn writing_without_consent_is_refused_naming_the_scope() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let cases = [
        (
            "/v1/backup/contacts/c1",
            json!({"name": "Ravi", "phones": ["+919800000001"]}),
            "backup.contacts",
        ),
        (
            "/v1/backup/sms/s1",
            json!({"address": "+919800000001", "text": "hi", "direction": "inbox", "at": "2026-01-01T00:00:00Z"}),
            "backup.sms",
        ),
    ];
    for (path, body, scope) in cases.clone() {
        let reply = app.call(Method::PUT, path, Some(&token), Some(body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(reply.code(), "consent_required");
        assert_eq!(reply.body["scope"], scope);
    }
    let photo = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/p1", &token)
                .header("content-type", "image/png")
                .body(vec![1u8; 10]),
        )
        .await;
    assert_eq!(photo.status, StatusCode::FORBIDDEN);
    assert_eq!(photo.body["scope"], "backup.photos");
    let message = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&token),
            Some(json!({"to": BOB, "body": "hello"})),
        )
        .await;
    assert_eq!(message.status, StatusCode::FORBIDDEN);
    assert_eq!(message.body["scope"], "messaging");
    // A grant for one scope does not open another.
    app.grant(&token, "backup.sms").await;
    let reply = app
        .call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&token),
            Some(cases[0].1.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_store_enforces_consent_below_the_handlers() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let me = app.get("/v1/me", &token).await;
    let user_id = me.body["user_id"].as_str().unwrap().to_owned();
    // Straight to the store API, bypassing every handler check.
    let put = sovereign_cloud::store::BackupPut {
        owner_id: user_id.clone(),
        kind: "contacts",
        scope: ConsentScope::BackupContacts,
        item_id: "c1".into(),
        expected_version: None,
        data_sealed: Some(vec![1, 2, 3]),
        blob_path: None,
        content_type: None,
        size_bytes: Some(3),
        now: START_MS,
        quota: Default::default(),
    };
    let error = app.state.store.put_backup(put).await.unwrap_err();
    assert!(
        matches!(
            error,
            sovereign_cloud::store::StoreError::ConsentRequired(ConsentScope::BackupContacts)
        ),
        "{error}"
    );
    // And below the store API, in SQL: the triggers refuse rows without a grant.
    let db = app.db();
    let params = [SqlValue::Text(user_id.clone()), SqlValue::Blob(vec![0])];
    let insert = db.execute(
        "INSERT INTO backup_items (owner_id, kind, item_id, version, change_seq, data_sealed, updated_at) \
         VALUES (?1, 'contacts', 'x', 1, 1, ?2, 0)",
        &params,
    );
    assert!(insert.unwrap_err().contains("consent_required"));
    let insert = db.execute(
        "INSERT INTO messages (id, owner_id, box, peer_sealed, body_sealed, created_at, expires_at) \
         VALUES ('m', ?1, 'inbox', ?2, ?2, 0, 0)",
        &params,
    );
    assert!(insert.unwrap_err().contains("consent_required"));
}

#[tokio::test]
async fn withdrawing_erases_the_scopes_data() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    for scope in ["messaging", "backup.contacts", "backup.sms"] {
        app.grant(&alice, scope).await;
    }
    app.grant(&bob, "messaging").await;
    let contact = json!({"name": "Ravi Kumar", "phones": ["+919800000001"]});
    assert_eq!(
        app.call(
            Method::PUT,
            "/v1/backup/contacts/c1",
            Some(&alice),
            Some(contact)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let sms = json!({"address": "+919800000001", "text": "see you at 6", "direction": "sent", "at": "2026-01-01T00:00:00Z"});
    assert_eq!(
        app.call(Method::PUT, "/v1/backup/sms/s1", Some(&alice), Some(sms))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "hi bob"}))
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );

    let before = app.get("/v1/me/export", &alice).await;
    assert_eq!(
        before.body["backup"]["contacts"].as_array().unwrap().len(),
        1
    );
    assert_eq!(before.body["backup"]["sms"].as_array().unwrap().len(), 1);
    assert_eq!(before.body["messages"].as_array().unwrap().len(), 1);

    app.call(
        Method::DELETE,
        "/v1/consents/backup.contacts",
        Some(&alice),
        None,
    )
    .await;
    let after = app.get("/v1/me/export", &alice).await;
    assert!(
        after.body["backup"]["contacts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        after.body["backup"]["sms"].as_array().unwrap().len(),
        1,
        "other scopes keep their data"
    );
    assert!(!after.to_string_contains("Ravi Kumar"));

    app.call(Method::DELETE, "/v1/consents/messaging", Some(&alice), None)
        .await;
    let after = app.get("/v1/me/export", &alice).await;
    assert!(after.body["messages"].as_array().unwrap().is_empty());
    // Bob's copy is Bob's: Alice withdrawing does not reach into Bob's mailbox.
    let bobs = app.get("/v1/messages", &bob).await;
    assert_eq!(bobs.body["messages"].as_array().unwrap().len(), 1);
}

trait ContainsText {
    fn to_string_contains(&self, needle: &str) -> bool;
}

impl ContainsText for Reply {
    fn to_string_contains(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.bytes).contains(needle)
    }
}
