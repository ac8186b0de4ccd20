//! Issue 4: one service of a user moved to another region while the account stays home
//! (`sovereign migrate --services messaging`), and everything that must keep holding after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::domain::Service;
use sovereign_cloud::migration::{MigrationSpec, Selector, migrate};
use sovereign_model::{CountryCode, RegionId, ResidencyPolicy};

use crate::support::*;

/// Indian users live in Mumbai and may also be held in Singapore.
pub(crate) fn india_may_move_to_singapore(policies: &mut sovereign_cloud::Policies) {
    policies.residency = ResidencyPolicy::from_toml(
        "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
    )
    .unwrap();
}

pub(crate) fn move_messaging(selector: Selector, from: &str, to: &str) -> MigrationSpec {
    MigrationSpec {
        from: RegionId::parse(from).unwrap(),
        to: RegionId::parse(to).unwrap(),
        selector,
        services: vec![Service::Messaging],
    }
}

fn india() -> Selector {
    Selector::Jurisdiction(CountryCode::parse("IN").unwrap())
}

fn phone(i: usize) -> String {
    format!("+9198{:08}", 30_000_000 + i)
}

/// How long a writer retries one request before the test calls it stuck.
const WRITER_STUCK_AFTER: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Acked {
    contacts: Vec<String>,
    /// message id → (sender, recipient)
    messages: BTreeMap<String, (usize, usize)>,
}

/// A client that keeps writing messages and backups and follows each service where it lives:
/// 503 means retry, 307 means go where the Location says (for that service only).
async fn writer(
    cloud: Arc<TestCloud>,
    me: usize,
    users: usize,
    token: String,
    stop: Arc<AtomicBool>,
) -> Acked {
    let mut bases = BTreeMap::from([
        ("backup", cloud.url("in-mumbai")),
        ("messaging", cloud.url("in-mumbai")),
    ]);
    let mut acked = Acked::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) || n < 4 {
        n += 1;
        let item = format!("w{me}-{n}");
        let to = (me + 1) % users;
        let message_id = uuid::Uuid::new_v4().to_string();
        let requests = [
            (
                "backup",
                Method::PUT,
                format!("/v1/backup/contacts/{item}"),
                json!({"name": format!("contact {me}/{n}")}),
            ),
            (
                "messaging",
                Method::POST,
                "/v1/messages".to_owned(),
                json!({"to": phone(to), "body": format!("{me}->{to} #{n}"), "id": message_id}),
            ),
        ];
        for (service, method, path, body) in requests {
            let started = Instant::now();
            let mut last = serde_json::Value::Null;
            loop {
                assert!(
                    started.elapsed() < WRITER_STUCK_AFTER,
                    "writer {me} stuck on {path}: last answer {last}"
                );
                let base = bases[service].clone();
                let response = cloud
                    .client
                    .request(method.clone(), format!("{base}{path}"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned());
                last = response.json().await.unwrap_or_default();
                match status {
                    200..=202 => break,
                    503 => tokio::time::sleep(Duration::from_millis(5)).await,
                    307 => {
                        let location = location.unwrap();
                        bases.insert(
                            service,
                            location[..location.find("/v1").unwrap()].to_owned(),
                        );
                    }
                    other => panic!("writer {me}: {path} at {base} answered {other}: {last}"),
                }
            }
            if service == "backup" {
                acked.contacts.push(item.clone());
            } else {
                acked.messages.insert(message_id.clone(), (me, to));
            }
        }
    }
    acked
}

