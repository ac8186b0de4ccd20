//! The export in pages: an account larger than a page comes out whole, streamed (several
//! chunks, no length announced), a part held in a service region is asked for page by page, and
//! an export that fails part-way is cut off, never closed as if complete.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::clock::Clock as _;
use sovereign_cloud::migration::{Selector, migrate};
use sovereign_model::RegionId;

use crate::services::{india_may_move_to_singapore, move_messaging};
use crate::support::*;
use crate::trust::stolen_federation;

/// The export as it arrives: its chunks, or the error that cut it.
async fn fetch_export(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<Vec<u8>>, bool) {
    let mut response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut chunks = Vec::new();
    let cut = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => chunks.push(chunk.to_vec()),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    (status, headers, chunks, cut)
}

fn whole(chunks: &[Vec<u8>]) -> Vec<u8> {
    chunks.concat()
}

#[tokio::test]
async fn an_export_larger_than_a_page_is_complete_and_streamed_in_pages() {
    let app = spawn_app_with(|p| p.limits.export_page_rows = 3).await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    for token in [&alice, &bob] {
        app.grant(token, "messaging").await;
    }
    for scope in ["backup.contacts", "backup.sms", "backup.photos"] {
        app.grant(&alice, scope).await;
    }
    for n in 0..10 {
        let put = app
            .call(
                Method::PUT,
                &format!("/v1/backup/contacts/c{n:02}"),
                Some(&alice),
                Some(json!({"name": format!("Contact {n}"), "phones": ["+919800000001"]})),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    for n in 0..4 {
        let put = app
            .call(
                Method::PUT,
                &format!("/v1/backup/sms/s{n}"),
                Some(&alice),
                Some(json!({"address": "+919800000001", "text": format!("sms {n}"), "direction": "inbox", "at": "2026-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    for n in 0..4u8 {
        let put = app
            .raw(
                app.request(Method::PUT, &format!("/v1/backup/photos/p{n}.jpg"), &alice)
                    .header("content-type", "image/jpeg")
                    .body(vec![n; 100_000]),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    // Messages in both boxes: 5 from Bob, 4 to Bob.
    for n in 0..9 {
        let (from, to) = if n % 2 == 0 {
            (&bob, ALICE)
        } else {
            (&alice, BOB)
        };
        let sent = app
            .call(
                Method::POST,
                "/v1/messages",
                Some(from),
                Some(json!({"to": to, "body": format!("message {n}")})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
    }

    let url = format!("{}/v1/me/export", app.base);
    let (status, headers, chunks, cut) = fetch_export(&app.client, &url, &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!cut);
    // Streamed: no length announced up front, and it came in pieces (a page at least each).
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    let document: Value = serde_json::from_slice(&whole(&chunks)).unwrap();
    assert_eq!(document["complete"], true);
    assert_eq!(document["account"]["phone"], ALICE);
    assert_eq!(document["regions"]["account"], "in-mumbai");
    assert!(document["consents"].as_array().unwrap().len() >= 4);
    let messages = document["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 9);
    let mut bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort_unstable();
    let expected: Vec<String> = (0..9).map(|n| format!("message {n}")).collect();
    assert_eq!(bodies, expected);
    let contacts = document["backup"]["contacts"].as_array().unwrap();
    let ids: Vec<&str> = contacts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("c{n:02}")).collect();
    assert_eq!(ids, expected, "every contact once, in order");
    assert_eq!(document["backup"]["sms"].as_array().unwrap().len(), 4);
    let photos = document["backup"]["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 4);
    use base64::Engine;
    for (n, photo) in photos.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(photo["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, vec![n as u8; 100_000]);
    }
}

#[tokio::test]
async fn an_export_that_fails_part_way_is_cut_off_not_closed() {
    let app = spawn_app_with(|p| p.limits.export_page_rows = 2).await;
    let alice = app.user(ALICE).await;
    app.grant(&alice, "backup.contacts").await;
    for n in 0..6 {
        let put = app
            .call(
                Method::PUT,
                &format!("/v1/backup/contacts/c{n}"),
                Some(&alice),
                Some(json!({"name": format!("Contact {n}"), "phones": ["+919800000001"]})),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    app.state
        .faults
        .arm(sovereign_cloud::faults::EXPORT_AFTER_PAGE);
    let url = format!("{}/v1/me/export", app.base);
    let (status, _, chunks, cut) = fetch_export(&app.client, &url, &alice).await;
    // The answer had begun (200) when the failure came: the body ends in error (on HTTP/2 a
    // stream reset, after which the client may drop what it had buffered), and whatever did
    // arrive is not a JSON document (no closing brace, no "complete").
    assert_eq!(status, StatusCode::OK);
    assert!(cut, "the response must end in error");
    let received = whole(&chunks);
    assert!(serde_json::from_slice::<Value>(&received).is_err());
    assert!(!String::from_utf8_lossy(&received).contains("\"complete\""));
    // The next export is whole.
    let (_, _, chunks, cut) = fetch_export(&app.client, &url, &alice).await;
    assert!(!cut);
    let document: Value = serde_json::from_slice(&whole(&chunks)).unwrap();
    assert_eq!(document["complete"], true);
    assert_eq!(document["backup"]["contacts"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_service_regions_part_is_handed_over_page_by_page_under_one_ledger_entry() {
    let cloud = spawn_regions_with(&["in-mumbai", "sg-singapore"], |p| {
        india_may_move_to_singapore(p);
        p.limits.export_page_rows = 2;
    })
    .await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let bob = cloud.user("in-mumbai", BOB).await;
    for n in 0..7 {
        let sent = cloud
            .call(
                "in-mumbai",
                Method::POST,
                "/v1/messages",
                Some(&bob),
                Some(json!({"to": ALICE, "body": format!("before {n}")})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
    }
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let spec = move_messaging(
        Selector::Users(vec![ALICE.to_owned()]),
        "in-mumbai",
        "sg-singapore",
    );
    let report = migrate(&spec, &mumbai, &singapore, |_| {}).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    let ledger_exports = || {
        cloud
            .db("sg-singapore")
            .count("SELECT count(*) FROM ledger_entries WHERE kind = 'export'")
    };
    assert_eq!(ledger_exports(), 0);

    let url = format!("{}/v1/me/export", cloud.url("in-mumbai"));
    let (status, _, chunks, cut) = fetch_export(&cloud.client, &url, &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!cut);
    let document: Value = serde_json::from_slice(&whole(&chunks)).unwrap();
    assert_eq!(document["complete"], true);
    assert_eq!(document["regions"]["messaging"], "sg-singapore");
    let mut bodies: Vec<&str> = document["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort_unstable();
    let expected: Vec<String> = (0..7).map(|n| format!("before {n}")).collect();
    assert_eq!(bodies, expected);
    // Four pages of two crossed the link, under one entry in Singapore's ledger, as before.
    assert_eq!(ledger_exports(), 1);

    // A page is handed over only under an export the home began there (its ledger entry).
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    let home = stolen_federation(&cloud, "in-mumbai");
    let (status, answer) = home
        .post(
            &RegionId::parse("sg-singapore").unwrap(),
            sovereign_cloud::export::USER_EXPORT_PAGE_PATH,
            &json!({"user_id": alice_id, "export_id": "madeup", "part": "messages", "after": null}),
            cloud.clock.now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "{answer}");
    assert!(answer.get("items").is_none(), "{answer}");
}
