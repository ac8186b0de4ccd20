//! Issue 5: staff access only with k-of-n approval, and the access ledger.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::clock::Clock;
use sovereign_cloud::ops::{AccessRequest, Decision, decision_bytes, http_bytes};
use sovereign_crypto::{SigningKey, from_hex, hex, leaf_hash, verify_inclusion, verify_signature};
use sovereign_model::ConsentScope;

use crate::support::*;

pub struct Operator {
    pub name: String,
    pub key: SigningKey,
}

fn new_key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

/// Registers operators by name, as `sovereign ops register` does.
pub async fn operators(app: &TestApp, names: &[&str]) -> Vec<Operator> {
    let mut out = Vec::new();
    for name in names {
        let key = new_key();
        app.state
            .store
            .register_operator(
                name.to_string(),
                key.public_key().to_vec(),
                app.clock.now_ms(),
            )
            .await
            .unwrap();
        out.push(Operator {
            name: name.to_string(),
            key,
        });
    }
    out
}

fn access_request(
    app: &TestApp,
    by: &Operator,
    user_id: &str,
    scopes: &[ConsentScope],
    duration_ms: i64,
) -> AccessRequest {
    let now = app.clock.now_ms();
    AccessRequest {
        id: uuid_v4(),
        region: "in-mumbai".into(),
        requester: by.name.clone(),
        user_id: user_id.to_owned(),
        scopes: scopes.to_vec(),
        reason: "ticket 4711: user reports missing messages".into(),
        requested_at_ms: now,
        not_after_ms: now + duration_ms,
    }
}

