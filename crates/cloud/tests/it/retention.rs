//! Issue 5: retention. Tests move the injected clock and call the sweeper directly; no sleeps.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::clock::Clock;
use sovereign_cloud::retention::{DAY_MS, ledger_ms, sweep};
use sovereign_model::RegionId;

use crate::support::*;

async fn stats(app: &TestApp) -> Vec<(&'static str, i64, i64)> {
    app.state
        .store
        .retention_stats(app.clock.now_ms(), ledger_ms(&app.state.policies.retention))
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.category, s.rows, s.due_now))
        .collect()
}

fn rows(stats: &[(&'static str, i64, i64)], category: &str) -> i64 {
    stats.iter().find(|s| s.0 == category).unwrap().1
}

#[tokio::test]
async fn the_sweeper_deletes_each_category_when_its_time_comes() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "hi"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);

    let before = stats(&app).await;
    assert_eq!(rows(&before, "undelivered_messages"), 1);
    assert_eq!(rows(&before, "delivered_messages"), 1, "the sender's copy");
    assert_eq!(rows(&before, "sessions"), 2);
    assert_eq!(rows(&before, "verification_codes"), 2);
    assert_eq!(
        sweep(&app.state).await.unwrap(),
        Default::default(),
        "nothing is due yet"
    );

    // One-time codes live 10 minutes.
    app.clock.advance_ms(10 * 60_000);
    let counts = sweep(&app.state).await.unwrap();
    assert_eq!(counts.verification_codes, 2);
    assert_eq!(counts.sessions, 0);

    // Sessions and undelivered messages live 30 days.
    app.clock.advance_ms(30 * DAY_MS);
    let report = stats(&app).await;
    assert!(
        report.iter().any(|s| s.0 == "sessions" && s.2 == 2),
        "{report:?}"
    );
    let counts = sweep(&app.state).await.unwrap();
    assert_eq!(counts.undelivered_messages, 1);
    assert_eq!(counts.sessions, 2);
    assert_eq!(
        counts.delivered_messages, 0,
        "the sender's copy lives 365 days"
    );
    assert_eq!(
        app.get("/v1/me", &alice).await.status,
        StatusCode::UNAUTHORIZED
    );

    app.clock.advance_ms(335 * DAY_MS);
    assert_eq!(sweep(&app.state).await.unwrap().delivered_messages, 1);
    let after = stats(&app).await;
    for (category, count, _) in after {
        assert_eq!(count, 0, "{category}");
    }
}

#[tokio::test]
async fn ledger_details_expire_but_the_ledger_still_verifies() {
    let app = spawn_app().await;
    let alice_id = app.sign_up(ALICE).await;
    let ops = crate::ops::operators(&app, &["ana", "ben"]).await;
    let now = app.clock.now_ms();
    let request = sovereign_cloud::ops::AccessRequest {
        id: "6f1c1f8e-59a4-4c3e-9d1b-1a2b3c4d5e6f".into(),
        region: "in-mumbai".into(),
        requester: "ana".into(),
        user_id: alice_id,
        scopes: vec![sovereign_model::ConsentScope::BackupSms],
        reason: "support ticket 9".into(),
        requested_at_ms: now,
        not_after_ms: now + 60_000,
    };
    assert_eq!(
        crate::ops::submit(&app, &request, &ops[0].key).await.status,
        StatusCode::CREATED
    );
    crate::ops::decide(
        &app,
        &request,
        &ops[1],
        sovereign_cloud::ops::Decision::Deny,
    )
    .await;

    app.clock.advance_ms(729 * DAY_MS);
    assert_eq!(sweep(&app.state).await.unwrap().ledger_details, 0);
    app.clock.advance_ms(DAY_MS);
    let counts = sweep(&app.state).await.unwrap();
    assert_eq!(counts.ledger_details, 2);
    assert_eq!(counts.closed_requests, 1);
    let (rows, _) = app.state.store.ledger_all().await.unwrap();
    assert!(rows.iter().all(|r| r.detail.is_none()));
    let summary = app.verify_ledger().unwrap();
    assert_eq!(summary.entries, 2);
}

#[tokio::test]
async fn the_report_says_what_goes_when() {
    let app = spawn_app().await;
    app.user(ALICE).await;
    let region = RegionId::parse("in-mumbai").unwrap();
    let text = off_runtime(|| {
        sovereign_cloud::retention::report_store(
            &app.data_dir(),
            &region,
            app.database.as_deref(),
            &app.state.policies.retention,
            app.clock.now_ms(),
        )
        .unwrap()
    });
    // Sign-in at START_MS; sessions live 30 days.
    let expiry = sovereign_cloud::clock::rfc3339(START_MS + 30 * DAY_MS);
    let line = text.lines().find(|l| l.starts_with("sessions")).unwrap();
    assert!(line.contains(&expiry), "{text}");
    assert!(line.contains("30 days after sign-in"), "{text}");
    let codes = text
        .lines()
        .find(|l| l.starts_with("verification_codes"))
        .unwrap();
    assert!(codes.split_whitespace().nth(1) == Some("1"), "{text}");
}

#[tokio::test]
async fn a_user_being_moved_does_not_stop_the_sweep_for_everyone() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    let carol = app.user(CAROL).await;
    for token in [&alice, &bob, &carol] {
        app.grant(token, "messaging").await;
    }
    for (from, to) in [(&bob, ALICE), (&bob, CAROL)] {
        let sent = app
            .call(
                Method::POST,
                "/v1/messages",
                Some(from),
                Some(json!({"to": to, "body": "hi"})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
    }
    // Alice is in the middle of a move: her rows are fenced.
    let me = app.get("/v1/me", &alice).await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    app.state
        .store
        .fence_user(alice_id.clone(), START_MS)
        .await
        .unwrap();
    app.clock.advance_ms(31 * DAY_MS);
    let counts = sweep(&app.state).await.unwrap();
    // Carol's expired inbox copy goes; Alice's waits for her move to finish.
    assert_eq!(counts.undelivered_messages, 1);
    let alice_inbox: i64 = app
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE owner_id = ?1",
            &[alice_id.clone().into()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(alice_inbox, 1);
}
