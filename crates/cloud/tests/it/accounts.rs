use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn https_health_check_with_the_generated_ca() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["region"], "in-mumbai");
    // The same over 127.0.0.1, which the certificate also names.
    let url = app.base.replace("localhost", "127.0.0.1");
    assert_eq!(
        app.client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP is not served.
    let plain = reqwest::Client::new()
        .get(app.base.replace("https", "http") + "/healthz")
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    for key in [
        "keys/in-mumbai.kek",
        "keys/phone-index.key",
        "tls/ca-key.pem",
        "tls/server-key.pem",
    ] {
        let mode = std::fs::metadata(app.data_dir().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

#[tokio::test]
async fn sign_up_verify_sign_in_and_me() {
    let app = spawn_app().await;
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"phone": "+91 98123 45678", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let verification_id = reply.body["verification_id"].as_str().unwrap().to_owned();
    let outbox = std::fs::read_to_string(app.dir.path().join("sms-outbox.jsonl")).unwrap();
    let sms: serde_json::Value = serde_json::from_str(outbox.lines().last().unwrap()).unwrap();
    assert_eq!(sms["to"], ALICE);
    let code = sms["code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    assert!(sms["text"].as_str().unwrap().contains(code));

    let reply = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": verification_id, "code": code})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["region"], "in-mumbai");
    let user_id = reply.body["user_id"].as_str().unwrap().to_owned();

    // Replaying the verification does not create anything.
    let replay = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": verification_id, "code": code})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    assert_eq!(replay.code(), "verification_used");

    let token = app.sign_in(ALICE).await;
    let me = app.get("/v1/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user_id"], user_id.as_str());
    assert_eq!(me.body["phone"], ALICE);
    assert_eq!(me.body["sessions"][0]["device_name"], "test phone");

    let wrong = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"phone": ALICE, "password": "wrong password!", "device_name": "x"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "invalid_credentials");
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"phone": BOB, "password": "wrong password!", "device_name": "x"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["detail"], wrong.body["detail"]);
}

#[tokio::test]
async fn wrong_codes_are_limited_and_codes_expire() {
    let app = spawn_app().await;
    let start = |phone: &'static str| {
        let app = &app;
        async move {
            let reply = app
                .call(
                    Method::POST,
                    "/v1/accounts",
                    None,
                    Some(json!({"phone": phone, "password": "correct horse battery"})),
                )
                .await;
            reply.body["verification_id"].as_str().unwrap().to_owned()
        }
    };
    let id = start(ALICE).await;
    let right = app.code_for(ALICE);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let attempts_max = app.state.policies.limits.code_attempts_max;
    for left in (1..attempts_max).rev() {
        let reply = app
            .call(
                Method::POST,
                "/v1/accounts/verify",
                None,
                Some(json!({"verification_id": id, "code": wrong})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.code(), "wrong_code");
        assert_eq!(reply.body["attempts_left"], left);
    }
    let last = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": id, "code": wrong})),
        )
        .await;
    assert_eq!(last.code(), "too_many_attempts");
    // Now even the right code is refused.
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": id, "code": right})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.code(), "too_many_attempts");

    let id = start(BOB).await;
    let code = app.code_for(BOB);
    app.clock.advance_ms(11 * 60_000);
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": id, "code": code})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::GONE);
    assert_eq!(reply.code(), "verification_expired");

    let unknown = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": uuid_like(), "code": "123456"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": id, "code": "12ab"})),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["field"], "code");
}

fn uuid_like() -> &'static str {
    "6f1c1e3a-4a59-4c0e-9d1b-3d8e2b7f0a11"
}

#[tokio::test]
async fn a_second_account_for_the_same_number_is_refused() {
    let app = spawn_app().await;
    app.sign_up(ALICE).await;
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"phone": ALICE, "password": "another password"})),
        )
        .await;
    // Starting a sign-up does not reveal that the number is taken...
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let id = reply.body["verification_id"].as_str().unwrap();
    let code = app.code_for(ALICE);
    // ...only the holder of the phone, with the code, learns it.
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": id, "code": code})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "phone_taken");
}

