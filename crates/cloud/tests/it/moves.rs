//! Issue 10: a move between sites on separate hosts, played by a hostile source. The target takes
//! a user only from the site the directory says holds them, only with their own number, only if
//! its own residency policy allows them, and never through an unsigned request.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sovereign_cloud::clock::Clock;
use sovereign_cloud::domain::PhoneNumber;
use sovereign_cloud::migration::{
    MOVE_ABANDON_PATH, MOVE_ACTIVATE_PATH, MOVE_BLOB_PATH, MOVE_DIGEST_PATH, MOVE_INSTALL_PATH,
    MOVE_PREPARE_PATH,
};
use sovereign_cloud::store::{MoveScope, SnapshotUser, UserSnapshot};
use sovereign_crypto::{DataKey, seal_for_move};
use sovereign_model::RegionId;

use crate::support::*;
use crate::trust::stolen_federation;

const SAM: &str = "+6591234567";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A snapshot of `user_id` whose sealed phone is `phone` and whose phone index is `index`, with
/// its data key sealed to `public` (the target's move key for that user).
fn forged_install(user_id: &str, phone: &str, index: [u8; 32], public: &[u8]) -> Value {
    let key = DataKey::generate().unwrap();
    let phone_sealed = key
        .seal(
            format!("users/{user_id}/{user_id}/phone").as_bytes(),
            phone.as_bytes(),
        )
        .unwrap();
    let snapshot = UserSnapshot {
        user: SnapshotUser {
            id: user_id.to_owned(),
            phone_index: index.to_vec(),
            phone_sealed,
            password_hash: String::new(),
            wrapped_key: Vec::new(),
            created_at: START_MS,
            kind: "account".to_owned(),
            consent_version: 0,
        },
        sessions: Vec::new(),
        consents: Vec::new(),
        consent_events: Vec::new(),
        messages: Vec::new(),
        backup: Vec::new(),
        counters: Vec::new(),
    };
    let sealed = seal_for_move(&key, public, user_id.as_bytes()).unwrap();
    json!({
        "scope": MoveScope::whole(),
        "snapshot": snapshot,
        "sealed_key": {
            "ephemeral_public": b64(&sealed.ephemeral_public),
            "wrapped": b64(&sealed.wrapped),
        },
    })
}

