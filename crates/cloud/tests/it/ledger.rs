//! Issue 12, finding 3: the ledger as an insider with database access would attack it, and as an
//! outsider holding only the region's public key would check it.

use reqwest::{Method, StatusCode};
use sovereign_cloud::clock::Clock as _;
use sovereign_cloud::ledger::expected_leaf;
use sovereign_cloud::store::LedgerRow;
use sovereign_crypto::{SigningKey, chain_hash, frontier_push};

use crate::ops::{data_path, open_grant, operators, setup, signed_get};
use crate::support::*;

/// Every entry as stored.
fn rows(db: &TestDb) -> Vec<LedgerRow> {
    let n = db.count("SELECT count(*) FROM ledger_entries");
    (0..n)
        .map(|seq| {
            db.query_row(
                "SELECT seq, at, kind, user_id, request_id, operator, detail, detail_hash, \
                 leaf_hash, chain_hash FROM ledger_entries WHERE seq = ?1",
                &[SqlValue::from(seq)],
                |r| {
                    Ok(LedgerRow {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        user_id: r.get(3)?,
                        request_id: r.get(4)?,
                        operator: r.get(5)?,
                        detail: r.get(6)?,
                        detail_hash: r.get(7)?,
                        leaf_hash: r.get(8)?,
                        chain_hash: r.get(9)?,
                    })
                },
            )
            .unwrap()
        })
        .collect()
}