fn count(db: &TestDb, sql: &str, params: &[SqlValue]) -> i64 {
    db.query_row(sql, params, |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_messaging_only_under_concurrent_writes_loses_and_duplicates_nothing_issue_4() {
    const USERS: usize = 6;
    let cloud = Arc::new(
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await,
    );
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let token = cloud.user("in-mumbai", &phone(i)).await;
        let grant = cloud
            .call(
                "in-mumbai",
                Method::PUT,
                "/v1/consents/backup.contacts",
                Some(&token),
                Some(json!({"notice_version": 1})),
            )
            .await;
        assert_eq!(grant.status, StatusCode::OK);
        tokens.push(token);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            tokio::spawn(writer(cloud.clone(), i, USERS, token.clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let spec = move_messaging(india(), "in-mumbai", "sg-singapore");
    let report = migrate(&spec, &mumbai, &singapore, |_| {}).await.unwrap();
    assert_eq!(report.moved, USERS, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Acked::default();
    for writer in writers {
        let a = writer.await.unwrap();
        acked.contacts.extend(a.contacts);
        acked.messages.extend(a.messages);
    }
    assert!(acked.messages.len() >= USERS * 4);

    // Every acknowledged message is in Singapore exactly once per copy, none in Mumbai.
    let sg = cloud.db("sg-singapore");
    let mb = cloud.db("in-mumbai");
    for (id, from_to) in &acked.messages {
        for message_box in ["sent", "inbox"] {
            let n = count(
                &sg,
                "SELECT count(*) FROM messages WHERE id = ?1 AND box = ?2",
                &[id.as_str().into(), message_box.into()],
            );
            assert_eq!(n, 1, "message {id} {message_box} copy, from/to {from_to:?}");
        }
    }
    assert_eq!(
        count(&sg, "SELECT count(*) FROM messages", &[]) as usize,
        acked.messages.len() * 2,
        "no message stored twice"
    );
    assert_eq!(
        count(&mb, "SELECT count(*) FROM messages", &[]),
        0,
        "messages left in Mumbai"
    );
    // Backups never left home: every acknowledged contact once in Mumbai, none in Singapore.
    for item in &acked.contacts {
        let n = count(
            &mb,
            "SELECT count(*) FROM backup_items WHERE item_id = ?1 AND deleted = 0",
            &[item.as_str().into()],
        );
        assert_eq!(n, 1, "contact {item}");
    }
    assert_eq!(
        count(&mb, "SELECT count(*) FROM backup_items", &[]) as usize,
        acked.contacts.len()
    );
    assert_eq!(count(&sg, "SELECT count(*) FROM backup_items", &[]), 0);
    // The messaging keys moved with the messages (the source's are destroyed); the backup keys
    // stayed home.
    use sovereign_model::ConsentScope;
    for n in 0..USERS as i64 {
        let user: String = mb
            .query_row(
                "SELECT id FROM users ORDER BY id LIMIT 1 OFFSET ?1",
                &[n.into()],
                |r| r.get(0),
            )
            .unwrap();
        let user = sovereign_cloud::domain::UserId::from_stored(user);
        let has = |state: &sovereign_cloud::state::AppState, scope| {
            state.keys.scope_key(&user, scope).unwrap().is_some()
        };
        assert!(has(&singapore, ConsentScope::Messaging), "{user}");
        assert!(!has(&mumbai, ConsentScope::Messaging), "{user}");
        assert!(has(&mumbai, ConsentScope::BackupContacts), "{user}");
        assert!(!has(&singapore, ConsentScope::BackupContacts), "{user}");
    }
    // The accounts stayed home; Singapore holds service rows without password or sessions.
    assert_eq!(
        count(
            &mb,
            "SELECT count(*) FROM users WHERE kind = 'account'",
            &[]
        ) as usize,
        USERS
    );
    assert_eq!(
        count(
            &sg,
            "SELECT count(*) FROM users WHERE kind = 'service' AND password_hash = ''",
            &[]
        ) as usize,
        USERS
    );
    for table in [
        "sessions",
        "consent_events",
        "verifications",
        "migration_fences",
    ] {
        assert_eq!(
            count(&sg, &format!("SELECT count(*) FROM {table}"), &[]),
            0,
            "{table} in Singapore"
        );
    }
    assert_eq!(
        count(
            &mb,
            "SELECT count(*) FROM service_fences WHERE service = 'messaging' AND state = 'gone'",
            &[]
        ) as usize,
        USERS
    );
    assert_eq!(
        count(
            &mb,
            "SELECT count(*) FROM service_fences WHERE state = 'moving'",
            &[]
        ),
        0
    );

    // The user signs in at home as before; messaging is served in Singapore.
    let body =
        json!({"phone": phone(0), "password": "correct horse battery", "device_name": "new"});
    let sign_in = cloud
        .call("in-mumbai", Method::POST, "/v1/sessions", None, Some(body))
        .await;
    assert_eq!(sign_in.status, StatusCode::CREATED, "{:?}", sign_in.body);
    let token = sign_in.body["token"].as_str().unwrap().to_owned();
    let at_home = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/messages?box=sent",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(at_home.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        at_home.headers["location"],
        format!("{}/v1/messages?box=sent", cloud.url("sg-singapore")).as_str()
    );
    let sent = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages?box=sent",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    let mine = acked
        .messages
        .values()
        .filter(|(from, _)| *from == 0)
        .count();
    assert_eq!(sent.body["messages"].as_array().unwrap().len(), mine);
    // Everything else is still served at home, and Singapore sends it there.
    for path in ["/v1/me", "/v1/backup/contacts", "/v1/consents"] {
        let reply = cloud
            .call("sg-singapore", Method::GET, path, Some(&token), None)
            .await;
        assert_eq!(reply.status, StatusCode::TEMPORARY_REDIRECT, "{path}");
        assert_eq!(
            reply.headers["location"],
            format!("{}{path}", cloud.url("in-mumbai")).as_str()
        );
    }
    let contacts = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/backup/contacts",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(contacts.status, StatusCode::OK);
    // The export at home gathers the messages from Singapore.
    let export = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/me/export",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK, "{:?}", export.body);
    assert_eq!(export.body["regions"]["messaging"], "sg-singapore");
    assert_eq!(export.body["regions"]["backup"], "in-mumbai");
    let mine_all = acked
        .messages
        .values()
        .filter(|(f, t)| *f == 0 || *t == 0)
        .count();
    assert_eq!(export.body["messages"].as_array().unwrap().len(), mine_all);
    // Running the move again finds nothing left to do.
    let again = migrate(&spec, &mumbai, &singapore, |_| {}).await.unwrap();
    assert_eq!(again.moved, 0, "{again:?}");
}

/// Alice's messaging moves to Singapore; Bob's stays in Mumbai with both accounts.
pub(crate) async fn alice_messaging_in_singapore() -> (TestCloud, String, String) {
    let cloud =
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let bob = cloud.user("in-mumbai", BOB).await;
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "before"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let spec = move_messaging(
        Selector::Users(vec![ALICE.to_owned()]),
        "in-mumbai",
        "sg-singapore",
    );
    let report = migrate(&spec, &mumbai, &singapore, |_| {}).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    (cloud, alice, bob)
}

fn alice_rows(cloud: &TestCloud, region: &str, table: &str, owner: &str, alice_id: &str) -> i64 {
    count(
        &cloud.db(region),
        &format!("SELECT count(*) FROM {table} WHERE {owner} = ?1"),
        &[alice_id.into()],
    )
}

#[tokio::test]
async fn messages_reach_each_user_where_their_messaging_lives_issue_4() {
    let (cloud, alice, bob) = alice_messaging_in_singapore().await;
    let alice_id = cloud
        .cloud
        .region("in-mumbai")
        .unwrap()
        .state
        .directory
        .clone();
    let alice_id = alice_id
        .lookup(
            cloud
                .cloud
                .region("in-mumbai")
                .unwrap()
                .state
                .keys
                .phone_index(&sovereign_cloud::domain::PhoneNumber::parse(ALICE).unwrap()),
        )
        .await
        .unwrap()
        .unwrap()
        .user_id;
    // Alice sends from Singapore to Bob in Mumbai; Bob answers from Mumbai to Singapore.
    let to_bob = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "from sg"})),
        )
        .await;
    assert_eq!(to_bob.status, StatusCode::ACCEPTED, "{:?}", to_bob.body);
    let to_alice = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "to sg"})),
        )
        .await;
    assert_eq!(to_alice.status, StatusCode::ACCEPTED, "{:?}", to_alice.body);
    // Alice's copies (her sent one before the move, the new sent one, Bob's answer) are all in
    // Singapore, none in Mumbai; Bob's are all in Mumbai.
    assert_eq!(
        alice_rows(&cloud, "sg-singapore", "messages", "owner_id", &alice_id),
        3
    );
    assert_eq!(
        alice_rows(&cloud, "in-mumbai", "messages", "owner_id", &alice_id),
        0
    );
    assert_eq!(
        count(
            &cloud.db("sg-singapore"),
            "SELECT count(*) FROM messages",
            &[]
        ),
        3
    );
    let inbox = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert_eq!(inbox.body["messages"][0]["body"], "to sg");
    assert_eq!(inbox.body["messages"][0]["from"], BOB);
    let bobs = cloud
        .call("in-mumbai", Method::GET, "/v1/messages", Some(&bob), None)
        .await;
    let bodies: Vec<&str> = bobs.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["before", "from sg"]);
    // Bob's token means nothing in Singapore, which holds nothing of his: his home does not
    // tell it whose token it is.
    let stranger = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    let nobody = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some("not-a-token"),
            None,
        )
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn withdrawing_consent_at_home_erases_the_data_in_the_service_region_issue_4() {
    let (cloud, alice, bob) = alice_messaging_in_singapore().await;
    let alice_id = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await
        .body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        alice_rows(&cloud, "sg-singapore", "messages", "owner_id", &alice_id),
        1
    );
    let withdrawn = cloud
        .call(
            "in-mumbai",
            Method::DELETE,
            "/v1/consents/messaging",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{:?}", withdrawn.body);
    assert_eq!(
        alice_rows(&cloud, "sg-singapore", "messages", "owner_id", &alice_id),
        0
    );
    assert_eq!(
        alice_rows(
            &cloud,
            "sg-singapore",
            "consent_state",
            "user_id",
            &alice_id
        ),
        0
    );
    // Singapore's own checks refuse her messages now, as home's would.
    let refused = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "x"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "consent_required");
    let to_alice = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "x"})),
        )
        .await;
    assert_eq!(to_alice.code(), "recipient_unavailable");
    // Granting again at home reaches Singapore before the answer.
    let granted = cloud
        .call(
            "in-mumbai",
            Method::PUT,
            "/v1/consents/messaging",
            Some(&alice),
            Some(json!({"notice_version": 1})),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.body);
    assert_eq!(
        alice_rows(
            &cloud,
            "sg-singapore",
            "consent_state",
            "user_id",
            &alice_id
        ),
        1
    );
    let sent = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "back"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    // The history stays at home only.
    assert_eq!(
        alice_rows(
            &cloud,
            "sg-singapore",
            "consent_events",
            "user_id",
            &alice_id
        ),
        0
    );
    assert_eq!(
        alice_rows(&cloud, "in-mumbai", "consent_events", "user_id", &alice_id),
        3
    );
}