#[tokio::test]
async fn tokens_wrong_missing_or_expired_get_401() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
    for bad in ["", "nonsense", &"x".repeat(500), &token[..token.len() - 1]] {
        let reply = app.get("/v1/me", bad).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(reply.code(), "unauthorized");
    }
    let no_header = app.call(Method::GET, "/v1/me", None, None).await;
    assert_eq!(no_header.status, StatusCode::UNAUTHORIZED);
    let days = i64::from(app.state.policies.retention.sessions_days);
    app.clock.advance_ms(days * 86_400_000 + 1);
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let stored: Vec<u8> = app
        .db()
        .query_row("SELECT token_digest FROM sessions", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert_ne!(stored, token.as_bytes());
    assert_eq!(stored, sovereign_crypto::token_digest(&token));
}

#[tokio::test]
async fn sign_up_floods_get_429() {
    let app = spawn_app_with(|p| {
        p.limits.signups_per_minute = 3;
        p.limits.logins_per_minute = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let reply = app
            .call(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"phone": ALICE, "password": "correct horse battery"})),
            )
            .await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.code(), "rate_limited");
            assert!(reply.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429]);
    let mut logins = Vec::new();
    for _ in 0..4 {
        let reply = app
            .call(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"phone": ALICE, "password": "guess guess", "device_name": "x"})),
            )
            .await;
        logins.push(reply.status.as_u16());
    }
    assert_eq!(logins, [401, 401, 401, 429]);
}

#[tokio::test]
async fn code_guessing_floods_get_429() {
    let app = spawn_app_with(|p| p.limits.verifications_per_minute = 2).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let body = json!({"verification_id": uuid_like(), "code": "123456"});
        statuses.push(
            app.call(Method::POST, "/v1/accounts/verify", None, Some(body))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [404, 404, 429]);
}

#[tokio::test]
async fn deleting_the_account_shreds_the_key_then_the_rows() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    app.grant(&token, "backup.photos").await;
    let put = app
        .raw(
            app.request(Method::PUT, "/v1/backup/photos/p1", &token)
                .header("content-type", "image/jpeg")
                .body(vec![7u8; 2048]),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let reply = app.call(Method::DELETE, "/v1/me", Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let db = app.db();
    for table in [
        "users",
        "sessions",
        "consent_state",
        "consent_events",
        "backup_items",
        "messages",
    ] {
        let rows = db.count(&format!("SELECT count(*) FROM {table}"));
        assert_eq!(rows, 0, "{table} still has rows");
    }
    let blobs = walk(&app.data_dir().join("regions/in-mumbai/blobs"));
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
    // The number can sign up again, as a new account.
    app.sign_up(ALICE).await;
}

#[tokio::test]
async fn an_interrupted_deletion_is_finished_at_start() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let me = app.get("/v1/me", &token).await;
    let user_id = me.body["user_id"].as_str().unwrap().to_owned();
    // Simulate a crash between the two steps of a deletion: the key is gone, the rows are not.
    app.state.store.shred_user(user_id.clone()).await.unwrap();
    let mut options = sovereign_cloud::RegionOptions::new(
        app.data_dir(),
        sovereign_model::RegionId::parse("in-mumbai").unwrap(),
        sovereign_cloud::Policies::embedded().unwrap(),
    );
    options.clock = app.clock.clone();
    options.database = app.database.clone();
    let reopened = sovereign_cloud::RegionState::open(options).await.unwrap();
    assert!(
        reopened
            .store
            .users_being_deleted()
            .await
            .unwrap()
            .is_empty()
    );
    let users = app.db().count("SELECT count(*) FROM users");
    assert_eq!(users, 0);
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
