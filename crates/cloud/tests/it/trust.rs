//! Issue 10: least privilege between regions. Each test plays a hostile region: it holds a real
//! region's federation key (the file on that region's disk) and either sends signed requests
//! itself, through the federation's own signing code, or answers in that region's place.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::Policies;
use sovereign_cloud::clock::Clock;
use sovereign_cloud::domain::Service;
use sovereign_cloud::export::USER_EXPORT_PAGE_PATH;
use sovereign_cloud::federation::{Federation, load_or_create_identity, sign_answers_as};
use sovereign_cloud::placement::{SESSION_VERIFY_PATH, USER_DELETE_PATH, USER_EXPORT_PATH};
use sovereign_cloud::routes::messages::FORWARD_PATH;
use sovereign_cloud::sites::{self, FederationFile};
use sovereign_model::RegionId;

use crate::services::alice_messaging_in_singapore;
use crate::support::*;

fn region(id: &str) -> RegionId {
    RegionId::parse(id).unwrap()
}

/// The federation of `me` as a coerced site would run it: `me`'s own key from its site
/// directory (`DIR/sites/<me>/keys/`), the peers (URLs, pinned keys, TLS CAs) from the
/// federation file every real site loaded.
fn stolen_federation_at(root: &Path, me: &str) -> Federation {
    let site = sites::site_dir(root, &region(me));
    let key = site.join("keys").join(format!("{me}.peer.pk8"));
    assert!(
        key.exists(),
        "{} is where {me} keeps its key",
        key.display()
    );
    let identity = load_or_create_identity(&site, &region(me)).unwrap();
    let file = FederationFile::read(&root.join(sites::FEDERATION_FILE)).unwrap();
    assert!(file.sites.contains_key(&region(me)), "{me} is in the file");
    // No operator bundle: every peer is reached through the CA its stanza pins.
    Federation::new(region(me), identity, Arc::new(file.peer_table()), b"").unwrap()
}

pub(crate) fn stolen_federation(cloud: &TestCloud, me: &str) -> Federation {
    stolen_federation_at(cloud.dir.path(), me)
}

/// What the rogue site answers to "whose session is this token?".
#[derive(Clone)]
enum Answer {
    /// "It is this user's", for any token.
    User(String),
    /// "Not one of mine", except for tokens with this digest, which it never answers.
    NotMineOrHang([u8; 32]),
}

/// in-mumbai, real, and a rogue sg-singapore (holding its real federation key) in the place of
/// the real one. The directory lists a user homed in Singapore whose messaging is in Mumbai, so
/// that Singapore is one of the homes Mumbai might ask about a token.
struct RogueSetup {
    cloud: TestCloud,
    asked: Arc<AtomicUsize>,
    answer: Arc<std::sync::Mutex<Answer>>,
    /// What the rogue answers to every "the next page of your part of this export".
    export_page: Arc<std::sync::Mutex<Value>>,
    /// How many pages it was asked for.
    pages_asked: Arc<AtomicUsize>,
    _rogue: axum_server::Handle<std::net::SocketAddr>,
}

