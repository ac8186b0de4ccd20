use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::domain::Service;
use sovereign_cloud::migration::{MigrationSpec, Selector, migrate, migrate_to_site};
use sovereign_model::{CountryCode, RegionId, ResidencyPolicy};

use crate::support::*;

/// Indian users live in Mumbai and may also be held in Singapore.
fn india_may_move_to_singapore(policies: &mut sovereign_cloud::Policies) {
    policies.residency = ResidencyPolicy::from_toml(
        "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
    )
    .unwrap();
}

fn india_to_singapore() -> MigrationSpec {
    MigrationSpec {
        from: RegionId::parse("in-mumbai").unwrap(),
        to: RegionId::parse("sg-singapore").unwrap(),
        selector: Selector::Jurisdiction(CountryCode::parse("IN").unwrap()),
        services: Vec::new(),
    }
}

fn phone(i: usize) -> String {
    format!("+9198{:08}", 20_000_000 + i)
}

/// How long a writer retries one request before the test calls it stuck.
const WRITER_STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// What a writer had acknowledged by the server.
#[derive(Default)]
struct Acked {
    contacts: Vec<(String, String)>,
    /// message id → (sender, recipient)
    messages: BTreeMap<String, (usize, usize)>,
}

/// A client that keeps writing and follows its data: 503 means retry, 307 means go where the
/// Location says. Every request carries a client-chosen id, so a retry stores nothing twice.
async fn writer(
    cloud: Arc<TestCloud>,
    me: usize,
    users: usize,
    token: String,
    stop: Arc<AtomicBool>,
) -> Acked {
    let mut base = cloud.url("in-mumbai");
    let mut acked = Acked::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) || n < 4 {
        n += 1;
        let item = format!("w{me}-{n}");
        let to = (me + 1) % users;
        let message_id = uuid::Uuid::new_v4().to_string();
        let requests = [
            (
                Method::PUT,
                format!("/v1/backup/contacts/{item}"),
                json!({"name": format!("contact {me}/{n}")}),
            ),
            (
                Method::POST,
                "/v1/messages".to_owned(),
                json!({"to": phone(to), "body": format!("{me}->{to} #{n}"), "id": message_id}),
            ),
        ];
        for (i, (method, path, body)) in requests.into_iter().enumerate() {
            // A fence lasts one full copy of the user (catch-up copies whole snapshots), which
            // on a loaded two-core machine can take seconds: "stuck" is judged by time.
            let started = std::time::Instant::now();
            let mut last = serde_json::Value::Null;
            loop {
                assert!(
                    started.elapsed() < WRITER_STUCK_AFTER,
                    "writer {me} stuck on {path} at {base}: last answer {last}"
                );
                let reply =
                    finish_at(&cloud, &base, method.clone(), &path, &token, body.clone()).await;
                last = reply.body.clone();
                match reply.status.as_u16() {
                    200..=202 => break,
                    503 => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    307 => {
                        let location = reply.headers["location"].to_str().unwrap();
                        base = location[..location.find("/v1").unwrap()].to_owned();
                    }
                    other => panic!(
                        "writer {me}: {path} at {base} answered {other}: {:?}",
                        reply.body
                    ),
                }
            }
            if i == 0 {
                acked
                    .contacts
                    .push((item.clone(), format!("contact {me}/{n}")));
            } else {
                acked.messages.insert(message_id.clone(), (me, to));
            }
        }
    }
    acked
}

