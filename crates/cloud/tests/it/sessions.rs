//! A user's sessions: listed, ended one by one (their tokens refused at once, their WebSockets
//! closed promptly), and the WebSocket's own bounds: message and frame size, sockets per user.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::support::*;

async fn sign_in_as(app: &TestApp, phone: &str, device: &str) -> String {
    let reply = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(
                json!({"phone": phone, "password": "correct horse battery", "device_name": device}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["token"].as_str().unwrap().to_owned()
}

/// Opens the push socket with `token`; `Err` with the HTTP status when it is refused.
async fn open_socket(app: &TestApp, token: &str) -> Result<Socket, u16> {
    open_socket_at(&app.base, &app.ca_pem, token).await
}

#[tokio::test]
async fn a_user_lists_their_sessions_and_ends_one() {
    let app = spawn_app().await;
    app.sign_up(ALICE).await;
    let phone = sign_in_as(&app, ALICE, "Alice's phone").await;
    let laptop = sign_in_as(&app, ALICE, "Alice's laptop").await;
    let listed = app.get("/v1/sessions", &phone).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let sessions = listed.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let by_name = |name: &str| -> Value {
        sessions
            .iter()
            .find(|s| s["device_name"] == name)
            .cloned()
            .unwrap()
    };
    let (mine, other) = (by_name("Alice's phone"), by_name("Alice's laptop"));
    assert_eq!(mine["current"], true);
    assert_eq!(other["current"], false);
    for s in [&mine, &other] {
        assert!(s["created_at"].is_string() && s["expires_at"].is_string());
        assert!(s["last_seen_at"].is_string(), "{s}");
    }

    // Another user cannot end Alice's session, nor learn that it exists.
    app.sign_up(BOB).await;
    let bob = sign_in_as(&app, BOB, "Bob's phone").await;
    let path = format!("/v1/sessions/{}", other["id"].as_str().unwrap());
    let reply = app.call(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/me", &laptop).await.status, StatusCode::OK);

    let reply = app.call(Method::DELETE, &path, Some(&phone), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    // The laptop's token is refused at once.
    assert_eq!(
        app.get("/v1/me", &laptop).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = app.call(Method::DELETE, &path, Some(&phone), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let listed = app.get("/v1/sessions", &phone).await;
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 1);

    // Ending this session signs this device out.
    let path = format!("/v1/sessions/{}", mine["id"].as_str().unwrap());
    let reply = app.call(Method::DELETE, &path, Some(&phone), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/me", &phone).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_revoked_sessions_socket_closes_at_once() {
    let app = spawn_app().await;
    app.sign_up(ALICE).await;
    let phone = sign_in_as(&app, ALICE, "phone").await;
    let stolen = sign_in_as(&app, ALICE, "stolen laptop").await;
    let mut socket = open_socket(&app, &stolen).await.unwrap();
    let mut kept = open_socket(&app, &phone).await.unwrap();
    let sessions = app.get("/v1/sessions", &phone).await.body["sessions"].clone();
    let id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_name"] == "stolen laptop")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(&phone),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    // Well before the sockets' periodic check (5 s) would notice.
    assert_eq!(
        closed_within(&mut socket, Duration::from_secs(3)).await,
        Some(1008)
    );
    // The other session's socket stays open: a ping is answered.
    kept.send(Message::Ping(vec![1].into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(10), kept.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(pong, Message::Pong(_)), "{pong:?}");
}

#[tokio::test]
async fn an_expired_sessions_socket_closes() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let mut socket = open_socket(&app, &token).await.unwrap();
    let days = i64::from(app.state.policies.retention.sessions_days);
    app.clock.advance_ms(days * 86_400_000 + 1);
    // No sleeping for the expiry: the clock moved; the socket's check notices within its period.
    assert_eq!(
        closed_within(&mut socket, Duration::from_secs(15)).await,
        Some(1008)
    );
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_sockets_and_they_are_counted() {
    use sovereign_cloud::hub::WS_SOCKETS_PER_USER_MAX;
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let mut sockets = Vec::new();
    for _ in 0..WS_SOCKETS_PER_USER_MAX {
        sockets.push(open_socket(&app, &token).await.unwrap());
    }
    assert_eq!(open_socket(&app, &token).await.err(), Some(429));
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.bytes).into_owned();
    assert!(
        text.contains(&format!(
            "sovereign_websockets_open {WS_SOCKETS_PER_USER_MAX}"
        )),
        "{text}"
    );
    assert!(
        text.contains("sovereign_websockets_refused_total 1"),
        "{text}"
    );
    // Another user is not affected, and closing one frees a place.
    let bob = app.user(BOB).await;
    assert!(open_socket(&app, &bob).await.is_ok());
    let mut one = sockets.pop().unwrap();
    one.close(None).await.unwrap();
    while one.next().await.is_some() {}
    let mut reopened = None;
    for _ in 0..50 {
        match open_socket(&app, &token).await {
            Ok(socket) => {
                reopened = Some(socket);
                break;
            }
            Err(429) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        reopened.is_some(),
        "a closed socket's place was never freed"
    );
}

#[tokio::test]
async fn oversized_websocket_frames_and_messages_close_the_socket() {
    use sovereign_cloud::routes::messages::{WS_FRAME_BYTES_MAX, WS_MESSAGE_BYTES_MAX};
    let app = spawn_app().await;
    let token = app.user(ALICE).await;

    // Within both limits: answered (an error frame for a message that is not an ack).
    let mut socket = open_socket(&app, &token).await.unwrap();
    socket
        .send(Message::Text("x".repeat(WS_FRAME_BYTES_MAX - 16).into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(answer.into_text().unwrap().contains("error"));

    // One frame over the frame limit (the message would be within its limit).
    let mut socket = open_socket(&app, &token).await.unwrap();
    let frame = Frame::message(
        "x".repeat(WS_FRAME_BYTES_MAX + 1).into_bytes(),
        OpCode::Data(Data::Text),
        true,
    );
    socket.send(Message::Frame(frame)).await.unwrap();
    assert_ne!(
        closed_within(&mut socket, Duration::from_secs(10)).await,
        Some(1000)
    );

    // A message over the message limit in frames each within the frame limit.
    let mut socket = open_socket(&app, &token).await.unwrap();
    let pieces = WS_MESSAGE_BYTES_MAX / WS_FRAME_BYTES_MAX + 1;
    for i in 0..pieces {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(
            "x".repeat(WS_FRAME_BYTES_MAX).into_bytes(),
            opcode,
            i + 1 == pieces,
        );
        if socket.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    assert_ne!(
        closed_within(&mut socket, Duration::from_secs(10)).await,
        Some(1000)
    );
}