async fn mumbai_beside_a_rogue_singapore() -> RogueSetup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let rogue_addr = listener.local_addr().unwrap();
    // Mumbai's address must be in the federation file before it starts: take a free port.
    let mumbai_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mumbai, singapore) = (region("in-mumbai"), region("sg-singapore"));
    // Both sites are prepared as the one-machine layout does: each publishes its URL, key and
    // CA into DIR/federation.toml. Singapore's URL is where the rogue listens.
    let urls = BTreeMap::from([
        (mumbai.clone(), format!("https://{mumbai_addr}")),
        (singapore.clone(), format!("https://{rogue_addr}")),
    ]);
    sites::prepare_local_sites(root, &urls).unwrap();
    let mumbai_site = sites::site_dir(root, &mumbai);
    // The tests read sign-in codes from DIR/sms-outbox.jsonl.
    std::os::unix::fs::symlink(
        root.join("sms-outbox.jsonl"),
        mumbai_site.join("sms-outbox.jsonl"),
    )
    .unwrap();
    let clock = sovereign_cloud::clock::ManualClock::new(START_MS);
    let databases = test_databases(std::slice::from_ref(&mumbai));
    let directory =
        sovereign_cloud::directory::Directory::open(&sites::directory_path(root)).unwrap();
    let cloud = sites::start_site(sites::SiteOptions {
        data_dir: mumbai_site,
        region: mumbai.clone(),
        listen: mumbai_addr,
        policies: Policies::embedded().unwrap(),
        database: databases.get(&mumbai).cloned(),
        federation_file: Some(root.join(sites::FEDERATION_FILE)),
        directory: Some(directory),
        tls_cert_key: None,
        ca_bundle: None,
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let now = clock.now_ms();
    cloud
        .directory
        .claim([7; 32], "sg-user".to_owned(), singapore.clone(), now)
        .await
        .unwrap();
    cloud
        .directory
        .place(
            "sg-user".to_owned(),
            vec![Service::Messaging],
            mumbai.clone(),
            now,
        )
        .await
        .unwrap();
    // The rogue runs as Singapore: Singapore's key and TLS certificate from its site directory,
    // and its answers signed with that key by the federation's own answer-signing layer.
    let signer = Arc::new(stolen_federation_at(root, "sg-singapore"));
    let tls = sovereign_cloud::tls::load_or_create(&sites::site_dir(root, &singapore)).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(std::sync::Mutex::new(Answer::User(String::new())));
    let (count, reply) = (asked.clone(), answer.clone());
    let export_page = Arc::new(std::sync::Mutex::new(json!({"items": []})));
    let pages_asked = Arc::new(AtomicUsize::new(0));
    let (page, pages) = (export_page.clone(), pages_asked.clone());
    let app = axum::Router::new()
        .route(
            USER_EXPORT_PATH,
            post(|| async { axum::Json(json!({"parts": ["messages"]})) }),
        )
        .route(
            USER_EXPORT_PAGE_PATH,
            post(move || {
                let (page, pages) = (page.clone(), pages.clone());
                async move {
                    pages.fetch_add(1, Ordering::SeqCst);
                    let answer = page.lock().unwrap().clone();
                    axum::Json(answer)
                }
            }),
        )
        .route(
            SESSION_VERIFY_PATH,
            post(move |body: axum::Json<Value>| {
                let (count, reply) = (count.clone(), reply.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer = reply.lock().unwrap().clone();
                    match answer {
                        Answer::User(user) => (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({"user_id": user, "expires_at_ms": i64::MAX / 2})),
                        ),
                        Answer::NotMineOrHang(slow) => {
                            if body["token_digest"] == sovereign_crypto::hex(&slow) {
                                std::future::pending::<()>().await;
                            }
                            (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({})))
                        }
                    }
                }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let signer = signer.clone();
                async move { sign_answers_as(&signer, request, next).await }
            },
        ));
    let config =
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls.server_config().unwrap()));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, config)
        .unwrap()
        .handle(handle.clone())
        .serve(app.into_make_service());
    tokio::spawn(server);
    let ca_pem = std::fs::read(root.join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    RogueSetup {
        cloud: TestCloud {
            dir,
            client,
            cloud,
            databases,
            clock,
        },
        asked,
        answer,
        export_page,
        pages_asked,
        _rogue: handle,
    }
}

/// Finding 1: a region's "yes, that token is user X's" opened X's account in another region,
/// for any X. Now another site's word counts only from the user's directory home, only for a
/// service path, and never for an account held where the question was asked.
#[tokio::test]
async fn issue10_a_rogue_home_cannot_vouch_for_an_account_held_elsewhere() {
    let setup = mumbai_beside_a_rogue_singapore().await;
    let cloud = &setup.cloud;
    let alice_token = cloud.user("in-mumbai", ALICE).await;
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice_token), None)
        .await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    *setup.answer.lock().unwrap() = Answer::User(alice_id.clone());
    for token in [
        "sv1.sg-singapore.forged-by-the-rogue",
        "forged-old-format-token",
    ] {
        for path in ["/v1/me", "/v1/messages", "/v1/me/export"] {
            let reply = cloud
                .call("in-mumbai", Method::GET, path, Some(token), None)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{path}: {:?}",
                reply.body
            );
            assert!(
                !reply
                    .bytes
                    .windows(ALICE.len() - 1)
                    .any(|w| w == &ALICE.as_bytes()[1..])
            );
        }
    }
    // Nor for a user homed in Singapore whose account is not here: a vouched service path is
    // served only from a service row here, and there is none for this user.
    *setup.answer.lock().unwrap() = Answer::User("sg-user".to_owned());
    let reply = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/messages",
            Some("sv1.sg-singapore.another-forgery"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    // Alice's own token still works.
    let mine = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice_token), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
}