async fn finish_at(
    cloud: &TestCloud,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> Reply {
    let response = cloud
        .client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
        bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_under_concurrent_writes_loses_and_duplicates_nothing() {
    let cloud = Arc::new(
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await,
    );
    migrate_under_concurrent_writes(cloud, Via::OneMachine).await;
}

/// Issue 10: the same move with the target reached only over the federation, as between sites
/// on separate hosts: the migration holds the source's store and keys and nothing of the
/// target's; the target installs, re-wraps, verifies and goes live when asked by signed
/// requests. A photo's blob goes along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_to_a_site_reached_over_the_federation_loses_and_duplicates_nothing() {
    let cloud = Arc::new(
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await,
    );
    migrate_under_concurrent_writes(cloud, Via::Federation).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Both sites opened in this process.
    OneMachine,
    /// The target called over the federation.
    Federation,
}

async fn run_migration(
    cloud: &TestCloud,
    spec: &MigrationSpec,
    via: Via,
) -> sovereign_cloud::migration::MigrationReport {
    let source = cloud
        .cloud
        .region(spec.from.as_str())
        .unwrap()
        .state
        .clone();
    let target = cloud.cloud.region(spec.to.as_str()).unwrap().state.clone();
    match via {
        Via::OneMachine => migrate(spec, &source, &target, |_| {}).await.unwrap(),
        Via::Federation => migrate_to_site(spec, &source, |_| {}).await.unwrap(),
    }
}

/// Issue 4: users move between a region on SQLite and one on PostgreSQL, under the same
/// concurrent writers and with the same checks. On the SQLite test run the target is on
/// PostgreSQL; on the PostgreSQL run the source stays there and the target is on SQLite, so both
/// directions are covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_between_sqlite_and_postgres_loses_and_duplicates_nothing_issue_4() {
    let on_postgres = if on_postgres() {
        "in-mumbai"
    } else {
        "sg-singapore"
    };
    let cloud = Arc::new(
        spawn_regions_mixed(
            &["in-mumbai", "sg-singapore"],
            india_may_move_to_singapore,
            &[on_postgres],
        )
        .await,
    );
    assert_eq!(cloud.databases.len(), 1);
    migrate_under_concurrent_writes(cloud, Via::OneMachine).await;
}

