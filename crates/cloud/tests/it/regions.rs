use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn a_region_redirects_users_it_may_not_hold() {
    let cloud = spawn_regions(&["in-mumbai", "us-oregon", "cn-beijing"]).await;
    let body = json!({"phone": ALICE, "password": "correct horse battery"});
    let reply = cloud
        .call(
            "us-oregon",
            Method::POST,
            "/v1/accounts",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(reply.code(), "wrong_region");
    assert_eq!(reply.body["region"], "in-mumbai");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/v1/accounts", cloud.url("in-mumbai")));
    // Nothing was written in the wrong region, and no code was sent from it.
    let users: i64 = cloud
        .db("us-oregon")
        .query_row("SELECT count(*) FROM verifications", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 0);
    assert!(!cloud.dir.path().join("sms-outbox.jsonl").exists());

    // Following the redirect works, and the user lives in Mumbai only.
    cloud.user("in-mumbai", ALICE).await;
    for (region, expected) in [("in-mumbai", 1), ("us-oregon", 0), ("cn-beijing", 0)] {
        let n: i64 = cloud
            .db(region)
            .query_row("SELECT count(*) FROM users", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(n, expected, "{region}");
    }
    // Signing in at the wrong region is redirected too.
    let body = json!({"phone": ALICE, "password": "correct horse battery", "device_name": "x"});
    let reply = cloud
        .call("cn-beijing", Method::POST, "/v1/sessions", None, Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        format!("{}/v1/sessions", cloud.url("in-mumbai")).as_str()
    );
}

#[tokio::test]
async fn messages_cross_regions_and_are_stored_only_in_the_recipients() {
    let cloud = spawn_regions(&["in-mumbai", "br-saopaulo"]).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let bruno = cloud.user("br-saopaulo", BRUNO).await;
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BRUNO, "body": "olá from Mumbai"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let inbox = cloud
        .call(
            "br-saopaulo",
            Method::GET,
            "/v1/messages",
            Some(&bruno),
            None,
        )
        .await;
    let messages = inbox.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["from"], ALICE);
    assert_eq!(messages[0]["body"], "olá from Mumbai");
    assert_eq!(messages[0]["id"], sent.body["id"]);
    let sent_box = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/messages?box=sent",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(sent_box.body["messages"][0]["to"], BRUNO);

    let count = |region: &str, message_box: &str| -> i64 {
        cloud
            .db(region)
            .query_row(
                "SELECT count(*) FROM messages WHERE box = ?1",
                &[message_box.into()],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        (count("br-saopaulo", "inbox"), count("br-saopaulo", "sent")),
        (1, 0)
    );
    assert_eq!(
        (count("in-mumbai", "inbox"), count("in-mumbai", "sent")),
        (0, 1)
    );

    // A recipient abroad who has not opted in looks like no account at all.
    cloud
        .call(
            "br-saopaulo",
            Method::DELETE,
            "/v1/consents/messaging",
            Some(&bruno),
            None,
        )
        .await;
    let refused = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BRUNO, "body": "hello?"})),
        )
        .await;
    let nobody = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": "+5511987654321", "body": "hello?"})),
        )
        .await;
    assert_eq!(refused.code(), "recipient_unavailable");
    assert_eq!(refused.bytes, nobody.bytes);
}

#[tokio::test]
async fn cross_region_reads_are_refused() {
    let cloud = spawn_regions(&["in-mumbai", "br-saopaulo"]).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    // A token is only good in the region that issued it.
    for path in ["/v1/me", "/v1/messages", "/v1/me/export"] {
        let reply = cloud
            .call("br-saopaulo", Method::GET, path, Some(&alice), None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // One region's key cannot open another region's user keys.
    let (user_id, wrapped): (String, Vec<u8>) = cloud
        .db("in-mumbai")
        .query_row("SELECT id, wrapped_key FROM users", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let user = sovereign_cloud::domain::UserId::from_stored(user_id);
    let mumbai = &cloud.cloud.region("in-mumbai").unwrap().state;
    let saopaulo = &cloud.cloud.region("br-saopaulo").unwrap().state;
    assert!(mumbai.keys.unwrap(&wrapped, &user).is_ok());
    assert!(saopaulo.keys.unwrap(&wrapped, &user).is_err());
}

#[tokio::test]
async fn only_a_region_with_a_valid_signature_can_forward() {
    let cloud = spawn_regions(&["in-mumbai", "br-saopaulo"]).await;
    cloud.user("br-saopaulo", BRUNO).await;
    let forged = json!({"id": "6f1c1e3a-4a59-4c0e-9d1b-3d8e2b7f0a11", "from": ALICE, "to": BRUNO, "body": "fake", "sent_at_ms": START_MS});
    let url = format!("{}/internal/v1/messages", cloud.url("br-saopaulo"));
    let unsigned = cloud.client.post(&url).json(&forged).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // A signature by some other key, claiming to be Mumbai.
    let (impostor, _) = sovereign_crypto::PeerIdentity::generate().unwrap();
    let bytes = serde_json::to_vec(&forged).unwrap();
    let text = format!(
        "sovereign-federation-v1\nin-mumbai\nbr-saopaulo\nPOST\n/internal/v1/messages\n{START_MS}\n{}",
        sovereign_crypto::hex(&sovereign_crypto::digest_sha256(&bytes))
    );
    use base64::Engine;
    let signature =
        base64::engine::general_purpose::STANDARD.encode(impostor.sign(text.as_bytes()));
    let spoofed = cloud
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("sovereign-from-region", "in-mumbai")
        .header("sovereign-time-ms", START_MS.to_string())
        .header("sovereign-signature", signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::UNAUTHORIZED);
    let n: i64 = cloud
        .db("br-saopaulo")
        .query_row("SELECT count(*) FROM messages", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_retried_send_abroad_without_an_id_reaches_the_recipient_once() {
    let cloud = spawn_regions(&["in-mumbai", "br-saopaulo"]).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let bruno = cloud.user("br-saopaulo", BRUNO).await;
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let send = |body: &'static str| {
        cloud.call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BRUNO, "body": body})),
        )
    };
    // São Paulo stores Bruno's copy; then Mumbai fails before storing Alice's (a lost answer).
    mumbai
        .faults
        .arm(sovereign_cloud::faults::SEND_AFTER_FORWARD);
    let first = send("are you there?").await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    // The client retries the same request, still without an id.
    let retry = send("are you there?").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{:?}", retry.body);
    let messages = inbox(&cloud, &bruno).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["id"], retry.body["id"]);
    // A deliberate second message with the same words is a new message.
    let again = send("are you there?").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_ne!(again.body["id"], retry.body["id"]);
    assert_eq!(inbox(&cloud, &bruno).await.len(), 2);
}

async fn inbox(cloud: &TestCloud, token: &str) -> Vec<Value> {
    cloud
        .call(
            "br-saopaulo",
            Method::GET,
            "/v1/messages",
            Some(token),
            None,
        )
        .await
        .body["messages"]
        .as_array()
        .unwrap()
        .clone()
}
