//! Issue 10, finding 6: staff reads made in a region the user has since left (a whole-user
//! move, or a service moved away) stay in that region's ledger. The user's home asks the
//! regions the directory remembers as former ones, and shows their entries with their proofs;
//! a former region answers only the user's current home, and one that does not answer is shown
//! as unavailable without hiding the rest.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::clock::Clock;
use sovereign_cloud::domain::Service;
use sovereign_cloud::federation::{Federation, load_or_create_identity};
use sovereign_cloud::migration::{MigrationSpec, Selector, migrate};
use sovereign_cloud::ops::{AccessRequest, Decision, decision_bytes, http_bytes};
use sovereign_cloud::placement::USER_ACCESS_PATH;
use sovereign_cloud::sites::{self, FederationFile};
use sovereign_crypto::{SigningKey, from_hex, hex, leaf_hash, verify_inclusion, verify_signature};
use sovereign_model::{ConsentScope, RegionId, ResidencyPolicy};

use crate::support::*;

const REGIONS: [&str; 3] = ["in-mumbai", "sg-singapore", "us-oregon"];

fn region(id: &str) -> RegionId {
    RegionId::parse(id).unwrap()
}

fn india_may_move_to_singapore(policies: &mut sovereign_cloud::Policies) {
    policies.residency = ResidencyPolicy::from_toml(
        "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
    )
    .unwrap();
}

fn spec(from: &str, to: &str, services: Vec<Service>) -> MigrationSpec {
    MigrationSpec {
        from: region(from),
        to: region(to),
        selector: Selector::Users(vec![ALICE.to_owned()]),
        services,
    }
}

async fn move_alice(cloud: &TestCloud, from: &str, to: &str, services: Vec<Service>) {
    let source = cloud.cloud.region(from).unwrap().state.clone();
    let target = cloud.cloud.region(to).unwrap().state.clone();
    let report = migrate(&spec(from, to, services), &source, &target, |_| {})
        .await
        .unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
}

/// The federation a coerced `me` runs with its own key from its site directory.
fn federation_of(cloud: &TestCloud, me: &str) -> Federation {
    let root = cloud.dir.path();
    let site = sites::site_dir(root, &region(me));
    let identity = load_or_create_identity(&site, &region(me)).unwrap();
    let file = FederationFile::read(&root.join(sites::FEDERATION_FILE)).unwrap();
    Federation::new(
        region(me),
        identity,
        std::sync::Arc::new(file.peer_table()),
        b"",
    )
    .unwrap()
}

/// Three operators in `at`: the first asks to read the user's messages with `reason`, the
/// other two approve, and the first reads them.
async fn staff_read(cloud: &TestCloud, at: &str, user_id: &str, reason: &str) {
    let state = cloud.cloud.region(at).unwrap().state.clone();
    let mut ops = Vec::new();
    for name in ["ana", "ben", "cat"] {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        state
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
        region: at.into(),
        requester: "ana".into(),
        user_id: user_id.to_owned(),
        scopes: vec![ConsentScope::Messaging],
        reason: reason.into(),
        requested_at_ms: now,
        not_after_ms: now + 3_600_000,
    };
    let submitted = cloud
        .call(
            at,
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
            at,
            &request.id,
            name,
            &request.digest(),
            now,
        );
        let decided = cloud
            .call(
                at,
                Method::POST,
                &format!("/v1/ops/requests/{}/approve", request.id),
                None,
                Some(json!({"operator": name, "signed_at_ms": now, "signature": hex(&key.sign(&message))})),
            )
            .await;
        assert_eq!(decided.status, StatusCode::OK, "{:?}", decided.body);
    }
    let path = format!("/v1/ops/grants/{}/data/messaging", request.id);
    let signature = ops[0].1.sign(&http_bytes(at, "GET", &path, now));
    let read = cloud
        .client
        .get(format!("{}{path}", cloud.url(at)))
        .header("sovereign-operator", "ana")
        .header("sovereign-signed-at", now.to_string())
        .header("sovereign-signature", hex(&signature))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
}