#[tokio::test]
async fn issue10_a_site_moves_in_only_users_it_holds_with_their_own_number() {
    let cloud = spawn_regions(&["in-mumbai", "sg-singapore"]).await;
    let alice_token = cloud.user("in-mumbai", ALICE).await;
    cloud.user("sg-singapore", SAM).await;
    let mumbai_state = cloud.cloud.region("in-mumbai").unwrap().state.clone();
    let index = |phone: &str| {
        mumbai_state
            .keys
            .phone_index(&PhoneNumber::parse(phone).unwrap())
    };
    let user_of = async |phone: &str| {
        cloud
            .cloud
            .directory
            .lookup(index(phone))
            .await
            .unwrap()
            .unwrap()
            .user_id
    };
    let (alice, sam) = (user_of(ALICE).await, user_of(SAM).await);
    // The rogue holds Singapore's real federation key: its requests are validly signed.
    let rogue = stolen_federation(&cloud, "sg-singapore");
    let mumbai = RegionId::parse("in-mumbai").unwrap();
    let post = async |path: &str, body: Value| {
        rogue
            .post(&mumbai, path, &body, cloud.clock.now_ms())
            .await
            .unwrap()
    };
    let users_at_mumbai = || {
        cloud
            .db("in-mumbai")
            .query_row("SELECT count(*) FROM users", &[], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(users_at_mumbai(), 1);

    // Alice is Mumbai's own: Singapore may not prepare, install, digest, activate or drop her.
    let whole = MoveScope::whole();
    for (path, body) in [
        (
            MOVE_PREPARE_PATH,
            json!({"user_id": alice, "scope": whole, "blob_paths": []}),
        ),
        (MOVE_DIGEST_PATH, json!({"user_id": alice, "scope": whole})),
        (
            MOVE_ACTIVATE_PATH,
            json!({"user_id": alice, "scope": whole}),
        ),
        (
            MOVE_INSTALL_PATH,
            forged_install(&alice, ALICE, index(ALICE), &[9; 32]),
        ),
    ] {
        let (status, answer) = post(path, body).await;
        assert_eq!(status, 401, "{path}: {answer}");
    }
    // Nor for the account alone: each part of the scope is checked against its holder.
    let account_only = MoveScope {
        account: true,
        messaging: false,
        backup: false,
    };
    for path in [MOVE_DIGEST_PATH, MOVE_ACTIVATE_PATH] {
        let (status, answer) = post(path, json!({"user_id": alice, "scope": account_only})).await;
        assert_eq!(status, 401, "{path}: {answer}");
    }
    let (status, answer) = post(MOVE_ABANDON_PATH, json!({"user_id": alice})).await;
    assert_eq!(status, 409, "{answer}");

    // Sam is Singapore's: it may prepare his move, and learns the key to seal his data key to.
    let (status, prepared) = post(
        MOVE_PREPARE_PATH,
        json!({"user_id": sam, "scope": whole, "blob_paths": []}),
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let public = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(prepared["move_public_key"].as_str().unwrap())
            .unwrap()
    };
    // ...but not bring Alice's number along under Sam's id, with or without her index,
    let (status, answer) = post(
        MOVE_INSTALL_PATH,
        forged_install(&sam, ALICE, index(ALICE), &public),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post(
        MOVE_INSTALL_PATH,
        forged_install(&sam, ALICE, index(SAM), &public),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "invalid_field", "{answer}");
    // ...nor write into Alice's blobs,
    let (status, answer) = post(
        MOVE_BLOB_PATH,
        json!({"user_id": sam, "scope": whole, "path": format!("users/{alice}/x"), "sealed": b64(b"junk")}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    // ...nor seal the key to anything but Mumbai's key for Sam,
    let (status, answer) = post(
        MOVE_INSTALL_PATH,
        forged_install(
            &sam,
            SAM,
            index(SAM),
            &mumbai_state
                .keys
                .move_public_key(&sovereign_cloud::domain::UserId::from_stored(alice.clone()))
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    // ...and Sam himself only where Mumbai's own residency policy lets him live (it does not).
    let (status, answer) = post(
        MOVE_INSTALL_PATH,
        forged_install(&sam, SAM, index(SAM), &public),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("does not allow region in-mumbai"),
        "{answer}"
    );
    // ...nor bring a key for a service the move does not carry: moving Sam's backup, a key
    // for his messaging would replace the one Mumbai seals his messages with.
    let mut backup_only = forged_install(&sam, SAM, index(SAM), &public);
    backup_only["scope"] = json!(MoveScope {
        account: false,
        messaging: false,
        backup: true,
    });
    backup_only["scope_keys"] = json!([{"scope": "messaging", "ephemeral_public": b64(&[1; 32]),
                                       "wrapped": b64(b"junk")}]);
    let (status, answer) = post(MOVE_INSTALL_PATH, backup_only.clone()).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "scope_keys.scope", "{answer}");
    // ...nor two keys for one scope.
    let key =
        json!({"scope": "backup.sms", "ephemeral_public": b64(&[1; 32]), "wrapped": b64(b"junk")});
    backup_only["scope_keys"] = json!([key, key]);
    let (status, answer) = post(MOVE_INSTALL_PATH, backup_only).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "scope_keys", "{answer}");
    assert_eq!(users_at_mumbai(), 1, "nothing was installed");

    // Unsigned, the same request is refused before anything is read.
    let unsigned = cloud
        .client
        .post(format!("{}{MOVE_INSTALL_PATH}", cloud.url("in-mumbai")))
        .json(&forged_install(&sam, SAM, index(SAM), &public))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    // Alice is untouched.
    let me = cloud
        .call(
            "in-mumbai",
            reqwest::Method::GET,
            "/v1/me",
            Some(&alice_token),
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
}