fn uuid_v4() -> String {
    let bytes: [u8; 16] = sovereign_crypto::random_bytes().unwrap();
    let h = hex(&bytes);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn request_json(request: &AccessRequest, key: &SigningKey) -> Value {
    json!({
        "id": request.id,
        "requester": request.requester,
        "user_id": request.user_id,
        "scopes": request.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "reason": request.reason,
        "requested_at_ms": request.requested_at_ms,
        "not_after_ms": request.not_after_ms,
        "signature": hex(&key.sign(&request.signed_bytes())),
    })
}

pub async fn submit(app: &TestApp, request: &AccessRequest, key: &SigningKey) -> Reply {
    app.call(
        Method::POST,
        "/v1/ops/requests",
        None,
        Some(request_json(request, key)),
    )
    .await
}

pub async fn decide(
    app: &TestApp,
    request: &AccessRequest,
    by: &Operator,
    decision: Decision,
) -> Reply {
    let at = app.clock.now_ms();
    let message = decision_bytes(
        decision,
        "in-mumbai",
        &request.id,
        &by.name,
        &request.digest(),
        at,
    );
    app.call(
        Method::POST,
        &format!("/v1/ops/requests/{}/{}", request.id, decision.as_str()),
        None,
        Some(json!({"operator": by.name, "signed_at_ms": at, "signature": hex(&by.key.sign(&message))})),
    )
    .await
}

pub async fn signed_get(app: &TestApp, by: &Operator, path: &str) -> Reply {
    let at = app.clock.now_ms();
    let signature = by.key.sign(&http_bytes("in-mumbai", "GET", path, at));
    app.raw(
        app.client
            .get(format!("{}{path}", app.base))
            .header("sovereign-operator", &by.name)
            .header("sovereign-signed-at", at.to_string())
            .header("sovereign-signature", hex(&signature)),
    )
    .await
}

/// Alice with one message from Bob, and three operators.
pub async fn setup() -> (TestApp, String, String, Vec<Operator>) {
    let app = spawn_app().await;
    let alice_id = app.sign_up(ALICE).await;
    let alice = app.sign_in(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(json!({"to": ALICE, "body": "the secret is 42"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let ops = operators(&app, &["ana", "ben", "cat"]).await;
    (app, alice_id, alice, ops)
}

const HOUR_MS: i64 = 3_600_000;

pub async fn open_grant(app: &TestApp, user: &str, ops: &[Operator]) -> AccessRequest {
    let request = access_request(app, &ops[0], user, &[ConsentScope::Messaging], HOUR_MS);
    assert_eq!(
        submit(app, &request, &ops[0].key).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        decide(app, &request, &ops[1], Decision::Approve)
            .await
            .status,
        StatusCode::OK
    );
    let opened = decide(app, &request, &ops[2], Decision::Approve).await;
    assert_eq!(opened.body["state"], "open", "{:?}", opened.body);
    request
}

pub fn data_path(request: &AccessRequest, scope: &str) -> String {
    format!("/v1/ops/grants/{}/data/{scope}", request.id)
}

#[tokio::test]
async fn two_other_approvers_open_a_read_only_grant_and_the_user_sees_it_all() {
    let (app, alice_id, alice, ops) = setup().await;
    let request = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    let created = submit(&app, &request, &ops[0].key).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["state"], "pending");
    let path = data_path(&request, "messaging");

    // No approval yet: the data path counts verified signatures, not the state column.
    let early = signed_get(&app, &ops[0], &path).await;
    assert_eq!(early.status, StatusCode::FORBIDDEN);
    assert_eq!(early.code(), "quorum_not_met", "{:?}", early.body);

    let one = decide(&app, &request, &ops[1], Decision::Approve).await;
    assert_eq!(one.body["state"], "pending", "{:?}", one.body);
    let still = signed_get(&app, &ops[0], &path).await;
    assert_eq!(still.code(), "quorum_not_met");
    assert!(
        still.body["detail"]
            .as_str()
            .unwrap()
            .contains("only 1 of the 2"),
        "{:?}",
        still.body
    );

    let two = decide(&app, &request, &ops[2], Decision::Approve).await;
    assert_eq!(two.body["state"], "open");
    assert_eq!(two.body["approvals"], json!(["ben", "cat"]));

    let read = signed_get(&app, &ops[0], &path).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["items"][0]["body"], "the secret is 42");
    assert_eq!(read.body["approved_by"], json!(["ben", "cat"]));

    // Scopes not granted, other operators, and writes are refused.
    let other_scope = signed_get(&app, &ops[0], &data_path(&request, "backup.sms")).await;
    assert_eq!(other_scope.status, StatusCode::FORBIDDEN);
    assert_eq!(other_scope.code(), "scope_not_granted");
    let not_requester = signed_get(&app, &ops[1], &path).await;
    assert_eq!(not_requester.code(), "not_requester");
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let write = app
            .call(method.clone(), &path, None, Some(json!({"body": "x"})))
            .await;
        assert_eq!(write.status, StatusCode::FORBIDDEN, "{method}");
        assert_eq!(write.code(), "read_only_grant", "{method}");
    }

    // Alice sees every step, newest first, each proven against a signed checkpoint.
    let log = app.get("/v1/me/access-log", &alice).await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let kinds: Vec<&str> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["read", "grant", "approve", "approve", "request"]);
    let grant = &log.body["entries"][1];
    assert_eq!(grant["operator"], "ana");
    assert_eq!(grant["detail"]["approvers"], json!(["ben", "cat"]));
    assert_eq!(
        grant["detail"]["reason"],
        "ticket 4711: user reports missing messages"
    );
    check_proofs(&app, &log.body);

    // Bob's log has none of it.
    let bob = app.sign_in(BOB).await;
    let bob_log = app.get("/v1/me/access-log", &bob).await;
    assert!(
        bob_log.body["entries"].as_array().unwrap().is_empty(),
        "{:?}",
        bob_log.body
    );
}

/// Checks every entry's leaf hash from its fields, its inclusion proof, and the checkpoint's
/// signature by the region's ledger key, as a user's own client would.
fn check_proofs(app: &TestApp, log: &Value) {
    let c = &log["checkpoint"];
    let public_key = from_hex(c["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(public_key, app.state.ledger.key.public_key());
    let root: [u8; 32] = from_hex(c["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let head = from_hex(c["chain_head"].as_str().unwrap()).unwrap();
    let size = c["tree_size"].as_i64().unwrap();
    let signed = sovereign_cloud::ledger::checkpoint_bytes(
        "in-mumbai",
        size,
        &root,
        &head,
        c["at_ms"].as_i64().unwrap(),
    );
    verify_signature(
        &public_key,
        &signed,
        &from_hex(c["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let entries = log["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        let detail_hash = from_hex(e["detail_hash"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail_hash,
            sovereign_crypto::digest_sha256(e["detail"].to_string().as_bytes()),
            "detail as served is the detail as hashed"
        );
        let leaf = leaf_hash(&sovereign_cloud::ledger::leaf_bytes(
            e["seq"].as_i64().unwrap(),
            e["at_ms"].as_i64().unwrap(),
            e["kind"].as_str().unwrap(),
            e["user_id"].as_str().unwrap(),
            e["request_id"].as_str().unwrap(),
            e["operator"].as_str().unwrap(),
            &detail_hash,
        ));
        let proof: Vec<[u8; 32]> = e["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| from_hex(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let index = e["seq"].as_u64().unwrap();
        assert!(
            verify_inclusion(index, size as u64, &leaf, &proof, &root),
            "entry {index}"
        );
        let mut forged = leaf;
        forged[0] ^= 1;
        assert!(!verify_inclusion(
            index,
            size as u64,
            &forged,
            &proof,
            &root
        ));
    }
}

#[tokio::test]
async fn self_approval_is_refused() {
    let (app, alice_id, _, ops) = setup().await;
    let request = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    submit(&app, &request, &ops[0].key).await;
    let own = decide(&app, &request, &ops[0], Decision::Approve).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert_eq!(own.code(), "self_approval");
    // One other approval and the requester's own do not make two.
    decide(&app, &request, &ops[1], Decision::Approve).await;
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.code(), "quorum_not_met");
}

#[tokio::test]
async fn unknown_keys_bad_and_stale_signatures_are_refused() {
    let (app, alice_id, _, ops) = setup().await;
    let eve = Operator {
        name: "eve".into(),
        key: new_key(),
    };
    let by_eve = access_request(&app, &eve, &alice_id, &[ConsentScope::Messaging], HOUR_MS);
    let unknown = submit(&app, &by_eve, &eve.key).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.code(), "unknown_operator");
    assert_eq!(unknown.body["operator"], "eve");

    // Ana's name with Eve's key.
    let forged = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    let bad = submit(&app, &forged, &eve.key).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.code(), "bad_signature");

    let request = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    submit(&app, &request, &ops[0].key).await;
    let impostor = Operator {
        name: "ben".into(),
        key: new_key(),
    };
    let approval = decide(&app, &request, &impostor, Decision::Approve).await;
    assert_eq!(approval.code(), "bad_signature");
    let get = signed_get(&app, &impostor, &format!("/v1/ops/requests/{}", request.id)).await;
    assert_eq!(get.code(), "bad_signature");

    // A signature made ten minutes ago is refused, so a captured one cannot be replayed.
    let mut stale = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    stale.requested_at_ms -= 600_000;
    stale.not_after_ms -= 600_000;
    let reply = submit(&app, &stale, &ops[0].key).await;
    assert_eq!(reply.code(), "stale_signature", "{:?}", reply.body);

    let no_headers = app
        .call(
            Method::GET,
            &format!("/v1/ops/requests/{}", request.id),
            None,
            None,
        )
        .await;
    assert_eq!(no_headers.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_headers.body["field"], "sovereign-operator");
}

#[tokio::test]
async fn an_expired_grant_is_refused_and_its_expiry_is_in_the_ledger() {
    let (app, alice_id, alice, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    let path = data_path(&request, "messaging");
    assert_eq!(
        signed_get(&app, &ops[0], &path).await.status,
        StatusCode::OK
    );
    app.clock.advance_ms(HOUR_MS);
    let late = signed_get(&app, &ops[0], &path).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
    assert_eq!(late.code(), "grant_not_open");
    assert_eq!(late.body["state"], "expired");
    let counts = sovereign_cloud::retention::sweep(&app.state).await.unwrap();
    assert_eq!(counts.grants_expired, 1);
    let log = app.get("/v1/me/access-log", &alice).await;
    assert_eq!(log.body["entries"][0]["kind"], "expire", "{:?}", log.body);
    check_proofs(&app, &log.body);
}

#[tokio::test]
async fn a_revoked_grant_is_refused() {
    let (app, alice_id, _, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    let revoked = decide(&app, &request, &ops[2], Decision::Revoke).await;
    assert_eq!(revoked.body["state"], "revoked", "{:?}", revoked.body);
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.code(), "grant_not_open");
    assert_eq!(read.body["state"], "revoked");
}

/// Revoking an operator's key ends what only their signature held up, in the same commit and in
/// the ledger: a grant that no longer has k live approvers, and every request they made, show
/// as revoked to the operators and to the user; a revoked approver's earlier approval does not
/// count towards opening a request either.
#[tokio::test]
async fn revoking_an_operator_closes_what_their_signature_held_open_issue_12() {
    let (app, alice_id, alice, mut ops) = setup().await;
    ops.extend(operators(&app, &["dee"]).await);
    let k = app.state.policies.ops.approvals_required;
    let view = |request: &AccessRequest| {
        let path = format!("/v1/ops/requests/{}", request.id);
        let app = &app;
        let by = &ops[2];
        async move { signed_get(app, by, &path).await.body["state"].clone() }
    };
    // Opened by ben and cat; ben's key is revoked: one live approver is not k.
    let opened = open_grant(&app, &alice_id, &ops).await;
    // Pending, approved by ben only; and a request dee made, pending.
    let pending = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    submit(&app, &pending, &ops[0].key).await;
    decide(&app, &pending, &ops[1], Decision::Approve).await;
    let by_dee = access_request(
        &app,
        &ops[3],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    assert_eq!(
        submit(&app, &by_dee, &ops[3].key).await.status,
        StatusCode::CREATED
    );
    app.state
        .store
        .revoke_operator_recorded(
            app.state.ledger.clone(),
            "ben".into(),
            app.clock.now_ms(),
            k,
        )
        .await
        .unwrap();
    assert_eq!(view(&opened).await, "revoked");
    let read = signed_get(&app, &ops[0], &data_path(&opened, "messaging")).await;
    assert_eq!(read.code(), "grant_not_open", "{:?}", read.body);
    // ben's approval of the pending request no longer counts: cat's alone does not open it.
    let cat = decide(&app, &pending, &ops[2], Decision::Approve).await;
    assert_eq!(cat.body["state"], "pending", "{:?}", cat.body);
    let dee = decide(&app, &pending, &ops[3], Decision::Approve).await;
    assert_eq!(dee.body["state"], "open", "{:?}", dee.body);

    app.state
        .store
        .revoke_operator_recorded(
            app.state.ledger.clone(),
            "dee".into(),
            app.clock.now_ms(),
            k,
        )
        .await
        .unwrap();
    assert_eq!(view(&by_dee).await, "revoked");
    assert_eq!(view(&pending).await, "revoked");
    // The user's access log says so: each grant's end is an entry.
    let log = app.get("/v1/me/access-log", &alice).await;
    let revokes: Vec<&Value> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "revoke")
        .collect();
    assert_eq!(revokes.len(), 3, "{:?}", log.body);
    assert!(app.verify_ledger().is_ok());
}

#[tokio::test]
async fn a_denied_request_never_opens() {
    let (app, alice_id, _, ops) = setup().await;
    let request = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    submit(&app, &request, &ops[0].key).await;
    let denied = decide(&app, &request, &ops[1], Decision::Deny).await;
    assert_eq!(denied.body["state"], "denied");
    let late = decide(&app, &request, &ops[2], Decision::Approve).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert!(
        late.body["detail"].as_str().unwrap().contains("denied"),
        "{:?}",
        late.body
    );
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.code(), "grant_not_open");
}

#[tokio::test]
async fn the_data_path_reverifies_signatures_before_decrypting() {
    let (app, alice_id, alice, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    // Someone with write access to the database swaps an approval's signature: the state still
    // says open, but the data path counts only signatures that verify.
    let conn = app.db();
    conn.execute(
        "UPDATE ops_decisions SET signature = ?1 WHERE operator = 'cat'",
        &[SqlValue::Blob(vec![7u8; 64])],
    )
    .unwrap();
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.code(), "quorum_not_met", "{:?}", read.body);
    assert!(!String::from_utf8_lossy(&read.bytes).contains("secret"));
    let log = app.get("/v1/me/access-log", &alice).await;
    assert_eq!(
        log.body["entries"][0]["kind"], "grant",
        "no read was logged: {:?}",
        log.body
    );
    // A revoked approver's signature no longer counts either.
    conn.execute("UPDATE ops_decisions SET signature = (SELECT signature FROM ops_decisions WHERE operator = 'ben') WHERE operator = 'cat'", &[]).unwrap();
    // (Revoked in the database alone, so the grant's state still says open.)
    conn.execute(
        "UPDATE operators SET revoked_at = ?1 WHERE name = 'ben'",
        &[SqlValue::from(app.clock.now_ms())],
    )
    .unwrap();
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.code(), "quorum_not_met");
}

#[tokio::test]
async fn bad_request_bodies_are_clear_errors() {
    let (app, alice_id, _, ops) = setup().await;
    let key = &ops[0].key;
    let good = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::Messaging],
        HOUR_MS,
    );
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut r = good.clone();
                r.not_after_ms = r.requested_at_ms + 5 * HOUR_MS;
                request_json(&r, key)
            },
            "not_after_ms",
        ),
        (
            {
                let mut r = good.clone();
                r.not_after_ms = r.requested_at_ms;
                request_json(&r, key)
            },
            "not_after_ms",
        ),
        (
            {
                let mut r = good.clone();
                r.scopes.clear();
                request_json(&r, key)
            },
            "scopes",
        ),
        (
            {
                let mut r = good.clone();
                r.reason = "x".repeat(501);
                request_json(&r, key)
            },
            "reason",
        ),
        (
            {
                let mut r = good.clone();
                r.reason = " ".into();
                request_json(&r, key)
            },
            "reason",
        ),
        (
            {
                let mut r = good.clone();
                r.id = "not-a-uuid".into();
                request_json(&r, key)
            },
            "id",
        ),
        (
            {
                let mut r = good.clone();
                r.user_id = uuid_v4();
                request_json(&r, key)
            },
            "user_id",
        ),
        (
            {
                let mut j = request_json(&good, key);
                j["scopes"] = json!(["imei"]);
                j
            },
            "scopes",
        ),
        (
            {
                let mut j = request_json(&good, key);
                j["scopes"] = json!(["messaging", "messaging"]);
                j
            },
            "scopes",
        ),
        (
            {
                let mut j = request_json(&good, key);
                j["signature"] = json!("zz");
                j
            },
            "signature",
        ),
        (
            {
                let mut j = request_json(&good, key);
                j["signature"] = json!("abcd");
                j
            },
            "signature",
        ),
        (
            {
                let mut j = request_json(&good, key);
                j["requester"] = json!("Ana Smith");
                j
            },
            "requester",
        ),
    ];
    for (body, field) in cases {
        let reply = app
            .call(Method::POST, "/v1/ops/requests", None, Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["field"], field, "{body}: {:?}", reply.body);
    }
    let mut extra = request_json(&good, key);
    extra["imei"] = json!("490154203237518");
    let reply = app
        .call(Method::POST, "/v1/ops/requests", None, Some(extra))
        .await;
    assert_eq!(reply.code(), "unknown_field");
    assert_eq!(submit(&app, &good, key).await.status, StatusCode::CREATED);
    assert_eq!(submit(&app, &good, key).await.status, StatusCode::CONFLICT);
    let unknown_decision = app
        .call(
            Method::POST,
            &format!("/v1/ops/requests/{}/bless", good.id),
            None,
            Some(json!({"operator": "ben", "signed_at_ms": 0, "signature": "00"})),
        )
        .await;
    assert_eq!(unknown_decision.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ledger_verify_names_the_first_changed_entry() {
    let (app, alice_id, _, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    sovereign_cloud::retention::sweep(&app.state).await.unwrap();
    let summary = app.verify_ledger().unwrap();
    assert_eq!(summary.entries, 5);
    assert!(summary.checkpoints >= 1);

    if app.database.is_some() {
        // On PostgreSQL there is no file to edit: someone with the server's superuser turns the
        // append-only triggers off and changes one byte of entry 2's leaf hash.
        app.db()
            .execute_batch(
                "ALTER TABLE ledger_entries DISABLE TRIGGER USER; \
                 UPDATE ledger_entries SET leaf_hash = set_byte(leaf_hash, 7, get_byte(leaf_hash, 7) # 1) \
                 WHERE seq = 2; ALTER TABLE ledger_entries ENABLE TRIGGER USER",
            )
            .unwrap();
    } else {
        flip_leaf_byte_in_file(&app);
    }
    let fault = app.verify_ledger().unwrap_err();
    assert_eq!(fault, sovereign_cloud::ledger::LedgerFault::Leaf { seq: 2 });
    assert_eq!(
        fault.to_string(),
        "entry 2: its fields do not match its leaf hash"
    );
}

/// Flushes the WAL into the main file, then changes one byte of entry 2's leaf hash there.
fn flip_leaf_byte_in_file(app: &TestApp) {
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let leaf: Vec<u8> = conn
        .query_row(
            "SELECT leaf_hash FROM ledger_entries WHERE seq = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let mut file = std::fs::read(app.db_path()).unwrap();
    let at = file
        .windows(32)
        .position(|w| w == leaf.as_slice())
        .expect("leaf hash in the file");
    file[at + 7] ^= 0x01;
    std::fs::write(app.db_path(), &file).unwrap();
}

#[tokio::test]
async fn the_ledger_is_append_only_in_the_store() {
    let (app, alice_id, _, ops) = setup().await;
    open_grant(&app, &alice_id, &ops).await;
    let conn = app.db();
    for sql in [
        "DELETE FROM ledger_entries WHERE seq = 1",
        "UPDATE ledger_entries SET operator = 'mallory' WHERE seq = 1",
        "UPDATE ledger_entries SET detail = '{}' WHERE seq = 1",
    ] {
        let error = conn.execute(sql, &[]).unwrap_err();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    // Only retention's erasure of a detail is allowed.
    conn.execute("UPDATE ledger_entries SET detail = NULL WHERE seq = 1", &[])
        .unwrap();
}

#[tokio::test]
async fn many_entries_and_checkpoints_verify_and_prove() {
    let app = spawn_app_with(|p| p.ops.ledger_checkpoint_entries = 3).await;
    let alice_id = app.sign_up(ALICE).await;
    let alice = app.sign_in(ALICE).await;
    let ops = operators(&app, &["ana", "ben", "cat"]).await;
    for _ in 0..7 {
        let request = access_request(&app, &ops[0], &alice_id, &[ConsentScope::Location], HOUR_MS);
        assert_eq!(
            submit(&app, &request, &ops[0].key).await.status,
            StatusCode::CREATED
        );
        decide(&app, &request, &ops[1], Decision::Deny).await;
        app.clock.advance_ms(1);
    }
    let summary = app.verify_ledger().unwrap();
    assert_eq!(summary.entries, 14);
    assert_eq!(summary.checkpoints, 4, "at 3, 6, 9 and 12 entries");
    let log = app.get("/v1/me/access-log", &alice).await;
    assert_eq!(log.body["checkpoint"]["tree_size"], 14);
    assert_eq!(log.body["entries"].as_array().unwrap().len(), 14);
    check_proofs(&app, &log.body);
}

/// Issue 12, item 6: an operator's read of the photos scope comes a page at a time (each page
/// a `read` entry), never the whole scope in one answer.
#[tokio::test]
async fn an_operators_photo_read_is_paged_and_each_page_is_a_ledger_read() {
    let app = spawn_app_with(|p| p.limits.export_page_rows = 2).await;
    let alice_id = app.sign_up(ALICE).await;
    let alice = app.sign_in(ALICE).await;
    app.grant(&alice, "backup.photos").await;
    for n in 0..5u8 {
        let put = app
            .raw(
                app.request(Method::PUT, &format!("/v1/backup/photos/p{n}.jpg"), &alice)
                    .header("content-type", "image/jpeg")
                    .body(vec![n; 1000]),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    let ops = operators(&app, &["ana", "ben", "cat"]).await;
    let request = access_request(
        &app,
        &ops[0],
        &alice_id,
        &[ConsentScope::BackupPhotos],
        HOUR_MS,
    );
    assert_eq!(
        submit(&app, &request, &ops[0].key).await.status,
        StatusCode::CREATED
    );
    for approver in &ops[1..] {
        let decided = decide(&app, &request, approver, Decision::Approve).await;
        assert_eq!(decided.status, StatusCode::OK);
    }
    let reads = || {
        app.db()
            .count("SELECT count(*) FROM ledger_entries WHERE kind = 'read'")
    };
    let before = reads();
    let base = data_path(&request, "backup.photos");
    let mut path = base.clone();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = signed_get(&app, &ops[0], &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        pages += 1;
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{} items in one page", items.len());
        names.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page.body["next"].as_str() {
            Some(next) => path = format!("{base}?after={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg"]);
    assert_eq!(pages, 3);
    assert_eq!(reads() - before, 3, "one read entry per page");
    // The cursor is signed with the path: a signature for one page does not open another.
    let at = app.clock.now_ms();
    let signature = ops[0].key.sign(&http_bytes("in-mumbai", "GET", &base, at));
    let swapped = app
        .raw(
            app.client
                .get(format!("{}{base}?after=p1.jpg", app.base))
                .header("sovereign-operator", &ops[0].name)
                .header("sovereign-signed-at", at.to_string())
                .header("sovereign-signature", hex(&signature)),
        )
        .await;
    assert_eq!(swapped.status, StatusCode::UNAUTHORIZED);
    assert_eq!(swapped.code(), "bad_signature");
}