/// Finding 4: an unknown token made a region ask every home in turn, showing its digest to
/// each. Now only the site the token names is asked, once per miss window, within a deadline.
#[tokio::test]
async fn issue10_unknown_tokens_are_asked_of_their_issuer_only_once_and_briefly() {
    let setup = mumbai_beside_a_rogue_singapore().await;
    let cloud = &setup.cloud;
    let slow = "sv1.sg-singapore.never-answered";
    *setup.answer.lock().unwrap() = Answer::NotMineOrHang(sovereign_crypto::token_digest(slow));
    let get = |token: &'static str| async move {
        cloud
            .call("in-mumbai", Method::GET, "/v1/messages", Some(token), None)
            .await
    };
    // Tokens that name no other site are refused without asking anyone.
    for token in ["old-format-token", "sv1.in-mumbai.mine-but-unknown"] {
        assert_eq!(get(token).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(setup.asked.load(Ordering::SeqCst), 0);
    // A token Singapore issued is asked of Singapore once; a refusal is remembered.
    for _ in 0..3 {
        assert_eq!(
            get("sv1.sg-singapore.unknown").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(setup.asked.load(Ordering::SeqCst), 1);
    // An issuer that never answers fails the request, closed, after the deadline.
    let reply = get(slow).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.code(), "region_unavailable");
}

/// Finding 5 (the part about the directory): a request about a user the directory does not
/// know was accepted from any peer.
#[tokio::test]
async fn issue10_a_user_missing_from_the_directory_has_no_home_to_speak_for_them() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    let rogue = stolen_federation(&cloud, "sg-singapore");
    let now = cloud.clock.now_ms();
    for path in [
        USER_DELETE_PATH,
        sovereign_cloud::placement::USER_STATS_PATH,
    ] {
        let (status, _) = rogue
            .post(
                &region("in-mumbai"),
                path,
                &json!({"user_id": "nobody"}),
                now,
            )
            .await
            .unwrap();
        assert_eq!(status, 401, "{path}");
    }
}

/// Finding 3: any region could put any message in any inbox, with any sender, id and time.
#[tokio::test]
async fn issue10_a_forwarded_message_must_come_from_the_senders_messaging_site() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    let bob = cloud.user("in-mumbai", BOB).await;
    let _carol = cloud.user("in-mumbai", CAROL).await;
    const DAVE: &str = "+6591234567";
    let dave = cloud.user("sg-singapore", DAVE).await;
    let sent = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/messages",
            Some(&dave),
            Some(json!({"to": BOB, "body": "hello from Singapore"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let dave_id = sent.body["id"].as_str().unwrap().to_owned();
    let bob_sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": CAROL, "body": "bob's own"})),
        )
        .await;
    assert_eq!(bob_sent.status, StatusCode::ACCEPTED);
    let bob_sent_id = bob_sent.body["id"].as_str().unwrap().to_owned();

    let rogue = stolen_federation(&cloud, "sg-singapore");
    let now = cloud.clock.now_ms();
    let forward = |id: &str, from: &str, body: &str, at: i64| json!({"id": id, "from": from, "to": BOB, "body": body, "sent_at_ms": at});
    let fresh = uuid::Uuid::new_v4().to_string();
    let attempts = [
        // Carol's messaging is in Mumbai: Singapore does not speak for her.
        (forward(&fresh, CAROL, "from carol, forged", now), 401),
        // Dave's is in Singapore, but the id is taken: by his earlier message, or by Bob's own.
        (forward(&dave_id, DAVE, "overwritten?", now), 409),
        (forward(&bob_sent_id, DAVE, "shadowing bob's", now), 409),
        // A time outside the federation's window.
        (
            forward(&fresh, DAVE, "from the past", now - 86_400_000),
            422,
        ),
    ];
    for (body, expected) in attempts {
        let (status, answer) = rogue
            .post(&region("in-mumbai"), FORWARD_PATH, &body, now)
            .await
            .unwrap();
        assert_eq!(status, expected, "{body}: {answer}");
    }
    // The same message again (a retry) is accepted and stored once.
    let (status, _) = rogue
        .post(
            &region("in-mumbai"),
            FORWARD_PATH,
            &forward(&dave_id, DAVE, "hello from Singapore", now),
            now,
        )
        .await
        .unwrap();
    assert_eq!(status, 202);
    let inbox = cloud
        .call("in-mumbai", Method::GET, "/v1/messages", Some(&bob), None)
        .await;
    let messages = inbox.body["messages"].as_array().unwrap();
    let bodies: Vec<&str> = messages
        .iter()
        .filter(|m| m["box"] == "inbox")
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["hello from Singapore"],
        "{inbox:?}",
        inbox = inbox.body
    );
}

/// Finding 2: the home pulled the decrypted messages a service region holds whenever it liked.
/// Now only with the user's own session as proof, and each hand-over is in the service
/// region's ledger, which the user's access log shows.
#[tokio::test]
async fn issue10_a_service_region_exports_only_for_the_users_own_request() {
    let (cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    let home = stolen_federation(&cloud, "in-mumbai");
    let now = cloud.clock.now_ms();
    let singapore = region("sg-singapore");
    let (status, answer) = home
        .post(
            &singapore,
            USER_EXPORT_PATH,
            &json!({"user_id": alice_id}),
            now,
        )
        .await
        .unwrap();
    assert_ne!(status, 200, "{answer}");
    assert!(answer.get("messages").is_none(), "{answer}");
    let (status, answer) = home
        .post(
            &singapore,
            USER_EXPORT_PATH,
            &json!({"user_id": alice_id, "session_token": "sv1.in-mumbai.made-up"}),
            now,
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "{answer}");
    // The user's own export works, and Singapore's ledger says so.
    let export = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/me/export",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK, "{:?}", export.body);
    assert!(
        export.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"] == "before")
    );
    let log = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/me/access-log",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let elsewhere = log.body["elsewhere"].as_array().unwrap();
    assert_eq!(elsewhere.len(), 1, "{:?}", log.body);
    assert_eq!(elsewhere[0]["region"], "sg-singapore");
    let kinds: Vec<&str> = elsewhere[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["export"], "{:?}", log.body);
}

/// Finding 6: a staff read of data held in a service region was in that region's ledger only,
/// never in the user's access log or dashboard at home.
#[tokio::test]
async fn issue10_staff_reads_in_a_service_region_are_in_the_users_access_log_and_dashboard() {
    use sovereign_cloud::ops::{AccessRequest, Decision, decision_bytes, http_bytes};
    use sovereign_crypto::{SigningKey, hex};
    use sovereign_model::ConsentScope;

    let (cloud, alice, _bob) = alice_messaging_in_singapore().await;
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    let singapore = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let mut ops = Vec::new();
    for name in ["ana", "ben", "cat"] {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        singapore
            .store
            .register_operator(
                name.to_owned(),
                key.public_key().to_vec(),
                cloud.clock.now_ms(),
            )
            .await
            .unwrap();
        ops.push((name, key));
    }
    let now = cloud.clock.now_ms();
    let request = AccessRequest {
        id: uuid::Uuid::new_v4().to_string(),
        region: "sg-singapore".into(),
        requester: "ana".into(),
        user_id: alice_id.clone(),
        scopes: vec![ConsentScope::Messaging],
        reason: "ticket 10: staff in Singapore read Alice's messages".into(),
        requested_at_ms: now,
        not_after_ms: now + 3_600_000,
    };
    let submitted = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/ops/requests",
            None,
            Some(json!({
                "id": request.id,
                "requester": request.requester,
                "user_id": request.user_id,
                "scopes": ["messaging"],
                "reason": request.reason,
                "requested_at_ms": request.requested_at_ms,
                "not_after_ms": request.not_after_ms,
                "signature": hex(&ops[0].1.sign(&request.signed_bytes())),
            })),
        )
        .await;
    assert_eq!(
        submitted.status,
        StatusCode::CREATED,
        "{:?}",
        submitted.body
    );
    for (name, key) in &ops[1..] {
        let message = decision_bytes(
            Decision::Approve,
            "sg-singapore",
            &request.id,
            name,
            &request.digest(),
            now,
        );
        let decided = cloud
            .call(
                "sg-singapore",
                Method::POST,
                &format!("/v1/ops/requests/{}/approve", request.id),
                None,
                Some(json!({"operator": name, "signed_at_ms": now, "signature": hex(&key.sign(&message))})),
            )
            .await;
        assert_eq!(decided.status, StatusCode::OK, "{:?}", decided.body);
    }
    let path = format!("/v1/ops/grants/{}/data/messaging", request.id);
    let signature = ops[0]
        .1
        .sign(&http_bytes("sg-singapore", "GET", &path, now));
    let read = cloud
        .client
        .get(format!("{}{path}", cloud.url("sg-singapore")))
        .header("sovereign-operator", "ana")
        .header("sovereign-signed-at", now.to_string())
        .header("sovereign-signature", hex(&signature))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    let log = cloud
        .call(
            "in-mumbai",
            Method::GET,
            "/v1/me/access-log",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let kinds: Vec<&str> = log.body["elsewhere"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"read"), "{:?}", log.body);
    assert_eq!(log.body["elsewhere"][0]["region"], "sg-singapore");
    // The dashboard at home lists the read, with the reason given in Singapore.
    let ca_pem = std::fs::read(cloud.dir.path().join("tls/ca.pem")).unwrap();
    let page = crate::dashboard::Browser::trusting(&ca_pem)
        .sign_in(&cloud.url("in-mumbai"), ALICE)
        .await;
    assert!(page.contains("data-kind=\"read\""), "{page}");
    assert!(page.contains("staff in Singapore read"), "{page}");
}

/// Issue 12, finding 8: a coerced service region could keep the home paging its part of an
/// export forever (the same cursor again, or a cursor with nothing on its page), holding the
/// user's export open. The home now cuts the export off at the first page that does not move
/// its part forward: the client gets a document without `"complete": true`, at once.
#[tokio::test]
async fn issue12_a_service_region_that_pages_in_circles_cuts_the_export_off() {
    let setup = mumbai_beside_a_rogue_singapore().await;
    let cloud = &setup.cloud;
    let alice = cloud.user("in-mumbai", ALICE).await;
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&alice), None)
        .await;
    let alice_id = me.body["user_id"].as_str().unwrap().to_owned();
    // Alice's messaging is placed in (the rogue) Singapore.
    cloud
        .cloud
        .directory
        .place(
            alice_id,
            vec![Service::Messaging],
            region("sg-singapore"),
            cloud.clock.now_ms(),
        )
        .await
        .unwrap();
    let export = || async {
        let response = cloud
            .client
            .get(format!("{}/v1/me/export", cloud.url("in-mumbai")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // A cut-off body ends without its last chunk: reqwest reports the error, and the
        // client has only what came before it.
        match response.bytes().await {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes).ok(),
            Err(_) => None,
        }
    };
    let page = |answer: Value| {
        *setup.export_page.lock().unwrap() = answer;
        setup.pages_asked.store(0, Ordering::SeqCst);
    };

    // An honest last page: the export completes with the region's messages in it (so the
    // cases below fail for the reason they name, not for another).
    page(json!({"items": [{"id": "m-from-singapore"}]}));
    let whole = export().await.expect("an honest region's export completes");
    assert_eq!(whole["complete"], true, "{whole}");
    assert_eq!(whole["messages"][0]["id"], "m-from-singapore", "{whole}");
    assert_eq!(setup.pages_asked.load(Ordering::SeqCst), 1);

    for (case, answer, asked) in [
        (
            "the same cursor again",
            json!({"items": [{"id": "m-again"}], "next": "again"}),
            2,
        ),
        (
            "a cursor with nothing on its page",
            json!({"items": [], "next": "more-later"}),
            1,
        ),
    ] {
        page(answer);
        let cut = tokio::time::timeout(Duration::from_secs(30), export())
            .await
            .unwrap_or_else(|_| panic!("{case}: the export is still open"));
        assert!(
            cut.is_none_or(|document| document["complete"] != true),
            "{case}: a region paging in circles gave a complete export"
        );
        assert_eq!(setup.pages_asked.load(Ordering::SeqCst), asked, "{case}");
    }
}
