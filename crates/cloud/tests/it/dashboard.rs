//! Issue 5: the privacy dashboard over HTTPS, as a browser speaks to it (forms and cookies).

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use sovereign_cloud::ops::Decision;

use crate::support::*;

pub struct Browser {
    pub client: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value of the first `name="csrf"` field in a page.
pub fn csrf_in(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

/// Where a browser sends its requests: a single-region test app, or one region's URL.
pub trait Site {
    fn base(&self) -> &str;
}

impl Site for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
}

impl Site for String {
    fn base(&self) -> &str {
        self
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser::trusting(&app.ca_pem)
    }

    pub fn trusting(ca_pem: &[u8]) -> Browser {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            client,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, headers: &HeaderMap) {
        for line in set_cookies(headers) {
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub async fn get(&mut self, app: &impl Site, path: &str) -> (StatusCode, HeaderMap, String) {
        let response = self
            .client
            .get(format!("{}{path}", app.base()))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.remember(&headers);
        (status, headers, response.text().await.unwrap())
    }

    pub async fn post(
        &mut self,
        app: &impl Site,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let response = self
            .client
            .post(format!("{}{path}", app.base()))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.remember(&headers);
        (status, headers, response.text().await.unwrap())
    }

    /// Signs in through the forms; returns the dashboard page.
    pub async fn sign_in(&mut self, app: &impl Site, phone: &str) -> String {
        let (_, _, page) = self.get(app, "/").await;
        let csrf = csrf_in(&page);
        let (status, headers, _) = self
            .post(
                app,
                "/sign-in",
                &[
                    ("csrf", &csrf),
                    ("phone", phone),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/");
        let (status, _, page) = self.get(app, "/").await;
        assert_eq!(status, StatusCode::OK);
        page
    }
}

#[tokio::test]
async fn the_dashboard_shows_only_your_own_data_with_secure_cookies_and_a_csp() {
    let app = spawn_app().await;
    let alice = app.user(ALICE).await;
    let bob = app.user(BOB).await;
    app.grant(&alice, "messaging").await;
    app.grant(&bob, "messaging").await;
    app.call(
        reqwest::Method::POST,
        "/v1/messages",
        Some(&bob),
        Some(json!({"to": ALICE, "body": "see you at 8"})),
    )
    .await;

    let mut browser = Browser::new(&app);
    let (status, headers, page) = browser.get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<form method=\"post\" action=\"/sign-in\""),
        "{page}"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(!page.contains("<script"), "no JavaScript at all");

    let mut signed_in = Browser::new(&app);
    let (_, _, page) = signed_in.get(&app, "/").await;
    let csrf = csrf_in(&page);
    let (_, headers, _) = signed_in
        .post(
            &app,
            "/sign-in",
            &[
                ("csrf", &csrf),
                ("phone", ALICE),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("__Host-sovereign-session="))
        .unwrap();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            session.split("; ").any(|a| a == attribute),
            "{attribute} in {session}"
        );
    }
    assert!(
        !session.contains("Domain="),
        "__Host- cookies have no Domain: {session}"
    );
    let (_, _, page) = signed_in.get(&app, "/").await;
    assert!(page.contains(ALICE), "{page}");
    assert!(!page.contains(BOB), "{page}");
    assert!(page.contains("data-category=\"undelivered_messages\"><th scope=\"row\">Messages waiting for delivery</th><td>1</td>"), "{page}");
    assert!(page.contains("in-mumbai"));
    // The stored token is a digest: the cookie's value is nowhere in the store.
    let token = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let db = app.db().bytes_at_rest();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    let (status, headers, export) = signed_in.get(&app, "/export").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(export["account"]["phone"], ALICE);
    assert_eq!(export["messages"][0]["body"], "see you at 8");

    let mut bobs = Browser::new(&app);
    let page = bobs.sign_in(&app, BOB).await;
    assert!(page.contains(BOB) && !page.contains(ALICE), "{page}");
    let (_, _, export) = bobs.get(&app, "/export").await;
    let export: serde_json::Value = serde_json::from_str(&export).unwrap();
    // Bob holds only his own copy of what he sent, never Alice's inbox.
    let boxes: Vec<&str> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["box"].as_str().unwrap())
        .collect();
    assert_eq!(boxes, ["sent"]);
    assert_eq!(export["account"]["phone"], BOB);
}

#[tokio::test]
async fn forms_need_this_sessions_csrf_token() {
    let app = spawn_app().await;
    app.user(ALICE).await;
    app.user(BOB).await;
    let mut alice = Browser::new(&app);
    let alice_page = alice.sign_in(&app, ALICE).await;
    let alice_csrf = csrf_in(&alice_page);
    let mut bob = Browser::new(&app);
    let bob_page = bob.sign_in(&app, BOB).await;
    let bob_csrf = csrf_in(&bob_page);
    assert_ne!(alice_csrf, bob_csrf);

    let (status, _, page) = alice
        .post(
            &app,
            "/consents/messaging",
            &[("csrf", "0000"), ("switch", "on")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("data-code=\"csrf_rejected\""), "{page}");
    // Alice's token does not work in Bob's session: a token is bound to its session.
    let (status, _, _) = bob
        .post(
            &app,
            "/consents/messaging",
            &[("csrf", &alice_csrf), ("switch", "on")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, page) = alice
        .post(&app, "/consents/messaging", &[("switch", "on")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    let (status, _, _) = alice
        .post(
            &app,
            "/delete-account",
            &[("csrf", &bob_csrf), ("confirm", "delete my account")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Sign-in needs the double-submit cookie: a form posted from elsewhere has no cookie.
    let mut stranger = Browser::new(&app);
    let (status, _, _) = stranger
        .post(
            &app,
            "/sign-in",
            &[
                ("csrf", "abc"),
                ("phone", ALICE),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A forged session cookie is just signed out.
    let mut forger = Browser::new(&app);
    forger
        .cookies
        .push(("__Host-sovereign-session".into(), "forged-token".into()));
    let (status, _, page) = forger.get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("action=\"/sign-in\"") && !page.contains(ALICE));
    let (status, _, _) = forger.get(&app, "/export").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Bad form input is a clear page, never a crash.
    let huge = "x".repeat(sovereign_cloud::routes::dashboard::FORM_BODY_BYTES_MAX);
    let (status, _, page) = alice
        .post(
            &app,
            "/consents/messaging",
            &[("csrf", &alice_csrf), ("switch", &huge)],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{page}");
    assert!(page.contains("data-code=\"payload_too_large\""), "{page}");
    let (status, _, page) = alice
        .post(
            &app,
            "/consents/messaging",
            &[("csrf", &alice_csrf), ("switch", "maybe")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("must be on or off"), "{page}");
    let (status, _, _) = alice
        .post(
            &app,
            "/consents/imei",
            &[("csrf", &alice_csrf), ("switch", "on")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, page) = alice
        .post(
            &app,
            "/consents/messaging",
            &[("csrf", &alice_csrf), ("switch", "on"), ("user_id", "x")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
}

#[tokio::test]
async fn consents_switch_and_the_account_is_deleted_only_after_confirmation() {
    let app = spawn_app().await;
    let token = app.user(ALICE).await;
    let mut browser = Browser::new(&app);
    let page = browser.sign_in(&app, ALICE).await;
    let csrf = csrf_in(&page);
    let (status, headers, _) = browser
        .post(
            &app,
            "/consents/backup.sms",
            &[("csrf", &csrf), ("switch", "on")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/#consents");
    let consents = app.get("/v1/consents", &token).await;
    let sms = consents.body["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scope"] == "backup.sms")
        .unwrap()
        .clone();
    assert_eq!(sms["granted"], true);
    let (_, _, page) = browser.get(&app, "/").await;
    assert!(
        page.contains("aria-label=\"Switch off backup.sms\""),
        "{page}"
    );
    browser
        .post(
            &app,
            "/consents/backup.sms",
            &[("csrf", &csrf), ("switch", "off")],
        )
        .await;
    let history = app.get("/v1/consents/history", &token).await;
    assert_eq!(history.body.as_array().unwrap().len(), 2);

    let (status, _, page) = browser
        .post(
            &app,
            "/delete-account",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("delete my account"));
    assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
    let (status, _, page) = browser
        .post(
            &app,
            "/delete-account",
            &[("csrf", &csrf), ("confirm", "delete my account")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, _, page) = browser.get(&app, "/").await;
    assert!(page.contains("action=\"/sign-in\""));
}

#[tokio::test]
async fn the_access_log_shows_who_why_and_with_whose_approval() {
    let app = spawn_app().await;
    let alice_id = app.sign_up(ALICE).await;
    let ops = crate::ops::operators(&app, &["ana", "ben", "cat"]).await;
    let now = sovereign_cloud::clock::Clock::now_ms(&*app.clock);
    let request = sovereign_cloud::ops::AccessRequest {
        id: "0b8f4f7e-2a51-4b9e-8f3c-6d2e1a9b7c10".into(),
        region: "in-mumbai".into(),
        requester: "ana".into(),
        user_id: alice_id,
        scopes: vec![sovereign_model::ConsentScope::Messaging],
        reason: "fraud report <b>#12</b>".into(),
        requested_at_ms: now,
        not_after_ms: now + 3_600_000,
    };
    crate::ops::submit(&app, &request, &ops[0].key).await;
    crate::ops::decide(&app, &request, &ops[1], Decision::Approve).await;
    crate::ops::decide(&app, &request, &ops[2], Decision::Approve).await;
    let read = crate::ops::signed_get(
        &app,
        &ops[0],
        &format!("/v1/ops/grants/{}/data/messaging", request.id),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    let mut browser = Browser::new(&app);
    let page = browser.sign_in(&app, ALICE).await;
    assert!(page.contains("<tr data-kind=\"read\">"), "{page}");
    assert!(
        page.contains("<td>ana</td><td>fraud report &lt;b&gt;#12&lt;/b&gt;</td>"),
        "escaped: {page}"
    );
    assert!(
        page.contains("<tr data-kind=\"grant\">") && page.contains("<td>ben, cat</td>"),
        "{page}"
    );
    assert!(!page.contains("<b>#12</b>"));
}

#[tokio::test]
async fn signing_out_ends_the_session_for_good() {
    let app = spawn_app().await;
    app.user(ALICE).await;
    let mut browser = Browser::new(&app);
    let page = browser.sign_in(&app, ALICE).await;
    let csrf = csrf_in(&page);
    let session = browser.cookies.clone();
    let (status, headers, _) = browser.post(&app, "/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&headers)
            .iter()
            .any(|c| c.starts_with("__Host-sovereign-session=;") && c.contains("Max-Age=0"))
    );
    // Replaying the old cookie finds no session: it was deleted, not just forgotten.
    let mut replay = Browser::new(&app);
    replay.cookies = session;
    let (_, _, page) = replay.get(&app, "/").await;
    assert!(
        page.contains("action=\"/sign-in\"") && !page.contains(ALICE),
        "{page}"
    );
}