/// Turns the append-only triggers of `table` off, as an insider with the database's owner would.
fn drop_triggers(app: &TestApp, table: &str) {
    let db = app.db();
    if app.database.is_some() {
        db.execute_batch(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .unwrap();
    } else {
        let names: Vec<String> = {
            let conn = rusqlite::Connection::open(app.db_path()).unwrap();
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1")
                .unwrap();
            stmt.query_map([table], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for name in names {
            db.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
        }
    }
}

/// The insider's rewrite: entry `seq` now names `operator`, and its leaf, its chain link and every
/// later link, and the stored frontier, are recomputed so that the tables agree with themselves.
/// Nothing is signed: the insider has the database, not the region's ledger key.
fn rewrite_entry(app: &TestApp, seq: i64, operator: &str) {
    drop_triggers(app, "ledger_entries");
    let db = app.db();
    let mut all = rows(&db);
    all[seq as usize].operator = operator.to_owned();
    let mut previous = [0u8; 32];
    let mut frontier = Vec::new();
    for row in &mut all {
        let leaf = expected_leaf(row);
        let chain = chain_hash(&previous, &leaf);
        if row.seq >= seq {
            db.execute(
                "UPDATE ledger_entries SET operator = ?1, leaf_hash = ?2, chain_hash = ?3 \
                 WHERE seq = ?4",
                &[
                    SqlValue::from(row.operator.clone()),
                    SqlValue::from(leaf.to_vec()),
                    SqlValue::from(chain.to_vec()),
                    SqlValue::from(row.seq),
                ],
            )
            .unwrap();
        }
        previous = chain;
        frontier_push(&mut frontier, leaf);
    }
    db.execute("DELETE FROM ledger_frontier", &[]).unwrap();
    for (height, hash) in frontier.iter().enumerate() {
        if let Some(hash) = hash {
            db.execute(
                "INSERT INTO ledger_frontier (height, hash) VALUES (?1, ?2)",
                &[SqlValue::from(height as i64), SqlValue::from(hash.to_vec())],
            )
            .unwrap();
        }
    }
}

#[tokio::test]
async fn a_tail_entry_rewritten_in_the_database_fails_verify_at_that_entry() {
    let (app, alice_id, _, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    sovereign_cloud::retention::sweep(&app.state).await.unwrap();
    // One more entry after the last checkpoint: the tail no checkpoint covers yet.
    let read = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    let last = app.db().count("SELECT max(seq) FROM ledger_entries");
    assert!(app.verify_ledger().is_ok());

    rewrite_entry(&app, last, "nobody");
    let fault = app.verify_ledger().unwrap_err();
    assert!(
        fault.to_string().starts_with(&format!("entry {last}:")),
        "{fault}"
    );
}

#[tokio::test]
async fn checkpoints_are_append_only_and_a_deleted_one_fails_verify() {
    let app = spawn_app_with(|p| p.ops.ledger_checkpoint_entries = 3).await;
    let alice_id = app.sign_up(ALICE).await;
    let ops = operators(&app, &["ana", "ben", "cat"]).await;
    let request = open_grant(&app, &alice_id, &ops).await;
    for _ in 0..3 {
        signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    }
    let db = app.db();
    let sizes = db.count("SELECT count(*) FROM ledger_checkpoints");
    assert!(sizes >= 2, "{sizes} checkpoints");
    let mut refused = vec![
        "DELETE FROM ledger_checkpoints WHERE tree_size = 3",
        "UPDATE ledger_checkpoints SET at = at + 1 WHERE tree_size = 3",
        "UPDATE ledger_checkpoints SET root = chain_head WHERE tree_size = 3",
    ];
    if app.database.is_some() {
        refused.push("TRUNCATE ledger_checkpoints");
    }
    for sql in refused {
        let error = db.execute_batch(sql).unwrap_err();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert!(app.verify_ledger().is_ok());

    // The insider turns the trigger off and deletes a checkpoint in the middle: the checkpoints
    // left are further apart than the region's bound allows.
    drop_triggers(&app, "ledger_checkpoints");
    db.execute_batch("DELETE FROM ledger_checkpoints WHERE tree_size = 3")
        .unwrap();
    let fault = app.verify_ledger().unwrap_err();
    assert!(fault.to_string().contains("checkpoint"), "{fault}");
}

#[tokio::test]
async fn a_replaced_checkpoint_fails_verify() {
    let app = spawn_app_with(|p| p.ops.ledger_checkpoint_entries = 3).await;
    let alice_id = app.sign_up(ALICE).await;
    let ops = operators(&app, &["ana", "ben", "cat"]).await;
    open_grant(&app, &alice_id, &ops).await;
    drop_triggers(&app, "ledger_checkpoints");
    app.db()
        .execute_batch("UPDATE ledger_checkpoints SET at = at + 1 WHERE tree_size = 3")
        .unwrap();
    let fault = app.verify_ledger().unwrap_err();
    assert!(
        fault.to_string().starts_with("checkpoint at 3 entries"),
        "{fault}"
    );
}

#[tokio::test]
async fn the_server_refuses_to_sign_over_a_rewritten_history() {
    let (app, alice_id, _, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    sovereign_cloud::retention::sweep(&app.state).await.unwrap();
    let signed = app.db().count("SELECT count(*) FROM ledger_checkpoints");
    assert!(signed >= 1);

    // Entry 1, covered by the signed checkpoint, is rewritten with every later link and the
    // frontier recomputed; then the region keeps working and would sign its next head.
    rewrite_entry(&app, 1, "nobody");
    let _ = signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    let swept = sovereign_cloud::retention::sweep(&app.state).await;
    assert!(swept.is_err(), "the sweep signed over a rewritten history");
    assert_eq!(
        app.db().count("SELECT count(*) FROM ledger_checkpoints"),
        signed,
        "a checkpoint was signed over the rewritten history"
    );
    let health = app
        .raw(app.client.get(format!("{}/healthz", app.base)))
        .await;
    assert_eq!(
        health.body["ledger"]["signing"], "refused",
        "{:?}",
        health.body
    );
    assert!(
        health.body["ledger"]["fault"]
            .as_str()
            .unwrap_or("")
            .contains("entry"),
        "{:?}",
        health.body
    );
    let _ = Method::GET;
}

fn hashes(value: &serde_json::Value) -> Vec<[u8; 32]> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            sovereign_crypto::from_hex(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

fn root(checkpoint: &serde_json::Value) -> [u8; 32] {
    sovereign_crypto::from_hex(checkpoint["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn users_get_consistency_proofs_between_heads_and_bad_requests_are_named() {
    let (app, alice_id, alice, ops) = setup().await;
    let request = open_grant(&app, &alice_id, &ops).await;
    let first = app.get("/v1/me/access-log", &alice).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let old = first.body["checkpoint"].clone();
    let old_size = old["tree_size"].as_i64().unwrap();
    for _ in 0..5 {
        signed_get(&app, &ops[0], &data_path(&request, "messaging")).await;
    }
    let later = app
        .get(&format!("/v1/me/access-log?since={old_size}"), &alice)
        .await;
    assert_eq!(later.status, StatusCode::OK, "{:?}", later.body);
    let new = later.body["checkpoint"].clone();
    let new_size = new["tree_size"].as_i64().unwrap();
    assert!(new_size > old_size);
    let consistency = &later.body["consistency"];
    assert_eq!(consistency["from"], old_size);
    assert_eq!(consistency["to"], new_size);
    assert!(sovereign_crypto::verify_consistency(
        old_size as u64,
        new_size as u64,
        &hashes(&consistency["proof"]),
        &root(&old),
        &root(&new),
    ));
    let direct = app
        .get(
            &format!("/v1/me/ledger/consistency?from={old_size}&to={new_size}"),
            &alice,
        )
        .await;
    assert_eq!(direct.status, StatusCode::OK, "{:?}", direct.body);
    assert_eq!(direct.body["proof"], consistency["proof"]);
    // Every size up to the newest is consistent with it.
    for from in 1..=new_size {
        let reply = app
            .get(&format!("/v1/me/ledger/consistency?from={from}"), &alice)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["to"], new_size);
    }

    for (query, field) in [
        ("", "from"),
        ("?from=0", "from"),
        ("?from=-1", "from"),
        ("?from=abc", "from"),
        ("?from=1e3", "from"),
        ("?from=99999999999999999999", "from"),
        (&format!("?from={}", new_size + 1) as &str, "from"),
        ("?from=2&to=1", "to"),
        (&format!("?from=1&to={}", new_size - 1) as &str, "to"),
        ("?from=1&imei=490154203237518", "query"),
    ] {
        let reply = app
            .get(&format!("/v1/me/ledger/consistency{query}"), &alice)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["field"], field, "{query}: {:?}", reply.body);
    }
    let reply = app.get("/v1/me/access-log?since=x", &alice).await;
    assert_eq!(reply.body["field"], "since", "{:?}", reply.body);
    // A remembered head newer than the region's newest is said, not proven.
    let reply = app
        .get(
            &format!("/v1/me/access-log?since={}", new_size + 100),
            &alice,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["consistency"]["proof"].is_null());
    let anonymous = app
        .call(Method::GET, "/v1/me/ledger/consistency?from=1", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn registering_and_revoking_operators_are_ledger_entries() {
    let app = spawn_app().await;
    let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
    let store = &app.state.store;
    let now = app.clock.now_ms();
    store
        .register_operator_recorded(
            app.state.ledger.clone(),
            "dan".into(),
            key.public_key().to_vec(),
            now,
        )
        .await
        .unwrap();
    store
        .revoke_operator_recorded(app.state.ledger.clone(), "dan".into(), now + 1, 2)
        .await
        .unwrap();
    let all = rows(&app.db());
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.kind.as_str(), r.operator.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![("register_operator", "dan"), ("revoke_operator", "dan")]
    );
    assert!(
        all[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(&sovereign_crypto::hex(&key.public_key()))
    );
    assert_eq!(app.verify_ledger().unwrap().entries, 2);
    // Revoking twice is refused and writes nothing.
    assert!(
        store
            .revoke_operator_recorded(app.state.ledger.clone(), "dan".into(), now + 2, 2)
            .await
            .is_err()
    );
    assert_eq!(app.db().count("SELECT count(*) FROM ledger_entries"), 2);
}
