//! Liveness, metrics and the API description.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
}

/// Answers when the region's server is up, with the state of its copy of the directory: on
/// etcd, whether it follows etcd (`following`) and the revision it reflects. A site whose copy
/// is stale stays up (it serves its signed-in users), so this is still `200`.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "{\"status\": \"ok\", \"region\": ..., \"directory\": {\"backend\", \"following\", \"revision\"}}")))]
pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let directory = match state.directory.status() {
        None => serde_json::json!({ "backend": "sqlite", "following": true }),
        Some(status) => serde_json::json!({
            "backend": "etcd",
            "following": status.connected,
            "revision": status.revision,
        }),
    };
    // A ledger found rewritten behind the server's back is not signed over; the region keeps
    // serving its users, and says so here for the on-call operator's probe.
    let (status, ledger) = match state.ledger.refusal() {
        None => ("ok", serde_json::json!({ "signing": "ok" })),
        Some(fault) => (
            "degraded",
            serde_json::json!({ "signing": "refused", "fault": fault }),
        ),
    };
    Json(serde_json::json!({
        "status": status,
        "region": state.region.id.as_str(),
        "directory": directory,
        "ledger": ledger,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
