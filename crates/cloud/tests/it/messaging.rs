use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

async fn opted_in_pair(app: &TestApp) -> (String, String) {
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    (alice, bob)
}

#[tokio::test]
async fn send_poll_and_acknowledge() {
    let app = spawn_app().await;
    let (alice, bob) = opted_in_pair(&app).await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": "+91 98765 43210", "body": "hello bob"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let id = sent.body["id"].as_str().unwrap().to_owned();

    let page = app.get("/v1/messages", &bob).await;
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], id.as_str());
    assert_eq!(messages[0]["from"], ALICE);
    assert_eq!(messages[0]["body"], "hello bob");
    assert!(messages[0].get("delivered_at").is_none());
    let cursor = page.body["cursor"].as_str().unwrap().to_owned();
    let empty = app.get(&format!("/v1/messages?after={cursor}"), &bob).await;
    assert!(empty.body["messages"].as_array().unwrap().is_empty());
    assert_eq!(empty.body["cursor"], cursor.as_str());

    let ack = app
        .call(
            Method::POST,
            &format!("/v1/messages/{id}/ack"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(ack.status, StatusCode::NO_CONTENT);
    let page = app.get("/v1/messages", &bob).await;
    assert!(page.body["messages"][0]["delivered_at"].is_string());
    // Alice keeps her own copy, in her sent box; she cannot acknowledge Bob's.
    let sent_box = app.get("/v1/messages?box=sent", &alice).await;
    assert_eq!(sent_box.body["messages"][0]["to"], BOB);
    let not_hers = app
        .call(
            Method::POST,
            &format!("/v1/messages/{id}/ack"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(not_hers.status, StatusCode::NOT_FOUND);
    let bad_cursor = app.get("/v1/messages?after=-4", &bob).await;
    assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unknown_and_unwilling_recipients_look_the_same() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    app.grant(&alice, "messaging").await;
    app.user(BOB).await; // has an account, never opted in
    let to_bob = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "hi"})),
        )
        .await;
    let to_nobody = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": CAROL, "body": "hi"})),
        )
        .await;
    assert_eq!(to_bob.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(to_bob.code(), "recipient_unavailable");
    assert_eq!(
        to_bob.bytes, to_nobody.bytes,
        "the answers must be byte-identical"
    );
}

#[tokio::test]
async fn messages_are_pushed_over_websocket() {
    let app = spawn_app().await;
    let (alice, bob) = opted_in_pair(&app).await;
    // One message waiting before the socket opens, one sent while it is open.
    app.call(
        Method::POST,
        "/v1/messages",
        Some(&alice),
        Some(json!({"to": BOB, "body": "while you were away"})),
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&app.ca_pem) {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("{}/v1/messages/ws", app.base.replace("https", "wss"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {bob}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();

    let first = next_frame(&mut socket).await;
    assert_eq!(first["type"], "message");
    assert_eq!(first["body"], "while you were away");
    socket
        .send(json!({"ack": first["id"]}).to_string().into())
        .await
        .unwrap();

    app.call(
        Method::POST,
        "/v1/messages",
        Some(&alice),
        Some(json!({"to": BOB, "body": "live"})),
    )
    .await;
    let second = next_frame(&mut socket).await;
    assert_eq!(second["body"], "live");
    assert_eq!(second["from"], ALICE);

    socket.send("not json".into()).await.unwrap();
    let error = next_frame(&mut socket).await;
    assert_eq!(error["type"], "error");

    // The acknowledgement over the socket was recorded.
    let page = app.get("/v1/messages", &bob).await;
    assert!(page.body["messages"][0]["delivered_at"].is_string());

    // Without a token there is no socket.
    let url = format!("{}/v1/messages/ws", app.base.replace("https", "wss"));
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(rustls_pemfile_certs(&app.ca_pem).remove(0)).unwrap();
            r
        })
        .with_no_client_auth();
    let refused = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await;
    assert!(refused.is_err());
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(socket: &mut Socket) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("no push within 10 s");
    let text = frame.unwrap().unwrap().into_text().unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

#[tokio::test]
async fn messages_stored_before_messaging_had_its_own_key_still_open() {
    let app = spawn_app().await;
    let (alice, bob) = opted_in_pair(&app).await;
    let sent = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(json!({"to": BOB, "body": "new"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    let bob_id = app.get("/v1/me", &bob).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An older version sealed Bob's copy with his account key, not his messaging key.
    let db = app.db();
    let wrapped: Vec<u8> = db
        .query_row(
            "SELECT wrapped_key FROM users WHERE id = ?1",
            &[SqlValue::from(bob_id.as_str())],
            |r| r.get(0),
        )
        .unwrap();
    let owner = sovereign_cloud::domain::UserId::from_stored(bob_id.clone());
    let account = app.state.keys.unwrap(&wrapped, &owner).unwrap();
    let aad = |field: &str| format!("messages/{bob_id}/inbox:{id}/{field}").into_bytes();
    let peer = account.seal(&aad("peer"), ALICE.as_bytes()).unwrap();
    let body = account
        .seal(&aad("body"), b"stored by an older version")
        .unwrap();
    db.execute(
        "UPDATE messages SET peer_sealed = ?1, body_sealed = ?2 WHERE owner_id = ?3 AND box = 'inbox'",
        &[
            SqlValue::from(peer),
            SqlValue::from(body),
            SqlValue::from(bob_id.as_str()),
        ],
    )
    .unwrap();
    let page = app.get("/v1/messages", &bob).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert_eq!(
        page.body["messages"][0]["body"],
        "stored by an older version"
    );
    assert_eq!(page.body["messages"][0]["from"], ALICE);
    // A row that opens with neither key is an error, not someone else's message.
    db.execute(
        "UPDATE messages SET body_sealed = ?1 WHERE owner_id = ?2 AND box = 'inbox'",
        &[
            SqlValue::from(vec![7u8; 60]),
            SqlValue::from(bob_id.as_str()),
        ],
    )
    .unwrap();
    let page = app.get("/v1/messages", &bob).await;
    assert_eq!(
        page.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        page.body
    );
}
