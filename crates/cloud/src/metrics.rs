//! Prometheus metrics, one registry per region server (no global state).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Which per-user quota refused a write (a fixed set: see [`crate::store::Quota::name`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    pub quota: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
    pub messages_stored: Counter,
    pub messages_pushed: Counter,
    pub websockets_open: Gauge,
    pub websockets_refused: Counter,
    pub quota_refusals: Family<QuotaLabels, Counter>,
}

/// The method label of a request: the standard methods by name, anything else as `other`, so
/// that made-up method names cannot add series without end.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sovereign");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let messages_stored = Counter::default();
        let messages_pushed = Counter::default();
        let websockets_open = Gauge::default();
        let websockets_refused = Counter::default();
        let quota_refusals = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "quota_refusals",
            "Writes refused because a per-user quota was reached",
            quota_refusals.clone(),
        );
        registry.register(
            "websockets_open",
            "WebSockets open now",
            websockets_open.clone(),
        );
        registry.register(
            "websockets_refused",
            "WebSockets refused because the user had too many open",
            websockets_refused.clone(),
        );
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request",
            request_seconds.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages durably stored",
            messages_stored.clone(),
        );
        registry.register(
            "messages_pushed",
            "Messages pushed over WebSocket",
            messages_pushed.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            messages_stored,
            messages_pushed,
            websockets_open,
            websockets_refused,
            quota_refusals,
        }
    }
}

impl Metrics {
    /// Counts `error` if it is a quota refusal, and hands it back.
    pub fn count_quota(&self, error: crate::error::ApiError) -> crate::error::ApiError {
        if let crate::error::ApiError::QuotaExceeded { quota, .. } = &error {
            self.quota_refusals
                .get_or_create(&QuotaLabels { quota })
                .inc();
        }
        error
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Invariant: encoding into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode");
        out
    }
}
