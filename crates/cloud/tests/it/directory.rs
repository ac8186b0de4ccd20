//! The directory on both backends: the same calls give the same answers on SQLite and on a
//! three-member etcd cluster; on etcd, losing one member changes nothing, losing all of etcd
//! leaves a site serving its signed-in users and refusing what needs the directory with a 503,
//! and each site's etcd user can write only its own region's keys.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sovereign_cloud::clock::ManualClock;
use sovereign_cloud::directory::etcd::{EtcdLocation, EtcdOptions};
use sovereign_cloud::directory::{Directory, DirectoryEntry};
use sovereign_cloud::domain::Service;
use sovereign_cloud::store::StoreError;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::RegionId;

use crate::etcd_cluster::EtcdCluster;
use crate::support::{ALICE, BOB, START_MS, TestCloud, test_databases};

fn region(id: &str) -> RegionId {
    RegionId::parse(id).unwrap()
}

fn all_regions() -> Vec<RegionId> {
    Policies::embedded()
        .unwrap()
        .regions
        .regions
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

pub(crate) async fn connect(
    cluster: &EtcdCluster,
    user: Option<(&str, &str)>,
    prefix: &str,
) -> Result<Directory, StoreError> {
    let location = EtcdLocation::parse(&cluster.location(user.map(|u| u.0), prefix)).unwrap();
    Directory::connect_etcd(EtcdOptions {
        location,
        password: user.map(|u| u.1.to_owned()),
        ca_pem: None,
        regions: all_regions(),
    })
    .await
}

/// Polls (bounded) until `check` holds: another site's cache follows etcd through its watch.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Every call of the directory, with the answers SQLite has always given.
async fn exercise(directory: &Directory) {
    let (mumbai, beijing, singapore) = (
        region("in-mumbai"),
        region("cn-beijing"),
        region("sg-singapore"),
    );
    let (alice, bob, carol) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let entry = |user: &str, home: &RegionId| {
        Some(DirectoryEntry {
            user_id: user.to_owned(),
            home: home.clone(),
        })
    };
    directory
        .claim(alice, "u-alice".into(), beijing.clone(), 1)
        .await
        .unwrap();
    // A number belongs to one user, whichever region asks.
    assert!(matches!(
        directory
            .claim(alice, "u-other".into(), mumbai.clone(), 2)
            .await,
        Err(StoreError::PhoneTaken)
    ));
    assert_eq!(
        directory.lookup(alice).await.unwrap(),
        entry("u-alice", &beijing)
    );
    assert_eq!(directory.lookup(bob).await.unwrap(), None);
    assert_eq!(
        directory.home_of("u-alice".into()).await.unwrap(),
        Some(beijing.clone())
    );
    assert_eq!(directory.home_of("u-nobody".into()).await.unwrap(), None);
    assert_eq!(
        directory
            .service_region("u-alice".into(), Service::Messaging)
            .await
            .unwrap(),
        Some(beijing.clone())
    );

    directory
        .place(
            "u-alice".into(),
            vec![Service::Messaging],
            singapore.clone(),
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        directory
            .service_region("u-alice".into(), Service::Messaging)
            .await
            .unwrap(),
        Some(singapore.clone())
    );
    assert_eq!(
        directory
            .lookup_service(alice, Service::Messaging)
            .await
            .unwrap(),
        Some(("u-alice".to_owned(), singapore.clone()))
    );
    assert_eq!(
        directory
            .lookup_service(alice, Service::Backup)
            .await
            .unwrap(),
        Some(("u-alice".to_owned(), beijing.clone()))
    );
    assert_eq!(
        directory.placements("u-alice".into()).await.unwrap(),
        vec![(Service::Messaging, singapore.clone())]
    );
    // Messaging left Beijing (where the account still is): Beijing has held it.
    assert_eq!(
        directory.former_regions("u-alice".into()).await.unwrap(),
        vec![beijing.clone()]
    );
    assert!(
        directory
            .former_regions("u-nobody".into())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        directory.homes_served_in(singapore.clone()).await.unwrap(),
        vec![beijing.clone()]
    );
    assert!(matches!(
        directory
            .place("u-nobody".into(), vec![Service::Backup], mumbai.clone(), 4)
            .await,
        Err(StoreError::NotFound)
    ));

    // Moving home to where messaging already is puts messaging back with the account.
    directory
        .move_home("u-alice".into(), singapore.clone(), 5)
        .await
        .unwrap();
    assert_eq!(
        directory.lookup(alice).await.unwrap(),
        entry("u-alice", &singapore)
    );
    assert_eq!(
        directory.former_regions("u-alice".into()).await.unwrap(),
        vec![beijing.clone()],
        "the account left Beijing too; Beijing is remembered once"
    );
    assert!(
        directory
            .placements("u-alice".into())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        directory
            .homes_served_in(singapore.clone())
            .await
            .unwrap()
            .is_empty()
    );
    // A placement elsewhere survives the move.
    directory
        .claim(bob, "u-bob".into(), mumbai.clone(), 6)
        .await
        .unwrap();
    directory
        .place("u-bob".into(), vec![Service::Backup], beijing.clone(), 7)
        .await
        .unwrap();
    directory
        .move_home("u-bob".into(), singapore.clone(), 8)
        .await
        .unwrap();
    assert_eq!(
        directory.placements("u-bob".into()).await.unwrap(),
        vec![(Service::Backup, beijing.clone())]
    );
    assert_eq!(
        directory.homes_served_in(beijing.clone()).await.unwrap(),
        vec![singapore.clone()]
    );
    // Placing a service in the home removes its placement.
    directory
        .place("u-bob".into(), vec![Service::Backup], singapore.clone(), 9)
        .await
        .unwrap();
    assert!(
        directory
            .placements("u-bob".into())
            .await
            .unwrap()
            .is_empty()
    );
    // Bob's backup left Mumbai (his first home) for Beijing, his account left Mumbai, then
    // his backup left Beijing: the most recently left first.
    assert_eq!(
        directory.former_regions("u-bob".into()).await.unwrap(),
        vec![beijing.clone(), mumbai.clone()]
    );
    assert!(matches!(
        directory
            .move_home("u-nobody".into(), mumbai.clone(), 10)
            .await,
        Err(StoreError::NotFound)
    ));

    // Removing a user frees the number.
    directory.remove("u-alice".into()).await.unwrap();
    directory.remove("u-alice".into()).await.unwrap();
    assert_eq!(directory.lookup(alice).await.unwrap(), None);
    assert_eq!(directory.home_of("u-alice".into()).await.unwrap(), None);
    directory
        .claim(alice, "u-alice-2".into(), mumbai.clone(), 11)
        .await
        .unwrap();
    directory
        .claim(carol, "u-carol".into(), mumbai.clone(), 12)
        .await
        .unwrap();
    assert_eq!(
        directory.lookup(alice).await.unwrap(),
        entry("u-alice-2", &mumbai)
    );
    // A removed user's former regions go with them.
    assert!(
        directory
            .former_regions("u-alice".into())
            .await
            .unwrap()
            .is_empty()
    );

    // The migration journal: opened empty, selected once, steps kept, never reselected.
    let id = "0123456789abcdef01234567".to_owned();
    let spec = "move in-mumbai to sg-singapore".to_owned();
    assert!(
        directory
            .journal_open(id.clone(), spec.clone(), 13)
            .await
            .unwrap()
            .is_empty()
    );
    let users: Vec<String> = ["u-c", "u-a", "u-b"].map(String::from).into();
    directory
        .journal_select(id.clone(), users.clone())
        .await
        .unwrap();
    directory
        .journal_step(id.clone(), "u-a".into(), "done")
        .await
        .unwrap();
    let journal = directory
        .journal_open(id.clone(), spec.clone(), 14)
        .await
        .unwrap();
    assert_eq!(
        journal,
        vec![
            ("u-c".to_owned(), "selected".to_owned()),
            ("u-a".to_owned(), "done".to_owned()),
            ("u-b".to_owned(), "selected".to_owned()),
        ]
    );
    assert!(
        directory
            .journal_open("another".into(), spec, 15)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_directory_answers_alike_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let directory = Directory::open(&dir.path().join("directory.sqlite")).unwrap();
    exercise(&directory).await;
    assert_eq!(directory.status(), None);
}

#[tokio::test]
async fn the_directory_answers_alike_on_etcd_and_other_sites_follow_by_watch() {
    let cluster = EtcdCluster::start();
    let site = connect(&cluster, None, "t").await.unwrap();
    // A second site, connected before any write: it learns everything through its watch.
    let other = connect(&cluster, None, "t").await.unwrap();
    exercise(&site).await;
    assert!(site.status().unwrap().connected);
    let follows = eventually(|| async {
        other.lookup([1u8; 32]).await.unwrap()
            == Some(DirectoryEntry {
                user_id: "u-alice-2".into(),
                home: region("in-mumbai"),
            })
            && other.lookup([3u8; 32]).await.unwrap().is_some()
    })
    .await;
    assert!(follows, "the other site's cache did not follow etcd");
    assert_eq!(
        other.home_of("u-bob".into()).await.unwrap(),
        Some(region("sg-singapore"))
    );
    // A site connected later starts from one range read of the same state.
    let late = connect(&cluster, None, "t").await.unwrap();
    assert_eq!(
        late.lookup([2u8; 32]).await.unwrap(),
        Some(DirectoryEntry {
            user_id: "u-bob".into(),
            home: region("sg-singapore"),
        })
    );
    // Another prefix is another directory.
    let elsewhere = connect(&cluster, None, "other").await.unwrap();
    assert_eq!(elsewhere.lookup([2u8; 32]).await.unwrap(), None);
    // Nothing is stored in the clear: keys are hex of the keyed hash, ids and regions.
    let dump = cluster.ctl(&["get", "--prefix", "/t/"]);
    assert!(dump.contains(&sovereign_crypto::hex(&[2u8; 32])));
    assert!(!dump.contains("+91"));
}

/// Sites on several hosts reach etcd across the WAN: `etcds://` speaks TLS to the members and
/// trusts only the CA given for them; a plain location, another CA, or no CA is refused.
#[tokio::test]
async fn the_directory_on_etcd_over_tls_trusts_only_the_given_ca() {
    let (cluster, ca_pem) = EtcdCluster::start_tls();
    let location = cluster.location(None, "tls");
    assert!(location.starts_with("etcds://"), "{location}");
    let nowhere = std::path::Path::new("/nonexistent/directory.sqlite");
    let open = |location: String, ca: Option<Vec<u8>>| async move {
        Directory::at(Some(&location), nowhere, None, ca, all_regions()).await
    };
    let site = open(location.clone(), Some(ca_pem.clone().into_bytes()))
        .await
        .unwrap();
    exercise(&site).await;
    assert!(site.status().unwrap().connected);
    let keys = cluster.ctl(&["get", "--prefix", "--keys-only", "/tls/dir/"]);
    assert!(keys.contains("/tls/dir/in-mumbai/"), "{keys}");

    let Err(no_ca) = open(location.clone(), None).await else {
        panic!("etcds:// without a CA was accepted")
    };
    assert!(format!("{no_ca:#}").contains("--directory-ca"), "{no_ca:#}");
    let Err(plain_with_ca) = open(
        location.replacen("etcds://", "etcd://", 1),
        Some(ca_pem.into_bytes()),
    )
    .await
    else {
        panic!("a CA with a plain etcd:// location was accepted")
    };
    assert!(
        format!("{plain_with_ca:#}").contains("etcds://"),
        "{plain_with_ca:#}"
    );
    let (other_ca, _) = sovereign_crypto::LocalCa::generate("another CA").unwrap();
    let wrong = open(
        location.clone(),
        Some(other_ca.cert_pem().as_bytes().to_vec()),
    )
    .await;
    assert!(
        wrong.is_err(),
        "a member with a certificate of another CA was trusted"
    );
    let plain = open(location.replacen("etcds://", "etcd://", 1), None).await;
    assert!(plain.is_err(), "plain gRPC to a TLS member worked");
}

#[tokio::test]
async fn two_sites_claiming_one_number_at_once_give_it_to_exactly_one() {
    let cluster = EtcdCluster::start();
    let mumbai = connect(&cluster, None, "t").await.unwrap();
    let beijing = connect(&cluster, None, "t").await.unwrap();
    for round in 0..20u8 {
        let phone = [round; 32];
        let (a, b) = tokio::join!(
            mumbai.claim(phone, format!("m-{round}"), region("in-mumbai"), 1),
            beijing.claim(phone, format!("b-{round}"), region("cn-beijing"), 1),
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: both or neither won: {a:?} {b:?}"
        );
        let loser = if a.is_ok() { b } else { a };
        assert!(matches!(loser, Err(StoreError::PhoneTaken)));
    }
}

#[tokio::test]
async fn the_etcd_directory_keeps_working_when_a_member_dies() {
    let mut cluster = EtcdCluster::start();
    let site = connect(&cluster, None, "t").await.unwrap();
    let other = connect(&cluster, None, "t").await.unwrap();
    site.claim([1; 32], "u-1".into(), region("in-mumbai"), 1)
        .await
        .unwrap();
    // Whichever member each client talks to (or leads), one of three going down leaves a
    // quorum: claims, moves and the other site's watch go on.
    cluster.kill(0);
    for n in 2..6u8 {
        site.claim([n; 32], format!("u-{n}"), region("in-mumbai"), 1)
            .await
            .unwrap();
    }
    site.move_home("u-1".into(), region("sg-singapore"), 2)
        .await
        .unwrap();
    assert!(matches!(
        other
            .claim([3; 32], "u-dup".into(), region("cn-beijing"), 3)
            .await,
        Err(StoreError::PhoneTaken)
    ));
    let follows = eventually(|| async {
        other.home_of("u-1".into()).await.ok().flatten() == Some(region("sg-singapore"))
            && other.lookup([5; 32]).await.ok().flatten().is_some()
    })
    .await;
    assert!(
        follows,
        "the other site stopped following after a member died"
    );
    assert!(site.status().unwrap().connected);
    assert!(eventually(|| async { other.status().unwrap().connected }).await);
}

/// A cloud whose regions use `directory`.
async fn spawn_on(ids: &[&str], directory: Directory) -> TestCloud {
    spawn_on_with(ids, directory, |_| {}).await
}

/// A cloud whose regions use `directory`, with the policies `adjust` makes.
pub(crate) async fn spawn_on_with(
    ids: &[&str],
    directory: Directory,
    adjust: impl FnOnce(&mut Policies),
) -> TestCloud {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let regions: Vec<RegionId> = ids.iter().map(|id| region(id)).collect();
    let databases = test_databases(&regions);
    let mut policies = Policies::embedded().unwrap();
    adjust(&mut policies);
    let cloud = sovereign_cloud::start_cloud_on(
        CloudOptions {
            data_dir: dir.path().to_path_buf(),
            policies,
            regions: regions
                .into_iter()
                .map(|id| (id, "127.0.0.1:0".parse().unwrap()))
                .collect(),
            databases: databases.clone(),
            clock: clock.clone(),
        },
        Some(directory),
    )
    .await
    .unwrap();
    assert!(!dir.path().join("directory.sqlite").exists());
    let ca_pem = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestCloud {
        dir,
        client,
        cloud,
        databases,
        clock,
    }
}

#[tokio::test]
async fn without_etcd_a_site_serves_its_signed_in_users_and_refuses_the_rest_with_503() {
    let mut cluster = EtcdCluster::start();
    let directory = connect(&cluster, None, "t").await.unwrap();
    let cloud = spawn_on(&["in-mumbai", "sg-singapore"], directory.clone()).await;
    let token = cloud.user("in-mumbai", ALICE).await;
    let before = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&token), None)
        .await;
    assert_eq!(before.status, StatusCode::OK, "{:?}", before.body);
    let health = cloud
        .call("in-mumbai", Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(
        health.body["directory"]["backend"], "etcd",
        "{:?}",
        health.body
    );
    assert_eq!(health.body["directory"]["following"], true);

    cluster.kill_all();
    assert!(
        eventually(|| async { !directory.status().unwrap().connected }).await,
        "the cache never noticed that etcd is gone"
    );
    // The operator on call sees it; the site stays up (it still serves its users).
    let health = cloud
        .call("in-mumbai", Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(
        health.body["directory"]["following"], false,
        "{:?}",
        health.body
    );
    // The signed-in user's own account is served from the region and the cached directory.
    let me = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&token), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    // Signing in again needs only what the cache holds.
    let again = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"phone": ALICE, "password": "correct horse battery", "device_name": "tablet"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    // A new number needs a claim in etcd: refused, clearly, and retryable; the account the
    // region had begun is undone.
    let signup = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({"phone": BOB, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(signup.status, StatusCode::ACCEPTED, "{:?}", signup.body);
    let outbox = std::fs::read_to_string(cloud.dir.path().join("sms-outbox.jsonl")).unwrap();
    let code = outbox
        .lines()
        .rev()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|m| m["to"] == BOB)
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let verify = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/accounts/verify",
            None,
            Some(json!({"verification_id": signup.body["verification_id"], "code": code})),
        )
        .await;
    assert_eq!(
        verify.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        verify.body
    );
    assert_eq!(verify.code(), "directory_unavailable");
    // Sign-in needs no directory: the residency policy picks the region and its own store
    // answers (a number that moved away gets the unknown-number answer, see tests/it/trust.rs),
    // so an unknown number is refused as wrong, exactly as with etcd up.
    let unknown = cloud
        .call(
            "in-mumbai",
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"phone": BOB, "password": "correct horse battery", "device_name": "x"})),
        )
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        unknown.body
    );
    assert_eq!(unknown.code(), "invalid_credentials");
    assert!(
        !unknown.body["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );
    // Deleting the account needs the directory: refused before anything is deleted.
    let delete = cloud
        .call("in-mumbai", Method::DELETE, "/v1/me", Some(&token), None)
        .await;
    assert_eq!(
        delete.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        delete.body
    );
    assert_eq!(delete.code(), "directory_unavailable");
    let still = cloud
        .call("in-mumbai", Method::GET, "/v1/me", Some(&token), None)
        .await;
    assert_eq!(still.status, StatusCode::OK, "{:?}", still.body);
}

/// Roles as ARCHITECTURE.md gives them: every site reads the routing keys and writes only its
/// own region's; only the migrator writes across regions and touches the journal.
fn grant_roles(cluster: &mut EtcdCluster, prefix: &str, sites: &[&str]) {
    for site in sites {
        let name = format!("site-{site}");
        cluster.ctl(&["role", "add", &name]);
        cluster.ctl(&[
            "role",
            "grant-permission",
            &name,
            "--prefix=true",
            "read",
            &format!("/{prefix}/dir/"),
        ]);
        cluster.ctl(&[
            "role",
            "grant-permission",
            &name,
            "--prefix=true",
            "readwrite",
            &format!("/{prefix}/dir/{site}/"),
        ]);
        cluster.ctl(&["user", "add", &format!("{name}:pw-{site}")]);
        cluster.ctl(&["user", "grant-role", &name, &name]);
    }
    cluster.ctl(&["role", "add", "migrator"]);
    cluster.ctl(&[
        "role",
        "grant-permission",
        "migrator",
        "--prefix=true",
        "readwrite",
        &format!("/{prefix}/"),
    ]);
    cluster.ctl(&["user", "add", "migrator:pw-migrator"]);
    cluster.ctl(&["user", "grant-role", "migrator", "migrator"]);
    cluster.enable_auth();
}

#[tokio::test]
async fn each_site_may_write_only_its_own_region_and_never_the_journal() {
    let mut cluster = EtcdCluster::start();
    grant_roles(&mut cluster, "t", &["in-mumbai", "cn-beijing"]);
    assert!(connect(&cluster, None, "t").await.is_err(), "auth is on");
    assert!(
        connect(&cluster, Some(("site-in-mumbai", "wrong")), "t")
            .await
            .is_err()
    );
    let mumbai = connect(&cluster, Some(("site-in-mumbai", "pw-in-mumbai")), "t")
        .await
        .unwrap();
    let beijing = connect(&cluster, Some(("site-cn-beijing", "pw-cn-beijing")), "t")
        .await
        .unwrap();
    let migrator = connect(&cluster, Some(("migrator", "pw-migrator")), "t")
        .await
        .unwrap();
    mumbai
        .claim([1; 32], "u-1".into(), region("in-mumbai"), 1)
        .await
        .unwrap();
    // Mumbai cannot put a user in Beijing, nor move one there.
    let foreign = mumbai
        .claim([2; 32], "u-2".into(), region("cn-beijing"), 1)
        .await;
    assert!(
        matches!(foreign, Err(StoreError::DirectoryUnavailable(ref m)) if m.contains("permission denied")),
        "{foreign:?}"
    );
    assert!(
        mumbai
            .move_home("u-1".into(), region("cn-beijing"), 2)
            .await
            .is_err()
    );
    assert!(
        mumbai
            .place(
                "u-1".into(),
                vec![Service::Messaging],
                region("cn-beijing"),
                2
            )
            .await
            .is_ok(),
        "placements of its own users are under its own keys"
    );
    // The journal is the migrator's alone.
    assert!(
        mumbai
            .journal_open("m".into(), "spec".into(), 1)
            .await
            .is_err()
    );
    // Every site reads the routing keys (that is what keeps reads local).
    assert!(eventually(|| async { beijing.lookup([1; 32]).await.ok().flatten().is_some() }).await);
    // Beijing cannot delete Mumbai's user.
    assert!(beijing.remove("u-1".into()).await.is_err());
    // The migrator moves users across regions and keeps the journal.
    assert!(
        migrator
            .journal_open("m".into(), "spec".into(), 1)
            .await
            .unwrap()
            .is_empty()
    );
    migrator
        .move_home("u-1".into(), region("cn-beijing"), 3)
        .await
        .unwrap();
    assert!(
        eventually(|| async {
            mumbai.home_of("u-1".into()).await.ok().flatten() == Some(region("cn-beijing"))
        })
        .await
    );
    // Now the user is Beijing's: Mumbai can no longer remove them, Beijing can.
    assert!(mumbai.remove("u-1".into()).await.is_err());
    beijing.remove("u-1".into()).await.unwrap();
    assert!(eventually(|| async { migrator.lookup([1; 32]).await.unwrap().is_none() }).await);
}
