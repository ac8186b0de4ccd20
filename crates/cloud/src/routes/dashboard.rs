//! The privacy dashboard: a server-rendered page per region at `/`, with no JavaScript at all.
//!
//! Sign in with phone and password; see what is stored about you per category (counts, region,
//! deletion dates), your consents with their notices (switchable), who accessed your data, when,
//! why and with whose approval; export everything; delete the account.
//!
//! Security: the session is an opaque token in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Strict), stored hashed like the API's bearer tokens. Every form carries a CSRF token:
//! before sign-in a double-submit token (a random cookie the form must repeat), after sign-in a
//! token derived from the session token, which only this session's pages know. Every page is
//! sent with a CSP that allows nothing but our own stylesheet and form posts to ourselves. No URL
//! names a user: every page shows the data of the session's user and nobody else's.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sovereign_crypto::{digest_sha256, hex, random_token, token_digest, verify_password};
use sovereign_model::ConsentScope;

use crate::domain::{PhoneNumber, UserId};
use crate::error::ApiError;
use crate::extract::{AuthUser, ClientIp, aad};
use crate::limits::{Limited, Subject};
use crate::retention::{ledger_ms, policy_text};
use crate::routes::{consents, me};
use crate::state::AppState;
use crate::store::SessionRow;

pub const SESSION_COOKIE: &str = "__Host-sovereign-session";
pub const CSRF_COOKIE: &str = "__Host-sovereign-csrf";
/// Scripts only from this origin's one file (no inline script), which may fetch only from here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The words a user types to confirm deleting the account.
pub const DELETE_CONFIRMATION: &str = "delete my account";
const DEVICE_NAME: &str = "privacy dashboard (web)";
/// Largest form body the dashboard reads; its forms are a few hundred bytes.
pub const FORM_BODY_BYTES_MAX: usize = 8192;
/// Longest cookie value we look at.
const COOKIE_BYTES_MAX: usize = 128;

const STYLESHEET: &str = include_str!("dashboard.css");
/// The page's check that the ledger's signed head extends the one the browser saw last.
const LEDGER_SCRIPT: &str = include_str!("dashboard-ledger.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/dashboard.css", get(stylesheet))
        .route("/dashboard-ledger.js", get(ledger_script))
        .route("/ledger/consistency", get(ledger_consistency))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/sessions/{id}/end", post(end_session))
        .route("/consents/{scope}", post(switch_consent))
        .route("/export", get(export))
        .route("/delete-account", post(delete_account))
        .layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_BYTES_MAX))
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= COOKIE_BYTES_MAX)
}

fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    // Invariant: names are our constants and values are base64url tokens, all visible ASCII.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    ))
    .expect("cookie is visible ASCII")
}

/// The CSRF token of a signed-in session: only pages rendered for this session carry it.
fn session_csrf(session_token: &str) -> String {
    hex(&digest_sha256(
        format!("sovereign-dashboard-csrf\0{session_token}").as_bytes(),
    ))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The signed-in user of a dashboard request, with the session token its CSRF token derives from.
struct Session {
    user: AuthUser,
    token: String,
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = token_digest(&token);
    let Some(live) = crate::extract::live_session(state, digest).await? else {
        return Ok(None);
    };
    let user_id = live.user_id;
    let session = Some(crate::extract::SessionRef {
        id: live.id,
        token_digest: digest,
        expires_at: live.expires_at,
        issuer: None,
    });
    let Some(row) = state.store.user(user_id.clone()).await? else {
        return Ok(None);
    };
    let id = UserId::from_stored(user_id);
    let Some(wrapped) = row.wrapped_key.as_deref() else {
        return Ok(None);
    };
    let key = state
        .keys
        .unwrap(wrapped, &id)
        .map_err(ApiError::Internal)?;
    Ok(Some(Session {
        user: AuthUser {
            id,
            row,
            key,
            session,
        },
        token,
    }))
}

async fn require_session(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Response> {
    let Some(session) = session(state, headers).await.map_err(page_error)? else {
        return Err(redirect("/"));
    };
    if !same(csrf, &session_csrf(&session.token)) {
        return Err(page_error(ApiError::CsrfRejected));
    }
    Ok(session)
}

fn redirect(to: &str) -> Response {
    // Invariant: redirect targets are our own constant paths.
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).expect("constant path"),
        )],
    )
        .into_response()
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Sovereign</title><link rel=\"stylesheet\" href=\"/dashboard.css\"></head>\
         <body><main>{body}</main></body></html>\n",
        esc(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn page_error(error: ApiError) -> Response {
    let status = error.status();
    let message = if let ApiError::Internal(source) = &error {
        tracing::error!(error = ?source, "internal error on the dashboard");
        "The server failed to handle this request; it has been logged.".to_owned()
    } else {
        error.to_string()
    };
    html(
        status,
        "Error",
        &format!(
            "<h1>That did not work</h1><p role=\"alert\" class=\"error\" data-code=\"{}\">{}</p>\
             <p><a href=\"/\">Back to your dashboard</a></p>",
            error.code(),
            esc(&message)
        ),
    )
}

fn form_error(rejection: FormRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return page_error(ApiError::PayloadTooLarge {
            limit_bytes: FORM_BODY_BYTES_MAX,
        });
    }
    page_error(ApiError::invalid("form", rejection.body_text()))
}

