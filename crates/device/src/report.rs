//! The run report as text for a terminal (JSON is the report's serde form).

use std::fmt::Write as _;

use crate::journal::RequestRecord;
use crate::sim::{Phase, RunReport};

fn request_line(request: &RequestRecord) -> String {
    let status = request
        .status
        .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
    let carried = if request.identifiers.is_empty() {
        "no profile identifier".to_owned()
    } else {
        let items: Vec<String> = request
            .identifiers
            .iter()
            .map(|c| format!("{} ({})", c.kind, c.encoding.as_str()))
            .collect();
        format!("carries {}", items.join(", "))
    };
    format!(
        "{} {} [{}, {}] -> {status}; {carried}",
        request.method,
        request.url,
        if request.tls { "TLS" } else { "cleartext" },
        request.connect,
    )
}

/// One block per step: its number, name, what it did, and each request with what it carried,
/// or "nothing sent".
pub fn render_text(report: &RunReport) -> String {
    let mut out = String::new();
    // Invariant: writing to a String cannot fail, here and below.
    let _ = writeln!(
        out,
        "phone {} running the 2014 procedure, behaviour {}",
        report.phone, report.behaviour
    );
    if let Some(endpoint) = &report.legacy_endpoint {
        let _ = writeln!(
            out,
            "legacy account endpoint ({}) started on http://{} and https://{}",
            crate::legacy::LEGACY_HOST,
            endpoint.http,
            endpoint.https
        );
    }
    let mut updated = false;
    for step in &report.steps {
        if step.phase == Phase::AfterUpdate && !updated {
            updated = true;
            let _ = writeln!(out, "-- after the update --");
        }
        let _ = writeln!(out, "{:>2}. {}: {}", step.number, step.step, step.summary);
        if step.requests.is_empty() {
            let _ = writeln!(out, "      nothing sent");
        }
        for request in &step.requests {
            let _ = writeln!(out, "      {}", request_line(request));
        }
    }
    let total: usize = report.steps.iter().map(|s| s.requests.len()).sum();
    let _ = write!(out, "{total} requests in {} steps", report.steps.len());
    if let (Some(region), Some(url)) = (&report.region, &report.home_url) {
        let _ = write!(out, "; home region {region} at {url}");
    }
    if !report.backup.is_empty() {
        let kinds: Vec<&str> = report.backup.iter().map(|k| k.as_str()).collect();
        let _ = write!(out, "; backup: {}", kinds.join(", "));
    }
    if let Some(endpoint) = &report.legacy_endpoint {
        let _ = write!(
            out,
            "; the legacy endpoint received {} requests",
            endpoint.received.len()
        );
    }
    out.push('\n');
    out
}