/// Signs Alice in at `at` (where her account is now); returns the token.
async fn sign_in(cloud: &TestCloud, at: &str) -> String {
    let body = json!({"phone": ALICE, "password": "correct horse battery", "device_name": "phone"});
    let reply = cloud
        .call(at, Method::POST, "/v1/sessions", None, Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["token"].as_str().unwrap().to_owned()
}

/// The part of an access log from the former region `from`.
fn former_part<'a>(log: &'a Value, from: &str) -> &'a Value {
    log["former"]
        .as_array()
        .unwrap_or_else(|| panic!("no former regions in {log}"))
        .iter()
        .find(|p| p["region"] == from)
        .unwrap_or_else(|| panic!("{from} is not among the former regions in {log}"))
}

/// Checks a region's part as the user's own client would: the checkpoint is signed by that
/// region's ledger key, and each entry's leaf is in the checkpoint's tree.
fn check_proofs(cloud: &TestCloud, part: &Value) {
    let at = part["region"].as_str().unwrap();
    let c = &part["checkpoint"];
    let public_key = from_hex(c["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        public_key,
        cloud
            .cloud
            .region(at)
            .unwrap()
            .state
            .ledger
            .key
            .public_key()
    );
    let root: [u8; 32] = from_hex(c["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let size = c["tree_size"].as_u64().unwrap();
    let signed = sovereign_cloud::ledger::checkpoint_bytes(
        at,
        size as i64,
        &root,
        &from_hex(c["chain_head"].as_str().unwrap()).unwrap(),
        c["at_ms"].as_i64().unwrap(),
    );
    verify_signature(
        &public_key,
        &signed,
        &from_hex(c["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    for e in part["entries"].as_array().unwrap() {
        let leaf = leaf_hash(&sovereign_cloud::ledger::leaf_bytes(
            e["seq"].as_i64().unwrap(),
            e["at_ms"].as_i64().unwrap(),
            e["kind"].as_str().unwrap(),
            e["user_id"].as_str().unwrap(),
            e["request_id"].as_str().unwrap(),
            e["operator"].as_str().unwrap(),
            &from_hex(e["detail_hash"].as_str().unwrap()).unwrap(),
        ));
        let proof: Vec<[u8; 32]> = e["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| from_hex(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        assert!(
            verify_inclusion(e["seq"].as_u64().unwrap(), size, &leaf, &proof, &root),
            "entry {e}"
        );
    }
}

fn kinds(part: &Value) -> Vec<&str> {
    part["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// `asker` (holding its real key) asks `former` for Alice's ledger entries: refused, for it is
/// not her home.
async fn refused_to(cloud: &TestCloud, asker: &str, former: &str, alice_id: &str) {
    let (status, answer) = federation_of(cloud, asker)
        .post(
            &region(former),
            USER_ACCESS_PATH,
            &json!({"user_id": alice_id}),
            cloud.clock.now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "{asker} asked {former}: {answer}");
    assert!(answer.get("entries").is_none(), "{answer}");
}

/// The user's rows are gone from the region they left; its ledger entries about them stay.
fn purged_but_in_the_ledger(cloud: &TestCloud, left: &str, alice_id: &str) {
    let db = cloud.db(left);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM users WHERE id = '{alice_id}'"
        )),
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE owner_id = '{alice_id}'"
        )),
        0
    );
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM ledger_entries WHERE user_id = '{alice_id}' AND kind = 'read'"
        )) > 0
    );
}

async fn dashboard(cloud: &TestCloud, at: &str) -> String {
    let ca_pem = std::fs::read(cloud.dir.path().join("tls/ca.pem")).unwrap();
    crate::dashboard::Browser::trusting(&ca_pem)
        .sign_in(&cloud.url(at), ALICE)
        .await
}

#[tokio::test]
async fn issue10_staff_reads_in_the_region_a_user_left_follow_them_to_their_new_home() {
    let cloud = spawn_regions_with(&REGIONS, india_may_move_to_singapore).await;
    whole_user_moves(cloud).await;
}

#[cfg(feature = "etcd")]
#[tokio::test]
async fn issue10_staff_reads_in_the_region_a_user_left_follow_them_with_the_directory_on_etcd() {
    let cluster = crate::etcd_cluster::EtcdCluster::start();
    let directory = crate::directory::connect(&cluster, None, "t")
        .await
        .unwrap();
    let cloud =
        crate::directory::spawn_on_with(&REGIONS, directory, india_may_move_to_singapore).await;
    whole_user_moves(cloud).await;
}