async fn ledger_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LEDGER_SCRIPT,
    )
}

/// `/v1/me/ledger/consistency` for the dashboard's script, on the session cookie.
async fn ledger_consistency(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<
        axum::extract::Query<crate::routes::ops::ConsistencyQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let answer = async {
        if session(&state, &headers).await?.is_none() {
            return Err(ApiError::Unauthorized);
        }
        crate::routes::ops::consistency_answer(&state, query).await
    };
    match answer.await {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
}

fn sign_in_page(
    state: &AppState,
    csrf: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let alert = message.map_or_else(String::new, |m| {
        format!("<p role=\"alert\" class=\"error\">{}</p>", esc(m))
    });
    let body = format!(
        "<h1>Your data at Sovereign</h1>\
         <p>Region <strong>{region}</strong>. Sign in to see everything this region holds about you, \
         who has accessed it, and to change your consents.</p>{alert}\
         <form method=\"post\" action=\"/sign-in\" class=\"card\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"phone\">Phone number</label>\
         <input id=\"phone\" name=\"phone\" type=\"tel\" autocomplete=\"tel\" required maxlength=\"32\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\">\
         <button type=\"submit\">Sign in</button></form>",
        region = esc(state.region.id.as_str()),
        csrf = esc(csrf),
    );
    let mut response = html(status, "Sign in", &body);
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, csrf, 3600));
    response
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Ok(Some(session)) => match dashboard_page(&state, &session).await {
            Ok(body) => html(StatusCode::OK, "Your data", &body),
            Err(error) => page_error(error),
        },
        Ok(None) => match random_token() {
            Ok((csrf, _)) => sign_in_page(&state, &csrf, None, StatusCode::OK),
            Err(error) => page_error(ApiError::internal(error)),
        },
        Err(error) => page_error(error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    csrf: String,
    phone: String,
    password: SecretString,
}

async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(rejection),
    };
    // Double-submit: the form must repeat the random cookie set with the sign-in page, which a
    // page on another site can neither read nor set (`__Host-`, SameSite=Strict).
    let csrf_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| same(&c, &form.csrf));
    if !csrf_ok {
        return page_error(ApiError::CsrfRejected);
    }
    // Counted against the address and the number: guesses at one account from many addresses
    // share the account's allowance.
    let mut subjects = vec![Subject::source(ip)];
    if let Ok(phone) = PhoneNumber::parse(&form.phone) {
        subjects.push(Subject::Phone(state.keys.phone_index(&phone)));
    }
    if let Err(error) = state.limits.check(Limited::Login, &subjects) {
        return page_error(error);
    }
    match sign_in_user(&state, &form).await {
        Ok(Some((token, max_age))) => {
            let mut response = redirect("/");
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, max_age),
            );
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, "", 0));
            response
        }
        Ok(None) => sign_in_page(
            &state,
            &form.csrf,
            Some("Phone number or password is wrong."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(error) => page_error(error),
    }
}

