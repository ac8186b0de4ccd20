use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unknown_fields_are_rejected_by_name() {
    let app = spawn_app().await;
    for field in ["imei", "imsi", "iccid"] {
        let mut body = json!({"phone": ALICE, "password": "correct horse battery"});
        body[field] = json!("861234567890123");
        let reply = app
            .call(Method::POST, "/v1/accounts", None, Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.code(), "unknown_field");
        assert_eq!(reply.body["field"], field);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
    }
    let token = app.user(BOB).await;
    let reply = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&token),
            Some(json!({"to": ALICE, "body": "x", "imsi": "1"})),
        )
        .await;
    assert_eq!(reply.code(), "unknown_field");
}

#[tokio::test]
async fn the_api_has_no_field_for_hardware_identifiers() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["paths"]["/v1/accounts"]["post"].is_object());
    assert!(reply.body["paths"]["/v1/ops/requests"]["post"].is_object());
    assert!(reply.body["paths"]["/v1/me/access-log"]["get"].is_object());
    let text = String::from_utf8_lossy(&reply.bytes).to_lowercase();
    for word in ["imei", "imsi", "iccid"] {
        assert!(!text.contains(word), "the API description mentions {word}");
    }
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let post = |body: &'static str, content_type: &'static str| {
        app.raw(
            app.client
                .post(format!("{}/v1/accounts", app.base))
                .header("content-type", content_type)
                .body(body),
        )
    };
    let cases = [
        (
            post("{\"phone\": ", "application/json").await,
            400,
            "malformed_json",
        ),
        (
            post("not json", "application/json").await,
            400,
            "malformed_json",
        ),
        (
            post(
                "{\"phone\": 5, \"password\": \"correct horse\"}",
                "application/json",
            )
            .await,
            422,
            "invalid_field",
        ),
        (
            post("{\"password\": \"correct horse\"}", "application/json").await,
            422,
            "invalid_field",
        ),
        (
            post(
                "{\"phone\": \"+919812345678\", \"password\": \"short\"}",
                "application/json",
            )
            .await,
            422,
            "invalid_field",
        ),
        (
            post(
                "{\"phone\": \"+919812345678\", \"password\": \"correct horse\"} trailing",
                "application/json",
            )
            .await,
            400,
            "malformed_json",
        ),
        (
            post("{}", "text/plain").await,
            415,
            "unsupported_media_type",
        ),
    ];
    for (reply, status, code) in cases {
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (status, code),
            "{:?}",
            reply.body
        );
        assert!(reply.body["detail"].is_string());
    }
    let wrong_type = post(
        "{\"phone\": 5, \"password\": \"correct horse\"}",
        "application/json",
    )
    .await;
    assert_eq!(wrong_type.body["field"], "phone");
    let missing = post("{\"password\": \"correct horse\"}", "application/json").await;
    assert_eq!(missing.body["field"], "phone");
    // Nothing was half-written by any of them.
    assert!(!app.dir.path().join("sms-outbox.jsonl").exists());
}

#[tokio::test]
async fn invalid_phone_numbers_get_422() {
    let app = spawn_app().await;
    for phone in [
        "12345",
        "+91 12",
        "98123 45678",
        "+000000000000",
        "phone",
        &"9".repeat(1000),
    ] {
        let reply = app
            .call(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"phone": phone, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{phone}");
        assert_eq!(reply.code(), "invalid_phone");
    }
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let app = spawn_app().await;
    let huge = format!(
        "{{\"phone\": \"{}\", \"password\": \"x\"}}",
        "9".repeat(app.state.policies.limits.json_body_bytes_max)
    );
    let reply = app
        .raw(
            app.client
                .post(format!("{}/v1/accounts", app.base))
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_too() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/v1/nothing-here", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
    let reply = app.call(Method::PATCH, "/v1/accounts", None, None).await;
    assert_eq!(reply.code(), "invalid_field");
}

#[tokio::test]
async fn metrics_count_requests() {
    let app = spawn_app().await;
    app.call(Method::GET, "/healthz", None, None).await;
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&reply.bytes);
    assert!(
        text.contains(
            "sovereign_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn made_up_methods_add_no_metrics_series() {
    let app = spawn_app().await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("sovereign_http_requests_total{"))
            .count()
    };
    for n in 0..200 {
        let method = Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        app.call(method, "/healthz", None, None).await;
    }
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&reply.bytes).into_owned();
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    // 200 made-up methods on one route and status: one series.
    assert!(series(&text) <= 3, "{text}");
}
