//! Rate limits as an attacker with many addresses meets them: guesses against one number and
//! sign-up texts to one number are bounded whatever the source.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// A client whose connections come from `source` (any of 127.0.0.0/8 works on loopback).
pub fn client_from(app: &TestApp, source: IpAddr) -> reqwest::Client {
    let port = app.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap())
        .local_address(source)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

#[tokio::test]
async fn password_guesses_against_one_number_are_bounded_whatever_the_source() {
    let app = spawn_app_with(|p| {
        p.limits.logins_per_minute = 20;
        p.limits.logins_per_account_per_hour = 5;
    })
    .await;
    app.sign_up(ALICE).await;
    let mut answers = Vec::new();
    for n in 2..=31u8 {
        // Each address guesses once: far below its own allowance.
        let client = client_from(&app, source(n));
        let reply = client
            .post(format!("{}/v1/sessions", app.base))
            .json(&json!({"phone": ALICE, "password": format!("guess number {n}"), "device_name": "x"}))
            .send()
            .await
            .unwrap();
        answers.push(reply.status());
    }
    let guessed = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((guessed, refused), (5, 25), "{answers:?}");
    // Another number is not affected.
    app.sign_up(BOB).await;
    let client = client_from(&app, source(40));
    let reply = client
        .post(format!("{}/v1/sessions", app.base))
        .json(&json!({"phone": BOB, "password": "correct horse battery", "device_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn sign_up_texts_to_one_number_are_bounded_whatever_the_source() {
    let app = spawn_app_with(|p| {
        p.limits.signups_per_minute = 10;
        p.limits.signups_per_phone_per_hour = 3;
    })
    .await;
    let mut accepted = 0;
    for n in 2..=21u8 {
        let client = client_from(&app, source(n));
        let reply = client
            .post(format!("{}/v1/accounts", app.base))
            .json(&json!({"phone": BOB, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        match reply.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(reply.headers().contains_key("retry-after"));
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(accepted, 3);
    let outbox = std::fs::read_to_string(app.dir.path().join("sms-outbox.jsonl")).unwrap();
    let texts = outbox.lines().filter(|l| l.contains(BOB)).count();
    assert_eq!(texts, 3, "texts sent to the victim's number");
    // Another number can still sign up.
    app.sign_up(CAROL).await;
}