/// Checks the credentials and starts a session; `None` when they are wrong.
async fn sign_in_user(
    state: &AppState,
    form: &SignInForm,
) -> Result<Option<(String, i64)>, ApiError> {
    // A malformed number is answered like a wrong password: no hint about which was wrong.
    let phone = PhoneNumber::parse(&form.phone).ok();
    let user = match &phone {
        Some(phone) => {
            state
                .store
                .user_by_phone_index(state.keys.phone_index(phone))
                .await?
        }
        None => None,
    };
    let stored_hash = user.as_ref().map_or_else(
        || crate::routes::accounts::DUMMY_HASH.clone(),
        |u| u.password_hash.clone(),
    );
    let password = form.password.clone();
    let password_ok = tokio::task::spawn_blocking(move || {
        verify_password(password.expose_secret(), &stored_hash)
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| password_ok) else {
        return Ok(None);
    };
    let user_id = UserId::from_stored(user.id.clone());
    let Some(wrapped) = user.wrapped_key.as_deref() else {
        return Ok(None);
    };
    let key = state
        .keys
        .unwrap(wrapped, &user_id)
        .map_err(ApiError::Internal)?;
    let (token, digest) = random_token().map_err(ApiError::internal)?;
    let now = state.now_ms();
    let lifetime_secs = i64::from(state.policies.retention.sessions_days) * 86_400;
    let session_id = uuid::Uuid::new_v4().to_string();
    let device_sealed = key
        .seal(
            &aad("sessions", &user_id, &session_id, "device"),
            DEVICE_NAME.as_bytes(),
        )
        .map_err(ApiError::internal)?;
    state
        .store
        .create_session(
            digest,
            SessionRow {
                id: session_id,
                device_sealed,
                created_at: now,
                expires_at: now + lifetime_secs * 1000,
            },
            user.id,
        )
        .await?;
    Ok(Some((token, lifetime_secs)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(rejection),
    };
    let session = match require_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Err(error) = state.store.end_session(token_digest(&session.token)).await {
        return page_error(error.into());
    }
    if let Some(ended) = &session.user.session {
        state.hub.end_session(session.user.id.as_str(), &ended.id);
        crate::placement::push_session_end(&state, session.user.id.as_str(), ended.token_digest);
    }
    let mut response = redirect("/");
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentForm {
    csrf: String,
    /// "on" or "off".
    switch: String,
}

async fn switch_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(scope): Path<String>,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(rejection),
    };
    let session = match require_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let Some(scope) = ConsentScope::parse(&scope) else {
        return page_error(ApiError::NotFound);
    };
    let user_id = session.user.id.to_string();
    let result = match form.switch.as_str() {
        "on" => {
            // Invariant: `Policies::parse` refuses a notices file that lacks any scope.
            let version = state.policies.notices.get(&scope).map_or(1, |n| n.version);
            consents::grant_and_push(&state, user_id, scope, version)
                .await
                .map(|_| ())
        }
        "off" => consents::withdraw_and_erase(&state, user_id, scope).await,
        _ => return page_error(ApiError::invalid("switch", "must be on or off")),
    };
    match result {
        Ok(()) => redirect("/#consents"),
        Err(error) => page_error(error),
    }
}

async fn export(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return redirect("/"),
        Err(error) => return page_error(error),
    };
    match crate::export::export_response(state, session.user, session.token).await {
        Ok(mut response) => {
            response.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static(
                    "attachment; filename=\"sovereign-export.json\"",
                ),
            );
            response
        }
        Err(error) => page_error(error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteForm {
    csrf: String,
    confirm: String,
}

async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(rejection),
    };
    let session = match require_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Err(error) = crate::routes::sessions::end(&state, &session.user, &id).await {
        return page_error(error);
    }
    let this = session.user.session.as_ref().is_some_and(|s| s.id == id);
    let mut response = redirect(if this { "/" } else { "/#sessions" });
    if this {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    }
    response
}

async fn delete_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(rejection),
    };
    let session = match require_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if form.confirm.trim() != DELETE_CONFIRMATION {
        return page_error(ApiError::invalid(
            "confirm",
            format!("type \"{DELETE_CONFIRMATION}\" to confirm"),
        ));
    }
    if let Err(error) = me::delete_account(State(state), session.user).await {
        return page_error(error);
    }
    let mut response = html(
        StatusCode::OK,
        "Account deleted",
        "<h1>Your account is deleted</h1><p>Your data key was destroyed first, so nothing of \
         yours can be decrypted any more; then every row and file was removed.</p>\
         <p><a href=\"/\">Back to the start</a></p>",
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    response
}