/// Staff in Mumbai read Alice's messages; then her whole account moves to Singapore.
async fn whole_user_moves(mut cloud: TestCloud) {
    let alice = cloud.user("in-mumbai", ALICE).await;
    cloud.user("in-mumbai", BOB).await;
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "before the move"})),
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
    staff_read(
        &cloud,
        "in-mumbai",
        &alice_id,
        "ticket 12: staff in Mumbai read Alice's messages before she left",
    )
    .await;
    move_alice(&cloud, "in-mumbai", "sg-singapore", Vec::new()).await;
    purged_but_in_the_ledger(&cloud, "in-mumbai", &alice_id);

    let token = sign_in(&cloud, "sg-singapore").await;
    let log = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/me/access-log",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    assert_eq!(log.body["region"], "sg-singapore");
    let mumbai = former_part(&log.body, "in-mumbai");
    assert!(kinds(mumbai).contains(&"read"), "{mumbai}");
    assert!(kinds(mumbai).contains(&"approve"), "{mumbai}");
    check_proofs(&cloud, mumbai);
    let page = dashboard(&cloud, "sg-singapore").await;
    assert!(page.contains("data-kind=\"read\""), "{page}");
    assert!(page.contains("staff in Mumbai read"), "{page}");

    // Only her home may ask Mumbai for her entries: Oregon, holding its real key, may not.
    refused_to(&cloud, "us-oregon", "in-mumbai", &alice_id).await;

    // Mumbai gone: the log and the dashboard still answer, and say what they could not ask.
    let index = cloud
        .cloud
        .regions
        .iter()
        .position(|r| r.id.as_str() == "in-mumbai")
        .unwrap();
    let gone = cloud.cloud.regions.remove(index);
    let mumbai_url = gone.url.clone();
    gone.server.shutdown(Duration::from_secs(1)).await;
    let log = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/me/access-log",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let mumbai = former_part(&log.body, "in-mumbai");
    assert_eq!(mumbai["available"], false, "{mumbai}");
    assert!(mumbai.get("entries").is_none(), "{mumbai}");
    assert!(log.body["entries"].is_array(), "{:?}", log.body);
    let page = dashboard(&cloud, "sg-singapore").await;
    assert!(page.contains("data-unavailable=\"in-mumbai\""), "{page}");
    assert!(!page.contains(&mumbai_url));
}

#[tokio::test]
async fn issue10_staff_reads_where_a_service_was_stay_in_the_access_log_after_it_moves_on() {
    let cloud = spawn_regions_with(&REGIONS, india_may_move_to_singapore).await;
    let alice = cloud.user("in-mumbai", ALICE).await;
    cloud.user("in-mumbai", BOB).await;
    let sent = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "held in Singapore"})),
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
    move_alice(
        &cloud,
        "in-mumbai",
        "sg-singapore",
        vec![Service::Messaging],
    )
    .await;
    staff_read(
        &cloud,
        "sg-singapore",
        &alice_id,
        "ticket 13: staff in Singapore read Alice's messages while they were there",
    )
    .await;
    // Messaging comes back home: Singapore holds nothing of hers any more.
    move_alice(
        &cloud,
        "sg-singapore",
        "in-mumbai",
        vec![Service::Messaging],
    )
    .await;
    purged_but_in_the_ledger(&cloud, "sg-singapore", &alice_id);

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
    assert_eq!(
        log.body["elsewhere"],
        json!([]),
        "no service is elsewhere now"
    );
    let singapore = former_part(&log.body, "sg-singapore");
    assert!(kinds(singapore).contains(&"read"), "{singapore}");
    check_proofs(&cloud, singapore);
    let page = dashboard(&cloud, "in-mumbai").await;
    assert!(page.contains("data-kind=\"read\""), "{page}");
    assert!(page.contains("staff in Singapore read"), "{page}");
    refused_to(&cloud, "us-oregon", "sg-singapore", &alice_id).await;
}