async fn migrate_under_concurrent_writes(cloud: Arc<TestCloud>, via: Via) {
    const USERS: usize = 6;
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
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let grant = cloud
        .call(
            "in-mumbai",
            Method::PUT,
            "/v1/consents/backup.photos",
            Some(&tokens[0]),
            Some(json!({"notice_version": 1})),
        )
        .await;
    assert_eq!(grant.status, StatusCode::OK);
    let put = cloud
        .client
        .put(format!(
            "{}/v1/backup/photos/IMG_0001.jpg",
            cloud.url("in-mumbai")
        ))
        .bearer_auth(&tokens[0])
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            tokio::spawn(writer(cloud.clone(), i, USERS, token.clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let report = run_migration(&cloud, &india_to_singapore(), via).await;
    assert_eq!(report.moved, USERS, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Acked::default();
    for writer in writers {
        let a = writer.await.unwrap();
        acked.contacts.extend(a.contacts);
        acked.messages.extend(a.messages);
    }
    assert!(acked.messages.len() >= USERS * 4);

    // Everything acknowledged is at the target exactly once; nothing is left at the source.
    let target_db = cloud.db("sg-singapore");
    let contacts: i64 = target_db
        .query_row(
            "SELECT count(*) FROM backup_items WHERE deleted = 0 AND kind = 'contacts'",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(contacts as usize, acked.contacts.len());
    for (item, _) in &acked.contacts {
        let n: i64 = target_db
            .query_row(
                "SELECT count(*) FROM backup_items WHERE item_id = ?1",
                &[item.into()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "contact {item}");
    }
    for id in acked.messages.keys() {
        for message_box in ["sent", "inbox"] {
            let n: i64 = target_db
                .query_row(
                    "SELECT count(*) FROM messages WHERE id = ?1 AND box = ?2",
                    &[id.as_str().into(), message_box.into()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                n, 1,
                "message {id} {message_box} copy, from/to {:?}",
                acked.messages[id]
            );
        }
    }
    let total: i64 = target_db
        .query_row("SELECT count(*) FROM messages", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(
        total as usize,
        acked.messages.len() * 2,
        "no message stored twice"
    );
    let source_db = cloud.db("in-mumbai");
    for table in [
        "users",
        "messages",
        "backup_items",
        "sessions",
        "consent_state",
        "consent_events",
        "migration_fences",
    ] {
        let n: i64 = source_db
            .query_row(&format!("SELECT count(*) FROM {table}"), &[], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table} left at the source");
    }
    // Each user reads their data at the target with the token they already had.
    let token = &tokens[0];
    let export = cloud
        .call(
            "sg-singapore",
            Method::GET,
            "/v1/me/export",
            Some(token),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.body["account"]["region"], "sg-singapore");
    assert_eq!(export.body["account"]["phone"], phone(0).as_str());
    let got = cloud
        .client
        .get(format!(
            "{}/v1/backup/photos/IMG_0001.jpg",
            cloud.url("sg-singapore")
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), photo);
    // The old region sends clients on.
    let stale = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(token), None)
        .await;
    assert_eq!(stale.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        stale.headers["location"],
        format!("{}/v1/me", cloud.url("sg-singapore")).as_str()
    );
    // Issue 10: signing in where the number used to live says no more than for a number that
    // was never registered (the same answer after the same password check).
    let sign_in_at_mumbai = |number: String| {
        let body =
            json!({"phone": number, "password": "correct horse battery", "device_name": "x"});
        cloud.call("in-mumbai", Method::POST, "/v1/sessions", None, Some(body))
    };
    let moved = sign_in_at_mumbai(phone(0)).await;
    let unknown = sign_in_at_mumbai(phone(999)).await;
    assert_eq!(moved.status, unknown.status);
    assert_eq!(moved.status, StatusCode::UNAUTHORIZED);
    assert_eq!(moved.body, unknown.body);
    assert!(moved.headers.get("location").is_none());
    // Running the migration again finds nothing left to do.
    let again = run_migration(&cloud, &india_to_singapore(), via).await;
    assert_eq!(again.moved, 0);
}

/// Issue 10: the 2014 plan's order between sites on separate hosts: messaging, then backup,
/// then the account, each over the federation. The account that arrives last joins the service
/// row already there and is a real account at the target: the user signs in there.
#[tokio::test]
async fn services_then_the_account_over_the_federation_end_as_an_account_at_the_target() {
    let cloud =
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await;
    cloud.user("in-mumbai", ALICE).await;
    let source = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    for services in [vec![Service::Messaging], vec![Service::Backup], Vec::new()] {
        let spec = MigrationSpec {
            services,
            ..india_to_singapore()
        };
        let report = migrate_to_site(&spec, &source, |_| {}).await.unwrap();
        assert_eq!(report.moved, 1, "{}: {report:?}", spec.describe());
    }
    let body =
        json!({"phone": ALICE, "password": "correct horse battery", "device_name": "new phone"});
    let signed_in = cloud
        .call(
            "sg-singapore",
            Method::POST,
            "/v1/sessions",
            None,
            Some(body),
        )
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );
}

#[tokio::test]
async fn a_region_the_policy_does_not_allow_receives_nobody() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    cloud.user("in-mumbai", ALICE).await;
    let source = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let target = cloud.cloud.region("sg-singapore").unwrap().state.clone();
    let report = migrate(&india_to_singapore(), &source, &target, |_| {})
        .await
        .unwrap();
    assert_eq!(report.moved, 0);
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0]
            .1
            .contains("does not allow region sg-singapore"),
        "{report:?}"
    );
    let users: i64 = cloud
        .db("sg-singapore")
        .query_row("SELECT count(*) FROM users", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 0);
    let users: i64 = cloud
        .db("in-mumbai")
        .query_row("SELECT count(*) FROM users", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 1);
}

/// Issue 12, finding 2: a client's sync cursors survive its move. It polled its inbox
/// (`after=`) and its contacts (`since=`) at the source, where other users' traffic had moved
/// the numbers along; after the move, asking the source with those cursors is redirected with
/// the query kept, and the target answers exactly what is new: nothing missed, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_cursors_from_the_source_mean_the_same_at_the_target_issue_12() {
    cursors_survive_a_move(Via::OneMachine).await;
}

/// The same, with the target reached over the federation (the snapshot's cursors travel too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_cursors_survive_a_move_to_a_site_over_the_federation_issue_12() {
    cursors_survive_a_move(Via::Federation).await;
}

