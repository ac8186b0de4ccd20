//! An account deletion stopped at any step (as by a crash) is finished by the sweeper, and the
//! number can be signed up again: an interrupted deletion never burns it.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::faults::{DELETE_AFTER_BLOBS, DELETE_AFTER_DIRECTORY, DELETE_AFTER_SHRED};

use crate::support::*;

/// Starts a sign-up and enters the code; the status of the verification.
async fn try_sign_up(app: &TestApp, phone: &str) -> (StatusCode, String) {
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"phone": phone, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let verification_id = reply.body["verification_id"].as_str().unwrap().to_owned();
    let code = app.code_for(phone);
    let reply = app
        .call(
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": verification_id, "code": code})),
        )
        .await;
    (reply.status, reply.code().to_owned())
}

#[tokio::test]
async fn an_interrupted_deletion_is_finished_and_the_number_can_sign_up_again() {
    for point in [
        DELETE_AFTER_SHRED,
        DELETE_AFTER_BLOBS,
        DELETE_AFTER_DIRECTORY,
    ] {
        let app = spawn_app().await;
        let token = app.user(ALICE).await;
        app.state.faults.arm(point);
        let reply = app.call(Method::DELETE, "/v1/me", Some(&token), None).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{point}");
        // The key is gone: the account is unusable from here on, whatever happens next.
        assert_eq!(
            app.get("/v1/me", &token).await.status,
            StatusCode::UNAUTHORIZED
        );
        // Until the sweeper has run, the number is still held (by the half-deleted account).
        let (status, code) = try_sign_up(&app, ALICE).await;
        assert_eq!(status, StatusCode::CONFLICT, "{point}: {code}");
        // The housekeeping's pass (also run at start) finishes the deletion.
        let finished = sovereign_cloud::deletion::finish_deletions(&app.state)
            .await
            .unwrap();
        assert_eq!(finished, 1, "{point}");
        assert_eq!(app.db().count("SELECT COUNT(*) FROM users"), 0, "{point}");
        let (status, code) = try_sign_up(&app, ALICE).await;
        assert_eq!(status, StatusCode::CREATED, "{point}: {code}");
        // The new account is the number's: it signs in and is a different user.
        let token = app.sign_in(ALICE).await;
        assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_deletion_that_runs_through_frees_the_number_at_once() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let reply = app.call(Method::DELETE, "/v1/me", Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let (status, code) = try_sign_up(&app, ALICE).await;
    assert_eq!(status, StatusCode::CREATED, "{code}");
}
