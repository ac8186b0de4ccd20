//! A site per region: each keeps only its own things and knows the others only from the
//! federation file; peer requests cannot be replayed or readdressed.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use sovereign_cloud::placement::SESSION_VERIFY_PATH;
use sovereign_cloud::sites::{self, SiteOptions};
use sovereign_cloud::{Policies, clock::ManualClock};
use sovereign_model::RegionId;

use crate::accounts::walk;
use crate::support::{START_MS, spawn_regions, test_databases};

fn region(id: &str) -> RegionId {
    RegionId::parse(id).unwrap()
}

/// Sends a request that Singapore signed for `to` to Mumbai's session check.
async fn send_signed(
    cloud: &crate::support::TestCloud,
    to: &str,
    headers: reqwest::header::HeaderMap,
    body: &[u8],
) -> StatusCode {
    cloud
        .client
        .post(format!("{}{SESSION_VERIFY_PATH}", cloud.url("in-mumbai")))
        .header("content-type", "application/json")
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("sending to {to}: {e}"))
        .status()
}

#[tokio::test]
async fn a_replayed_peer_request_is_refused() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    let singapore = &cloud.cloud.region("sg-singapore").unwrap().state;
    let body = format!(r#"{{"token_digest":"{}"}}"#, "ab".repeat(32));
    let (headers, _) = singapore
        .federation
        .request_headers(
            &region("in-mumbai"),
            "POST",
            SESSION_VERIFY_PATH,
            body.as_bytes(),
            START_MS,
        )
        .unwrap();
    let first = send_signed(&cloud, "in-mumbai", headers.clone(), body.as_bytes()).await;
    assert_ne!(first, StatusCode::UNAUTHORIZED);
    let again = send_signed(&cloud, "in-mumbai", headers, body.as_bytes()).await;
    assert_eq!(again, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_request_signed_for_another_site_is_refused() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore", "cn-beijing"]).await;
    let singapore = &cloud.cloud.region("sg-singapore").unwrap().state;
    let body = format!(r#"{{"token_digest":"{}"}}"#, "ab".repeat(32));
    let (mut headers, _) = singapore
        .federation
        .request_headers(
            &region("cn-beijing"),
            "POST",
            SESSION_VERIFY_PATH,
            body.as_bytes(),
            START_MS,
        )
        .unwrap();
    let status = send_signed(&cloud, "in-mumbai", headers.clone(), body.as_bytes()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    headers.insert(
        sovereign_cloud::federation::HEADER_TO,
        "in-mumbai".parse().unwrap(),
    );
    let status = send_signed(&cloud, "in-mumbai", headers, body.as_bytes()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_site_on_one_machine_holds_only_its_own_things() {
    let ids = ["in-mumbai", "sg-singapore", "cn-beijing"];
    let cloud = spawn_regions(&ids).await;
    for id in ids {
        let site = cloud.dir.path().join("sites").join(id);
        let files = walk(&site);
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(format!("keys/{id}.peer.pk8")))
        );
        for file in files {
            let name = file
                .strip_prefix(&site)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for other in ids.iter().filter(|o| **o != id) {
                assert!(!name.contains(other), "{id}'s site holds {name}");
            }
        }
    }
    // The federation file names every site, with its key and CA.
    let file = sites::FederationFile::read(&cloud.dir.path().join(sites::FEDERATION_FILE)).unwrap();
    assert_eq!(file.sites.len(), ids.len());
    assert!(file.sites.values().all(|p| p.tls_ca.is_some()));
}

#[tokio::test]
async fn a_site_moved_to_another_path_works_with_only_the_federation_file() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let ids = ["in-mumbai", "sg-singapore"];
    // Reserve a port per site so the federation file can name it before the site starts.
    let mut ports = BTreeMap::new();
    for id in ids {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ports.insert(id, probe.local_addr().unwrap().port());
    }
    let mut stanzas = Vec::new();
    for id in ids {
        let url = format!("https://localhost:{}", ports[id]);
        let dir = root.path().join("built").join(id);
        stanzas.push(sites::publish(&dir, &region(id), &url, None).unwrap());
    }
    let federation = root.path().join("federation.toml");
    std::fs::write(&federation, sites::render(&stanzas).unwrap()).unwrap();
    // Mumbai's data directory moves to another path (another host); the phone index key goes
    // with the operator to every site.
    let moved = root.path().join("elsewhere/in-mumbai");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(root.path().join("built/in-mumbai"), &moved).unwrap();
    let shared_key = root.path().join("phone-index.key");
    let databases = test_databases(&ids.map(region));
    let clock = ManualClock::new(START_MS);
    let mut running = Vec::new();
    for id in ids {
        let data_dir = if id == "in-mumbai" {
            moved.clone()
        } else {
            root.path().join("built").join(id)
        };
        sites::install_phone_index_key(&shared_key, &data_dir).unwrap();
        let cloud = sites::start_site(SiteOptions {
            data_dir,
            region: region(id),
            listen: format!("127.0.0.1:{}", ports[id]).parse().unwrap(),
            policies: Policies::embedded().unwrap(),
            database: databases.get(&region(id)).cloned(),
            federation_file: Some(federation.clone()),
            directory: Some(
                sovereign_cloud::directory::Directory::open(&root.path().join("directory.sqlite"))
                    .unwrap(),
            ),
            tls_cert_key: None,
            ca_bundle: None,
            clock: clock.clone() as Arc<dyn sovereign_cloud::clock::Clock>,
        })
        .await
        .unwrap();
        running.push(cloud);
    }
    // Each site calls the other: both requests and both answers check out against the keys
    // pinned in the file alone.
    for (caller, callee) in [(0, "sg-singapore"), (1, "in-mumbai")] {
        let state = &running[caller].regions[0].state;
        let body = serde_json::json!({ "token_digest": "cd".repeat(32) });
        let answer = state
            .federation
            .post(&region(callee), SESSION_VERIFY_PATH, &body, START_MS)
            .await;
        let (status, _) = answer.unwrap_or_else(|e| panic!("calling {callee}: {e:?}"));
        assert_ne!(status, 401, "{callee} refused the call");
    }
    for cloud in running {
        cloud.shutdown(std::time::Duration::from_secs(1)).await;
    }
}