async fn cursors_survive_a_move(via: Via) {
    let cloud =
        spawn_regions_with(&["in-mumbai", "sg-singapore"], india_may_move_to_singapore).await;
    let asha = cloud.user("in-mumbai", &phone(70)).await;
    let bina = cloud.user("in-mumbai", &phone(71)).await;
    // Others' traffic at the source, erased since (they withdrew): the region's numbers ran
    // ahead of what moves.
    let noise = cloud.user("in-mumbai", &phone(72)).await;
    let noise_peer = cloud.user("in-mumbai", &phone(73)).await;
    for n in 0..12 {
        let sent = cloud
            .call(
                "in-mumbai",
                Method::POST,
                "/v1/messages",
                Some(&noise),
                Some(json!({"to": phone(73), "body": format!("noise {n}")})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
    }
    cloud.grant_at("in-mumbai", &noise, "backup.contacts").await;
    for n in 0..12 {
        let put = cloud
            .call(
                "in-mumbai",
                Method::PUT,
                &format!("/v1/backup/contacts/noise{n}"),
                Some(&noise),
                Some(json!({"name": "noise"})),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    for (token, scope) in [
        (&noise, "messaging"),
        (&noise, "backup.contacts"),
        (&noise_peer, "messaging"),
    ] {
        let withdrawn = cloud
            .call(
                "in-mumbai",
                Method::DELETE,
                &format!("/v1/consents/{scope}"),
                Some(token),
                None,
            )
            .await;
        assert!(withdrawn.status.is_success(), "{:?}", withdrawn.body);
    }
    let send = |from: &str, region: &'static str, body: &str| {
        let (from, body) = (from.to_owned(), body.to_owned());
        let cloud = &cloud;
        async move {
            let sent = cloud
                .call(
                    region,
                    Method::POST,
                    "/v1/messages",
                    Some(&from),
                    Some(json!({"to": phone(70), "body": body})),
                )
                .await;
            assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
        }
    };
    for n in 0..3 {
        send(&bina, "in-mumbai", &format!("before {n}")).await;
    }
    cloud.grant_at("in-mumbai", &asha, "backup.contacts").await;
    let put_contact = |region: &'static str, id: &'static str| {
        let cloud = &cloud;
        let asha = asha.clone();
        async move {
            let put = cloud
                .call(
                    region,
                    Method::PUT,
                    &format!("/v1/backup/contacts/{id}"),
                    Some(&asha),
                    Some(json!({"name": id})),
                )
                .await;
            assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
        }
    };
    put_contact("in-mumbai", "k1").await;
    put_contact("in-mumbai", "k2").await;
    let inbox = cloud
        .get_at("in-mumbai", "/v1/messages?after=", &asha)
        .await;
    assert_eq!(inbox.body["messages"].as_array().unwrap().len(), 3);
    let after = inbox.body["cursor"].as_str().unwrap().to_owned();
    let contacts = cloud
        .get_at("in-mumbai", "/v1/backup/contacts?since=", &asha)
        .await;
    assert_eq!(contacts.body["items"].as_array().unwrap().len(), 2);
    let since = contacts.body["cursor"].as_str().unwrap().to_owned();

    let report = run_migration(&cloud, &india_to_singapore(), via).await;
    assert_eq!(report.moved, 4, "{report:?}");
    send(&bina, "sg-singapore", "after the move").await;
    put_contact("sg-singapore", "k3").await;

    let new = cloud
        .get_at(
            "sg-singapore",
            &format!("/v1/messages?after={after}"),
            &asha,
        )
        .await;
    let bodies: Vec<&str> = new.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["after the move"], "after={after}");
    let new = cloud
        .get_at(
            "sg-singapore",
            &format!("/v1/backup/contacts?since={since}"),
            &asha,
        )
        .await;
    let ids: Vec<&str> = new.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k3"], "since={since}");
    // The source sends the client on with its cursor.
    let moved = cloud
        .get_at("in-mumbai", &format!("/v1/messages?after={after}"), &asha)
        .await;
    assert_eq!(moved.status, StatusCode::TEMPORARY_REDIRECT);
    let location = moved.headers["location"].to_str().unwrap();
    assert!(
        location.ends_with(&format!("/v1/messages?after={after}")),
        "{location}"
    );
}