#[tokio::test]
async fn deleting_the_account_at_home_erases_it_everywhere_issue_4() {
    let (cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let alice_id = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await
        .body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = cloud
        .call("in-mumbai", Method::DELETE, "/v1/me", Some(&alice), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    for region in ["in-mumbai", "sg-singapore"] {
        for (table, owner) in [
            ("users", "id"),
            ("messages", "owner_id"),
            ("consent_state", "user_id"),
            ("service_fences", "user_id"),
        ] {
            assert_eq!(
                alice_rows(&cloud, region, table, owner, &alice_id),
                0,
                "{table} in {region}"
            );
        }
    }
    let directory = &cloud.cloud.region("in-mumbai").unwrap().state.directory;
    assert!(
        directory
            .placements(alice_id.clone())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(directory.home_of(alice_id).await.unwrap().is_none());
    let gone = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_service_region_that_cannot_be_reached_fails_the_change_and_nothing_is_claimed_issue_4() {
    let (mut cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let index = cloud
        .cloud
        .regions
        .iter()
        .position(|r| r.id.as_str() == "sg-singapore")
        .unwrap();
    let singapore = cloud.cloud.regions.remove(index);
    singapore.server.shutdown(Duration::from_secs(1)).await;
    let withdrawn = cloud
        .call(
            "in-mumbai",
            Method::DELETE,
            "/v1/consents/messaging",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(withdrawn.code(), "region_unavailable");
    let consents = cloud
        .call("in-mumbai", Method::GET, "/v1/consents", Some(&alice), None)
        .await;
    assert_eq!(consents.body["consents"][0]["scope"], "messaging");
    assert_eq!(
        consents.body["consents"][0]["granted"], true,
        "the withdrawal was not done"
    );
    let deleted = cloud
        .call("in-mumbai", Method::DELETE, "/v1/me", Some(&alice), None)
        .await;
    assert_eq!(deleted.status, StatusCode::SERVICE_UNAVAILABLE);
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "the account was not deleted");
}

#[tokio::test]
async fn a_forged_session_check_is_refused_issue_4() {
    let (cloud, alice, bob) = alice_messaging_in_singapore().await;
    let url = format!("{}/internal/v1/sessions/verify", cloud.url("in-mumbai"));
    let digest = sovereign_crypto::hex(&sovereign_crypto::token_digest(&alice));
    let body = json!({"token_digest": digest});
    let unsigned = cloud.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // Signed by some other key, claiming to be Singapore.
    let (impostor, _) = sovereign_crypto::PeerIdentity::generate().unwrap();
    let bytes = serde_json::to_vec(&body).unwrap();
    let text = format!(
        "sovereign-federation-v1\nsg-singapore\nin-mumbai\nPOST\n/internal/v1/sessions/verify\n{START_MS}\n{}",
        sovereign_crypto::hex(&sovereign_crypto::digest_sha256(&bytes))
    );
    use base64::Engine;
    let signature =
        base64::engine::general_purpose::STANDARD.encode(impostor.sign(text.as_bytes()));
    let spoofed = cloud
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("sovereign-from-region", "sg-singapore")
        .header("sovereign-time-ms", START_MS.to_string())
        .header("sovereign-signature", signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::UNAUTHORIZED);
    // A genuine region learns whose a token is only for users whose services it holds.
    let singapore = &cloud.cloud.region("sg-singapore").unwrap().state;
    let mumbai = RegionId::parse("in-mumbai").unwrap();
    let (status, answer) = singapore
        .federation
        .post(&mumbai, "/internal/v1/sessions/verify", &body, START_MS)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(answer["user_id"].is_string());
    let bobs =
        json!({"token_digest": sovereign_crypto::hex(&sovereign_crypto::token_digest(&bob))});
    let (status, _) = singapore
        .federation
        .post(&mumbai, "/internal/v1/sessions/verify", &bobs, START_MS)
        .await
        .unwrap();
    assert_eq!(status, 404);
    // Nor can a region that is not the user's home push consents or delete them.
    let (status, _) = cloud
        .cloud
        .region("in-mumbai")
        .unwrap()
        .state
        .federation
        .post(
            &RegionId::parse("sg-singapore").unwrap(),
            "/internal/v1/users/delete",
            &json!({"user_id": answer["user_id"]}),
            START_MS,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "the home may");
    let (status, _) = singapore
        .federation
        .post(
            &mumbai,
            "/internal/v1/users/delete",
            &json!({"user_id": answer["user_id"]}),
            START_MS,
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "a service region may not delete at home");
}

#[tokio::test]
async fn moving_the_service_back_home_and_then_the_whole_user_ends_in_one_region_issue_4() {
    let (cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let alice_id = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await
        .body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    // Back home: the service row in Singapore goes with its last service.
    let back = move_messaging(
        Selector::Users(vec![ALICE.to_owned()]),
        "sg-singapore",
        "in-mumbai",
    );
    let report = migrate(&back, &singapore, &mumbai, |_| {}).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    assert_eq!(
        count(&cloud.db("sg-singapore"), "SELECT count(*) FROM users", &[]),
        0
    );
    let inbox = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/messages?box=sent",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert_eq!(inbox.body["messages"].as_array().unwrap().len(), 1);
    // Messaging to Singapore again (another migration: the first one's journal says done),
    // then the whole user follows it there.
    let there = move_messaging(
        Selector::Users(vec![alice_id.clone()]),
        "in-mumbai",
        "sg-singapore",
    );
    assert_eq!(
        migrate(&there, &mumbai, &singapore, |_| {})
            .await
            .unwrap()
            .moved,
        1
    );
    let whole = MigrationSpec {
        services: Vec::new(),
        ..there
    };
    let report = migrate(&whole, &mumbai, &singapore, |_| {}).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    let sg = cloud.db("sg-singapore");
    assert_eq!(
        count(
            &sg,
            "SELECT count(*) FROM users WHERE kind = 'account'",
            &[]
        ),
        1
    );
    assert_eq!(count(&sg, "SELECT count(*) FROM messages", &[]), 1);
    for (table, owner) in [
        ("users", "id"),
        ("messages", "owner_id"),
        ("sessions", "user_id"),
        ("service_fences", "user_id"),
    ] {
        assert_eq!(
            alice_rows(&cloud, "in-mumbai", table, owner, &alice_id),
            0,
            "{table} left in Mumbai"
        );
    }
    let me = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/me/export",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["regions"]["account"], "sg-singapore");
    assert_eq!(me.body["regions"]["messaging"], "sg-singapore");
    assert_eq!(me.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(me.body["consent_history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn notices_the_dashboard_and_retention_follow_the_service_issue_4() {
    const DAY_MS: i64 = 86_400_000;
    let (cloud, alice, bob) = alice_messaging_in_singapore().await;
    // The notice says where each scope's data is held.
    let consents = cloud
        .call("in-mumbai", Method::GET, "/v1/consents", Some(&alice), None)
        .await;
    let region_of = |scope: &str| {
        consents.body["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["scope"] == scope)
            .unwrap()["notice"]["region"]
            .clone()
    };
    assert_eq!(region_of("messaging"), "sg-singapore");
    assert_eq!(region_of("backup.contacts"), "in-mumbai");
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "waiting"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    // The dashboard at home counts what Singapore holds, and says it is there.
    let ca_pem = std::fs::read(cloud.dir.path().join("tls/ca.pem")).unwrap();
    let mut browser = crate::dashboard::Browser::trusting(&ca_pem);
    let page = browser.sign_in(&cloud.url("in-mumbai"), ALICE).await;
    for (category, rows, region) in [
        ("undelivered_messages", 1, "sg-singapore"),
        ("delivered_messages", 1, "sg-singapore"),
        ("sessions", 2, "in-mumbai"),
    ] {
        let row = format!("<tr data-category=\"{category}\">");
        let start = page
            .find(&row)
            .unwrap_or_else(|| panic!("{category}: {page}"));
        let row = &page[start..start + page[start..].find("</tr>").unwrap()];
        assert!(row.contains(&format!("<td>{rows}</td>")), "{row}");
        assert!(row.contains(region), "{row}");
    }
    // Singapore's sweeper deletes what expired there.
    cloud.clock.advance_ms(31 * DAY_MS);
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let counts = sovereign_cloud::retention::sweep(&singapore).await.unwrap();
    assert_eq!(counts.undelivered_messages, 1);
    assert_eq!(
        count(
            &cloud.db("sg-singapore"),
            "SELECT count(*) FROM messages",
            &[]
        ),
        1,
        "Alice's sent copy lives a year"
    );
}

/// Issue 4: a service moved on from one service region to another, neither of them home.
#[tokio::test]
async fn a_service_moves_on_between_two_regions_that_are_not_home_issue_4() {
    let cloud = spawn_regions_with(&["in-mumbai", "sg-singapore", "us-oregon"], |policies| {
        policies.residency = ResidencyPolicy::from_toml(
            "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\", \"us-oregon\"]\n",
        )
        .unwrap();
    })
    .await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let bob = cloud.user("in-mumbai", BOB).await;
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "one"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let alice_id = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await
        .body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = |id: &str| cloud.cloud.region(id).unwrap().state.clone();
    let users = Selector::Users(vec![alice_id.clone()]);
    let first = move_messaging(users.clone(), "in-mumbai", "sg-singapore");
    let report = migrate(&first, &state("in-mumbai"), &state("sg-singapore"), |_| {})
        .await
        .unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    // Alice uses Singapore once, so it has vouched-for her token in its cache.
    let listed = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages?box=sent",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let second = move_messaging(users, "sg-singapore", "us-oregon");
    let report = migrate(&second, &state("sg-singapore"), &state("us-oregon"), |_| {})
        .await
        .unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    // Singapore holds nothing of hers any more, and sends her client on to Oregon.
    assert_eq!(
        alice_rows(&cloud, "sg-singapore", "users", "id", &alice_id),
        0
    );
    assert_eq!(
        alice_rows(&cloud, "sg-singapore", "messages", "owner_id", &alice_id),
        0
    );
    let stale = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::TEMPORARY_REDIRECT,
        "{:?}",
        stale.body
    );
    assert_eq!(
        stale.headers["location"],
        format!("{}/v1/messages", cloud.url("us-oregon")).as_str()
    );
    // Once Singapore's word from her home is older than the cache allows, Singapore, which holds
    // nothing of hers, is not told whose the token is: her client signs in again at home.
    cloud
        .clock
        .advance_ms(sovereign_cloud::placement::SESSION_CACHE_MS + 1);
    let later = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/messages",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(later.status, StatusCode::UNAUTHORIZED);
    // Oregon serves her messaging with the mirror it got from Singapore.
    assert_eq!(
        alice_rows(&cloud, "us-oregon", "messages", "owner_id", &alice_id),
        1
    );
    assert_eq!(
        alice_rows(&cloud, "us-oregon", "consent_state", "user_id", &alice_id),
        1
    );
    let to_alice = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "two"})),
        )
        .await;
    assert_eq!(to_alice.status, StatusCode::ACCEPTED, "{:?}", to_alice.body);
    let inbox = cloud
        .call("us-oregon", Method::GET, "/v1/messages", Some(&alice), None)
        .await;
    assert_eq!(inbox.status, StatusCode::OK, "{:?}", inbox.body);
    assert_eq!(inbox.body["messages"][0]["body"], "two");
    // Her home's withdrawal reaches Oregon.
    let withdrawn = cloud
        .call(
            "in-mumbai",
            Method::DELETE,
            "/v1/consents/messaging",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{:?}", withdrawn.body);
    assert_eq!(
        alice_rows(&cloud, "us-oregon", "messages", "owner_id", &alice_id),
        0
    );
}

/// Moves Alice's messaging from Mumbai to Singapore; the two regions' states.
async fn move_alices_messaging_to_singapore(
    cloud: &TestCloud,
) -> (sovereign_cloud::AppState, sovereign_cloud::AppState) {
    let spec = move_messaging(
        Selector::Users(vec![ALICE.to_owned()]),
        "in-mumbai",
        "sg-singapore",
    );
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    assert_eq!(
        migrate(&spec, &mumbai, &singapore, |_| {})
            .await
            .unwrap()
            .moved,
        1
    );
    (mumbai, singapore)
}

/// Issue 4: a WebSocket open where a user's messaging was is closed when it moves, so that the
/// client reconnects (and is redirected) instead of waiting on a socket nothing reaches.
#[tokio::test]
async fn an_open_websocket_is_closed_when_messaging_moves_away_issue_4() {
    use futures_util::StreamExt;
    let cloud =
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let ca_pem = std::fs::read(cloud.dir.path().join("tls/ca.pem")).unwrap();
    let mut socket = open_socket_at(&cloud.url("in-mumbai"), &ca_pem, &alice)
        .await
        .unwrap();
    move_alices_messaging_to_singapore(&cloud).await;
    let frame = tokio::time::timeout(Duration::from_secs(15), socket.next())
        .await
        .expect("the socket was not closed within 15 s");
    match frame {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(close)))) => {
            assert_eq!(u16::from(close.code), 1012);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Issue 12, item 7: a session ended at home ends at once in the region holding the user's
/// messaging too: its token is refused there and its WebSocket there closes, well before that
/// region's trust in the home's word (`SESSION_CACHE_MS`, 30 s) runs out; the user's other
/// session keeps working there.
#[tokio::test]
async fn a_session_ended_at_home_ends_at_once_in_the_service_region_issue_12() {
    let cloud =
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await;
    let phone = cloud.user("in-mumbai", ALICE).await;
    let body =
        json!({"phone": ALICE, "password": "correct horse battery", "device_name": "laptop"});
    let laptop = cloud
        .call("in-mumbai", Method::POST, "/v1/sessions", None, Some(body))
        .await;
    assert_eq!(laptop.status, StatusCode::CREATED, "{:?}", laptop.body);
    let laptop = laptop.body["token"].as_str().unwrap().to_owned();
    let (mumbai, singapore) = move_alices_messaging_to_singapore(&cloud).await;
    let ca_pem = std::fs::read(cloud.dir.path().join("tls/ca.pem")).unwrap();
    let mut socket = open_socket_at(&cloud.url("sg-singapore"), &ca_pem, &laptop)
        .await
        .unwrap();
    let polled = cloud.get_at("sg-singapore", "/v1/messages", &laptop).await;
    assert_eq!(polled.status, StatusCode::OK, "{:?}", polled.body);

    let sessions = cloud.get_at("in-mumbai", "/v1/sessions", &phone).await;
    let id = sessions.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_name"] == "laptop")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = cloud
        .call(
            "in-mumbai",
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(&phone),
            None,
        )
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    assert_eq!(
        closed_within(&mut socket, Duration::from_secs(3)).await,
        Some(1008)
    );
    let refused = cloud.get_at("sg-singapore", "/v1/messages", &laptop).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        refused.body
    );
    let kept = cloud.get_at("sg-singapore", "/v1/messages", &phone).await;
    assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);

    // Only the user's home may end their sessions elsewhere, and only with a well-formed digest.
    let me = cloud.get_at("in-mumbai", "/v1/me", &phone).await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    let phone_digest = sovereign_crypto::hex(&sovereign_crypto::token_digest(&phone));
    let end = json!({"user_id": alice_id, "token_digest": phone_digest});
    let (status, _) = singapore
        .federation
        .post(
            &RegionId::parse("in-mumbai").unwrap(),
            "/internal/v1/sessions/end",
            &end,
            START_MS,
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "a service region may not end sessions at home");
    let to_singapore = RegionId::parse("sg-singapore").unwrap();
    for bad in [
        json!({"user_id": alice_id, "token_digest": "not hex"}),
        json!({"user_id": alice_id}),
        json!({"user_id": alice_id, "token_digest": phone_digest, "more": 1}),
    ] {
        let (status, answer) = mumbai
            .federation
            .post(&to_singapore, "/internal/v1/sessions/end", &bad, START_MS)
            .await
            .unwrap();
        assert!(
            (400..500).contains(&status) && status != 401,
            "{bad}: {status} {answer}"
        );
    }
    let kept = cloud.get_at("sg-singapore", "/v1/messages", &phone).await;
    assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
}

/// Issue 12, finding 4: a consent change whose push to the service region is lost (its store
/// failed for a moment) was never pushed again, so the service region's mirror stayed behind the
/// home's for good: here a grant, and in a race with a withdrawal the same loss leaves a
/// withdrawn grant there. The home's consent outbox remembers every change not confirmed
/// everywhere, and reconciliation pushes the home's state until the region has it.
#[tokio::test]
async fn a_lost_consent_push_is_pushed_again_until_the_service_region_has_it_issue_12() {
    let (cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let alice_id = mumbai
        .store
        .session_user(sovereign_crypto::token_digest(&alice), mumbai.now_ms())
        .await
        .unwrap()
        .expect("Alice's session");
    // Whatever was owed from setting up is confirmed first (Bob's changes have nowhere to go).
    sovereign_cloud::placement::reconcile_consents(&mumbai)
        .await
        .unwrap();
    let owed = mumbai
        .store
        .consent_outbox_due(String::new(), 10)
        .await
        .unwrap();
    assert!(owed.is_empty(), "{owed:?}");
    let singapore = cloud.db("sg-singapore");
    // Singapore's store refuses writes to users for a while (an outage of its database).
    let (block, unblock) = if on_postgres() {
        (
            "CREATE FUNCTION outage() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'outage'; END $$; \
             CREATE TRIGGER outage BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION outage();",
            "DROP TRIGGER outage ON users; DROP FUNCTION outage();",
        )
    } else {
        (
            "CREATE TRIGGER outage BEFORE UPDATE ON users BEGIN SELECT RAISE(ABORT, 'outage'); END;",
            "DROP TRIGGER outage;",
        )
    };
    singapore.execute_batch(block).unwrap();
    let granted = cloud
        .call(
            "in-mumbai",
            Method::PUT,
            "/v1/consents/backup.sms",
            Some(&alice),
            Some(json!({"notice_version": 1})),
        )
        .await;
    assert_eq!(
        granted.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        granted.body
    );
    let mirrored = |db: &TestDb| {
        count(
            db,
            "SELECT count(*) FROM consent_state WHERE user_id = ?1 AND scope = 'backup.sms'",
            &[alice_id.as_str().into()],
        )
    };
    assert_eq!(mirrored(&cloud.db("in-mumbai")), 1, "granted at home");
    assert_eq!(mirrored(&singapore), 0, "the push was lost");
    // Still down: the change stays owed.
    assert_eq!(
        sovereign_cloud::placement::reconcile_consents(&mumbai)
            .await
            .unwrap(),
        0
    );
    singapore.execute_batch(unblock).unwrap();
    assert_eq!(
        sovereign_cloud::placement::reconcile_consents(&mumbai)
            .await
            .unwrap(),
        1
    );
    assert_eq!(mirrored(&singapore), 1, "reconciled to the home's state");
    let home_version = count(
        &cloud.db("in-mumbai"),
        "SELECT count(*) FROM consent_events WHERE user_id = ?1",
        &[alice_id.as_str().into()],
    );
    let mirror_version = count(
        &singapore,
        "SELECT consent_version FROM users WHERE id = ?1",
        &[alice_id.as_str().into()],
    );
    assert_eq!(mirror_version, home_version);
    // Nothing is owed any more.
    assert_eq!(
        sovereign_cloud::placement::reconcile_consents(&mumbai)
            .await
            .unwrap(),
        0
    );
}

/// Issue 12, finding 4, follow-up: reconciliation takes the owed users a bounded batch at a
/// time; a batch that cannot be pushed (the region holding their services stays down) must not
/// starve the users after it, round after round.
#[tokio::test]
async fn a_region_that_stays_down_does_not_starve_the_other_owed_consent_pushes_issue_12() {
    use sovereign_cloud::placement::{CONSENT_RECONCILE_USERS_MAX, reconcile_consents};
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    let mumbai = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let db = cloud.db("in-mumbai");
    let batch = CONSENT_RECONCILE_USERS_MAX as usize;
    // Configured, but no site of it runs: every push there fails.
    let oregon = RegionId::parse("us-oregon").unwrap();
    for i in 0..batch + 20 {
        let user = format!("u-{i:04}");
        db.execute(
            "INSERT INTO consent_outbox (user_id, version) VALUES (?1, 0)",
            &[SqlValue::from(user.clone())],
        )
        .unwrap();
        if i < batch {
            let mut index = [0u8; 32];
            index[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let home = mumbai.region.id.clone();
            mumbai
                .directory
                .claim(index, user.clone(), home, START_MS)
                .await
                .unwrap();
            mumbai
                .directory
                .place(user, vec![Service::Messaging], oregon.clone(), START_MS)
                .await
                .unwrap();
        }
    }
    assert_eq!(reconcile_consents(&mumbai).await.unwrap(), 0);
    assert_eq!(
        reconcile_consents(&mumbai).await.unwrap(),
        20,
        "the users after a failing batch were never pushed"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM consent_outbox"),
        batch as i64,
        "the failing ones stay owed"
    );
    // And the failing ones are tried again in a later round.
    assert_eq!(reconcile_consents(&mumbai).await.unwrap(), 0);
}