/// A time as people read it: `2026-09-21 14:13 UTC`.
fn human(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn category_label(category: &str) -> &str {
    match category {
        "undelivered_messages" => "Messages waiting for delivery",
        "delivered_messages" => "Delivered and sent messages",
        "sessions" => "Signed-in devices",
        "access_ledger_details" => "Details of staff access to your data",
        "backup_contacts" => "Backed-up contacts",
        "backup_sms" => "Backed-up SMS",
        "backup_photos" => "Backed-up photos",
        other => other,
    }
}

async fn dashboard_page(state: &AppState, session: &Session) -> Result<String, ApiError> {
    let user = &session.user;
    let csrf = esc(&session_csrf(&session.token));
    let region = esc(state.region.id.as_str());
    let now = state.now_ms();
    let account = serde_json::to_value(
        me::me(
            State(state.clone()),
            AuthUser {
                id: user.id.clone(),
                row: user.row.clone(),
                key: user.key.clone(),
                session: user.session.clone(),
            },
        )
        .await?
        .0,
    )
    .map_err(ApiError::internal)?;
    let phone = account["phone"].as_str().unwrap_or_default();
    let mut out = String::new();
    let _ = write!(
        out,
        "<header><h1>Your data at Sovereign</h1><p>Signed in as <strong>{}</strong>, \
         held in region <strong>{region}</strong>.</p>\
         <form method=\"post\" action=\"/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" class=\"secondary\">Sign out</button></form></header>\
         <nav aria-label=\"Sections\"><a href=\"#stored\">Stored data</a> <a href=\"#consents\">Consents</a> \
         <a href=\"#access\">Access log</a> <a href=\"#sessions\">Devices</a> <a href=\"#export\">Export</a> <a href=\"#delete\">Delete account</a></nav>",
        esc(phone)
    );

    // What is stored, per category.
    let stats = state
        .store
        .user_retention_stats(
            user.id.to_string(),
            now,
            ledger_ms(&state.policies.retention),
        )
        .await?;
    // Services held in other regions: their figures come from there.
    let mut stats = stats;
    let mut category_regions = std::collections::BTreeMap::new();
    for (service, service_region, answer) in
        crate::placement::stats_remote(state, user.id.as_str()).await?
    {
        for remote in answer["categories"].as_array().into_iter().flatten() {
            let category = remote["category"].as_str().unwrap_or_default();
            if crate::placement::service_of_category(category) != Some(service) {
                continue;
            }
            if let Some(s) = stats.iter_mut().find(|s| s.category == category) {
                s.rows = remote["rows"].as_i64().unwrap_or(0);
                s.due_now = remote["due_now"].as_i64().unwrap_or(0);
                s.next_deletion = remote["next_deletion"].as_i64();
                s.last_deletion = remote["last_deletion"].as_i64();
                category_regions.insert(s.category, esc(service_region.as_str()));
            }
        }
    }
    let history = state.store.consent_history(user.id.to_string()).await?;
    let _ = write!(
        out,
        "<section id=\"stored\" aria-labelledby=\"stored-h\"><h2 id=\"stored-h\">What we store about you</h2>\
         <table><caption>Everything held about you in region {region}, and when it is deleted</caption>\
         <thead><tr><th scope=\"col\">Category</th><th scope=\"col\">Items</th><th scope=\"col\">Region</th>\
         <th scope=\"col\">Deleted</th></tr></thead><tbody>\
         <tr><th scope=\"row\">Account (phone number, password hash)</th><td>1</td><td>{region}</td><td>when you delete the account</td></tr>\
         <tr><th scope=\"row\">Consent history</th><td>{}</td><td>{region}</td><td>when you delete the account</td></tr>",
        history.len()
    );
    for s in &stats {
        let when = match (s.next_deletion, s.last_deletion) {
            (Some(next), Some(last)) if next == last => format!("on {}", human(next.max(now))),
            (Some(next), Some(last)) => {
                format!("from {} to {}", human(next.max(now)), human(last.max(now)))
            }
            _ => policy_text(&state.policies.retention, s.category),
        };
        let where_held = category_regions.get(s.category).unwrap_or(&region);
        let _ = write!(
            out,
            "<tr data-category=\"{}\"><th scope=\"row\">{}</th><td>{}</td><td class=\"nowrap\">{where_held}</td><td>{}</td></tr>",
            s.category,
            esc(category_label(s.category)),
            s.rows,
            esc(&when)
        );
    }
    out.push_str("</tbody></table></section>");

    // Consents with their notices.
    out.push_str(
        "<section id=\"consents\" aria-labelledby=\"consents-h\"><h2 id=\"consents-h\">Your consents</h2>\
         <p>Everything is off until you switch it on. Switching off erases that data at once.</p><ul class=\"consents\">",
    );
    let views = serde_json::to_value(consents::consent_views(state, user).await?)
        .map_err(ApiError::internal)?;
    for view in views.as_array().into_iter().flatten() {
        let scope = view["scope"].as_str().unwrap_or_default();
        let granted = view["granted"].as_bool().unwrap_or(false);
        let notice = &view["notice"];
        let categories: Vec<&str> = notice["data_categories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let granted_at =
            chrono::DateTime::parse_from_rfc3339(view["granted_at"].as_str().unwrap_or_default())
                .map(|t| human(t.timestamp_millis()))
                .unwrap_or_default();
        let status = if granted {
            format!("On since {}", esc(&granted_at))
        } else {
            "Off".to_owned()
        };
        let (switch, label) = if granted {
            ("off", "Switch off")
        } else {
            ("on", "Switch on")
        };
        let _ = write!(
            out,
            "<li class=\"card\" data-scope=\"{s}\"><h3>{s}</h3><p class=\"status {cls}\">{status}</p>\
             <dl><dt>Purpose</dt><dd>{purpose}</dd><dt>Data</dt><dd>{cats}</dd><dt>Kept</dt><dd>{ret}</dd>\
             <dt>Where</dt><dd>{region}</dd><dt>Notice</dt><dd>version {version}</dd></dl>\
             <form method=\"post\" action=\"/consents/{s}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"switch\" value=\"{switch}\">\
             <button type=\"submit\" aria-label=\"{label} {s}\">{label}</button></form></li>",
            s = esc(scope),
            cls = if granted { "on" } else { "off" },
            purpose = esc(notice["purpose"].as_str().unwrap_or_default()),
            cats = esc(&categories.join(", ")),
            ret = esc(notice["retention"].as_str().unwrap_or_default()),
            version = notice["version"].as_u64().unwrap_or(0),
        );
    }
    out.push_str("</ul></section>");

    // Who accessed the data, from the access ledger.
    state
        .store
        .ledger_checkpoint(state.ledger.clone(), now)
        .await?;
    let ledger = state.store.user_ledger(user.id.to_string()).await?;
    let _ = write!(
        out,
        "<section id=\"access\" aria-labelledby=\"access-h\"><h2 id=\"access-h\">Who accessed your data</h2>\
         <p>Staff can read your data only after two other staff approve, only for a limited time, \
         and every step is in a signed, tamper-evident ledger{}.</p>",
        ledger.as_ref().map_or_else(String::new, |l| format!(
            " (checkpoint of {} entries, root {}…)",
            l.checkpoint.tree_size,
            &hex(&l.checkpoint.root)[..16]
        ))
    );
    // The signed head, for the page's script to check against the one this browser saw last.
    if let Some(l) = &ledger {
        let _ = write!(
            out,
            "<div id=\"ledger-head\" hidden data-region=\"{}\" data-size=\"{}\" \
             data-root=\"{}\"></div><p id=\"ledger-check\" class=\"ledger-check\" \
             data-state=\"pending\" aria-live=\"polite\">Checking the ledger in this browser…</p>\
             <script src=\"/dashboard-ledger.js\" defer></script>",
            esc(state.region.id.as_str()),
            l.checkpoint.tree_size,
            hex(&l.checkpoint.root),
        );
    }
    let mut entries = ledger.map(|l| l.entries).unwrap_or_default();
    // Reads of data held in the regions where the user's services live are in their ledgers.
    for (_, part) in crate::placement::access_remote(state, user.id.as_str()).await? {
        for e in part["entries"].as_array().into_iter().flatten() {
            entries.push((remote_ledger_row(e), Vec::new()));
        }
    }
    // And so are reads made where the data was before the user or a service moved away.
    for part in crate::placement::access_former(state, user.id.as_str()).await? {
        if part["available"] == Value::Bool(true) {
            for e in part["entries"].as_array().into_iter().flatten() {
                entries.push((remote_ledger_row(e), Vec::new()));
            }
        } else if let Some(region) = part["region"].as_str() {
            let _ = write!(
                out,
                "<p class=\"error\" data-unavailable=\"{r}\">Staff access in {r}, where your data \
                 was before, could not be checked just now: that region did not answer. \
                 Its record is kept; try again later.</p>",
                r = esc(region),
            );
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0.at));
    if entries.is_empty() {
        out.push_str("<p class=\"empty\">Nobody has asked for or had access to your data.</p>");
    } else {
        out.push_str(
            "<table><caption>Every request, approval, denial and read, newest first</caption>\
             <thead><tr><th scope=\"col\">When</th><th scope=\"col\">What</th><th scope=\"col\">Who</th>\
             <th scope=\"col\">Why</th><th scope=\"col\">Approved by</th><th scope=\"col\">Data</th></tr></thead><tbody>",
        );
        for (row, _) in &entries {
            let detail: Value = row
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let data = detail["scope"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| list(&detail["scopes"]));
            let _ = write!(
                out,
                "<tr data-kind=\"{kind}\"><td>{at}</td><td>{kind}</td><td>{who}</td><td>{why}</td><td>{by}</td><td>{data}</td></tr>",
                kind = esc(&row.kind),
                at = esc(&human(row.at)),
                who = esc(&row.operator),
                why = esc(detail["reason"]
                    .as_str()
                    .unwrap_or("(erased after the retention period)")),
                by = esc(&list(&detail["approvers"])),
                data = esc(&data),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    // Signed-in devices, each of which can be signed out from here.
    let _ = write!(
        out,
        "<section id=\"sessions\" aria-labelledby=\"sessions-h\"><h2 id=\"sessions-h\">Signed-in devices</h2>\
         <table><caption>Every session of your account; signing one out ends it at once</caption>\
         <thead><tr><th scope=\"col\">Device</th><th scope=\"col\">Signed in</th>\
         <th scope=\"col\">Last used</th><th scope=\"col\">Ends</th><th scope=\"col\"></th></tr></thead><tbody>"
    );
    for item in crate::routes::sessions::session_items(state, user).await? {
        let this = if item.current { " (this browser)" } else { "" };
        let last = item
            .last_seen_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(|| "-".to_owned(), |t| human(t.timestamp_millis()));
        let created = chrono::DateTime::parse_from_rfc3339(&item.created_at)
            .map_or_else(|_| "-".to_owned(), |t| human(t.timestamp_millis()));
        let ends = chrono::DateTime::parse_from_rfc3339(&item.expires_at)
            .map_or_else(|_| "-".to_owned(), |t| human(t.timestamp_millis()));
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}{this}</th><td>{created}</td><td>{last}</td><td>{ends}</td><td>\
             <form method=\"post\" action=\"/sessions/{}/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"secondary\">Sign out this device</button></form></td></tr>",
            esc(&item.device_name),
            esc(&item.id),
        );
    }
    out.push_str("</tbody></table></section>");

    let _ = write!(
        out,
        "<section id=\"export\" aria-labelledby=\"export-h\"><h2 id=\"export-h\">Export everything</h2>\
         <p>One JSON file with your account, consents and their history, messages and backups, decrypted.</p>\
         <p><a class=\"button\" href=\"/export\" download>Download your data (JSON)</a></p></section>\
         <section id=\"delete\" aria-labelledby=\"delete-h\"><h2 id=\"delete-h\">Delete your account</h2>\
         <p>Your data key is destroyed first, so nothing of yours can be decrypted any more; then every \
         row and file is removed. This cannot be undone.</p>\
         <form method=\"post\" action=\"/delete-account\" class=\"card danger\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"confirm\">Type <strong>{DELETE_CONFIRMATION}</strong> to confirm</label>\
         <input id=\"confirm\" name=\"confirm\" type=\"text\" required autocomplete=\"off\" maxlength=\"64\">\
         <button type=\"submit\" class=\"danger\">Delete my account</button></form></section>"
    );
    Ok(out)
}

/// A ledger entry another region reported (`/v1/me/access-log`'s JSON), for display only.
fn remote_ledger_row(e: &Value) -> crate::store::LedgerRow {
    let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    crate::store::LedgerRow {
        seq: e["seq"].as_i64().unwrap_or(0),
        at: e["at_ms"].as_i64().unwrap_or(0),
        kind: text("kind"),
        user_id: text("user_id"),
        request_id: text("request_id"),
        operator: text("operator"),
        detail: (!e["detail"].is_null()).then(|| e["detail"].to_string()),
        detail_hash: Vec::new(),
        leaf_hash: Vec::new(),
        chain_hash: Vec::new(),
    }
}
